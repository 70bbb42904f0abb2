#!/usr/bin/env python3
"""Plays, once, the load balancers that cannot run on one machine, as the integration
tests do (tests/src/lib.rs play_load_balancers): Hetzner's cloud load balancer and Cilium's
LB-IPAM. Each unassigned LoadBalancer Service gets the address it requests
(lbipam.cilium.io/ips), else the next from 198.51.100.0/24 / 2001:db8:ffff::/112, by a
status patch like the real controller's. Everything else in `make demo` is real: MetalLB
is stopped while this plays (it would claim these Services). kubectl must point at the
local cluster."""
import json
import subprocess
import sys

KUBECTL = sys.argv[1:] or ["kubectl"]



def played_families(s):
    """A Hetzner load balancer (its annotations) is dual-stack whatever the Service's
    families, as hcloud-cloud-controller-manager reports it; Cilium's follows the Service."""
    annotations = s["metadata"].get("annotations", {})
    if any(k.startswith("load-balancer.hetzner.cloud/") for k in annotations):
        return ["IPv4", "IPv6"]
    return s["spec"].get("ipFamilies", ["IPv4"])

def kubectl(*args):
    return subprocess.run(KUBECTL + list(args), check=True, capture_output=True, text=True).stdout


next_ip = 1
for s in json.loads(kubectl("get", "services", "-A", "-o", "json"))["items"]:
    if s["spec"].get("type") != "LoadBalancer" or s.get("status", {}).get("loadBalancer", {}).get("ingress"):
        continue
    m = s["metadata"]
    requested = m.get("annotations", {}).get("lbipam.cilium.io/ips")
    if requested:
        ips = [x.strip() for x in requested.split(",")]
    else:
        ips = ["2001:db8:ffff::%x" % next_ip if f == "IPv6" else "198.51.100.%d" % (next_ip % 250 + 1)
               for f in played_families(s)]
        next_ip += 1
    kubectl("-n", m["namespace"], "patch", "service", m["name"], "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}}))
    print(f"PLAYED load balancer: {m['namespace']}/{m['name']} -> {', '.join(ips)}")
