//! Pure rendering: (object, context) -> desired children. No I/O, no clock.
//!
//! The operator and `gatehouse render` both call [`render_exposed_app`],
//! [`render_egress_policy`] and [`render_cluster_network`]. Each child kind has its own module;
//! `validate` holds the semantic checks the schema cannot make; `context` is the snapshot of
//! the cluster a render may read.

pub mod attachment;
pub mod certificate;
pub mod child;
pub mod cilium_policy;
pub mod context;
pub mod dns_endpoint;
pub mod ingress;
pub mod ip;
pub mod middleware;
pub mod network_policy;
pub mod peer;
pub mod pool;
pub mod service;
pub mod validate;

pub use child::{Child, ChildKind, Owner};
pub use context::Context;
pub use validate::{Finding, Findings};

use gatehouse_api::{
    ClusterNetwork, EgressPolicy, ExposedApp, ResolvedPeer, Tier, TierAddress, reason,
};
use kube::ResourceExt;

/// What a render produced: the children, plus what status needs to know.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Rendered {
    /// Desired children in a stable order.
    pub children: Vec<Child>,
    /// Non-blocking findings: references not resolved yet, unsupported extras (FQDN under
    /// the Kubernetes engine), values only known from the live cluster.
    pub findings: Findings,
    /// ExposedApp: served URLs.
    pub urls: Vec<String>,
    /// ExposedApp: known addresses per tier.
    pub addresses: Vec<TierAddress>,
    /// EgressPolicy: each peer as resolved.
    pub resolved_peers: Vec<ResolvedPeer>,
}

impl Rendered {
    fn push(&mut self, child: Option<Child>) {
        self.children.extend(child);
    }

    fn finish(mut self) -> Self {
        self.children.sort_by(Child::order);
        self.addresses.sort();
        self.addresses.dedup();
        self
    }
}

/// Renders every child of an ExposedApp, or the blocking findings that stop it.
pub fn render_exposed_app(app: &ExposedApp, ctx: &Context) -> Result<Rendered, Findings> {
    let valid = validate::exposed_app(app, ctx)?;
    let owner = Owner::of(app);
    let network = valid.network;
    let mut out = Rendered::default();

    out.push(Some(service::cluster_ip(app, network, &owner)));
    for tier in Tier::ALL {
        out.push(service::load_balancer(app, network, tier, &owner));
    }
    for tier in Tier::ALL {
        out.children
            .extend(ingress::ingresses(app, network, tier, &owner));
    }
    out.children
        .extend(middleware::middlewares(app, network, &owner));
    out.push(certificate::certificate(app, network, &owner));
    let policy = network_policy::app_ingress(app, network, ctx, &owner, &mut out.findings);
    out.push(policy);
    for tier in Tier::ALL {
        let dns = dns_endpoint::dns_endpoint(app, network, tier, ctx, &owner, &mut out.findings);
        out.push(dns);
    }
    out.urls = ingress::urls(app, network);
    out.addresses = dns_endpoint::addresses(app, network, ctx);
    Ok(out.finish())
}

/// Renders the children of an EgressPolicy, or the blocking findings that stop it.
pub fn render_egress_policy(policy: &EgressPolicy, ctx: &Context) -> Result<Rendered, Findings> {
    let network = validate::egress_policy(policy, ctx)?;
    let owner = Owner::of(policy);
    let mut out = Rendered::default();
    let namespace = policy.namespace().unwrap_or_default();
    let resolved = peer::resolve_egress_rules(&policy.spec.rules, &namespace, ctx);
    out.resolved_peers = resolved
        .iter()
        .flat_map(|r| r.peers.iter().map(|p| p.status.clone()))
        .collect();
    for (i, rule) in resolved.iter().enumerate() {
        for (j, p) in rule.peers.iter().enumerate() {
            if !p.status.resolved && p.fqdn.is_none() {
                out.findings.push(Finding::new(
                    reason::REFERENCE_NOT_FOUND,
                    format!("spec.rules[{i}].to[{j}]"),
                    format!(
                        "{} does not resolve yet: {}",
                        p.status.peer, p.status.detail
                    ),
                ));
            }
        }
    }
    out.push(Some(network_policy::egress(
        policy, network, &resolved, &owner,
    )));
    let has_fqdn = resolved
        .iter()
        .any(|r| r.peers.iter().any(|p| p.fqdn.is_some()));
    if has_fqdn {
        match network.spec.policy.engine {
            gatehouse_api::PolicyEngine::Cilium => {
                out.push(cilium_policy::fqdn_egress(
                    policy, network, &resolved, &owner,
                ));
            }
            gatehouse_api::PolicyEngine::Kubernetes => {
                for (i, rule) in resolved.iter().enumerate() {
                    for (j, p) in rule.peers.iter().enumerate() {
                        if let Some(fqdn) = &p.fqdn {
                            out.findings.push(Finding::stalling(
                                reason::FQDN_UNSUPPORTED,
                                format!("spec.rules[{i}].to[{j}].fqdn"),
                                format!(
                                    "fqdn {fqdn} needs policy.engine Cilium on ClusterNetwork {}; the other rules apply",
                                    network.name_any()
                                ),
                            ));
                        }
                    }
                }
            }
        }
    }
    Ok(out.finish())
}

/// Renders the children of a ClusterNetwork: pools, default-deny policies in the selected
/// namespaces, and attachment definitions in namespaces whose apps use them.
pub fn render_cluster_network(
    network: &ClusterNetwork,
    ctx: &Context,
) -> Result<Rendered, Findings> {
    validate::cluster_network(network)?;
    let owner = Owner::of(network);
    let mut out = Rendered::default();
    out.children.extend(pool::pools(network, &owner));
    out.children
        .extend(network_policy::default_deny(network, ctx, &owner));
    out.children
        .extend(attachment::attachments(network, ctx, &owner));
    Ok(out.finish())
}
