//! ExposedApp: an app team's "serve these pods at these names, to these audiences".

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, IssuerRef, Protocol, Tier};
use crate::peer::Peer;

/// Serve the pods matching `selector` on `ports`: HTTP(S) `routes` through the network's
/// ingress tiers, L4 `tcp` exposure through LoadBalancer Services, with TLS certificates,
/// DNS records, OAuth2 and a NetworkPolicy that admits exactly the declared clients.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "gatehouse.dev",
    version = "v1alpha1",
    kind = "ExposedApp",
    doc = "ExposedApp: serve the pods matching a selector at DNS names, internally or to the internet, with TLS, auth, DNS records and a NetworkPolicy admitting exactly the declared clients.",
    namespaced,
    shortname = "xapp",
    category = "gatehouse",
    status = "ExposedAppStatus",
    printcolumn = r#"{"name":"Hosts","type":"string","jsonPath":".spec.routes[*].hosts[*]"}"#,
    printcolumn = r#"{"name":"Address","type":"string","jsonPath":".status.addresses[*].ip"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Tiers","type":"string","priority":1,"jsonPath":".status.wide.tiers"}"#,
    printcolumn = r#"{"name":"URLs","type":"string","priority":1,"jsonPath":".status.wide.urls"}"#,
    printcolumn = r#"{"name":"Children","type":"integer","priority":1,"jsonPath":".status.children"}"#,
    printcolumn = r#"{"name":"Ready-Children","type":"integer","priority":1,"jsonPath":".status.readyChildren"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.ports.all(p, self.ports.filter(q, q.name == p.name).size() == 1)",
        "message": "spec.ports: port names must be unique", "fieldPath": ".ports"
    },
    {
        "rule": "!has(self.routes) || self.routes.all(r, !has(r.paths) || r.paths.all(p, !has(p.port) || self.ports.exists(q, q.name == p.port)))",
        "message": "spec.routes[].paths[].port must name a port declared in spec.ports", "fieldPath": ".routes"
    },
    {
        "rule": "!has(self.tcp) || self.tcp.all(t, self.ports.exists(q, q.name == t.port))",
        "message": "spec.tcp[].port must name a port declared in spec.ports", "fieldPath": ".tcp"
    },
    {
        "rule": "!has(self.routes) || self.routes.all(r, r.hosts.all(h, self.routes.filter(o, h in o.hosts).size() == 1))",
        "message": "spec.routes[].hosts: a host may appear in only one route", "fieldPath": ".routes"
    },
    {
        "rule": "!has(self.allowFrom) || self.allowFrom.all(p, !has(p.fqdn))",
        "message": "spec.allowFrom: fqdn peers are only allowed in EgressPolicy rules", "fieldPath": ".allowFrom"
    },
    {
        "rule": "!has(self.allowFrom) || self.allowFrom.all(p, !has(p.apiServer))",
        "message": "spec.allowFrom: apiServer peers are only allowed in EgressPolicy rules", "fieldPath": ".allowFrom"
    }
]))]
pub struct ExposedAppSpec {
    /// Name of the ClusterNetwork to expose through (default `default`).
    #[serde(default = "default_network")]
    #[schemars(schema_with = "crate::schema::label_name")]
    pub network: String,
    /// Pod labels (a plain, non-empty map; it becomes the Services' selector).
    #[schemars(schema_with = "crate::schema::selector_map")]
    pub selector: BTreeMap<String, String>,
    /// Ports of the pods. Every Service of the app uses these names.
    #[schemars(length(min = 1, max = 64))]
    pub ports: Vec<AppPort>,
    /// Route to a Service that exists already (one a Helm chart made) instead of the Service
    /// `A` Gatehouse would create: the app then owns no ClusterIP Service and Gatehouse never
    /// writes to this one. Route ports name its ports (`ports[]` still describes the pods,
    /// for the NetworkPolicy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ExistingService>,
    /// HTTP(S) exposure through the network's ingress tiers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub routes: Vec<Route>,
    /// TLS settings for all routes of the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<AppTls>,
    /// L4 exposure (mail, databases, DNS) through a LoadBalancer Service per tier.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub tcp: Vec<TcpExposure>,
    /// DNS records for the app's hosts.
    #[serde(default)]
    pub dns: AppDns,
    /// Multus secondary networks for the app's pods (annotation injected at admission).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub attachments: Vec<AppAttachment>,
    /// Extra in-cluster clients allowed to reach all ports of the app. Setting it asks for
    /// isolation (see `isolation`): only these, the routes' ingress controllers, `tcp[]`
    /// clients and the network's `policy.allowEverywhere` then reach the app's pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub allow_from: Vec<Peer>,
    /// Whether the app's pods are isolated for ingress by its NetworkPolicy `A-ingress`:
    /// `Auto` (default) isolates only where the namespace is under the network's ingress
    /// default deny (then the policy opens what the app declares) or where `allowFrom` is
    /// set; `Isolated` always, even with nothing declared (then only the network's
    /// `policy.allowEverywhere` sources get in). Outside those, nothing is written and the
    /// pods admit what they admitted before, so exposing an app never cuts traffic off.
    #[serde(default, skip_serializing_if = "Isolation::is_auto")]
    pub isolation: Isolation,
}

fn default_network() -> String {
    "default".into()
}

/// One port of the app's pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppPort {
    /// Port name (IANA service name: lowercase, at most 15 characters), unique in the app.
    #[schemars(schema_with = "crate::schema::port_name")]
    pub name: String,
    /// Service port, 1–65535.
    #[schemars(schema_with = "crate::schema::port_number")]
    pub port: i32,
    /// Container port number or name (default: `port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::target_port")]
    pub target_port: Option<IntOrString>,
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default)]
    pub protocol: Protocol,
}

/// Which tiers a route is served on.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RouteExposure {
    #[default]
    External,
    Internal,
    Both,
}

impl ExposedAppSpec {
    /// The tiers the app is served on: its routes' and tcp ports' exposures, in
    /// [`Tier::ALL`] order.
    pub fn tiers(&self) -> Vec<Tier> {
        Tier::ALL
            .into_iter()
            .filter(|t| {
                self.routes.iter().any(|r| r.exposure.includes(*t))
                    || self.tcp.iter().any(|p| p.exposure == *t)
            })
            .collect()
    }
}

impl RouteExposure {
    pub fn includes(self, tier: Tier) -> bool {
        matches!(
            (self, tier),
            (RouteExposure::Both, _)
                | (RouteExposure::External, Tier::External)
                | (RouteExposure::Internal, Tier::Internal)
        )
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RouteAuth {
    #[default]
    None,
    OAuth2,
}

/// HTTP(S) exposure of some hosts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// DNS names served (unique across the app); must lie in the tier's DNS zone.
    #[schemars(schema_with = "crate::schema::host_list_required")]
    pub hosts: Vec<String>,
    /// Paths and the port each goes to (default: `/` to the first port).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub paths: Vec<RoutePath>,
    /// `External` (default), `Internal` or `Both` tiers.
    #[serde(default)]
    pub exposure: RouteExposure,
    /// Terminate TLS with a cert-manager Certificate (default true).
    #[serde(default = "yes")]
    pub tls: bool,
    /// Redirect plain HTTP to HTTPS (default true; only with `tls`). Routes served on the same
    /// tier share one Ingress, so they must agree on `tls && redirectToHttps` and on `auth`.
    #[serde(default = "yes")]
    pub redirect_to_https: bool,
    /// `None` (default) or `OAuth2` (needs `auth.oauth2Proxy` on the network).
    #[serde(default)]
    pub auth: RouteAuth,
}

fn yes() -> bool {
    true
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PathType {
    #[default]
    Prefix,
    Exact,
}

/// One path of a route.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoutePath {
    /// URL path, starting with `/` (default `/`).
    #[serde(default = "default_path")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^/[^\s]*$"))]
    pub path: String,
    /// `Prefix` (default) or `Exact`.
    #[serde(default)]
    pub path_type: PathType,
    /// Name of the port (from `ports`) to send the traffic to (default: the first port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 15))]
    pub port: Option<String>,
}

fn default_path() -> String {
    "/".into()
}

/// A Service in the app's namespace that the app routes to instead of its own.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExistingService {
    /// The Service's name.
    #[schemars(schema_with = "crate::schema::label_name")]
    pub name: String,
}

/// App-level TLS settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppTls {
    /// Overrides the network's issuers (`tls.issuerRef` and every tier's `issuerRef`) for
    /// this app's Certificates.
    pub issuer_ref: IssuerRef,
}

/// L4 exposure of one port through a LoadBalancer Service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TcpExposure {
    /// Name of the port (from `ports`) to expose.
    #[schemars(length(min = 1, max = 15))]
    pub port: String,
    /// `External` (default) or `Internal`: which tier's Service (`A-external`/`A-internal`).
    #[serde(default = "default_tier")]
    pub exposure: Tier,
    /// Load-balancer pool (default: the pool named like the tier, when it exists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::optional_label_name")]
    pub pool: Option<String>,
    /// Requested load-balancer IPs (v4 and/or v6). Entries with the same exposure must agree.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::ip_list")]
    pub addresses: Vec<String>,
    /// The load balancer sends PROXY protocol (honoured by providers that can; otherwise
    /// Stalled with reason ProxyProtocolUnsupported).
    #[serde(default)]
    pub proxy_protocol: bool,
    /// DNS names that point at the assigned load-balancer address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::host_list")]
    pub hosts: Vec<String>,
}

fn default_tier() -> Tier {
    Tier::External
}

/// DNS settings of an app.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppDns {
    /// Publish DNSEndpoints for the app's hosts (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Record TTL in seconds (default: the network's `dns.ttl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 604800))]
    pub ttl: Option<i64>,
}

impl Default for AppDns {
    fn default() -> Self {
        AppDns {
            enabled: true,
            ttl: None,
        }
    }
}

/// Attach the app's pods to a Multus secondary network.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppAttachment {
    /// Name of an attachment in the ClusterNetwork's `attachments`.
    #[schemars(schema_with = "crate::schema::label_name")]
    pub network: String,
    /// Static addresses with prefix length (`192.168.31.13/24`); must lie in the attachment's ranges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::ip_with_prefix_list")]
    pub ips: Vec<String>,
    /// Fixed MAC address of the secondary interface, e.g. `02:42:ac:11:00:04`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::mac")]
    pub mac: Option<String>,
    /// Who may reach the app's pods over this attachment, where the network polices its
    /// attachments (`policy.multiNetworkPolicy`): `cidr` peers (LAN or DMZ hosts, or the
    /// internet the attachment's router forwards, e.g. `0.0.0.0/0` and `::/0`), or
    /// `app`/`service`/`namespaceSelector`/`podSelector` peers, which match those pods'
    /// addresses on this attachment. Setting it isolates the pods on the attachment
    /// (MultiNetworkPolicy `A-<attachment>`): only these, on `ports`, and the network's
    /// `policy.allowEverywhere` then get in over it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self.all(p, !has(p.fqdn) && !has(p.apiServer))", "message": "allowFrom: fqdn and apiServer are egress-only peers"}
    ]))]
    pub allow_from: Vec<Peer>,
    /// The app's ports (names from `ports`) that `allowFrom` reaches over the attachment:
    /// its DMZ-facing ports, e.g. `web` and `websecure`. Empty: every port of the app.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::port_name_list")]
    pub ports: Vec<String>,
}

/// Observed state of an ExposedApp.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExposedAppStatus {
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled`, and `CertificateReady`, `AddressAssigned`,
    /// `DNSPublished` where they apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Where the app is served, e.g. `https://blog.example.com/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Addresses per tier (ingress addresses for routes, load-balancer addresses for tcp).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<TierAddress>,
    /// Every child with its readiness.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceStatus>,
    /// The `kubectl get -o wide` columns that list several values, each as one string: a
    /// CRD's printer column shows only the first value of a list.
    #[serde(default, skip_serializing_if = "WideColumns::is_empty")]
    pub wide: WideColumns,
    /// How many children the app has (the entries of `resources`).
    #[serde(default)]
    pub children: i64,
    /// How many of them report ready.
    #[serde(default)]
    pub ready_children: i64,
}

/// See `ExposedAppStatus::wide`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WideColumns {
    /// The tiers the app is served on (its routes' and tcp ports' exposures),
    /// comma-separated, e.g. `External,Internal`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 64))]
    pub tiers: String,
    /// `urls`, comma-separated.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub urls: String,
}

impl WideColumns {
    pub fn of(spec: &ExposedAppSpec, urls: &[String]) -> WideColumns {
        WideColumns {
            tiers: spec
                .tiers()
                .iter()
                // The API's spelling (`External`), not the lowercase of child names.
                .map(|t| format!("{t:?}"))
                .collect::<Vec<_>>()
                .join(","),
            urls: urls.join(","),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty() && self.urls.is_empty()
    }
}

/// One address of a tier.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TierAddress {
    /// `External` or `Internal`.
    pub tier: Tier,
    /// The IP address.
    pub ip: String,
}

/// Readiness of one child object.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    /// apiVersion of the child.
    pub api_version: String,
    /// Kind of the child.
    pub kind: String,
    /// Name of the child.
    pub name: String,
    /// Namespace of the child when it differs from the owner's (or the owner is cluster-scoped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Whether the child reports ready (children without readiness are ready once they exist).
    pub ready: bool,
    /// The child's own reason or message when it is not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// See `ExposedAppSpec::isolation`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Isolation {
    #[default]
    Auto,
    Isolated,
}

impl Isolation {
    pub fn is_auto(&self) -> bool {
        *self == Isolation::Auto
    }
}
