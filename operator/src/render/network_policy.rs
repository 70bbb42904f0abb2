//! NetworkPolicies: per-app ingress (`A-ingress`), per-EgressPolicy egress (`P-egress`) and
//! the default-deny baseline (`gatehouse-default-deny` plus its ACME-solver hole).

use gatehouse_api::{
    ClusterNetwork, EgressPolicy, ExposedApp, IpFamily, LabelSelector, Tier, labels,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use serde_json::json;

use super::child::{Child, ChildKind, Owner};
use super::context::Context;
use super::ingress::routes_on;
use super::peer::{self, ResolvedRule, namespace_by_name};
use super::service::target_port;
use super::validate::{Finding, Findings};

pub const DEFAULT_DENY: &str = "gatehouse-default-deny";
pub const ACME_SOLVER_HOLE: &str = "gatehouse-default-deny-acme-solver";
pub const ACME_SOLVER_PORT: i32 = 8089;

pub fn port(port: IntOrString, protocol: &str) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(port),
        protocol: Some(protocol.to_string()),
        end_port: None,
    }
}

/// The peer that stands for a tier's ingress controller pods; `None` when the network does
/// not say where they run (then the route ports admit any source, as documented).
pub fn controller_peer(network: &ClusterNetwork, tier: Tier) -> Option<NetworkPolicyPeer> {
    let t = network.spec.ingress.get(tier)?;
    if t.namespace.is_none() && t.pod_selector.is_none() {
        return None;
    }
    Some(NetworkPolicyPeer {
        namespace_selector: Some(
            t.namespace
                .as_deref()
                .map(namespace_by_name)
                .unwrap_or_default(),
        ),
        pod_selector: Some(t.pod_selector.clone().unwrap_or_default()),
        ip_block: None,
    })
}

/// `0.0.0.0/0` and/or `::/0`, by the network's families.
pub fn anywhere(network: &ClusterNetwork) -> Vec<NetworkPolicyPeer> {
    network
        .spec
        .ip_families
        .iter()
        .map(|f| {
            let cidr = match f {
                IpFamily::IPv4 => "0.0.0.0/0",
                IpFamily::IPv6 => "::/0",
            };
            NetworkPolicyPeer {
                ip_block: Some(IPBlock {
                    cidr: cidr.into(),
                    except: None,
                }),
                ..Default::default()
            }
        })
        .collect()
}

fn dns_egress_rule(network: &ClusterNetwork) -> NetworkPolicyEgressRule {
    let dns = &network.spec.policy.cluster_dns;
    NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(namespace_by_name(&dns.namespace)),
            pod_selector: Some(dns.pod_selector.clone()),
            ip_block: None,
        }]),
        ports: Some(vec![
            port(IntOrString::Int(53), "UDP"),
            port(IntOrString::Int(53), "TCP"),
        ]),
    }
}

/// Whether the network's ingress default deny selects namespace `ns`.
pub fn under_ingress_deny(network: &ClusterNetwork, ctx: &Context, ns: &str) -> bool {
    network.spec.policy.default_deny.as_ref().is_some_and(|dd| {
        dd.ingress && selector_matches(&dd.namespace_selector, &ctx.namespace_labels(ns))
    })
}

/// The ingress rules of the network's `policy.allowEverywhere`: what every isolated pod
/// admits (a podSelector alone means the pod's own namespace, as in NetworkPolicy).
pub fn platform_rules(network: &ClusterNetwork) -> Vec<NetworkPolicyIngressRule> {
    network
        .spec
        .policy
        .allow_everywhere
        .iter()
        .map(|h| {
            let from = h
                .from
                .iter()
                .map(|p| NetworkPolicyPeer {
                    namespace_selector: p.namespace_selector.clone(),
                    pod_selector: p.pod_selector.clone(),
                    ip_block: p.cidr.as_ref().map(|c| IPBlock {
                        cidr: c.clone(),
                        except: (!p.except.is_empty()).then(|| p.except.clone()),
                    }),
                })
                .collect();
            let ports: Vec<NetworkPolicyPort> = h
                .ports
                .iter()
                .map(|p| NetworkPolicyPort {
                    port: Some(IntOrString::Int(p.port)),
                    end_port: p.end_port,
                    protocol: Some(p.protocol.as_str().into()),
                })
                .collect();
            NetworkPolicyIngressRule {
                from: Some(from),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

/// The app's ingress policy `A-ingress`, where the app is isolated (`spec.isolation`):
/// `Isolated`, or `Auto` with the namespace under ingress default deny or `allowFrom` set.
/// Elsewhere none: exposing an app never cuts off traffic nobody declared. Under default
/// deny an `Auto` app that declares nothing to open gets none either (the baseline already
/// says everything such a policy would).
pub fn app_ingress(
    app: &ExposedApp,
    network: &ClusterNetwork,
    ctx: &Context,
    owner: &Owner,
    findings: &mut Findings,
) -> Option<Child> {
    let namespace = app.namespace().unwrap_or_default();
    let under_deny = under_ingress_deny(network, ctx, &namespace);
    let asked = app.spec.isolation == gatehouse_api::Isolation::Isolated;
    if !asked && !under_deny && app.spec.allow_from.is_empty() {
        return None;
    }
    let port_of = |name: &str| app.spec.ports.iter().find(|p| p.name == name);
    let mut rules = Vec::new();

    for tier in Tier::ALL {
        let routes = routes_on(app, network, tier);
        if routes.is_empty() {
            continue;
        }
        let mut ports: Vec<NetworkPolicyPort> = Vec::new();
        for r in &routes {
            let names: Vec<Option<&str>> = if r.paths.is_empty() {
                vec![None]
            } else {
                r.paths.iter().map(|p| p.port.as_deref()).collect()
            };
            for name in names {
                let p = match name {
                    Some(n) => port_of(n),
                    None => app.spec.ports.first(),
                };
                if let Some(p) = p {
                    let np = port(target_port(p), p.protocol.as_str());
                    if !ports.contains(&np) {
                        ports.push(np);
                    }
                }
            }
        }
        rules.push(NetworkPolicyIngressRule {
            from: controller_peer(network, tier).map(|p| vec![p]),
            ports: Some(ports),
        });
    }

    let mut tcp_ports: Vec<NetworkPolicyPort> = Vec::new();
    for t in &app.spec.tcp {
        if let Some(p) = port_of(&t.port) {
            let np = port(target_port(p), p.protocol.as_str());
            if !tcp_ports.contains(&np) {
                tcp_ports.push(np);
            }
        }
    }
    if !tcp_ports.is_empty() {
        rules.push(NetworkPolicyIngressRule {
            from: Some(anywhere(network)),
            ports: Some(tcp_ports),
        });
    }

    let mut from = Vec::new();
    for (i, p) in app.spec.allow_from.iter().enumerate() {
        let r = peer::resolve(p, &namespace, ctx);
        match r.policy_peer {
            Some(pp) => from.push(pp),
            None => findings.push(Finding::new(
                gatehouse_api::Reason::ReferenceNotFound,
                format!("spec.allowFrom[{i}]"),
                format!(
                    "{} does not resolve yet: {}",
                    r.status.peer, r.status.detail
                ),
            )),
        }
    }
    // An empty `from` would admit everyone: only write the rule when a peer resolved.
    if !from.is_empty() {
        rules.push(NetworkPolicyIngressRule {
            from: Some(from),
            ports: None,
        });
    }
    // Nothing to open under default deny and no isolation asked for beyond it: the
    // baseline (with the platform's holes) already is this policy. With allowFrom still
    // unresolved outside default deny the policy stays (admitting only the platform's
    // holes): an unresolved reference never widens access.
    if rules.is_empty() && under_deny && !asked {
        return None;
    }
    rules.extend(platform_rules(network));

    let spec = NetworkPolicySpec {
        pod_selector: Some(peer::match_labels(&app.spec.selector)),
        policy_types: Some(vec!["Ingress".into()]),
        ingress: Some(rules),
        egress: None,
    };
    let meta = owner.meta(format!("{}-ingress", app.name_any()), Some(&namespace));
    Some(Child::with_spec(
        ChildKind::NetworkPolicy,
        meta,
        serde_json::to_value(&spec).unwrap_or_default(),
    ))
}

pub fn egress(
    policy: &EgressPolicy,
    network: &ClusterNetwork,
    resolved: &[ResolvedRule],
    owner: &Owner,
) -> Child {
    let spec = egress_spec(policy, network, resolved, policy.spec.allow_dns, |_| true);
    let meta = owner.meta(
        format!("{}-egress", policy.name_any()),
        policy.namespace().as_deref(),
    );
    Child::with_spec(
        ChildKind::NetworkPolicy,
        meta,
        serde_json::to_value(&spec).unwrap_or_default(),
    )
}

/// The spec of an EgressPolicy's policy: the DNS rule (`dns`), each rule's resolved peers
/// that `keep` keeps (a rule left with none is dropped: an empty `to` would allow every
/// destination), and the API server's addresses. Shared by the NetworkPolicy `P-egress`
/// and the MultiNetworkPolicies `P-egress-<attachment>`.
pub fn egress_spec(
    policy: &EgressPolicy,
    network: &ClusterNetwork,
    resolved: &[ResolvedRule],
    dns: bool,
    keep: impl Fn(&gatehouse_api::Peer) -> bool,
) -> NetworkPolicySpec {
    let mut rules = Vec::new();
    if dns {
        rules.push(dns_egress_rule(network));
    }
    for r in resolved {
        let to: Vec<NetworkPolicyPeer> = r
            .peers
            .iter()
            .zip(&r.rule.to)
            .filter(|(_, p)| keep(p))
            .filter_map(|(p, _)| p.policy_peer.clone())
            .collect();
        // An empty `to` would allow every destination: skip rules with nothing resolved.
        if to.is_empty() {
            continue;
        }
        let ports = rule_ports(r.rule);
        rules.push(NetworkPolicyEgressRule {
            to: Some(to),
            ports: (!ports.is_empty()).then_some(ports),
        });
    }
    // The API server: one host block per address, on the rule's ports or, without any,
    // the API server's own (a rule of its own so they never widen the other peers).
    for r in resolved {
        for a in r.peers.iter().filter_map(|p| p.api_server.as_ref()) {
            let to = a
                .addresses
                .iter()
                .map(|addr| NetworkPolicyPeer {
                    ip_block: Some(IPBlock {
                        cidr: super::ip::host_cidr(*addr),
                        except: None,
                    }),
                    ..NetworkPolicyPeer::default()
                })
                .collect();
            let ports = if r.rule.ports.is_empty() {
                a.ports
                    .iter()
                    .map(|p| NetworkPolicyPort {
                        port: Some(IntOrString::Int(*p)),
                        end_port: None,
                        protocol: Some("TCP".into()),
                    })
                    .collect()
            } else {
                rule_ports(r.rule)
            };
            rules.push(NetworkPolicyEgressRule {
                to: Some(to),
                ports: (!ports.is_empty()).then_some(ports),
            });
        }
    }
    NetworkPolicySpec {
        pod_selector: Some(policy.spec.pod_selector.clone()),
        policy_types: Some(vec!["Egress".into()]),
        ingress: None,
        egress: Some(rules),
    }
}

/// A rule's ports as NetworkPolicy ports.
fn rule_ports(rule: &gatehouse_api::EgressRule) -> Vec<NetworkPolicyPort> {
    rule.ports
        .iter()
        .map(|p| NetworkPolicyPort {
            port: Some(IntOrString::Int(p.port)),
            end_port: p.end_port,
            protocol: Some(p.protocol.as_str().into()),
        })
        .collect()
}

/// Whether a label set satisfies a LabelSelector (matchLabels and matchExpressions).
pub fn selector_matches(
    selector: &LabelSelector,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            // Unknown operators match nothing, so a typo never widens the baseline's reach
            // silently; the API server rejects them for real objects anyway.
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// The baseline in every namespace the network's `policy.defaultDeny.namespaceSelector` selects.
pub fn default_deny(network: &ClusterNetwork, ctx: &Context, owner: &Owner) -> Vec<Child> {
    let Some(dd) = &network.spec.policy.default_deny else {
        return vec![];
    };
    if !dd.ingress && !dd.egress {
        return vec![];
    }
    let mut out = Vec::new();
    for ns in ctx.namespace_names() {
        if !selector_matches(&dd.namespace_selector, &ctx.namespace_labels(&ns)) {
            continue;
        }
        let types = deny_types(dd);
        let deny = NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(types),
            ingress: dd.ingress.then(|| platform_rules(network)),
            egress: dd.egress.then(|| vec![dns_egress_rule(network)]),
        };
        out.push(Child::new(
            ChildKind::NetworkPolicy,
            owner.meta(DEFAULT_DENY, Some(&ns)),
            json!({ "spec": deny }),
        ));

        if dd.ingress {
            // cert-manager's HTTP-01 solver pods must be reachable from the ingress controllers,
            // or no certificate in a denied namespace could ever be issued.
            let peers: Vec<NetworkPolicyPeer> = Tier::ALL
                .iter()
                .filter_map(|t| controller_peer(network, *t))
                .collect();
            let solver = NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(
                        [(labels::ACME_SOLVER.to_string(), "true".to_string())].into(),
                    ),
                    match_expressions: None,
                }),
                policy_types: Some(vec!["Ingress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: (!peers.is_empty()).then_some(peers),
                    ports: Some(vec![port(IntOrString::Int(ACME_SOLVER_PORT), "TCP")]),
                }]),
                egress: None,
            };
            out.push(Child::new(
                ChildKind::NetworkPolicy,
                owner.meta(ACME_SOLVER_HOLE, Some(&ns)),
                json!({ "spec": solver }),
            ));
        }
    }
    out
}

/// The policy types of the network's baseline (`policy.defaultDeny`): what it denies.
pub fn deny_types(dd: &gatehouse_api::DefaultDeny) -> Vec<String> {
    let mut types = Vec::new();
    if dd.ingress {
        types.push("Ingress".to_string());
    }
    if dd.egress {
        types.push("Egress".to_string());
    }
    types
}
