//! The uniform shape of a rendered child and the metadata every child carries.

use std::collections::BTreeMap;

use gatehouse_api::labels;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use serde_json::{Map, Value};

/// Every kind of object Gatehouse creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChildKind {
    // Order here is the output order of `gatehouse render`.
    IpAddressPool,
    L2Advertisement,
    BgpAdvertisement,
    BgpPeer,
    CiliumLoadBalancerIpPool,
    CiliumBgpClusterConfig,
    CiliumBgpPeerConfig,
    CiliumBgpAdvertisement,
    NetworkAttachmentDefinition,
    Service,
    Middleware,
    Ingress,
    HttpRoute,
    ReferenceGrant,
    Certificate,
    NetworkPolicy,
    CiliumNetworkPolicy,
    MultiNetworkPolicy,
    DnsEndpoint,
}

impl ChildKind {
    pub const ALL: [ChildKind; 19] = [
        ChildKind::IpAddressPool,
        ChildKind::L2Advertisement,
        ChildKind::BgpAdvertisement,
        ChildKind::BgpPeer,
        ChildKind::CiliumLoadBalancerIpPool,
        ChildKind::CiliumBgpClusterConfig,
        ChildKind::CiliumBgpPeerConfig,
        ChildKind::CiliumBgpAdvertisement,
        ChildKind::NetworkAttachmentDefinition,
        ChildKind::Service,
        ChildKind::Middleware,
        ChildKind::Ingress,
        ChildKind::HttpRoute,
        ChildKind::ReferenceGrant,
        ChildKind::Certificate,
        ChildKind::NetworkPolicy,
        ChildKind::CiliumNetworkPolicy,
        ChildKind::MultiNetworkPolicy,
        ChildKind::DnsEndpoint,
    ];

    /// (group, version, kind, plural, namespaced)
    pub fn gvk(self) -> (&'static str, &'static str, &'static str, &'static str, bool) {
        match self {
            ChildKind::IpAddressPool => (
                "metallb.io",
                "v1beta1",
                "IPAddressPool",
                "ipaddresspools",
                true,
            ),
            ChildKind::L2Advertisement => (
                "metallb.io",
                "v1beta1",
                "L2Advertisement",
                "l2advertisements",
                true,
            ),
            ChildKind::BgpAdvertisement => (
                "metallb.io",
                "v1beta1",
                "BGPAdvertisement",
                "bgpadvertisements",
                true,
            ),
            ChildKind::BgpPeer => ("metallb.io", "v1beta2", "BGPPeer", "bgppeers", true),
            ChildKind::CiliumLoadBalancerIpPool => (
                "cilium.io",
                "v2",
                "CiliumLoadBalancerIPPool",
                "ciliumloadbalancerippools",
                false,
            ),
            ChildKind::CiliumBgpClusterConfig => (
                "cilium.io",
                "v2",
                "CiliumBGPClusterConfig",
                "ciliumbgpclusterconfigs",
                false,
            ),
            ChildKind::CiliumBgpPeerConfig => (
                "cilium.io",
                "v2",
                "CiliumBGPPeerConfig",
                "ciliumbgppeerconfigs",
                false,
            ),
            ChildKind::CiliumBgpAdvertisement => (
                "cilium.io",
                "v2",
                "CiliumBGPAdvertisement",
                "ciliumbgpadvertisements",
                false,
            ),
            ChildKind::NetworkAttachmentDefinition => (
                "k8s.cni.cncf.io",
                "v1",
                "NetworkAttachmentDefinition",
                "network-attachment-definitions",
                true,
            ),
            ChildKind::Service => ("", "v1", "Service", "services", true),
            ChildKind::Middleware => ("traefik.io", "v1alpha1", "Middleware", "middlewares", true),
            ChildKind::Ingress => ("networking.k8s.io", "v1", "Ingress", "ingresses", true),
            ChildKind::HttpRoute => (
                "gateway.networking.k8s.io",
                "v1",
                "HTTPRoute",
                "httproutes",
                true,
            ),
            ChildKind::ReferenceGrant => (
                "gateway.networking.k8s.io",
                "v1beta1",
                "ReferenceGrant",
                "referencegrants",
                true,
            ),
            ChildKind::Certificate => {
                ("cert-manager.io", "v1", "Certificate", "certificates", true)
            }
            ChildKind::NetworkPolicy => (
                "networking.k8s.io",
                "v1",
                "NetworkPolicy",
                "networkpolicies",
                true,
            ),
            ChildKind::CiliumNetworkPolicy => (
                "cilium.io",
                "v2",
                "CiliumNetworkPolicy",
                "ciliumnetworkpolicies",
                true,
            ),
            // v1beta1: the version the CRD serves and stores (v1beta2 is not served).
            ChildKind::MultiNetworkPolicy => (
                "k8s.cni.cncf.io",
                "v1beta1",
                "MultiNetworkPolicy",
                "multi-networkpolicies",
                true,
            ),
            ChildKind::DnsEndpoint => (
                "externaldns.k8s.io",
                "v1alpha1",
                "DNSEndpoint",
                "dnsendpoints",
                true,
            ),
        }
    }

    pub fn api_version(self) -> String {
        let (group, version, ..) = self.gvk();
        if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        }
    }

    pub fn kind(self) -> &'static str {
        self.gvk().2
    }

    /// Whether readiness is read from the child's status (Certificate: cert-manager's
    /// conditions; DNSEndpoint: external-dns's observedGeneration; HTTPRoute: the Gateway
    /// implementation's per-parent conditions), so the operator caches its content, not
    /// only its metadata.
    pub fn ready_by_status(self) -> bool {
        matches!(
            self,
            ChildKind::Certificate | ChildKind::DnsEndpoint | ChildKind::HttpRoute
        )
    }
}

/// One desired child: its identity as typed fields (what plan, prune and readiness key on)
/// beside the full object (apiVersion, kind, metadata, spec) that is applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Child {
    pub kind: ChildKind,
    /// None for cluster-scoped kinds.
    pub namespace: Option<String>,
    pub name: String,
    pub object: Value,
}

impl Child {
    /// Builds a child from a metadata block and the rest of the object's top-level fields.
    pub fn new(kind: ChildKind, metadata: ObjectMeta, body: Value) -> Child {
        let name = metadata.name.clone().unwrap_or_default();
        let namespace = metadata.namespace.clone();
        let mut object = Map::new();
        object.insert("apiVersion".into(), Value::String(kind.api_version()));
        object.insert("kind".into(), Value::String(kind.kind().into()));
        object.insert("metadata".into(), meta_value(metadata));
        if let Value::Object(extra) = body {
            object.extend(extra);
        }
        Child {
            kind,
            namespace,
            name,
            object: Value::Object(object),
        }
    }

    /// A child whose body is `{"spec": spec}`. The spec is moved in, not re-serialized
    /// (`json!` would copy a `Value` through the serializer).
    pub fn with_spec(kind: ChildKind, metadata: ObjectMeta, spec: Value) -> Child {
        let mut body = Map::new();
        body.insert("spec".into(), spec);
        Child::new(kind, metadata, Value::Object(body))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// (kind, namespace, name): how caches, the index and plans name a child.
    pub fn key(&self) -> ChildKey {
        (self.kind, self.namespace.clone(), self.name.clone())
    }

    /// Output order: kind, namespace, name. Compares borrowed fields (no allocation).
    pub fn order(&self, other: &Child) -> std::cmp::Ordering {
        self.kind
            .cmp(&other.kind)
            .then_with(|| self.namespace().cmp(&other.namespace()))
            .then_with(|| self.name().cmp(other.name()))
    }
}

/// FNV-1a: stable across builds and Rust versions, unlike `DefaultHasher`, so an operator
/// upgrade does not rewrite every child.
pub fn stable_hash(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// A child's identity: (kind, namespace, name).
pub type ChildKey = (ChildKind, Option<String>, String);

/// The Gatehouse object that owns children: its identity for labels and ownerReferences.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub kind: &'static str,
    pub name: String,
    pub namespace: Option<String>,
    /// Unknown when rendering offline from files; then no ownerReference is written.
    pub uid: Option<String>,
}

impl Owner {
    /// (kind, namespace, name), as the owner labels of its children say it.
    pub fn key(&self) -> (String, Option<String>, String) {
        (
            self.kind.to_string(),
            self.namespace.clone(),
            self.name.clone(),
        )
    }

    pub fn of<K: Resource<DynamicType = ()>>(obj: &K) -> Owner {
        Owner {
            kind: leak_kind(&K::kind(&())),
            name: obj.name_any(),
            namespace: obj.namespace(),
            uid: obj.meta().uid.clone(),
        }
    }

    /// The labels every child carries: managed-by plus owner kind, name (and namespace).
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            (
                labels::MANAGED_BY.to_string(),
                labels::MANAGED_BY_VALUE.to_string(),
            ),
            (labels::OWNER_KIND.to_string(), self.kind.to_string()),
            (labels::OWNER_NAME.to_string(), self.name.clone()),
        ]);
        if let Some(ns) = &self.namespace {
            labels.insert(labels::OWNER_NAMESPACE.to_string(), ns.clone());
        }
        labels
    }

    /// Metadata of a child named `name` in `namespace` (None for cluster-scoped children).
    pub fn meta(&self, name: impl Into<String>, namespace: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: namespace.map(str::to_string),
            labels: Some(self.labels()),
            owner_references: self.uid.as_ref().map(|uid| {
                vec![OwnerReference {
                    api_version: gatehouse_api::API_VERSION.to_string(),
                    kind: self.kind.to_string(),
                    name: self.name.clone(),
                    uid: uid.clone(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]
            }),
            ..ObjectMeta::default()
        }
    }
}

/// The metadata as JSON, moving its strings instead of copying them (render throughput is
/// dominated by allocation; see `make bench`). Only the fields children use are set.
fn meta_value(meta: ObjectMeta) -> Value {
    let string_map = |m: BTreeMap<String, String>| {
        Value::Object(m.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
    };
    let mut out = Map::new();
    if let Some(a) = meta.annotations {
        out.insert("annotations".into(), string_map(a));
    }
    if let Some(l) = meta.labels {
        out.insert("labels".into(), string_map(l));
    }
    if let Some(n) = meta.name {
        out.insert("name".into(), Value::String(n));
    }
    if let Some(ns) = meta.namespace {
        out.insert("namespace".into(), Value::String(ns));
    }
    if let Some(refs) = meta.owner_references {
        out.insert(
            "ownerReferences".into(),
            serde_json::to_value(refs).unwrap_or_default(),
        );
    }
    Value::Object(out)
}

/// Kinds are a fixed set of three; map to statics so Owner stays cheap to clone.
pub(crate) fn leak_kind(kind: &str) -> &'static str {
    match kind {
        "ClusterNetwork" => "ClusterNetwork",
        "ExposedApp" => "ExposedApp",
        "EgressPolicy" => "EgressPolicy",
        _ => "Unknown",
    }
}
