//! CiliumNetworkPolicy `P-egress` (cilium.io/v2): what NetworkPolicy cannot say to Cilium.
//! The FQDN rules, plus the DNS-visibility rule Cilium needs to learn the names' addresses;
//! and the API server as Cilium's `kube-apiserver` entity (Cilium gives the API server's
//! addresses an identity of their own, so the ipBlocks of the NetworkPolicy do not match).

use gatehouse_api::{ClusterNetwork, EgressPolicy};
use kube::ResourceExt;
use serde_json::{Value, json};

use super::child::{Child, ChildKind, Owner};
use super::peer::ResolvedRule;

/// Cilium's label for a pod's namespace in endpoint selectors.
const CILIUM_NAMESPACE_LABEL: &str = "k8s:io.kubernetes.pod.namespace";

fn fqdn_selector(fqdn: &str) -> Value {
    if fqdn.contains('*') {
        json!({"matchPattern": fqdn})
    } else {
        json!({"matchName": fqdn})
    }
}

pub fn egress(
    policy: &EgressPolicy,
    network: &ClusterNetwork,
    resolved: &[ResolvedRule],
    owner: &Owner,
) -> Option<Child> {
    let mut egress = fqdn_rules(network, resolved);
    for r in resolved {
        for a in r.peers.iter().filter_map(|p| p.api_server.as_ref()) {
            let ports: Vec<Value> = if r.rule.ports.is_empty() {
                a.ports
                    .iter()
                    .map(|p| json!({"port": p.to_string(), "protocol": "TCP"}))
                    .collect()
            } else {
                cilium_ports(r)
            };
            let mut rule = json!({"toEntities": ["kube-apiserver"]});
            if !ports.is_empty() {
                rule["toPorts"] = json!([{"ports": ports}]);
            }
            egress.push(rule);
        }
    }
    if egress.is_empty() {
        return None;
    }
    let meta = owner.meta(
        format!("{}-egress", policy.name_any()),
        policy.namespace().as_deref(),
    );
    Some(Child::new(
        ChildKind::CiliumNetworkPolicy,
        meta,
        json!({"spec": {"endpointSelector": policy.spec.pod_selector, "egress": egress}}),
    ))
}

fn cilium_ports(r: &ResolvedRule) -> Vec<Value> {
    r.rule
        .ports
        .iter()
        .map(|p| {
            let mut port = json!({"port": p.port.to_string(), "protocol": p.protocol.as_str()});
            if let Some(end) = p.end_port {
                port["endPort"] = json!(end);
            }
            port
        })
        .collect()
}

/// The FQDN rules and, when there are any, the DNS-visibility rule first.
fn fqdn_rules(network: &ClusterNetwork, resolved: &[ResolvedRule]) -> Vec<Value> {
    let dns = &network.spec.policy.cluster_dns;
    let mut dns_labels = dns.pod_selector.match_labels.clone().unwrap_or_default();
    dns_labels.insert(CILIUM_NAMESPACE_LABEL.to_string(), dns.namespace.clone());
    let mut dns_endpoint = json!({"matchLabels": dns_labels});
    if let Some(exprs) = &dns.pod_selector.match_expressions {
        dns_endpoint["matchExpressions"] = json!(exprs);
    }
    let mut egress = vec![json!({
        "toEndpoints": [dns_endpoint],
        "toPorts": [{
            "ports": [{"port": "53", "protocol": "ANY"}],
            "rules": {"dns": [{"matchPattern": "*"}]},
        }],
    })];
    for r in resolved {
        let fqdns: Vec<Value> = r
            .peers
            .iter()
            .filter_map(|p| p.fqdn.as_deref())
            .map(fqdn_selector)
            .collect();
        if fqdns.is_empty() {
            continue;
        }
        let mut rule = json!({"toFQDNs": fqdns});
        if !r.rule.ports.is_empty() {
            rule["toPorts"] = json!([{"ports": cilium_ports(r)}]);
        }
        egress.push(rule);
    }
    if egress.len() == 1 {
        return Vec::new();
    }
    egress
}
