#!/usr/bin/env python3
"""Plays, once, the controllers the local control plane does not run, exactly as the
integration tests do (tests/src/lib.rs play_controllers): cert-manager marks Certificates
Ready, the load-balancer controller gives LoadBalancer Services an address (the requested
one, else the next from 198.51.100.0/24 / 2001:db8:ffff::/112), and external-dns reports
DNSEndpoints published. Used by `make demo`; kubectl must point at the local cluster."""
import json
import subprocess
import sys

KUBECTL = sys.argv[1:] or ["kubectl"]


def kubectl(*args):
    return subprocess.run(KUBECTL + list(args), check=True, capture_output=True, text=True).stdout


def items(kind):
    return json.loads(kubectl("get", kind, "-A", "-o", "json"))["items"]


def patch_status(kind, obj, status):
    m = obj["metadata"]
    kubectl("-n", m["namespace"], "patch", kind, m["name"], "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}))


next_ip = 1
for c in items("certificates.cert-manager.io"):
    conds = c.get("status", {}).get("conditions", [])
    if not any(x.get("type") == "Ready" and x.get("status") == "True" for x in conds):
        patch_status("certificates.cert-manager.io", c, {"conditions": [
            {"type": "Ready", "status": "True", "reason": "Ready", "message": "Certificate is up to date and has not expired"}]})
for s in items("services"):
    if s["spec"].get("type") != "LoadBalancer" or s.get("status", {}).get("loadBalancer", {}).get("ingress"):
        continue
    ann = s["metadata"].get("annotations", {})
    requested = ann.get("metallb.io/loadBalancerIPs") or ann.get("lbipam.cilium.io/ips")
    if requested:
        ips = [x.strip() for x in requested.split(",")]
    else:
        ips = ["2001:db8:ffff::%x" % next_ip if f == "IPv6" else "198.51.100.%d" % (next_ip % 250 + 1)
               for f in s["spec"].get("ipFamilies", ["IPv4"])]
        next_ip += 1
    patch_status("services", s, {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}})
for d in items("dnsendpoints.externaldns.k8s.io"):
    gen = d["metadata"].get("generation", 0)
    if d.get("status", {}).get("observedGeneration") != gen:
        patch_status("dnsendpoints.externaldns.k8s.io", d, {"observedGeneration": gen})
