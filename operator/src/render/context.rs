//! The snapshot of the cluster a render may read. The operator fills it from its watch
//! caches; `gatehouse render` fills it from the input files. Render never fetches anything.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use gatehouse_api::{ClusterNetwork, ExposedApp, Tier};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;

type Key = (String, String);

/// The Service in front of the API server, which the API server itself keeps current.
pub const API_SERVER_NAMESPACE: &str = "default";
pub const API_SERVER_SERVICE: &str = "kubernetes";
/// The label an EndpointSlice carries naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Whether an EndpointSlice is one of the `default/kubernetes` Service's.
pub fn is_api_server_slice(s: &EndpointSlice) -> bool {
    s.namespace().as_deref() == Some(API_SERVER_NAMESPACE)
        && s.labels().get(SERVICE_NAME_LABEL).map(String::as_str) == Some(API_SERVER_SERVICE)
}

/// The annotations through which a LoadBalancer Service asks its provider for addresses
/// (MetalLB's current and legacy ones, Cilium LB-IPAM's current and legacy ones), each a
/// comma-separated list; `spec.loadBalancerIP` (deprecated) asks too.
pub const REQUESTED_ADDRESS_ANNOTATIONS: [&str; 4] = [
    "metallb.io/loadBalancerIPs",
    "metallb.universe.tf/loadBalancerIPs",
    "lbipam.cilium.io/ips",
    "io.cilium/lb-ipam-ips",
];
/// The annotations naming the MetalLB pool a Service takes its address from.
pub const POOL_ANNOTATIONS: [&str; 2] = [
    "metallb.io/address-pool",
    "metallb.universe.tf/address-pool",
];

fn is_load_balancer(s: &Service) -> bool {
    s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
}

/// The addresses a LoadBalancer Service holds: those in its status (what the provider
/// assigned). Another type of Service holds none.
pub fn assigned_addresses(s: &Service) -> Vec<IpAddr> {
    if !is_load_balancer(s) {
        return vec![];
    }
    let mut out: Vec<IpAddr> = s
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref().and_then(super::ip::parse_ip))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The addresses a LoadBalancer Service asks for (the provider annotations and
/// `spec.loadBalancerIP`), whether or not it got them.
pub fn requested_addresses(s: &Service) -> Vec<IpAddr> {
    if !is_load_balancer(s) {
        return vec![];
    }
    let annotations = s.metadata.annotations.as_ref();
    let mut out: Vec<IpAddr> = REQUESTED_ADDRESS_ANNOTATIONS
        .iter()
        .filter_map(|k| annotations.and_then(|a| a.get(*k)))
        .flat_map(|v| v.split(','))
        .chain(s.spec.as_ref().and_then(|s| s.load_balancer_ip.as_deref()))
        .filter_map(super::ip::parse_ip)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The pool a LoadBalancer Service names: MetalLB's annotation or the Cilium pool label
/// Gatehouse sets (`gatehouse.dev/pool`).
pub fn pool_of_service(s: &Service) -> Option<&str> {
    if !is_load_balancer(s) {
        return None;
    }
    let annotations = s.metadata.annotations.as_ref();
    POOL_ANNOTATIONS
        .iter()
        .find_map(|k| annotations.and_then(|a| a.get(*k)))
        .or_else(|| {
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(gatehouse_api::labels::POOL))
        })
        .map(String::as_str)
}

/// Who holds a load-balancer address, for messages: `Service ns/name`, with its Gatehouse
/// owner when it has one.
pub fn describe_holder(ctx: &Context, (ns, name): &Key) -> String {
    use gatehouse_api::labels;
    let owner = ctx.service(ns, name).and_then(|s| {
        let l = s.metadata.labels.as_ref()?;
        if l.get(labels::MANAGED_BY).map(String::as_str) != Some(labels::MANAGED_BY_VALUE) {
            return None;
        }
        let kind = l.get(labels::OWNER_KIND)?;
        let owner = l.get(labels::OWNER_NAME)?;
        Some(match l.get(labels::OWNER_NAMESPACE) {
            Some(ons) => format!(" (of {kind} {ons}/{owner})"),
            None => format!(" (of {kind} {owner})"),
        })
    });
    format!("Service {ns}/{name}{}", owner.unwrap_or_default())
}

/// Where the API server is reached (see `Context::api_server`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiServer {
    pub addresses: Vec<IpAddr>,
    /// TCP ports: the Service's and the endpoints'.
    pub ports: Vec<i32>,
}

/// Order of host claims: creation time, then namespace/name (so offline input, which has no
/// timestamps, still gives one stable answer).
pub type ClaimOrder = (Option<k8s_openapi::jiff::Timestamp>, String, String);

pub fn claim_order(app: &ExposedApp) -> ClaimOrder {
    (
        app.metadata.creation_timestamp.as_ref().map(|t| t.0),
        app.namespace().unwrap_or_default(),
        app.name_any(),
    )
}

/// The form a host is claimed under: DNS names are case-insensitive and a trailing dot
/// names the same host, so `Shop.example.com.` and `shop.example.com` are one claim. (The
/// schema admits only lowercase names without the dot; offline input skips the schema.)
pub fn claim_key(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The parent domain of a claimed host and whether the host is a wildcard (`*.parent`).
/// An Ingress/Gateway wildcard covers exactly one label, so `*.p` overlaps `x.p` only.
fn claim_parent(key: &str) -> Option<(&str, bool)> {
    if let Some(p) = key.strip_prefix("*.") {
        return Some((p, true));
    }
    key.split_once('.').map(|(_, p)| (p, false))
}

/// The static attachment addresses an app pins: (network, attachment, address).
fn attachment_addresses(app: &ExposedApp) -> Vec<(String, String, IpAddr)> {
    app.spec
        .attachments
        .iter()
        .flat_map(|a| {
            a.ips.iter().filter_map(|c| {
                super::ip::parse_cidr(c)
                    .map(|(ip, _)| (app.spec.network.clone(), a.network.clone(), ip))
            })
        })
        .collect()
}

/// Every host an app names (routes and tcp).
pub fn app_hosts(app: &ExposedApp) -> impl Iterator<Item = &String> {
    app.spec
        .routes
        .iter()
        .flat_map(|r| r.hosts.iter())
        .chain(app.spec.tcp.iter().flat_map(|t| t.hosts.iter()))
}

#[derive(Clone, Debug, Default)]
pub struct Context {
    pub networks: BTreeMap<String, Arc<ClusterNetwork>>,
    pub apps: BTreeMap<Key, Arc<ExposedApp>>,
    pub services: BTreeMap<Key, Arc<Service>>,
    pub namespaces: BTreeMap<String, Arc<Namespace>>,
    /// The EndpointSlices of the `default/kubernetes` Service, by name: where the API
    /// server listens (the `apiServer` peer).
    pub api_server_slices: BTreeMap<String, Arc<EndpointSlice>>,
    /// Namespaces known only because an object lives there (offline input without their
    /// Namespace document); a live cluster has every namespace in `namespaces`.
    pub object_namespaces: std::collections::BTreeSet<String>,
    /// host -> apps naming it, earliest claim first; kept in step with `apps` so a host
    /// check is a lookup, not a scan of every app.
    host_claims: std::collections::HashMap<String, std::collections::BTreeSet<ClaimOrder>>,
    /// parent domain -> claims of the exact hosts one label below it, so a wildcard
    /// `*.parent` finds every name it would cover with one lookup.
    below_claims: std::collections::HashMap<String, std::collections::BTreeSet<ClaimOrder>>,
    /// (network, attachment, address) -> apps pinning that static address: two pods with
    /// one address on a LAN would take each other's traffic, so the first claim wins.
    attachment_claims: BTreeMap<(String, String, IpAddr), std::collections::BTreeSet<ClaimOrder>>,
    /// Load-balancer address -> the Services whose status holds it, ordered by address so
    /// a pool's allocation is a range query (no scan of every Service).
    assigned: BTreeMap<IpAddr, std::collections::BTreeSet<Key>>,
    /// Load-balancer address -> the Services asking for it (annotations, loadBalancerIP).
    requested: BTreeMap<IpAddr, std::collections::BTreeSet<Key>>,
}

fn index_addresses(
    map: &mut BTreeMap<IpAddr, std::collections::BTreeSet<Key>>,
    addresses: Vec<IpAddr>,
    key: &Key,
    add: bool,
) {
    for a in addresses {
        if add {
            map.entry(a).or_default().insert(key.clone());
        } else if let Some(set) = map.get_mut(&a) {
            set.remove(key);
            if set.is_empty() {
                map.remove(&a);
            }
        }
    }
}

fn unclaim(
    map: &mut std::collections::HashMap<String, std::collections::BTreeSet<ClaimOrder>>,
    k: &str,
    order: &ClaimOrder,
) {
    if let Some(set) = map.get_mut(k) {
        set.remove(order);
        if set.is_empty() {
            map.remove(k);
        }
    }
}

fn key<K: ResourceExt>(obj: &K) -> Key {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

impl Context {
    pub fn add_network(&mut self, n: ClusterNetwork) {
        self.networks.insert(n.name_any(), Arc::new(n));
    }
    pub fn add_app(&mut self, a: ExposedApp) {
        self.insert_app(Arc::new(a));
    }
    /// Adds an app the caller already shares (the operator's cache).
    pub fn insert_app(&mut self, a: Arc<ExposedApp>) {
        self.remove_app(&a.namespace().unwrap_or_default(), &a.name_any());
        let order = claim_order(&a);
        for host in app_hosts(&a) {
            let k = claim_key(host);
            if let Some((parent, false)) = claim_parent(&k) {
                self.below_claims
                    .entry(parent.to_string())
                    .or_default()
                    .insert(order.clone());
            }
            self.host_claims.entry(k).or_default().insert(order.clone());
        }
        for addr in attachment_addresses(&a) {
            self.attachment_claims
                .entry(addr)
                .or_default()
                .insert(order.clone());
        }
        self.apps.insert(key(a.as_ref()), a);
    }
    pub fn remove_app(&mut self, namespace: &str, name: &str) {
        if let Some(old) = self.apps.remove(&(namespace.to_string(), name.to_string())) {
            let order = claim_order(&old);
            for host in app_hosts(&old) {
                let k = claim_key(host);
                if let Some((parent, false)) = claim_parent(&k) {
                    unclaim(&mut self.below_claims, parent, &order);
                }
                unclaim(&mut self.host_claims, &k, &order);
            }
            for addr in attachment_addresses(&old) {
                if let Some(set) = self.attachment_claims.get_mut(&addr) {
                    set.remove(&order);
                    if set.is_empty() {
                        self.attachment_claims.remove(&addr);
                    }
                }
            }
        }
    }

    /// The earliest claim on `host` or on a name it overlaps, if any app names one.
    pub fn first_claim(&self, host: &str) -> Option<&ClaimOrder> {
        self.claimants(host).min()
    }
    /// Every app naming `host` or a host overlapping it: the same name in any case or
    /// with a trailing dot, the wildcard covering it, or (for a wildcard) every name it
    /// covers. Lookups only, never a scan of every app.
    pub fn claimants(&self, host: &str) -> impl Iterator<Item = &ClaimOrder> {
        let k = claim_key(host);
        let exact = self.host_claims.get(&k);
        let (wild, below) = match claim_parent(&k) {
            Some((p, false)) => (self.host_claims.get(&format!("*.{p}")), None),
            Some((p, true)) => (None, self.below_claims.get(p)),
            None => (None, None),
        };
        exact.into_iter().chain(wild).chain(below).flatten()
    }
    /// The earliest app pinning static address `addr` on attachment `attachment` of
    /// ClusterNetwork `network`.
    pub fn first_attachment_claim(
        &self,
        network: &str,
        attachment: &str,
        addr: IpAddr,
    ) -> Option<&ClaimOrder> {
        self.attachment_claims
            .get(&(network.to_string(), attachment.to_string(), addr))
            .and_then(|s| s.first())
    }
    pub fn add_service(&mut self, s: Service) {
        self.insert_service(Arc::new(s));
    }
    pub fn add_namespace(&mut self, n: Namespace) {
        self.insert_namespace(Arc::new(n));
    }

    // The operator keeps one context current from its watch events (reconcile::index), so
    // these take the cache's shared objects and have removals too.
    pub fn insert_network(&mut self, n: Arc<ClusterNetwork>) {
        self.networks.insert(n.name_any(), n);
    }
    pub fn remove_network(&mut self, name: &str) {
        self.networks.remove(name);
    }
    pub fn insert_service(&mut self, s: Arc<Service>) {
        let k = key(s.as_ref());
        self.remove_service(&k.0, &k.1);
        index_addresses(&mut self.assigned, assigned_addresses(&s), &k, true);
        index_addresses(&mut self.requested, requested_addresses(&s), &k, true);
        self.services.insert(k, s);
    }
    pub fn remove_service(&mut self, namespace: &str, name: &str) {
        let k = (namespace.to_string(), name.to_string());
        if let Some(old) = self.services.remove(&k) {
            index_addresses(&mut self.assigned, assigned_addresses(&old), &k, false);
            index_addresses(&mut self.requested, requested_addresses(&old), &k, false);
        }
    }

    /// The Services whose status holds load-balancer address `ip`.
    pub fn assigned_to(&self, ip: IpAddr) -> impl Iterator<Item = &Key> {
        self.assigned.get(&ip).into_iter().flatten()
    }
    /// The Services asking for load-balancer address `ip`.
    pub fn requested_by(&self, ip: IpAddr) -> impl Iterator<Item = &Key> {
        self.requested.get(&ip).into_iter().flatten()
    }
    /// The held load-balancer addresses inside `range`, in order: a range query, in time
    /// proportional to what the range holds.
    pub fn assigned_in(&self, range: &super::ip::Range) -> impl Iterator<Item = IpAddr> + '_ {
        let (first, last) = super::ip::bounds(range);
        self.assigned.range(first..=last).map(|(a, _)| *a)
    }
    pub fn insert_namespace(&mut self, n: Arc<Namespace>) {
        self.namespaces.insert(n.name_any(), n);
    }
    pub fn remove_namespace(&mut self, name: &str) {
        self.namespaces.remove(name);
    }

    pub fn insert_api_server_slice(&mut self, s: Arc<EndpointSlice>) {
        self.api_server_slices.insert(s.name_any(), s);
    }
    pub fn remove_api_server_slice(&mut self, name: &str) {
        self.api_server_slices.remove(name);
    }
    /// Adds an EndpointSlice if it is one of the API server's (offline input).
    pub fn add_endpoint_slice(&mut self, s: EndpointSlice) {
        if is_api_server_slice(&s) {
            self.insert_api_server_slice(Arc::new(s));
        }
    }

    /// Where the API server is reached: the `default/kubernetes` Service's cluster IPs and
    /// ports (what pods dial) and its EndpointSlices' addresses and ports (where the
    /// connection lands after the Service's address translation; implementations differ in
    /// which one a policy sees). None while neither is known.
    pub fn api_server(&self) -> Option<ApiServer> {
        let mut out = ApiServer::default();
        if let Some(spec) = self
            .service(API_SERVER_NAMESPACE, API_SERVER_SERVICE)
            .and_then(|s| s.spec.as_ref())
        {
            let ips = spec
                .cluster_ips
                .iter()
                .flatten()
                .chain(spec.cluster_ip.iter());
            out.addresses
                .extend(ips.filter_map(|a| super::ip::parse_ip(a)));
            out.ports
                .extend(spec.ports.iter().flatten().map(|p| p.port));
        }
        for slice in self.api_server_slices.values() {
            let ready = slice
                .endpoints
                .iter()
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false));
            out.addresses.extend(
                ready
                    .flat_map(|e| e.addresses.iter())
                    .filter_map(|a| super::ip::parse_ip(a)),
            );
            out.ports
                .extend(slice.ports.iter().flatten().filter_map(|p| p.port));
        }
        out.addresses.sort();
        out.addresses.dedup();
        out.ports.sort();
        out.ports.dedup();
        (!out.addresses.is_empty()).then_some(out)
    }

    pub fn network(&self, name: &str) -> Option<&ClusterNetwork> {
        self.networks.get(name).map(|n| n.as_ref())
    }
    pub fn app(&self, namespace: &str, name: &str) -> Option<&ExposedApp> {
        self.apps
            .get(&(namespace.to_string(), name.to_string()))
            .map(|a| a.as_ref())
    }
    /// The apps of one namespace (a range of the ordered map: no scan of the others).
    pub fn apps_in<'a>(&'a self, namespace: &'a str) -> impl Iterator<Item = &'a ExposedApp> {
        self.apps
            .range((namespace.to_string(), String::new())..)
            .take_while(move |((ns, _), _)| ns == namespace)
            .map(|(_, a)| a.as_ref())
    }
    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        self.services
            .get(&(namespace.to_string(), name.to_string()))
            .map(|s| s.as_ref())
    }

    /// Labels of a namespace. A namespace the context does not hold has only the label
    /// the API server always sets, so selectors on it behave as on a bare namespace.
    pub fn namespace_labels(&self, name: &str) -> BTreeMap<String, String> {
        let mut labels = self
            .namespaces
            .get(name)
            .map(|n| n.labels().clone())
            .unwrap_or_default();
        labels.insert(
            gatehouse_api::labels::NAMESPACE_NAME.to_string(),
            name.to_string(),
        );
        labels
    }

    /// Notes that a namespace exists because an object (an EgressPolicy) lives there.
    pub fn add_object_namespace(&mut self, namespace: &str) {
        self.object_namespaces.insert(namespace.to_string());
    }

    /// Every namespace the context knows of: declared Namespaces plus those holding apps
    /// or other objects.
    pub fn namespace_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.namespaces.keys().cloned().collect();
        names.extend(self.apps.keys().map(|(ns, _)| ns.clone()));
        names.extend(self.object_namespaces.iter().cloned());
        names.sort();
        names.dedup();
        names
    }

    /// Addresses a LoadBalancer Service has been assigned (from its status).
    pub fn load_balancer_ips(&self, namespace: &str, name: &str) -> Vec<IpAddr> {
        let Some(svc) = self.service(namespace, name) else {
            return vec![];
        };
        svc.status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.as_deref().and_then(super::ip::parse_ip))
            .collect()
    }

    /// Addresses DNS records of a tier point to: the static list, else the controller
    /// Service's assigned addresses. Empty when not known yet.
    pub fn tier_addresses(&self, network: &ClusterNetwork, tier: Tier) -> Vec<IpAddr> {
        let Some(t) = network.spec.ingress.get(tier) else {
            return vec![];
        };
        if !t.addresses.is_empty() {
            return t
                .addresses
                .iter()
                .filter_map(|a| super::ip::parse_ip(a))
                .collect();
        }
        match network.tier_address_service(tier) {
            Some((ns, name)) => self.load_balancer_ips(&ns, &name),
            None => vec![],
        }
    }

    /// The DNS name a tier's load balancer reports instead of addresses (a cloud LB's
    /// hostname, Hetzner's `hostname` annotation), when it reports no address.
    pub fn tier_hostname(&self, network: &ClusterNetwork, tier: Tier) -> Option<String> {
        let (ns, name) = network.tier_address_service(tier)?;
        self.load_balancer_hostname(&ns, &name)
    }

    /// The hostname in a LoadBalancer Service's status, if it has one and no address.
    pub fn load_balancer_hostname(&self, namespace: &str, name: &str) -> Option<String> {
        if !self.load_balancer_ips(namespace, name).is_empty() {
            return None;
        }
        self.service(namespace, name)?
            .status
            .as_ref()?
            .load_balancer
            .as_ref()?
            .ingress
            .as_ref()?
            .iter()
            .find_map(|i| i.hostname.clone())
    }
}

#[cfg(test)]
mod claim_tests {
    use super::*;

    fn app(ns: &str, name: &str, t: &str, spec: serde_json::Value) -> ExposedApp {
        let mut s = serde_json::json!({"network": "n", "selector": {"app": name}, "ports": [{"name": "http", "port": 80}]});
        for (k, v) in spec.as_object().unwrap() {
            s[k] = v.clone();
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ExposedApp",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": t},
            "spec": s,
        }))
        .unwrap()
    }

    fn holders(ctx: &Context, host: &str) -> Vec<String> {
        ctx.claimants(host)
            .map(|(_, ns, n)| format!("{ns}/{n}"))
            .collect()
    }

    /// Hosts overlap as Ingress matching does: case and a trailing dot do not matter, a
    /// wildcard covers exactly one label; and removal leaves no claim behind.
    #[test]
    fn claims_overlap_across_case_trailing_dot_and_one_label_wildcards() {
        let mut ctx = Context::default();
        ctx.add_app(app(
            "a",
            "shop",
            "2026-01-01T00:00:00Z",
            serde_json::json!({"routes": [{"hosts": ["shop.example.com"]}]}),
        ));
        ctx.add_app(app(
            "b",
            "all",
            "2026-01-02T00:00:00Z",
            serde_json::json!({"routes": [{"hosts": ["*.example.com"]}]}),
        ));
        assert_eq!(holders(&ctx, "Shop.Example.com."), ["a/shop", "b/all"]);
        assert_eq!(holders(&ctx, "*.example.com"), ["b/all", "a/shop"]);
        assert_eq!(ctx.first_claim("*.example.com").unwrap().1, "a");
        assert_eq!(holders(&ctx, "x.example.com"), ["b/all"]);
        assert!(
            holders(&ctx, "a.b.example.com").is_empty(),
            "one label only"
        );
        assert!(holders(&ctx, "example.com").is_empty());
        ctx.remove_app("a", "shop");
        ctx.remove_app("b", "all");
        assert!(ctx.host_claims.is_empty() && ctx.below_claims.is_empty());
    }

    #[test]
    fn static_attachment_addresses_are_claimed_first_come() {
        let mut ctx = Context::default();
        let spec =
            serde_json::json!({"attachments": [{"network": "lan", "ips": ["192.168.31.13/24"]}]});
        ctx.add_app(app("b", "cam", "2026-01-02T00:00:00Z", spec.clone()));
        ctx.add_app(app("a", "cam", "2026-01-01T00:00:00Z", spec));
        let ip: IpAddr = "192.168.31.13".parse().unwrap();
        assert_eq!(ctx.first_attachment_claim("n", "lan", ip).unwrap().1, "a");
        assert!(ctx.first_attachment_claim("n", "dmz", ip).is_none());
        ctx.remove_app("a", "cam");
        assert_eq!(ctx.first_attachment_claim("n", "lan", ip).unwrap().1, "b");
        ctx.remove_app("b", "cam");
        assert!(ctx.attachment_claims.is_empty());
    }
}
