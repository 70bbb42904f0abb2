//! EgressPolicy: "these pods may reach exactly these destinations".

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, LabelSelector, Protocol};
use crate::exposed_app::ResourceStatus;
use crate::peer::Peer;

/// Allow the selected pods to reach exactly the listed destinations; all other egress from
/// them is denied. FQDN destinations need a network with `policy.engine: Cilium`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "gatehouse.dev",
    version = "v1alpha1",
    kind = "EgressPolicy",
    doc = "EgressPolicy: the selected pods may reach exactly the listed destinations (apps, Services, selectors, CIDRs, FQDNs); all other egress from them is denied.",
    namespaced,
    shortname = "egp",
    category = "gatehouse",
    status = "EgressPolicyStatus",
    printcolumn = r#"{"name":"Rules","type":"integer","jsonPath":".status.ruleCount"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct EgressPolicySpec {
    /// Name of the ClusterNetwork whose policy engine and cluster DNS apply (default `default`).
    #[serde(default = "default_network")]
    #[schemars(schema_with = "crate::schema::label_name")]
    pub network: String,
    /// Pods the policy applies to (standard LabelSelector); empty selects every pod in the namespace.
    #[serde(default)]
    pub pod_selector: LabelSelector,
    /// Allow egress to the cluster DNS on 53/UDP and 53/TCP (default true).
    #[serde(default = "yes")]
    #[serde(rename = "allowDNS")]
    pub allow_dns: bool,
    /// Allowed destinations. No rules: only DNS (if allowed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub rules: Vec<EgressRule>,
}

fn default_network() -> String {
    "default".into()
}
fn yes() -> bool {
    true
}

/// Destinations and ports.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EgressRule {
    /// Destinations (peers); at least one.
    #[schemars(length(min = 1, max = 32))]
    pub to: Vec<Peer>,
    /// Ports; none means all ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub ports: Vec<EgressPort>,
}

/// A port or port range.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.endPort) || self.endPort >= self.port", "message": "endPort must be >= port", "fieldPath": ".endPort"}
]))]
pub struct EgressPort {
    /// Destination port, 1–65535.
    #[schemars(schema_with = "crate::schema::port_number")]
    pub port: i32,
    /// Last port of a range (inclusive), 1–65535, not below `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub end_port: Option<i32>,
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default)]
    pub protocol: Protocol,
}

/// Observed state of an EgressPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EgressPolicyStatus {
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Number of rules in effect.
    #[serde(default)]
    pub rule_count: i64,
    /// Each peer as resolved (selectors, CIDRs, FQDNs), or why it is not resolved yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolved_peers: Vec<ResolvedPeer>,
    /// The children and their readiness.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceStatus>,
}

/// A peer as the operator resolved it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedPeer {
    /// The peer as written, e.g. `app wordpress/wordpress` or `fqdn api.github.com`.
    pub peer: String,
    /// Whether it resolved (unresolved peers allow nothing).
    pub resolved: bool,
    /// What it resolved to, or why not.
    pub detail: String,
}
