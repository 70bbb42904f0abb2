//! Pure rendering: (object, context) -> desired children. No I/O, no clock.
//!
//! Two steps per kind: `validate` (the semantic checks the schema cannot make) gives a
//! validated value (`ValidApp`, `ValidPolicy`, `ValidNetwork`), and render ([`exposed_app`],
//! [`egress_policy`], [`cluster_network`]) takes only that. The operator calls them as two
//! steps; `gatehouse render` and the tests call [`render_exposed_app`] and its siblings,
//! which chain them. Each child kind has its own module; `context` is the snapshot of the
//! cluster a render may read.

pub mod attachment;
pub mod bgp;
pub mod certificate;
pub mod child;
pub mod cilium_policy;
pub mod context;
pub mod dns_endpoint;
pub mod gateway;
pub mod ingress;
pub mod ip;
pub mod middleware;
pub mod multi_network_policy;
pub mod network_policy;
pub mod peer;
pub mod pool;
pub mod service;
pub mod validate;

pub use child::{Child, ChildKey, ChildKind, Owner};
pub use context::Context;
pub use validate::{Finding, Findings, ValidApp, ValidNetwork, ValidPolicy};

use gatehouse_api::{
    ClusterNetwork, EgressPolicy, ExposedApp, Reason, ResolvedPeer, Tier, TierAddress,
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
    /// ExposedApp on Gateway tiers: the listeners it adds to each tier's Gateway (not a
    /// child: the Gateway is the platform's).
    pub listeners: Vec<gateway::GatewayListeners>,
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

/// Validates and renders an ExposedApp: its children, or the blocking findings that stop it.
pub fn render_exposed_app(app: &ExposedApp, ctx: &Context) -> Result<Rendered, Findings> {
    validate::exposed_app(app, ctx).map(|valid| exposed_app(&valid, ctx))
}

/// Renders every child of a validated ExposedApp.
pub fn exposed_app(valid: &ValidApp<'_>, ctx: &Context) -> Rendered {
    let ValidApp { app, network } = *valid;
    let owner = Owner::of(app);
    let mut out = Rendered::default();

    // With an existing Service the app owns none: routes go to that one.
    match &app.spec.service {
        None => out.push(Some(service::cluster_ip(app, network, &owner))),
        Some(existing) => service::check_existing(app, &existing.name, ctx, &mut out.findings),
    }
    for tier in Tier::ALL {
        out.push(service::load_balancer(app, network, tier, &owner));
    }
    service::app_capacity(app, network, ctx, &mut out.findings);
    for tier in Tier::ALL {
        out.children
            .extend(ingress::ingresses(app, network, tier, &owner));
        out.children
            .extend(gateway::http_routes(app, network, tier, ctx, &owner));
        out.push(gateway::reference_grant(app, network, tier, &owner));
        out.listeners.extend(gateway::listeners(app, network, tier));
    }
    out.children
        .extend(middleware::middlewares(app, network, &owner));
    out.children
        .extend(certificate::certificates(app, network, &owner));
    let policy = network_policy::app_ingress(app, network, ctx, &owner, &mut out.findings);
    out.push(policy);
    let attached = multi_network_policy::app_ingress(app, network, ctx, &owner, &mut out.findings);
    out.children.extend(attached);
    for tier in Tier::ALL {
        let dns = dns_endpoint::dns_endpoint(app, network, tier, ctx, &owner, &mut out.findings);
        out.push(dns);
    }
    out.urls = ingress::urls(app, network);
    out.addresses = dns_endpoint::addresses(app, network, ctx);
    out.finish()
}

/// Validates and renders an EgressPolicy: its children, or the blocking findings that stop it.
pub fn render_egress_policy(policy: &EgressPolicy, ctx: &Context) -> Result<Rendered, Findings> {
    validate::egress_policy(policy, ctx).map(|valid| egress_policy(&valid, ctx))
}

/// Renders the children of a validated EgressPolicy.
pub fn egress_policy(valid: &ValidPolicy<'_>, ctx: &Context) -> Rendered {
    let ValidPolicy { policy, network } = *valid;
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
                    Reason::ReferenceNotFound,
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
    out.children.extend(multi_network_policy::egress(
        policy, network, &resolved, ctx, &owner,
    ));
    let has_fqdn = resolved
        .iter()
        .any(|r| r.peers.iter().any(|p| p.fqdn.is_some()));
    if network.spec.policy.engine == gatehouse_api::PolicyEngine::Cilium {
        out.push(cilium_policy::egress(policy, network, &resolved, &owner));
    }
    if has_fqdn {
        match network.spec.policy.engine {
            gatehouse_api::PolicyEngine::Cilium => {}
            gatehouse_api::PolicyEngine::Kubernetes => {
                for (i, rule) in resolved.iter().enumerate() {
                    for (j, p) in rule.peers.iter().enumerate() {
                        if let Some(fqdn) = &p.fqdn {
                            out.findings.push(Finding::stalling(
                                Reason::FqdnUnsupported,
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
    out.finish()
}

/// Renders the children of a ClusterNetwork: pools, default-deny policies in the selected
/// namespaces, and attachment definitions in namespaces whose apps use them.
pub fn render_cluster_network(
    network: &ClusterNetwork,
    ctx: &Context,
) -> Result<Rendered, Findings> {
    validate::cluster_network(network, ctx).map(|valid| cluster_network(&valid, ctx))
}

/// Renders the children of a validated ClusterNetwork.
pub fn cluster_network(valid: &ValidNetwork<'_>, ctx: &Context) -> Rendered {
    let network = valid.network;
    let owner = Owner::of(network);
    let mut out = Rendered::default();
    out.children.extend(pool::pools(network, &owner));
    for tier in Tier::ALL {
        out.push(service::tier_load_balancer(network, tier, &owner));
    }
    service::tier_capacity(network, ctx, &mut out.findings);
    out.children
        .extend(bgp::bgp(network, &owner, &mut out.findings));
    out.children
        .extend(network_policy::default_deny(network, ctx, &owner));
    out.children
        .extend(attachment::attachments(network, ctx, &owner));
    out.children
        .extend(multi_network_policy::default_deny(network, ctx, &owner));
    out.finish()
}
