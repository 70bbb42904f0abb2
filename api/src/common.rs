//! Types shared by more than one kind, and the condition vocabulary.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};

/// A cert-manager issuer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    /// Name of the cert-manager Issuer or ClusterIssuer, e.g. `letsencrypt-prod`.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// `ClusterIssuer` (default) or `Issuer` (then it must live in the app's namespace).
    #[serde(default = "default_issuer_kind")]
    pub kind: IssuerKind,
    /// API group of the issuer; default `cert-manager.io` (other groups for external issuers).
    #[serde(default = "default_issuer_group")]
    #[schemars(length(min = 1, max = 253))]
    pub group: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum IssuerKind {
    ClusterIssuer,
    Issuer,
}

fn default_issuer_kind() -> IssuerKind {
    IssuerKind::ClusterIssuer
}
fn default_issuer_group() -> String {
    "cert-manager.io".into()
}

/// The two exposure tiers a ClusterNetwork may define.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
pub enum Tier {
    External,
    Internal,
}

impl Tier {
    pub const ALL: [Tier; 2] = [Tier::External, Tier::Internal];

    /// Lowercase form used in child names (`A-external`), labels and pool names.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::External => "external",
            Tier::Internal => "internal",
        }
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// L4 protocol of a port.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    JsonSchema,
)]
pub enum Protocol {
    #[default]
    TCP,
    UDP,
    SCTP,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::TCP => "TCP",
            Protocol::UDP => "UDP",
            Protocol::SCTP => "SCTP",
        }
    }
}

/// A namespaced reference to a Service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedName {
    /// Namespace of the object.
    #[schemars(schema_with = "crate::schema::label_name")]
    pub namespace: String,
    /// Name of the object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Condition types (kstatus: `Ready`, `Reconciling`, `Stalled`; the rest are details).
pub mod condition {
    pub const READY: &str = "Ready";
    pub const RECONCILING: &str = "Reconciling";
    pub const STALLED: &str = "Stalled";
    pub const CERTIFICATE_READY: &str = "CertificateReady";
    pub const ADDRESS_ASSIGNED: &str = "AddressAssigned";
    pub const DNS_PUBLISHED: &str = "DNSPublished";
    /// ClusterNetwork: every load-balancer pool is below its warning threshold. False
    /// (reason `PoolNearlyFull`) is a warning only: it never makes the network not Ready.
    pub const POOL_CAPACITY: &str = "PoolCapacity";
}

/// Every reason Gatehouse writes into a condition or an Event, in one place: code branches
/// on the variant, the API sees [`Reason::as_str`] (CamelCase). README's troubleshooting
/// table lists each one (a unit test checks both ways).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Everything asked for exists and reports ready.
    Ready,
    /// A child is not ready yet.
    Progressing,
    /// A field the schema cannot judge is wrong; the message names it.
    InvalidSpec,
    /// An object with a child's name exists and is not Gatehouse's.
    Conflict,
    /// Another app claimed the host first.
    HostConflict,
    /// `spec.domains` does not grant the host's suffix to the namespace.
    HostNotAllowed,
    /// `spec.network` names no ClusterNetwork.
    NetworkNotFound,
    /// `tcp[].proxyProtocol` with a provider that cannot send it.
    ProxyProtocolUnsupported,
    /// A pool with `advertisement: BGP` and no `loadBalancer.bgp` peer: nothing announces it.
    BgpPeerMissing,
    /// A requested load-balancer address is assigned to, or requested by, another Service;
    /// or a static attachment address is pinned by an ExposedApp that claimed it first.
    AddressInUse,
    /// A LoadBalancer Service waits for an address from a pool that has none free.
    PoolExhausted,
    /// ClusterNetwork `PoolCapacity=False`: a pool's allocation reached its warning threshold.
    PoolNearlyFull,
    /// An `fqdn` peer needs `policy.engine: Cilium`.
    FqdnUnsupported,
    /// `auth: OAuth2` on a Gateway tier whose implementation Gatehouse has no auth filter
    /// for (only Traefik's forwardAuth Middleware).
    AuthUnsupported,
    /// An `app` or `service` peer does not exist (yet).
    ReferenceNotFound,
    /// A child's CRD is not installed in the cluster.
    KindNotInstalled,
    /// An external-tier record would publish a private address; it is left out.
    PrivateAddressNotPublished,
    /// cert-manager has not issued the Certificate.
    WaitingForCertificate,
    /// A LoadBalancer Service has no address yet, or a tier's addresses are unknown.
    WaitingForAddress,
    /// external-dns has not read the DNSEndpoint's current generation.
    WaitingForDns,
    /// Event: external-dns did not acknowledge the removal of a deleted app's records in
    /// time; its routes were removed anyway.
    DnsTeardownUnconfirmed,
    /// Event: the operator created or changed children (named in the note).
    Applied,
    /// Event: the operator deleted children no longer desired (named in the note).
    Pruned,
}

impl Reason {
    pub const ALL: [Reason; 23] = [
        Reason::Ready,
        Reason::Progressing,
        Reason::InvalidSpec,
        Reason::Conflict,
        Reason::HostConflict,
        Reason::HostNotAllowed,
        Reason::NetworkNotFound,
        Reason::ProxyProtocolUnsupported,
        Reason::BgpPeerMissing,
        Reason::AddressInUse,
        Reason::PoolExhausted,
        Reason::PoolNearlyFull,
        Reason::FqdnUnsupported,
        Reason::AuthUnsupported,
        Reason::ReferenceNotFound,
        Reason::KindNotInstalled,
        Reason::PrivateAddressNotPublished,
        Reason::WaitingForCertificate,
        Reason::WaitingForAddress,
        Reason::WaitingForDns,
        Reason::DnsTeardownUnconfirmed,
        Reason::Applied,
        Reason::Pruned,
    ];

    /// The reason as conditions and Events carry it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Ready => "Ready",
            Reason::Progressing => "Progressing",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::Conflict => "Conflict",
            Reason::HostConflict => "HostConflict",
            Reason::HostNotAllowed => "HostNotAllowed",
            Reason::NetworkNotFound => "NetworkNotFound",
            Reason::ProxyProtocolUnsupported => "ProxyProtocolUnsupported",
            Reason::BgpPeerMissing => "BGPPeerMissing",
            Reason::AddressInUse => "AddressInUse",
            Reason::PoolExhausted => "PoolExhausted",
            Reason::PoolNearlyFull => "PoolNearlyFull",
            Reason::FqdnUnsupported => "FQDNUnsupported",
            Reason::AuthUnsupported => "AuthUnsupported",
            Reason::ReferenceNotFound => "ReferenceNotFound",
            Reason::KindNotInstalled => "KindNotInstalled",
            Reason::PrivateAddressNotPublished => "PrivateAddressNotPublished",
            Reason::WaitingForCertificate => "WaitingForCertificate",
            Reason::WaitingForAddress => "WaitingForAddress",
            Reason::WaitingForDns => "WaitingForDNS",
            Reason::DnsTeardownUnconfirmed => "DNSTeardownUnconfirmed",
            Reason::Applied => "Applied",
            Reason::Pruned => "Pruned",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Reason;

    /// README's troubleshooting table names exactly the reasons there are, the Events'
    /// reasons included.
    #[test]
    fn every_reason_is_in_the_readme_table_and_nothing_else() {
        let readme = include_str!("../../README.md");
        let table = readme
            .split("## Troubleshooting by condition")
            .nth(1)
            .expect("README has its troubleshooting section");
        let listed: std::collections::BTreeSet<&str> = table
            .lines()
            .take_while(|l| !l.starts_with("## "))
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .collect();
        let known: std::collections::BTreeSet<&str> =
            Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(listed, known);
    }

    /// `Reason::ALL` holds every variant of the enum (read off this file's source: Rust
    /// cannot enumerate an enum), so the table test above cannot miss a new one.
    #[test]
    fn all_lists_every_variant() {
        let source = include_str!("common.rs");
        let body = source
            .split("pub enum Reason {")
            .nth(1)
            .and_then(|s| s.split("\n}").next())
            .expect("the enum is in this file");
        let variants: Vec<&str> = body
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with("//") && l.ends_with(','))
            .map(|l| l.trim_end_matches(','))
            .collect();
        let all: Vec<String> = Reason::ALL.iter().map(|r| format!("{r:?}")).collect();
        assert_eq!(variants, all);
    }
}
