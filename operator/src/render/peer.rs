//! Resolving peers into NetworkPolicy peers. A reference that does not resolve contributes
//! nothing (never "everyone"), and is reported so status can say so.

use std::collections::BTreeMap;

use gatehouse_api::{EgressRule, LabelSelector, Peer, ResolvedPeer, labels};
use k8s_openapi::api::networking::v1::{IPBlock, NetworkPolicyPeer};

use super::context::Context;

/// One peer after resolution.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The NetworkPolicy peer, when the peer resolved and NetworkPolicy can express it.
    pub policy_peer: Option<NetworkPolicyPeer>,
    /// The FQDN, for fqdn peers (only CiliumNetworkPolicy can express them).
    pub fqdn: Option<String>,
    /// For the apiServer peer, where it is reached (None: not known yet). It needs its own
    /// policy rule: several blocks, and its own ports when the rule names none.
    pub api_server: Option<super::context::ApiServer>,
    pub status: ResolvedPeer,
}

/// An egress rule with its peers resolved.
#[derive(Clone, Debug)]
pub struct ResolvedRule<'a> {
    pub rule: &'a EgressRule,
    pub peers: Vec<Resolved>,
}

/// A selector matching one namespace by the label the API server sets on every namespace.
pub fn namespace_by_name(namespace: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(
            labels::NAMESPACE_NAME.to_string(),
            namespace.to_string(),
        )])),
        match_expressions: None,
    }
}

pub fn match_labels(labels: &BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels.clone()),
        match_expressions: None,
    }
}

fn pods_in(namespace: &str, selector: &BTreeMap<String, String>) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(namespace_by_name(namespace)),
        pod_selector: Some(match_labels(selector)),
        ip_block: None,
    }
}

pub fn resolve(peer: &Peer, own_namespace: &str, ctx: &Context) -> Resolved {
    let described = peer.describe(own_namespace);
    let done = |policy_peer: Option<NetworkPolicyPeer>, detail: String| Resolved {
        status: ResolvedPeer {
            peer: described.clone(),
            resolved: policy_peer.is_some(),
            detail,
        },
        policy_peer,
        fqdn: None,
        api_server: None,
    };
    if let Some(r) = &peer.app {
        let ns = r.namespace.as_deref().unwrap_or(own_namespace);
        return match ctx.app(ns, &r.name) {
            Some(app) => done(
                Some(pods_in(ns, &app.spec.selector)),
                format!("pods {} in {ns}", fmt_labels(&app.spec.selector)),
            ),
            None => done(None, format!("ExposedApp {ns}/{} not found", r.name)),
        };
    }
    if let Some(r) = &peer.service {
        let ns = r.namespace.as_deref().unwrap_or(own_namespace);
        let selector = ctx.service(ns, &r.name).map(|s| {
            s.spec
                .as_ref()
                .and_then(|s| s.selector.clone())
                .unwrap_or_default()
        });
        return match selector {
            Some(sel) if !sel.is_empty() => done(
                Some(pods_in(ns, &sel)),
                format!("pods {} in {ns}", fmt_labels(&sel)),
            ),
            Some(_) => done(None, format!("Service {ns}/{} has no selector", r.name)),
            None => done(None, format!("Service {ns}/{} not found", r.name)),
        };
    }
    if let Some(cidr) = &peer.cidr {
        let block = IPBlock {
            cidr: cidr.clone(),
            except: (!peer.except.is_empty()).then(|| peer.except.clone()),
        };
        let p = NetworkPolicyPeer {
            ip_block: Some(block),
            ..NetworkPolicyPeer::default()
        };
        return done(Some(p), described.clone());
    }
    if let Some(fqdn) = &peer.fqdn {
        return Resolved {
            status: ResolvedPeer {
                peer: described.clone(),
                resolved: true,
                detail: format!("fqdn {fqdn}"),
            },
            policy_peer: None,
            fqdn: Some(fqdn.clone()),
            api_server: None,
        };
    }
    if peer.api_server.is_some() {
        let found = ctx.api_server();
        let detail = match &found {
            Some(a) => {
                let addrs: Vec<String> = a.addresses.iter().map(|x| x.to_string()).collect();
                let ports: Vec<String> = a.ports.iter().map(|p| p.to_string()).collect();
                format!("{} port {}", addrs.join(","), ports.join(","))
            }
            None => format!(
                "Service {}/{} and its EndpointSlice are not known yet",
                super::context::API_SERVER_NAMESPACE,
                super::context::API_SERVER_SERVICE
            ),
        };
        return Resolved {
            status: ResolvedPeer {
                peer: described.clone(),
                resolved: found.is_some(),
                detail,
            },
            policy_peer: None,
            fqdn: None,
            api_server: found,
        };
    }
    // Selectors pass through: a podSelector alone means the policy's own namespace, which is
    // exactly NetworkPolicy's own rule for a peer without namespaceSelector.
    let p = NetworkPolicyPeer {
        namespace_selector: peer.namespace_selector.clone(),
        pod_selector: peer.pod_selector.clone(),
        ip_block: None,
    };
    done(Some(p), "selector".into())
}

pub fn resolve_egress_rules<'a>(
    rules: &'a [EgressRule],
    own_namespace: &str,
    ctx: &Context,
) -> Vec<ResolvedRule<'a>> {
    rules
        .iter()
        .map(|rule| ResolvedRule {
            rule,
            peers: rule
                .to
                .iter()
                .map(|p| resolve(p, own_namespace, ctx))
                .collect(),
        })
        .collect()
}

fn fmt_labels(labels: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(",")
}
