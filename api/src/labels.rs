//! Label and annotation keys Gatehouse writes or reads. One place, so the operator, the
//! renderer and the tests agree.

/// Standard "who manages this" label; value [`MANAGED_BY_VALUE`].
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "gatehouse";
/// Kind of the Gatehouse object that owns a child.
pub const OWNER_KIND: &str = "gatehouse.dev/owner-kind";
/// Name of the Gatehouse object that owns a child.
pub const OWNER_NAME: &str = "gatehouse.dev/owner-name";
/// Namespace of the (namespaced) Gatehouse object that owns a child.
pub const OWNER_NAMESPACE: &str = "gatehouse.dev/owner-namespace";
/// Pool selector label on LoadBalancer Services (Cilium LB-IPAM serviceSelector).
pub const POOL: &str = "gatehouse.dev/pool";
/// DNS tier of a DNSEndpoint (`external` or `internal`), for per-tier external-dns filters.
pub const DNS_TIER: &str = "gatehouse.dev/dns-tier";
/// Pod label of cert-manager's HTTP-01 solver pods.
pub const ACME_SOLVER: &str = "acme.cert-manager.io/http01-solver";
/// Multus annotation the pod webhook injects.
pub const MULTUS_NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
/// Namespace name label set by the API server on every Namespace.
pub const NAMESPACE_NAME: &str = "kubernetes.io/metadata.name";

/// The server-side-apply field manager of every Gatehouse write.
pub const FIELD_MANAGER: &str = "gatehouse";
/// Finalizer that orders teardown: DNS records before routes.
pub const FINALIZER: &str = "gatehouse.dev/dns-first";
