//! CiliumNetworkPolicy `P-egress` (cilium.io/v2): the FQDN rules NetworkPolicy cannot say,
//! plus the DNS-visibility rule Cilium needs to learn the names' addresses.

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

pub fn fqdn_egress(
    policy: &EgressPolicy,
    network: &ClusterNetwork,
    resolved: &[ResolvedRule],
    owner: &Owner,
) -> Option<Child> {
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
            let ports: Vec<Value> = r
                .rule
                .ports
                .iter()
                .map(|p| {
                    let mut port =
                        json!({"port": p.port.to_string(), "protocol": p.protocol.as_str()});
                    if let Some(end) = p.end_port {
                        port["endPort"] = json!(end);
                    }
                    port
                })
                .collect();
            rule["toPorts"] = json!([{"ports": ports}]);
        }
        egress.push(rule);
    }
    if egress.len() == 1 {
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
