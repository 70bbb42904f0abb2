//! Truth tables for the secondary networks (MultiNetworkPolicy), derived from the Gatehouse
//! objects themselves, as [`crate::policy`] does for the pod network.
//!
//! A MultiNetworkPolicy has NetworkPolicy's spec and semantics; it differs only in the
//! interfaces it applies to: those on the attachments its `k8s.v1.cni.cncf.io/policy-for`
//! annotation names, where a podSelector peer means the pods' addresses on that
//! attachment. So one attachment is judged as a network of its own: its pods (only the
//! pods attached to it, each with its address there as the pod IP), its
//! MultiNetworkPolicies given to gatehouse-policy as NetworkPolicies ([`policies_for`]),
//! and probes over it whose verdicts come from the objects' meaning ([`attachment_world`]):
//!
//! - Ingress at pod P (app A, namespace N) over attachment X: P is isolated on X when A's
//!   `attachments[X].allowFrom` is set, or A is `isolation: Isolated`, or N is under the
//!   network's ingress default deny. Isolated, it admits A's `allowFrom` peers on X on its
//!   `attachments[X].ports` (every port when empty), and `policy.allowEverywhere`.
//! - Egress from pod S (namespace M) over X: S is isolated when M is under egress default
//!   deny or an EgressPolicy of M selects it; it may then reach what the rules of the
//!   EgressPolicies selecting it allow (cidr peers by address, app and selector peers by the
//!   pods on X). The cluster DNS is not on X.
//! - Outside the attachment (a LAN host, the internet behind its router) nothing isolates.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{Value, json};

use crate::policy::{
    ExpectedProbe, Labels, in_cidr_peer, labels_of, selector_matches, workload_pods,
};

const INTERNET_V4: &str = "203.0.113.250";
const INTERNET_V6: &str = "2001:db8:beef::250";
/// A port no Gatehouse object opens anywhere.
const UNDECLARED_PORT: i64 = 9999;

fn network_of(o: &Value) -> String {
    o["spec"]["network"]
        .as_str()
        .unwrap_or("default")
        .to_string()
}

/// (network, attachment) for every attachment of a network with
/// `policy.multiNetworkPolicy: true` that an ExposedApp of the set uses.
pub fn policed_attachments(objects: &[Value]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for n in objects.iter().filter(|o| o["kind"] == "ClusterNetwork") {
        if n["spec"]["policy"]["multiNetworkPolicy"] != true {
            continue;
        }
        let name = n["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for a in n["spec"]["attachments"].as_array().into_iter().flatten() {
            let att = a["name"].as_str().unwrap_or_default().to_string();
            let used = objects.iter().any(|o| {
                o["kind"] == "ExposedApp"
                    && network_of(o) == name
                    && o["spec"]["attachments"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|x| x["network"] == att.as_str())
            });
            if used {
                out.push((name.clone(), att));
            }
        }
    }
    out
}

/// The MultiNetworkPolicies for `attachment` (any namespace: the attachment is one network
/// across the namespaces whose NetworkAttachmentDefinitions carry its name), as the
/// NetworkPolicies with the same spec that gatehouse-policy judges.
pub fn policies_for(mnps: &[Value], attachment: &str) -> Vec<Value> {
    mnps.iter()
        .filter(|m| {
            let ns = m["metadata"]["namespace"].as_str().unwrap_or_default();
            m["metadata"]["annotations"]["k8s.v1.cni.cncf.io/policy-for"]
                .as_str()
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .any(|t| t == attachment || t == format!("{ns}/{attachment}"))
        })
        .map(|m| {
            let mut np = m.clone();
            np["apiVersion"] = json!("networking.k8s.io/v1");
            np["kind"] = json!("NetworkPolicy");
            np
        })
        .collect()
}

/// One pod on the attachment.
struct OnPod {
    ns: String,
    name: String,
    labels: Labels,
    ip: IpAddr,
    /// The app that attached it and its entry for the attachment.
    app: Value,
    entry: Value,
}

/// Who or what an end of a probe is.
enum End<'a> {
    Pod(&'a OnPod),
    Outside(IpAddr),
}

impl End<'_> {
    fn ip(&self) -> IpAddr {
        match self {
            End::Pod(p) => p.ip,
            End::Outside(ip) => *ip,
        }
    }
    fn json(&self) -> Value {
        match self {
            End::Pod(p) => json!({"namespace": p.ns, "pod": p.name}),
            End::Outside(ip) => json!({"ip": ip.to_string()}),
        }
    }
}

/// The pods on one attachment and the probes over it.
pub struct AttachmentWorld {
    /// The pods attached, with their address on the attachment as podIP.
    pub pods: Vec<Value>,
    pub probes: Vec<ExpectedProbe>,
}

fn nth_in(subnet: &str, n: u32) -> Option<IpAddr> {
    let (ip, len) = subnet.split_once('/')?;
    let len: u32 = len.parse().ok()?;
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            Some(IpAddr::V4((u32::from(a) & mask).wrapping_add(n).into()))
        }
        IpAddr::V6(a) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            Some(IpAddr::V6(
                (u128::from(a) & mask).wrapping_add(n as u128).into(),
            ))
        }
    }
}

/// The world of `attachment` of `network`: its pods and every probe with the verdict the
/// objects call for. `namespaces` are the Namespace objects (their labels decide default
/// deny).
pub fn attachment_world(
    objects: &[Value],
    namespaces: &[Value],
    network: &str,
    attachment: &str,
) -> AttachmentWorld {
    let net = objects
        .iter()
        .find(|o| o["kind"] == "ClusterNetwork" && o["metadata"]["name"] == network)
        .expect("the network is in the set");
    let def = net["spec"]["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["name"] == attachment)
        .expect("the attachment is defined");
    let subnet = def["ipam"]["ranges"][0]["subnet"]
        .as_str()
        .expect("the attachment has a range")
        .to_string();
    let ns_labels: BTreeMap<String, Labels> = namespaces
        .iter()
        .map(|n| {
            let name = n["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let mut l = labels_of(&n["metadata"]["labels"]);
            l.insert("kubernetes.io/metadata.name".into(), name.clone());
            (name, l)
        })
        .collect();
    let labels_of_ns = |ns: &str| {
        ns_labels.get(ns).cloned().unwrap_or_else(|| {
            Labels::from([("kubernetes.io/metadata.name".to_string(), ns.to_string())])
        })
    };

    // The pods on the attachment: those of apps of this network that list it.
    let mut pods: Vec<Value> = Vec::new();
    let mut on: Vec<OnPod> = Vec::new();
    for pod in workload_pods(objects) {
        let ns = pod["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let labels = labels_of(&pod["metadata"]["labels"]);
        let app = objects.iter().find(|o| {
            o["kind"] == "ExposedApp"
                && o["metadata"]["namespace"] == ns.as_str()
                && network_of(o) == network
                && labels_of(&o["spec"]["selector"])
                    .iter()
                    .all(|(k, v)| labels.get(k) == Some(v))
        });
        let Some(app) = app else { continue };
        let Some(entry) = app["spec"]["attachments"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["network"] == attachment)
        else {
            continue;
        };
        let ip = entry["ips"][0]
            .as_str()
            .and_then(|s| s.split('/').next())
            .and_then(|s| s.parse().ok())
            .or_else(|| nth_in(&subnet, 100 + on.len() as u32))
            .expect("an address on the attachment");
        let mut p = pod.clone();
        p["status"] = json!({"phase": "Running", "podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}]});
        pods.push(p);
        on.push(OnPod {
            name: pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            ns,
            labels,
            ip,
            app: app.clone(),
            entry: entry.clone(),
        });
    }

    let dd = &net["spec"]["policy"]["defaultDeny"];
    let under_deny = |ns: &str, dir: &str| {
        dd.is_object()
            && dd[dir].as_bool().unwrap_or(true)
            && selector_matches(&dd["namespaceSelector"], &labels_of_ns(ns))
    };
    let allow_everywhere: Vec<Value> = net["spec"]["policy"]["allowEverywhere"]
        .as_array()
        .cloned()
        .unwrap_or_default();

    // Whether `peer` (a Gatehouse peer as written, in namespace `own`) matches `end`.
    let peer_matches = |peer: &Value, own: &str, end: &End| -> bool {
        if peer["cidr"].is_string() {
            return in_cidr_peer(peer, end.ip());
        }
        let End::Pod(p) = end else { return false };
        if let Some(name) = peer["app"]["name"].as_str() {
            let ns = peer["app"]["namespace"].as_str().unwrap_or(own);
            return p.ns == ns && p.app["metadata"]["name"] == name;
        }
        if let Some(name) = peer["service"]["name"].as_str() {
            let ns = peer["service"]["namespace"].as_str().unwrap_or(own);
            return objects.iter().any(|o| {
                o["kind"] == "Service"
                    && o["metadata"]["name"] == name
                    && o["metadata"]["namespace"] == ns
                    && p.ns == ns
                    && labels_of(&o["spec"]["selector"])
                        .iter()
                        .all(|(k, v)| p.labels.get(k) == Some(v))
            });
        }
        if peer["namespaceSelector"].is_null() && peer["podSelector"].is_null() {
            return false;
        }
        let ns_ok = match &peer["namespaceSelector"] {
            Value::Null => p.ns == own,
            s => selector_matches(s, &labels_of_ns(&p.ns)),
        };
        let pod_ok = match &peer["podSelector"] {
            Value::Null => true,
            s => selector_matches(s, &p.labels),
        };
        ns_ok && pod_ok
    };
    let port_in = |ports: &Value, port: i64, proto: &str| -> bool {
        let list = ports.as_array().cloned().unwrap_or_default();
        list.is_empty()
            || list.iter().any(|p| {
                let from = p["port"].as_i64().unwrap_or_default();
                let to = p["endPort"].as_i64().unwrap_or(from);
                p["protocol"].as_str().unwrap_or("TCP") == proto && (from..=to).contains(&port)
            })
    };
    let target = |app: &Value, name: &str| -> Option<(i64, String)> {
        let p = app["spec"]["ports"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == name)?;
        let n = p["targetPort"].as_i64().or(p["port"].as_i64())?;
        Some((n, p["protocol"].as_str().unwrap_or("TCP").to_string()))
    };

    // Ingress at `p` over the attachment: (allowed, why).
    let ingress = |p: &OnPod, src: &End, port: i64, proto: &str| -> (bool, String) {
        let allow_from = p.entry["allowFrom"].as_array().cloned().unwrap_or_default();
        let isolated = !allow_from.is_empty()
            || p.app["spec"]["isolation"] == "Isolated"
            || under_deny(&p.ns, "ingress");
        if !isolated {
            return (true, "not isolated on the attachment".into());
        }
        let open: Vec<(i64, String)> = p.entry["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| target(&p.app, n.as_str().unwrap_or_default()))
            .collect();
        let port_ok = open.is_empty() || open.iter().any(|(n, pr)| *n == port && pr == proto);
        if port_ok && allow_from.iter().any(|peer| peer_matches(peer, &p.ns, src)) {
            return (true, "attachments[].allowFrom".into());
        }
        for h in &allow_everywhere {
            let from = h["from"].as_array().cloned().unwrap_or_default();
            if port_in(&h["ports"], port, proto) && from.iter().any(|f| peer_matches(f, &p.ns, src))
            {
                return (true, format!("policy.allowEverywhere {}", h["name"]));
            }
        }
        (false, "isolated on the attachment".into())
    };
    // Egress from `p` over the attachment.
    let egress = |p: &OnPod, dst: &End, port: i64, proto: &str| -> (bool, String) {
        let selecting: Vec<&Value> = objects
            .iter()
            .filter(|o| {
                o["kind"] == "EgressPolicy"
                    && o["metadata"]["namespace"] == p.ns.as_str()
                    && network_of(o) == network
                    && selector_matches(&o["spec"]["podSelector"], &p.labels)
            })
            .collect();
        if selecting.is_empty() && !under_deny(&p.ns, "egress") {
            return (true, "not isolated for egress".into());
        }
        for egp in &selecting {
            for (i, rule) in egp["spec"]["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let to = rule["to"].as_array().cloned().unwrap_or_default();
                if port_in(&rule["ports"], port, proto)
                    && to.iter().any(|peer| peer_matches(peer, &p.ns, dst))
                {
                    return (
                        true,
                        format!("EgressPolicy {} rules[{i}]", egp["metadata"]["name"]),
                    );
                }
            }
        }
        (false, "egress isolated".into())
    };

    let lan = nth_in(&subnet, 200).expect("a LAN host in the attachment's range");
    let internet_v4: IpAddr = INTERNET_V4.parse().unwrap();
    let internet_v6: IpAddr = INTERNET_V6.parse().unwrap();
    let mut probes = Vec::new();
    let mut add = |src: &End, dst: &End, port: i64, proto: &str| {
        let (i, iwhy) = match dst {
            End::Pod(p) => ingress(p, src, port, proto),
            End::Outside(_) => (true, String::new()),
        };
        let (e, ewhy) = match src {
            End::Pod(p) => egress(p, dst, port, proto),
            End::Outside(_) => (true, String::new()),
        };
        let reason = [iwhy, ewhy]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        probes.push(ExpectedProbe {
            probe: json!({"from": src.json(), "to": dst.json(), "port": port, "protocol": proto}),
            allowed: i && e,
            ingress: i,
            egress: e,
            reason: format!("over {attachment}: {reason}"),
        });
    };
    for dst in &on {
        let mut ports: Vec<(i64, String)> = dst.app["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| target(&dst.app, p["name"].as_str().unwrap_or_default()))
            .collect();
        for h in &allow_everywhere {
            for p in h["ports"].as_array().into_iter().flatten() {
                let n = p["port"].as_i64().unwrap_or_default();
                ports.push((n, p["protocol"].as_str().unwrap_or("TCP").to_string()));
            }
        }
        ports.push((UNDECLARED_PORT, "TCP".into()));
        ports.sort();
        ports.dedup();
        let d = End::Pod(dst);
        for (port, proto) in &ports {
            for src in &on {
                if src.ns != dst.ns || src.name != dst.name {
                    add(&End::Pod(src), &d, *port, proto);
                }
            }
            if !dst.ip.is_ipv6() {
                add(&End::Outside(lan), &d, *port, proto);
                add(&End::Outside(internet_v4), &d, *port, proto);
            } else {
                add(&End::Outside(internet_v6), &d, *port, proto);
            }
        }
    }
    for src in &on {
        let s = End::Pod(src);
        for dst in [lan, internet_v4, internet_v6] {
            for port in [443, 22] {
                add(&s, &End::Outside(dst), port, "TCP");
            }
        }
    }
    AttachmentWorld { pods, probes }
}
