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
}

/// Condition reasons (CamelCase), one place so docs and tests agree.
pub mod reason {
    /// Event: external-dns did not acknowledge the removal of a deleted app's records in
    /// time; its routes were removed anyway.
    pub const DNS_TEARDOWN_UNCONFIRMED: &str = "DNSTeardownUnconfirmed";
    pub const READY: &str = "Ready";
    pub const PROGRESSING: &str = "Progressing";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const CONFLICT: &str = "Conflict";
    pub const HOST_CONFLICT: &str = "HostConflict";
    pub const NETWORK_NOT_FOUND: &str = "NetworkNotFound";
    pub const PROXY_PROTOCOL_UNSUPPORTED: &str = "ProxyProtocolUnsupported";
    pub const FQDN_UNSUPPORTED: &str = "FQDNUnsupported";
    pub const REFERENCE_NOT_FOUND: &str = "ReferenceNotFound";
    pub const WAITING_FOR_CERTIFICATE: &str = "WaitingForCertificate";
    pub const WAITING_FOR_ADDRESS: &str = "WaitingForAddress";
    pub const WAITING_FOR_DNS: &str = "WaitingForDNS";
}
