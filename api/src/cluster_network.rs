//! ClusterNetwork: the platform team's one object.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, IssuerRef, LabelSelector, NamespacedName, Tier};

/// How this cluster exposes workloads and what it forbids: load-balancer pools, ingress
/// tiers, the default TLS issuer, DNS zones, host ownership, Multus secondary networks and
/// the zero-trust baseline. ExposedApps refer to it by name (`spec.network`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "gatehouse.dev",
    version = "v1alpha1",
    kind = "ClusterNetwork",
    doc = "ClusterNetwork: how this cluster exposes workloads (load-balancer pools, ingress tiers, TLS, DNS, Multus networks) and its zero-trust baseline. Cluster-scoped; ExposedApps refer to it by name.",
    shortname = "cnet",
    category = "gatehouse",
    status = "ClusterNetworkStatus",
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".spec.loadBalancer.provider"}"#,
    printcolumn = r#"{"name":"Apps","type":"integer","jsonPath":".status.exposedApps"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.ipFamilies.size() < 2 || self.ipFamilies[0] != self.ipFamilies[1]", "message": "spec.ipFamilies: the two families must be distinct", "fieldPath": ".ipFamilies"},
    {"rule": "!has(self.serviceIPFamilies) || self.serviceIPFamilies.size() < 2 || self.serviceIPFamilies[0] != self.serviceIPFamilies[1]", "message": "spec.serviceIPFamilies: the two families must be distinct", "fieldPath": ".serviceIPFamilies"}
]))]
pub struct ClusterNetworkSpec {
    /// IP families of every generated Service and DNS record, in order of preference:
    /// `[IPv4]` (default), `[IPv6]`, `[IPv4, IPv6]` or `[IPv6, IPv4]`. Two families make every
    /// Service `RequireDualStack`, open ipBlocks for both families and publish A and AAAA records.
    #[serde(default = "default_ip_families")]
    #[schemars(length(min = 1, max = 2))]
    pub ip_families: Vec<IpFamily>,
    /// IP families of the Services Gatehouse creates (ClusterIP and LoadBalancer) where the
    /// cluster runs fewer than DNS publishes, e.g. `[IPv4]` for an IPv4-only cluster behind
    /// a dual-stack cloud load balancer (seed 000). Default: `ipFamilies`.
    #[serde(
        default,
        rename = "serviceIPFamilies",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(length(max = 2))]
    pub service_ip_families: Vec<IpFamily>,
    /// The load-balancer implementation and its address pools.
    #[serde(default)]
    pub load_balancer: LoadBalancer,
    /// Ingress tiers: `external` (internet-facing) and `internal` (LAN/intranet). Both optional.
    #[serde(default)]
    pub ingress: IngressTiers,
    /// Default TLS settings for every route with `tls: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<NetworkTls>,
    /// Authentication back ends for routes with `auth: OAuth2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    /// DNS zones per tier and the default record TTL.
    #[serde(default)]
    pub dns: NetworkDns,
    /// Host ownership: when set, an ExposedApp may only use hosts under a suffix listed for its
    /// namespace. Across namespaces a host belongs to the first app that claimed it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub domains: Vec<DomainClaim>,
    /// Multus secondary networks. A NetworkAttachmentDefinition with each name is created in
    /// every namespace whose ExposedApps use it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self.all(a, self.filter(b, b.name == a.name).size() == 1)", "message": "attachment names must be unique"}
    ]))]
    pub attachments: Vec<Attachment>,
    /// Network policy engine and the zero-trust baseline.
    #[serde(default)]
    pub policy: Policy,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum IpFamily {
    IPv4,
    IPv6,
}

impl IpFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            IpFamily::IPv4 => "IPv4",
            IpFamily::IPv6 => "IPv6",
        }
    }
}

fn default_ip_families() -> Vec<IpFamily> {
    vec![IpFamily::IPv4]
}

/// Load-balancer provider and pools.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.pools.all(p, self.pools.filter(q, q.name == p.name).size() == 1)", "message": "pool names must be unique", "fieldPath": ".pools"},
    {"rule": "!has(self.hetzner) || self.provider == 'Hetzner'", "message": "hetzner needs provider Hetzner", "fieldPath": ".hetzner"}
]))]
pub struct LoadBalancer {
    /// `MetalLB`, `Cilium`, `Hetzner` or `None` (default): chooses which pool objects and
    /// Service annotations are generated. `None` leaves LoadBalancer Services to the cloud.
    #[serde(default)]
    pub provider: LbProvider,
    /// Namespace of namespaced pool objects (MetalLB: default `metallb-system`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::optional_label_name")]
    pub namespace: Option<String>,
    /// Address pools. By convention `external` and `internal` serve the two tiers. MetalLB
    /// pools are created with `autoAssign: false`: only Services that name the pool get its
    /// addresses, so a stray LoadBalancer Service cannot take a public address.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub pools: Vec<Pool>,
    /// BGP peering of the cluster's speakers: announces the addresses of every pool with
    /// `advertisement: BGP` (MetalLB `BGPPeer`s; Cilium's BGP control plane v2). Needed by
    /// any BGP pool: without a peer nothing announces it, and the network is Stalled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<Bgp>,
    /// Provider `Hetzner`: what hcloud-cloud-controller-manager reads from every
    /// LoadBalancer Service Gatehouse creates (`load-balancer.hetzner.cloud/*` annotations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hetzner: Option<HetznerLoadBalancer>,
}

/// Hetzner load-balancer settings (see `LoadBalancer::hetzner`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(has(self.location) && has(self.networkZone))", "message": "set location or networkZone, not both"}
]))]
pub struct HetznerLoadBalancer {
    /// Location of the load balancers (`load-balancer.hetzner.cloud/location`), e.g. `fsn1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub location: Option<String>,
    /// Network zone instead of a location (`load-balancer.hetzner.cloud/network-zone`), e.g.
    /// `eu-central`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub network_zone: Option<String>,
    /// Reach the nodes over the private network (`use-private-ip`), as seed 000's firewalled
    /// nodes need.
    #[serde(default, rename = "usePrivateIP")]
    pub use_private_ip: bool,
    /// Keep the load balancer's private address out of its status
    /// (`disable-private-ingress`), so DNS only ever sees its public addresses.
    #[serde(default)]
    pub disable_private_ingress: bool,
}

/// BGP peering (see `LoadBalancer::bgp`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bgp {
    /// AS number the cluster's speakers use (1-4294967295), e.g. a private ASN 64512.
    #[serde(rename = "localASN")]
    #[schemars(schema_with = "crate::schema::asn")]
    pub local_asn: u32,
    /// The routers the speakers peer with (1-32, unique names).
    #[schemars(length(min = 1, max = 32))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self.all(p, self.filter(q, q.name == p.name).size() == 1)", "message": "peer names must be unique"}
    ]))]
    pub peers: Vec<BgpPeer>,
}

/// One BGP router the cluster's speakers peer with.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BgpPeer {
    /// Peer name (DNS-1123 label); names the MetalLB `BGPPeer` or the
    /// `CiliumBGPPeerConfig`.
    #[schemars(schema_with = "crate::schema::label_name")]
    pub name: String,
    /// The router's address (IPv4 or IPv6) the speakers dial.
    #[schemars(schema_with = "crate::schema::ip")]
    pub address: String,
    /// The router's AS number (1-4294967295): equal to `localASN` for iBGP, else eBGP.
    #[schemars(schema_with = "crate::schema::asn")]
    pub asn: u32,
    /// Secret holding the TCP MD5 password under key `password`. MetalLB: in
    /// `loadBalancer.namespace`, of type `kubernetes.io/basic-auth`; Cilium: in its BGP
    /// secrets namespace (`kube-system` unless Cilium is configured otherwise). The platform
    /// creates it; Gatehouse only refers to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretRef>,
    /// Only nodes with these labels peer with this router (default: every node). With
    /// Cilium every peer must have the same selector (one BGP instance per node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,
}

/// A Secret by name, in the namespace the field's description gives.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum LbProvider {
    MetalLB,
    Cilium,
    Hetzner,
    #[default]
    None,
}

/// One pool of load-balancer addresses.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pool {
    /// Pool name (DNS-1123 label); also the name of the generated pool objects.
    #[schemars(schema_with = "crate::schema::label_name")]
    pub name: String,
    /// CIDRs (`192.168.0.3/32`, `2001:db8::/120`) or inclusive ranges (`10.0.0.10-10.0.0.20`), v4 and/or v6.
    #[schemars(schema_with = "crate::schema::pool_address_list")]
    pub addresses: Vec<String>,
    /// How addresses are announced: `L2` (ARP/NDP, default) or `BGP`.
    #[serde(default)]
    pub advertisement: Advertisement,
    /// Warn when this share of the pool's addresses is allocated (1-100, default 80): the
    /// ClusterNetwork's `PoolCapacity` condition turns False with reason `PoolNearlyFull`
    /// (a warning: the network stays Ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub warn_at_percent: Option<i32>,
}

/// The default of `Pool::warn_at_percent`.
pub const DEFAULT_POOL_WARN_AT_PERCENT: i32 = 80;

impl Pool {
    /// `warnAtPercent` with its default filled in.
    pub fn warn_at_percent(&self) -> i32 {
        self.warn_at_percent.unwrap_or(DEFAULT_POOL_WARN_AT_PERCENT)
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Advertisement {
    #[default]
    L2,
    BGP,
}

/// The two optional ingress tiers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressTiers {
    /// The internet-facing tier (routes with exposure `External` or `Both`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<IngressTier>,
    /// The internal tier (routes with exposure `Internal` or `Both`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal: Option<IngressTier>,
}

impl IngressTiers {
    pub fn get(&self, tier: Tier) -> Option<&IngressTier> {
        match tier {
            Tier::External => self.external.as_ref(),
            Tier::Internal => self.internal.as_ref(),
        }
    }
}

/// One ingress tier: which ingress controller serves it and where its traffic arrives.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.className) != has(self.gateway)", "message": "set exactly one of className (Ingress) or gateway (Gateway API)"},
    {"rule": "!has(self.gateway) || !has(self.implementation)", "message": "implementation applies to Ingress tiers only (a Gateway tier is served by its Gateway's implementation, named by controller)", "fieldPath": ".implementation"},
    {"rule": "!has(self.gateway) || !has(self.entryPoints)", "message": "entryPoints applies to Ingress tiers only (a Gateway tier's entry points are its Gateway's listeners)", "fieldPath": ".entryPoints"},
    {"rule": "!(has(self.addresses) && size(self.addresses) > 0 && has(self.service))", "message": "set either addresses or service, not both"},
    {"rule": "!has(self.implementation) || self.controller == 'Nginx' || self.implementation == 'Traefik'", "message": "implementation IngressNginx needs controller Nginx (a Traefik tier is served by Traefik)"},
    {"rule": "!has(self.entryPoints) || self.controller == 'Traefik'", "message": "entryPoints needs controller Traefik", "fieldPath": ".entryPoints"},
    {"rule": "!has(self.loadBalancer) || (!has(self.service) && !(has(self.addresses) && size(self.addresses) > 0))", "message": "loadBalancer replaces service and addresses: set only one of them", "fieldPath": ".loadBalancer"},
    {"rule": "!has(self.loadBalancer) || (has(self.namespace) && has(self.podSelector) && has(self.podSelector.matchLabels) && !has(self.podSelector.matchExpressions))", "message": "loadBalancer needs namespace and a podSelector of matchLabels only (they become the Service's namespace and selector)", "fieldPath": ".loadBalancer"}
]))]
pub struct IngressTier {
    /// IngressClass name of the tier's controller, e.g. `nginx-external`: the tier's routes
    /// become Ingresses. Exactly one of `className` and `gateway`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub class_name: Option<String>,
    /// The Gateway (Gateway API) that serves this tier instead of an IngressClass: the
    /// tier's routes become HTTPRoutes attached to it, and each app's TLS hosts get
    /// listeners of their own in it (see `TierGateway`). Exactly one of `className` and
    /// `gateway`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<TierGateway>,
    /// `Nginx` (default) or `Traefik`: decides how redirect and auth are expressed
    /// (annotations or Traefik Middlewares).
    #[serde(default)]
    pub controller: IngressController,
    /// The program that reads this tier's Ingresses, where `controller: Nginx` leaves a
    /// choice: `IngressNginx` (default: the ingress-nginx controller) or `Traefik`
    /// (Traefik's kubernetesIngressNGINX provider, which reads the same annotations but not
    /// `auth-signin`, so sign-in goes through a forward-auth answer instead). Decides only
    /// how `auth: OAuth2` is rendered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub implementation: Option<IngressImplementation>,
    /// Namespace of the controller pods (NetworkPolicies open app ports to them). Without
    /// `namespace` and `podSelector`, route ports are open to every source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::optional_label_name")]
    pub namespace: Option<String>,
    /// Labels of the controller pods; with `namespace` it makes the ingress peer of app policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// Static IPs that DNS records of this tier point to (v4 and/or v6).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::ip_list")]
    pub addresses: Vec<String>,
    /// The controller's LoadBalancer Service, whose status supplies the tier's addresses
    /// (instead of `addresses`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<NamespacedName>,
    /// What this tier's DNS records publish, where that is not where the controller
    /// listens: the router's public address that forwards to it, or a name (DynDNS) the
    /// records point to as CNAME. Default: the tier's addresses (`addresses`, or the
    /// `service`'s load-balancer status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<TierPublish>,
    /// cert-manager issuer of this tier's certificates (each app gets one Certificate per
    /// tier, holding only the TLS hosts served there), e.g. a private CA for the internal
    /// tier so internal names never reach a public ACME order. Default: `tls.issuerRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,
    /// Traefik tiers: the entry points the tier's routers attach to
    /// (`traefik.ingress.kubernetes.io/router.entrypoints`), e.g. seed 001's `web` and
    /// `websecure`. Default: every entry point of the Traefik serving the class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_points: Option<TraefikEntryPoints>,
    /// Let Gatehouse create and own the controller's LoadBalancer Service
    /// `<network>-<tier>` in `namespace`, selecting `podSelector`, whose status then
    /// supplies the tier's addresses (instead of `service` or `addresses`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<TierLoadBalancer>,
}

/// A Gateway tier (see `IngressTier::gateway`). The Gateway is the platform's: Gatehouse
/// never creates, owns or deletes it. It adds to it, by server-side apply under a field
/// manager of each app's own, one HTTPS listener per TLS host of the app (named
/// `<namespace>.<app>.<n>`, on `httpsPort`, carrying the app's certificate, admitting
/// HTTPRoutes of the app's namespace only) and removes them again when the app no longer
/// needs them or is deleted. Plain-http routes and the http->https redirect attach to the
/// Gateway's own `httpListener`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TierGateway {
    /// Name of the Gateway.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the Gateway.
    #[schemars(schema_with = "crate::schema::label_name")]
    pub namespace: String,
    /// The Gateway's plain-http listener (its `sectionName`): the redirect to https and
    /// routes without TLS attach to it. Its `allowedRoutes` must admit the apps'
    /// namespaces (the routes' status says so when it does not).
    #[schemars(length(min = 1, max = 253))]
    pub http_listener: String,
    /// Port of the HTTPS listeners Gatehouse adds for the apps' TLS hosts (default 443).
    /// Traefik serves a listener on the entry point of the same port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::port_number")]
    pub https_port: Option<i32>,
}

impl TierGateway {
    pub fn https_port(&self) -> i32 {
        self.https_port.unwrap_or(443)
    }
}

/// The tier's own LoadBalancer Service (see `IngressTier::load_balancer`): ports `http` 80
/// and `https` 443 to the controller pods.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TierLoadBalancer {
    /// MetalLB/Cilium pool (default: the pool named like the tier, if there is one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::optional_label_name")]
    pub pool: Option<String>,
    /// Requested addresses (MetalLB, Cilium), v4 and/or v6.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::ip_list")]
    pub addresses: Vec<String>,
    /// The load balancer speaks PROXY protocol to the controller (Hetzner; the controller
    /// must be configured to expect it). Other providers: Stalled, ProxyProtocolUnsupported.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// `Local` (default: client addresses preserved, traffic only to nodes running a
    /// controller pod) or `Cluster`.
    #[serde(default)]
    pub external_traffic_policy: TrafficPolicy,
    /// The controller pods' port for http (default 80).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::port_number")]
    pub http_target_port: Option<i32>,
    /// The controller pods' port for https (default 443).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::port_number")]
    pub https_target_port: Option<i32>,
    /// Hetzner: the load balancer's DNS name (`load-balancer.hetzner.cloud/hostname`),
    /// reported in its status instead of its addresses, which lets PROXY-protocol traffic
    /// from inside the cluster go out through the load balancer; the tier's records then
    /// become CNAMEs to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::host")]
    pub hostname: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum TrafficPolicy {
    #[default]
    Local,
    Cluster,
}

impl TrafficPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            TrafficPolicy::Local => "Local",
            TrafficPolicy::Cluster => "Cluster",
        }
    }
}

/// The entry points of a Traefik tier's routers (see `IngressTier::entry_points`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TraefikEntryPoints {
    /// The plain-http entry point (its routers: the redirect, or the plain answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub http: Option<String>,
    /// The https entry point (the TLS routers; TLS comes from `router.tls`, so the entry
    /// point needs no TLS of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub https: Option<String>,
}

/// What a tier's DNS records point to (see `IngressTier::publish`): exactly one of
/// `addresses` or `hostname`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(has(self.addresses) && size(self.addresses) > 0) != has(self.hostname)", "message": "set exactly one of addresses or hostname"}
]))]
pub struct TierPublish {
    /// Addresses the A/AAAA records publish, e.g. the router's public address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::ip_list")]
    pub addresses: Vec<String>,
    /// A name every host of the tier points to as CNAME, e.g. the router's DynDNS name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::host")]
    pub hostname: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum IngressController {
    #[default]
    Nginx,
    Traefik,
}

/// Which program consumes a tier's Ingresses (see `IngressTier::implementation`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum IngressImplementation {
    /// The ingress-nginx controller: `auth-url` answers 2xx/401, `auth-signin` redirects.
    IngressNginx,
    /// Traefik (its kubernetesIngressNGINX provider for `controller: Nginx` tiers).
    Traefik,
}

/// Name of a tier's own LoadBalancer Service (`loadBalancer`): `<network>-<tier>`.
pub fn tier_load_balancer_name(network: &str, tier: Tier) -> String {
    format!("{network}-{tier}")
}

impl ClusterNetwork {
    /// The Service whose load-balancer status supplies a tier's addresses: the tier's
    /// `service`, or its own `loadBalancer` Service.
    pub fn tier_address_service(&self, tier: Tier) -> Option<(String, String)> {
        let t = self.spec.ingress.get(tier)?;
        if let Some(s) = &t.service {
            return Some((s.namespace.clone(), s.name.clone()));
        }
        let ns = t.load_balancer.as_ref().and(t.namespace.clone())?;
        let name = self.metadata.name.clone().unwrap_or_default();
        Some((ns, tier_load_balancer_name(&name, tier)))
    }

    /// The families of the Services Gatehouse creates (`serviceIPFamilies`, else
    /// `ipFamilies`).
    pub fn service_families(&self) -> &[IpFamily] {
        if self.spec.service_ip_families.is_empty() {
            &self.spec.ip_families
        } else {
            &self.spec.service_ip_families
        }
    }
}

impl IngressTier {
    /// The consumer of this tier's Ingresses, with the default filled in.
    pub fn implementation(&self) -> IngressImplementation {
        match (self.controller, self.implementation) {
            (IngressController::Traefik, _) => IngressImplementation::Traefik,
            (IngressController::Nginx, Some(i)) => i,
            (IngressController::Nginx, None) => IngressImplementation::IngressNginx,
        }
    }
}

/// Network-wide TLS defaults.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkTls {
    /// cert-manager issuer used for every app that does not name its own.
    pub issuer_ref: IssuerRef,
}

/// Authentication back ends.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Auth {
    /// OAuth2 Proxy used by routes with `auth: OAuth2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2_proxy: Option<OAuth2Proxy>,
}

/// An OAuth2 Proxy deployment reachable by the ingress controllers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OAuth2Proxy {
    /// Base URL, e.g. `https://auth.example.com`. ingress-nginx tiers check sessions at
    /// `<url>/oauth2/auth` and sign users in at `<url>/oauth2/start`; Traefik-served tiers
    /// forward-auth to `<url>/`, which the proxy must answer with 202 for a session and a
    /// sign-in redirect otherwise (`--upstream=static://202 --reverse-proxy`).
    #[schemars(
        length(min = 1, max = 2048),
        regex(pattern = r"^https?://[^\s/]+(/[^\s]*)?$")
    )]
    pub url: String,
}

/// DNS zones per tier and the default TTL.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkDns {
    /// Default record TTL in seconds (default 300).
    #[serde(default = "default_ttl")]
    #[schemars(range(min = 1, max = 604800))]
    pub ttl: i64,
    /// Zone of the external tier; hosts of external routes must lie inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<DnsZone>,
    /// Zone of the internal tier; hosts of internal routes must lie inside it. May equal the
    /// external zone (split-horizon DNS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal: Option<DnsZone>,
}

impl Default for NetworkDns {
    fn default() -> Self {
        NetworkDns {
            ttl: default_ttl(),
            external: None,
            internal: None,
        }
    }
}

impl NetworkDns {
    pub fn zone(&self, tier: Tier) -> Option<&str> {
        match tier {
            Tier::External => self.external.as_ref(),
            Tier::Internal => self.internal.as_ref(),
        }
        .map(|z| z.zone.as_str())
    }
}

fn default_ttl() -> i64 {
    300
}

/// One DNS zone.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsZone {
    /// Zone apex, e.g. `example.com`.
    #[schemars(schema_with = "crate::schema::host")]
    pub zone: String,
    /// External zone only: publish private addresses (RFC 1918, CGNAT 100.64/10,
    /// link-local, loopback, IPv6 ULA and link-local) too. Off by default: a public name
    /// pointing at a LAN address fails for every client outside that LAN, so such an address
    /// is left out and the app is Stalled with reason `PrivateAddressNotPublished`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub publish_private_addresses: bool,
    /// Internal zone only: split horizon. The external tier's route hosts that lie in this
    /// zone get records here too, pointing at the external tier's own addresses (where its
    /// controller listens, on the LAN), not what `ingress.external.publish` gives the
    /// internet: LAN clients reach external apps directly (seed 002's router DNS).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub publish_external_hosts: bool,
}

/// Which namespaces may claim hosts under a suffix.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DomainClaim {
    /// DNS suffix, e.g. `team-a.example.com`: the name itself and every name under it.
    #[schemars(schema_with = "crate::schema::host")]
    pub suffix: String,
    /// Namespaces whose ExposedApps may use hosts under `suffix`.
    #[schemars(schema_with = "crate::schema::namespace_list")]
    pub namespaces: Vec<String>,
}

/// A Multus secondary network.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.type != 'ipvlan' || !has(self.mode) || self.mode in ['l2', 'l3', 'l3s']", "message": "ipvlan mode must be l2, l3 or l3s", "fieldPath": ".mode"},
    {"rule": "self.type != 'macvlan' || !has(self.mode) || self.mode in ['bridge', 'private', 'vepa', 'passthru']", "message": "macvlan mode must be bridge, private, vepa or passthru", "fieldPath": ".mode"}
]))]
pub struct Attachment {
    /// Name of the NetworkAttachmentDefinition created in each namespace that uses it.
    #[schemars(schema_with = "crate::schema::label_name")]
    pub name: String,
    /// CNI plugin: `macvlan` (default), `ipvlan` or `bridge`.
    #[serde(default, rename = "type")]
    pub kind: AttachmentType,
    /// Host interface the secondary network sits on (macvlan/ipvlan master, or the bridge name).
    #[schemars(length(min = 1, max = 15))]
    pub master: String,
    /// Plugin mode: macvlan `bridge` (default), `private`, `vepa`, `passthru`; ipvlan `l2`
    /// (default), `l3`, `l3s`. Ignored for `bridge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<AttachmentMode>,
    /// IP address management of the secondary interface.
    #[serde(default)]
    pub ipam: Ipam,
    /// Routes every pod on this attachment gets through it, added by the IPAM plugin on
    /// the secondary interface (so no init container with NET_ADMIN is needed), e.g. the
    /// world through the DMZ router while the cluster's own ranges stay on the pod network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub routes: Vec<AttachmentRoute>,
}

/// One route through an attachment: `destination` minus `except`, via `gateway`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentRoute {
    /// Where the route leads, e.g. `0.0.0.0/0` or `2001:db8::/32`. A whole address space is
    /// installed as its two halves, which win over the pod network's default route without
    /// replacing it (a second default route would make the CNI ADD fail).
    #[schemars(schema_with = "crate::schema::cidr")]
    pub destination: String,
    /// The next hop on the attachment (default: the gateway of its range of that family).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::ip")]
    pub gateway: Option<String>,
    /// Parts of `destination` that keep going where they went (the pod network), e.g.
    /// `10.0.0.0/8` for the cluster's pod and Service ranges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::cidr_list")]
    pub except: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AttachmentType {
    #[default]
    Macvlan,
    Ipvlan,
    Bridge,
}

impl AttachmentType {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachmentType::Macvlan => "macvlan",
            AttachmentType::Ipvlan => "ipvlan",
            AttachmentType::Bridge => "bridge",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AttachmentMode {
    Bridge,
    Private,
    Vepa,
    Passthru,
    L2,
    L3,
    L3s,
}

impl AttachmentMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachmentMode::Bridge => "bridge",
            AttachmentMode::Private => "private",
            AttachmentMode::Vepa => "vepa",
            AttachmentMode::Passthru => "passthru",
            AttachmentMode::L2 => "l2",
            AttachmentMode::L3 => "l3",
            AttachmentMode::L3s => "l3s",
        }
    }
}

/// IPAM of a secondary network.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ipam {
    /// `host-local` (default), `static` (addresses come from each app's `attachments[].ips`)
    /// or `whereabouts` (cluster-wide allocation).
    #[serde(default, rename = "type")]
    pub kind: IpamType,
    /// Address ranges; static app addresses must fall inside one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub ranges: Vec<IpRange>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum IpamType {
    #[default]
    #[serde(rename = "host-local")]
    HostLocal,
    #[serde(rename = "static")]
    Static,
    #[serde(rename = "whereabouts")]
    Whereabouts,
}

impl IpamType {
    pub fn as_str(self) -> &'static str {
        match self {
            IpamType::HostLocal => "host-local",
            IpamType::Static => "static",
            IpamType::Whereabouts => "whereabouts",
        }
    }
}

/// One IPAM range.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpRange {
    /// The subnet, e.g. `192.168.29.0/24` or `2001:db8:29::/64`.
    #[schemars(schema_with = "crate::schema::cidr")]
    pub subnet: String,
    /// First address handed out (default: start of the subnet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::ip")]
    pub range_start: Option<String>,
    /// Last address handed out (default: end of the subnet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::ip")]
    pub range_end: Option<String>,
    /// Default gateway on this network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::ip")]
    pub gateway: Option<String>,
}

/// Policy engine and zero-trust baseline.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// `Kubernetes` (default: standard NetworkPolicy only) or `Cilium` (adds
    /// CiliumNetworkPolicy for what NetworkPolicy cannot say, such as FQDNs).
    #[serde(default)]
    pub engine: PolicyEngine,
    /// Where the cluster DNS runs; default-deny and egress policies open port 53 to it.
    #[serde(default, rename = "clusterDNS")]
    pub cluster_dns: ClusterDns,
    /// Zero-trust baseline: NetworkPolicy `gatehouse-default-deny` in each selected namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_deny: Option<DefaultDeny>,
    /// Sources every isolated pod admits (ingress), whatever isolates it (default deny or an
    /// app's policy): monitoring scrapers on their ports, ingress controllers on the host
    /// network through the node CIDRs. Up to 16.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self.all(h, self.filter(o, o.name == h.name).size() == 1)", "message": "names must be unique"}
    ]))]
    pub allow_everywhere: Vec<PlatformAllow>,
    /// Police the Multus secondary networks (`attachments`) with MultiNetworkPolicies
    /// (k8s.cni.cncf.io/v1beta1, the Network Plumbing WG's API), expressing on each
    /// attachment the intent the NetworkPolicies state on the pod network: the default
    /// deny, the apps' `attachments[].allowFrom`, `isolation`, `policy.allowEverywhere` and
    /// the EgressPolicies. Default false: only turn it on where a MultiNetworkPolicy
    /// implementation (multi-networkpolicy-iptables, OVN-Kubernetes) enforces them, since
    /// NetworkPolicy never applies to a secondary interface.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub multi_network_policy: bool,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PolicyEngine {
    #[default]
    Kubernetes,
    Cilium,
}

/// The cluster DNS pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterDns {
    /// Namespace of the cluster DNS pods (default `kube-system`).
    #[serde(default = "default_dns_namespace")]
    #[schemars(schema_with = "crate::schema::label_name")]
    pub namespace: String,
    /// Labels of the cluster DNS pods (default `k8s-app: kube-dns`).
    #[serde(default = "default_dns_selector")]
    pub pod_selector: LabelSelector,
}

impl Default for ClusterDns {
    fn default() -> Self {
        ClusterDns {
            namespace: default_dns_namespace(),
            pod_selector: default_dns_selector(),
        }
    }
}

fn default_dns_namespace() -> String {
    "kube-system".into()
}
fn default_dns_selector() -> LabelSelector {
    LabelSelector {
        match_labels: Some([("k8s-app".to_string(), "kube-dns".to_string())].into()),
        match_expressions: None,
    }
}

/// Default deny in selected namespaces.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DefaultDeny {
    /// Namespaces that get the baseline. Standard LabelSelector; `{}` selects every namespace.
    pub namespace_selector: LabelSelector,
    /// Deny all ingress not allowed by another policy (default true).
    #[serde(default = "yes")]
    pub ingress: bool,
    /// Deny all egress not allowed by another policy (default true).
    #[serde(default = "yes")]
    pub egress: bool,
}

fn yes() -> bool {
    true
}

/// One source every isolated pod admits (see `Policy::allow_everywhere`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.from.all(p, !has(p.app) && !has(p.service) && !has(p.fqdn) && !has(p.apiServer))", "message": "from: only namespaceSelector/podSelector and cidr peers", "fieldPath": ".from"}
]))]
pub struct PlatformAllow {
    /// A name for messages and the policies' comments (DNS-1123 label), e.g. `prometheus`.
    #[schemars(schema_with = "crate::schema::label_name")]
    pub name: String,
    /// The sources: `namespaceSelector`/`podSelector` (e.g. the Prometheus pods) or `cidr`
    /// (e.g. the node CIDR, for a controller on the host network).
    #[schemars(length(min = 1, max = 16))]
    pub from: Vec<crate::Peer>,
    /// The ports they reach on every isolated pod (empty: all ports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub ports: Vec<crate::EgressPort>,
}

/// Observed state of a ClusterNetwork.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkStatus {
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled`, and `PoolCapacity` when the network has pools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Per pool: its size, and how many of its addresses are allocated and free.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<PoolStatus>,
    /// Number of ExposedApps that use this network.
    #[serde(default)]
    pub exposed_apps: i64,
}

/// Usage of one pool.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    /// Pool name.
    pub name: String,
    /// Number of addresses in the pool (saturates at 2^63-1 for large IPv6 pools).
    pub size: i64,
    /// Distinct addresses of the pool that LoadBalancer Services hold in their status
    /// (`status.loadBalancer.ingress`), every Service of the cluster, not only Gatehouse's:
    /// whoever holds one uses up the pool.
    pub allocated: i64,
    /// `size - allocated` (never below 0).
    #[serde(default)]
    pub free: i64,
}
