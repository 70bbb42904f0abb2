//! MultiNetworkPolicies (k8s.cni.cncf.io/v1beta1, the Network Plumbing WG's API) for the
//! Multus secondary networks, where the ClusterNetwork opts in (`policy.multiNetworkPolicy`).
//!
//! NetworkPolicy never applies to a pod's secondary interfaces; a MultiNetworkPolicy has
//! NetworkPolicy's spec and applies only to the interfaces on the attachments its
//! `k8s.v1.cni.cncf.io/policy-for` annotation names (there a podSelector peer means those
//! pods' addresses on that attachment). Each one says on one attachment what the
//! NetworkPolicy of the same name says on the pod network, and is named like it plus
//! `-<attachment>`:
//! - `gatehouse-default-deny-<attachment>` (ClusterNetwork): in each default-deny namespace
//!   where the attachment's NetworkAttachmentDefinition is rendered, the baseline's types,
//!   admitting only `policy.allowEverywhere`. No DNS hole: the cluster DNS is reached over
//!   the pod network.
//! - `A-ingress-<attachment>` (ExposedApp): where the app is isolated on the attachment,
//!   the app's `attachments[].allowFrom` on `attachments[].ports`, plus
//!   `policy.allowEverywhere`; isolation follows `isolation` as `A-ingress` does.
//! - `P-egress-<attachment>` (EgressPolicy): for each attachment used in the policy's
//!   namespace, the policy's rules (cluster DNS left out, as above): "exactly these
//!   destinations" holds on every interface of the selected pods.
//!
//! An `app` peer whose app is not on the attachment has no address there and is left out
//! (it could allow nothing). With the opt-in off nothing here is rendered.

use gatehouse_api::{
    AppAttachment, ClusterNetwork, EgressPolicy, ExposedApp, Isolation, LabelSelector, Peer, Reason,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use kube::ResourceExt;

use super::child::{Child, ChildKind, Owner};
use super::context::Context;
use super::network_policy::{
    DEFAULT_DENY, deny_types, platform_rules, port, selector_matches, under_ingress_deny,
};
use super::peer::{self, ResolvedRule};
use super::service::target_port;
use super::validate::{Finding, Findings};

/// The Multus annotation naming the NetworkAttachmentDefinitions a policy is for (a
/// comma-separated list of `namespace/name` or `name`; we always write one, namespaced).
pub const POLICY_FOR: &str = "k8s.v1.cni.cncf.io/policy-for";

/// Whether the network polices its attachments.
pub fn enabled(network: &ClusterNetwork) -> bool {
    network.spec.policy.multi_network_policy
}

fn mnp(
    owner: &Owner,
    name: String,
    namespace: &str,
    attachment: &str,
    spec: &NetworkPolicySpec,
) -> Child {
    let mut meta = owner.meta(name, Some(namespace));
    meta.annotations = Some([(POLICY_FOR.to_string(), format!("{namespace}/{attachment}"))].into());
    Child::with_spec(
        ChildKind::MultiNetworkPolicy,
        meta,
        serde_json::to_value(spec).unwrap_or_default(),
    )
}

/// Whether a peer can have an address on `attachment`: an `app` peer only when that app
/// is attached to it (other peers are selectors or addresses the policy engine matches).
fn on_attachment(p: &Peer, own_namespace: &str, attachment: &str, ctx: &Context) -> bool {
    let Some(r) = &p.app else {
        return true;
    };
    let ns = r.namespace.as_deref().unwrap_or(own_namespace);
    ctx.app(ns, &r.name)
        .is_none_or(|a| a.spec.attachments.iter().any(|x| x.network == attachment))
}

/// The baseline on each attachment in each default-deny namespace that has it.
pub fn default_deny(network: &ClusterNetwork, ctx: &Context, owner: &Owner) -> Vec<Child> {
    if !enabled(network) {
        return vec![];
    }
    let Some(dd) = &network.spec.policy.default_deny else {
        return vec![];
    };
    if !dd.ingress && !dd.egress {
        return vec![];
    }
    let mut out = Vec::new();
    for (ns, attachment) in super::attachment::used(network, ctx) {
        if !network
            .spec
            .attachments
            .iter()
            .any(|a| a.name == attachment)
            || !selector_matches(&dd.namespace_selector, &ctx.namespace_labels(&ns))
        {
            continue;
        }
        let types = deny_types(dd);
        let spec = NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(types),
            ingress: dd.ingress.then(|| platform_rules(network)),
            egress: dd.egress.then(Vec::new),
        };
        out.push(mnp(
            owner,
            format!("{DEFAULT_DENY}-{attachment}"),
            &ns,
            &attachment,
            &spec,
        ));
    }
    out
}

/// The app's policy on each of its attachments where it is isolated there: with
/// `allowFrom` on the attachment, with `isolation: Isolated`, or under ingress default
/// deny when it opens something (otherwise the baseline already says it all). Elsewhere
/// none: attaching an app never cuts traffic nobody declared.
pub fn app_ingress(
    app: &ExposedApp,
    network: &ClusterNetwork,
    ctx: &Context,
    owner: &Owner,
    findings: &mut Findings,
) -> Vec<Child> {
    if !enabled(network) {
        return vec![];
    }
    let namespace = app.namespace().unwrap_or_default();
    let under_deny = under_ingress_deny(network, ctx, &namespace);
    let asked = app.spec.isolation == Isolation::Isolated;
    app.spec
        .attachments
        .iter()
        .enumerate()
        .filter_map(|(i, a)| {
            attachment_ingress(app, a, i, network, ctx, under_deny, asked, findings).map(|spec| {
                mnp(
                    owner,
                    format!("{}-ingress-{}", app.name_any(), a.network),
                    &namespace,
                    &a.network,
                    &spec,
                )
            })
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn attachment_ingress(
    app: &ExposedApp,
    a: &AppAttachment,
    i: usize,
    network: &ClusterNetwork,
    ctx: &Context,
    under_deny: bool,
    asked: bool,
    findings: &mut Findings,
) -> Option<NetworkPolicySpec> {
    if !asked && !under_deny && a.allow_from.is_empty() {
        return None;
    }
    let namespace = app.namespace().unwrap_or_default();
    let mut from: Vec<NetworkPolicyPeer> = Vec::new();
    for (j, p) in a.allow_from.iter().enumerate() {
        if !on_attachment(p, &namespace, &a.network, ctx) {
            continue;
        }
        let r = peer::resolve(p, &namespace, ctx);
        match r.policy_peer {
            Some(pp) => from.push(pp),
            None => findings.push(Finding::new(
                Reason::ReferenceNotFound,
                format!("spec.attachments[{i}].allowFrom[{j}]"),
                format!(
                    "{} does not resolve yet: {}",
                    r.status.peer, r.status.detail
                ),
            )),
        }
    }
    let mut rules = Vec::new();
    // An empty `from` would admit everyone: only write the rule when a peer resolved.
    if !from.is_empty() {
        let mut ports: Vec<NetworkPolicyPort> = Vec::new();
        for name in &a.ports {
            if let Some(p) = app.spec.ports.iter().find(|p| &p.name == name) {
                let np = port(target_port(p), p.protocol.as_str());
                if !ports.contains(&np) {
                    ports.push(np);
                }
            }
        }
        rules.push(NetworkPolicyIngressRule {
            from: Some(from),
            ports: (!ports.is_empty()).then_some(ports),
        });
    }
    // Under default deny with nothing opened the baseline on the attachment already is
    // this policy; outside it an unresolved allowFrom keeps the isolation it asked for.
    if rules.is_empty() && under_deny && !asked {
        return None;
    }
    rules.extend(platform_rules(network));
    Some(NetworkPolicySpec {
        pod_selector: Some(peer::match_labels(&app.spec.selector)),
        policy_types: Some(vec!["Ingress".into()]),
        ingress: Some(rules),
        egress: None,
    })
}

/// The EgressPolicy's rules on every attachment of its network used in its namespace.
pub fn egress(
    policy: &EgressPolicy,
    network: &ClusterNetwork,
    resolved: &[ResolvedRule],
    ctx: &Context,
    owner: &Owner,
) -> Vec<Child> {
    if !enabled(network) {
        return vec![];
    }
    let namespace = policy.namespace().unwrap_or_default();
    super::attachment::used_in(network, &namespace, ctx)
        .into_iter()
        .map(|attachment| {
            let spec = super::network_policy::egress_spec(policy, network, resolved, false, |p| {
                on_attachment(p, &namespace, &attachment, ctx)
            });
            mnp(
                owner,
                format!("{}-egress-{attachment}", policy.name_any()),
                &namespace,
                &attachment,
                &spec,
            )
        })
        .collect()
}
