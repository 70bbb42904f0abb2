//! Indexes kept current from watch events, so no reconcile and no trigger scans the cluster.
//!
//! The caches (reflector stores) hold the objects; this index holds what the reconcilers
//! look up by relation: the render context (networks, apps with their host claims, Services,
//! Namespaces: what `gatehouse render` builds from its files), apps and policies by network,
//! who names an app or a Service as a peer, which networks take a tier's addresses from a
//! Service, the Services of each load-balancer pool, who requests each load-balancer
//! address, and the children of each owner. Each watch event
//! updates it in time proportional to the object; a relist (after a watch gap) drops what
//! the new list no longer holds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use gatehouse_api::{ClusterNetwork, EgressPolicy, ExposedApp, Peer, Tier};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use super::stores::owner_of;
use crate::render::context::{app_hosts, assigned_addresses, pool_of_service, requested_addresses};
use crate::render::{ChildKind, Context, ip, pool};

/// (namespace, name).
pub type Key = (String, String);
/// (kind, namespace, name) of a Gatehouse owner, as its children's labels name it.
pub type OwnerKey = (String, Option<String>, String);
/// (kind, namespace, name) of a child.
pub use crate::render::ChildKey;

/// Apps and policies that name one object as a peer.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Referrers {
    pub apps: BTreeSet<Key>,
    pub policies: BTreeSet<Key>,
}

impl Referrers {
    fn is_empty(&self) -> bool {
        self.apps.is_empty() && self.policies.is_empty()
    }
}

/// The peer targets a list of peers names: (is an app, (namespace, name)).
fn targets<'a>(peers: impl Iterator<Item = &'a Peer>, own_ns: &str) -> BTreeSet<(bool, Key)> {
    let mut out = BTreeSet::new();
    for p in peers {
        if let Some(r) = &p.app {
            let ns = r.namespace.clone().unwrap_or_else(|| own_ns.to_string());
            out.insert((true, (ns, r.name.clone())));
        }
        if let Some(r) = &p.service {
            let ns = r.namespace.clone().unwrap_or_else(|| own_ns.to_string());
            out.insert((false, (ns, r.name.clone())));
        }
        // The API server peer reads the `default/kubernetes` Service and its
        // EndpointSlices: both trigger through this entry.
        if p.api_server.is_some() {
            out.insert((
                false,
                (
                    crate::render::context::API_SERVER_NAMESPACE.to_string(),
                    crate::render::context::API_SERVER_SERVICE.to_string(),
                ),
            ));
        }
    }
    out
}

/// What an app's render reads besides itself: its `allowFrom` peers (on the pod network
/// and on its attachments) and the existing Service it routes to.
fn app_targets(app: &ExposedApp, own_ns: &str) -> BTreeSet<(bool, Key)> {
    let peers = app
        .spec
        .allow_from
        .iter()
        .chain(app.spec.attachments.iter().flat_map(|a| &a.allow_from));
    let mut out = targets(peers, own_ns);
    if let Some(s) = &app.spec.service {
        out.insert((false, (own_ns.to_string(), s.name.clone())));
    }
    out
}

fn key_of<K: ResourceExt>(o: &K) -> Key {
    (o.namespace().unwrap_or_default(), o.name_any())
}

/// Who asks for a load-balancer address in its spec: an app (`tcp[].addresses`) or a
/// network (`ingress.<tier>.loadBalancer.addresses`). Validation reads who else holds
/// the address, so they re-run when a holder changes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Requester {
    App(Key),
    Network(String),
}

fn app_requests(app: &ExposedApp) -> BTreeSet<IpAddr> {
    app.spec
        .tcp
        .iter()
        .flat_map(|t| &t.addresses)
        .filter_map(|a| ip::parse_ip(a))
        .collect()
}

fn network_requests(n: &ClusterNetwork) -> BTreeSet<IpAddr> {
    Tier::ALL
        .iter()
        .filter_map(|t| n.spec.ingress.get(*t)?.load_balancer.as_ref())
        .flat_map(|lb| &lb.addresses)
        .filter_map(|a| ip::parse_ip(a))
        .collect()
}

/// (network, pool) -> which families of the pool are used up (see `PoolUsage::full`).
pub type Fullness = BTreeMap<(String, String), [bool; 2]>;

/// The load-balancer addresses a Service change moved: assigned (status) ones that came or
/// went, and requested ones that came or went.
pub fn moved_addresses(old: Option<&Service>, new: Option<&Service>) -> (Vec<IpAddr>, Vec<IpAddr>) {
    let diff = |f: fn(&Service) -> Vec<IpAddr>| {
        let a: BTreeSet<IpAddr> = old.map(f).unwrap_or_default().into_iter().collect();
        let b: BTreeSet<IpAddr> = new.map(f).unwrap_or_default().into_iter().collect();
        a.symmetric_difference(&b).copied().collect::<Vec<_>>()
    };
    (diff(assigned_addresses), diff(requested_addresses))
}

#[derive(Default)]
pub struct Index {
    /// What render reads, current with the caches.
    pub ctx: Context,
    /// Ordered, so a namespace's policies are a range (`policies_in`).
    policies: std::collections::BTreeMap<Key, Arc<EgressPolicy>>,
    apps_by_network: HashMap<String, BTreeSet<Key>>,
    policies_by_network: HashMap<String, BTreeSet<Key>>,
    /// (is an app, target) -> who names it as a peer.
    referrers: HashMap<(bool, Key), Referrers>,
    /// Service -> networks whose ingress tier takes its addresses from it.
    tier_services: HashMap<Key, BTreeSet<String>>,
    /// Pool name -> the LoadBalancer Services naming it (MetalLB's annotation, the Cilium
    /// pool label): whose owners to wake when the pool fills up or frees an address.
    pool_members: HashMap<String, BTreeSet<Key>>,
    /// Load-balancer address -> the apps and networks requesting it in their spec.
    requesters: HashMap<IpAddr, BTreeSet<Requester>>,
    /// owner -> its children as the caches hold them.
    children: HashMap<OwnerKey, BTreeSet<ChildKey>>,
    /// child -> owner, to move or drop a child's entry when its labels change or it goes.
    owner_of_child: HashMap<ChildKey, OwnerKey>,
    /// Gateway (namespace, name) -> the apps whose listeners it held when last seen (read
    /// back from the listener names, render::gateway::listener_owner).
    gateway_listeners: HashMap<Key, BTreeSet<Key>>,
}

fn remove_from<K: std::hash::Hash + Eq, V: Ord>(map: &mut HashMap<K, BTreeSet<V>>, k: &K, v: &V) {
    if let Some(set) = map.get_mut(k) {
        set.remove(v);
        if set.is_empty() {
            map.remove(k);
        }
    }
}

impl Index {
    // --- Gateways (the platform's; apps add listeners to them) -----------------------

    /// Records which apps' listeners a Gateway holds now (`None`: it went); returns the apps
    /// it held before, or None when it was not known.
    pub fn upsert_gateway(
        &mut self,
        key: Key,
        apps: Option<BTreeSet<Key>>,
    ) -> Option<BTreeSet<Key>> {
        match apps {
            Some(a) => self.gateway_listeners.insert(key, a),
            None => self.gateway_listeners.remove(&key),
        }
    }

    /// Drops Gateways a relist no longer holds.
    pub fn retain_gateways(&mut self, exists: impl FnMut(&Key, &mut BTreeSet<Key>) -> bool) {
        self.gateway_listeners.retain(exists);
    }

    /// The networks with a tier served by this Gateway.
    pub fn networks_of_gateway(&self, namespace: &str, name: &str) -> Vec<String> {
        self.ctx
            .networks
            .iter()
            .filter(|(_, n)| {
                Tier::ALL.iter().any(|t| {
                    n.spec
                        .ingress
                        .get(*t)
                        .and_then(|t| t.gateway.as_ref())
                        .is_some_and(|g| g.namespace == namespace && g.name == name)
                })
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    // --- ClusterNetworks -----------------------------------------------------------

    /// Adds or replaces a network; returns the one it replaced.
    pub fn upsert_network(&mut self, n: Arc<ClusterNetwork>) -> Option<Arc<ClusterNetwork>> {
        let name = n.name_any();
        let old = self.ctx.networks.get(&name).cloned();
        if let Some(o) = &old {
            self.unindex_network(o);
        }
        for tier in Tier::ALL {
            if let Some(key) = n.tier_address_service(tier) {
                self.tier_services
                    .entry(key)
                    .or_default()
                    .insert(name.clone());
            }
        }
        for a in network_requests(&n) {
            self.requesters
                .entry(a)
                .or_default()
                .insert(Requester::Network(name.clone()));
        }
        self.ctx.insert_network(n);
        old
    }

    pub fn remove_network(&mut self, name: &str) -> Option<Arc<ClusterNetwork>> {
        let old = self.ctx.networks.get(name).cloned()?;
        self.unindex_network(&old);
        self.ctx.remove_network(name);
        Some(old)
    }

    fn unindex_network(&mut self, n: &ClusterNetwork) {
        let name = n.name_any();
        for tier in Tier::ALL {
            if let Some(key) = n.tier_address_service(tier) {
                remove_from(&mut self.tier_services, &key, &name);
            }
        }
        for a in network_requests(n) {
            remove_from(&mut self.requesters, &a, &Requester::Network(name.clone()));
        }
    }

    // --- ExposedApps ---------------------------------------------------------------

    /// Adds or replaces an app; returns the one it replaced.
    pub fn upsert_app(&mut self, a: Arc<ExposedApp>) -> Option<Arc<ExposedApp>> {
        let key = key_of(a.as_ref());
        let old = self.remove_app(&key.0, &key.1);
        self.apps_by_network
            .entry(a.spec.network.clone())
            .or_default()
            .insert(key.clone());
        for t in app_targets(&a, &key.0) {
            self.referrers
                .entry(t)
                .or_default()
                .apps
                .insert(key.clone());
        }
        for addr in app_requests(&a) {
            self.requesters
                .entry(addr)
                .or_default()
                .insert(Requester::App(key.clone()));
        }
        self.ctx.insert_app(a);
        old
    }

    pub fn remove_app(&mut self, namespace: &str, name: &str) -> Option<Arc<ExposedApp>> {
        let key = (namespace.to_string(), name.to_string());
        let old = self.ctx.apps.get(&key).cloned()?;
        remove_from(&mut self.apps_by_network, &old.spec.network, &key);
        for t in app_targets(&old, namespace) {
            if let Some(r) = self.referrers.get_mut(&t) {
                r.apps.remove(&key);
                if r.is_empty() {
                    self.referrers.remove(&t);
                }
            }
        }
        for addr in app_requests(&old) {
            remove_from(&mut self.requesters, &addr, &Requester::App(key.clone()));
        }
        self.ctx.remove_app(namespace, name);
        Some(old)
    }

    // --- EgressPolicies ------------------------------------------------------------

    pub fn upsert_policy(&mut self, p: Arc<EgressPolicy>) -> Option<Arc<EgressPolicy>> {
        let key = key_of(p.as_ref());
        let old = self.remove_policy(&key.0, &key.1);
        self.policies_by_network
            .entry(p.spec.network.clone())
            .or_default()
            .insert(key.clone());
        for t in targets(p.spec.rules.iter().flat_map(|r| &r.to), &key.0) {
            self.referrers
                .entry(t)
                .or_default()
                .policies
                .insert(key.clone());
        }
        self.policies.insert(key, p);
        old
    }

    pub fn remove_policy(&mut self, namespace: &str, name: &str) -> Option<Arc<EgressPolicy>> {
        let key = (namespace.to_string(), name.to_string());
        let old = self.policies.remove(&key)?;
        remove_from(&mut self.policies_by_network, &old.spec.network, &key);
        for t in targets(old.spec.rules.iter().flat_map(|r| &r.to), namespace) {
            if let Some(r) = self.referrers.get_mut(&t) {
                r.policies.remove(&key);
                if r.is_empty() {
                    self.referrers.remove(&t);
                }
            }
        }
        Some(old)
    }

    // --- Services and Namespaces ---------------------------------------------------

    pub fn upsert_service(&mut self, s: Arc<Service>) -> Option<Arc<Service>> {
        let key = key_of(s.as_ref());
        let old = self.ctx.services.get(&key).cloned();
        if let Some(p) = old.as_deref().and_then(pool_of_service) {
            remove_from(&mut self.pool_members, &p.to_string(), &key);
        }
        if let Some(p) = pool_of_service(&s) {
            self.pool_members
                .entry(p.to_string())
                .or_default()
                .insert(key.clone());
        }
        self.upsert_child(ChildKind::Service, s.meta());
        self.ctx.insert_service(s);
        old
    }

    pub fn remove_service(&mut self, namespace: &str, name: &str) -> Option<Arc<Service>> {
        let key = (namespace.to_string(), name.to_string());
        let old = self.ctx.services.get(&key).cloned()?;
        if let Some(p) = pool_of_service(&old) {
            remove_from(&mut self.pool_members, &p.to_string(), &key);
        }
        self.remove_child(ChildKind::Service, Some(namespace), name);
        self.ctx.remove_service(namespace, name);
        Some(old)
    }

    pub fn upsert_namespace(&mut self, n: Arc<Namespace>) {
        self.ctx.insert_namespace(n);
    }

    pub fn remove_namespace(&mut self, name: &str) {
        self.ctx.remove_namespace(name);
    }

    // --- Children ------------------------------------------------------------------

    /// Records (or moves, or drops, by its labels) a child the caches hold.
    pub fn upsert_child(&mut self, kind: ChildKind, meta: &ObjectMeta) {
        let name = meta.name.clone().unwrap_or_default();
        let key = (kind, meta.namespace.clone(), name);
        let owner = owner_of(meta);
        if self.owner_of_child.get(&key) == owner.as_ref() {
            return;
        }
        if let Some(previous) = self.owner_of_child.remove(&key) {
            remove_from(&mut self.children, &previous, &key);
        }
        if let Some(owner) = owner {
            self.children
                .entry(owner.clone())
                .or_default()
                .insert(key.clone());
            self.owner_of_child.insert(key, owner);
        }
    }

    pub fn remove_child(&mut self, kind: ChildKind, namespace: Option<&str>, name: &str) {
        let key = (kind, namespace.map(str::to_string), name.to_string());
        if let Some(owner) = self.owner_of_child.remove(&key) {
            remove_from(&mut self.children, &owner, &key);
        }
    }

    /// After a relist of one child kind: drops the children the new list does not hold.
    pub fn retain_children(&mut self, kind: ChildKind, mut exists: impl FnMut(&ChildKey) -> bool) {
        let gone: Vec<ChildKey> = self
            .owner_of_child
            .keys()
            .filter(|k| k.0 == kind && !exists(k))
            .cloned()
            .collect();
        for (k, ns, name) in gone {
            self.remove_child(k, ns.as_deref(), &name);
        }
    }

    /// After a relist of a kind (whose listed objects the caller has just upserted from
    /// the cache): drops the entries the new list no longer holds, with everything indexed
    /// under them.
    pub fn retain_apps(&mut self, exists: impl FnMut(&Key) -> bool) {
        for (ns, name) in gone(self.ctx.apps.keys(), exists) {
            self.remove_app(&ns, &name);
        }
    }
    pub fn retain_policies(&mut self, exists: impl FnMut(&Key) -> bool) {
        for (ns, name) in gone(self.policies.keys(), exists) {
            self.remove_policy(&ns, &name);
        }
    }
    pub fn retain_networks(&mut self, exists: impl FnMut(&String) -> bool) {
        for name in gone(self.ctx.networks.keys(), exists) {
            self.remove_network(&name);
        }
    }
    pub fn retain_namespaces(&mut self, exists: impl FnMut(&String) -> bool) {
        for name in gone(self.ctx.namespaces.keys(), exists) {
            self.remove_namespace(&name);
        }
    }

    // --- Queries -------------------------------------------------------------------

    pub fn policy(&self, namespace: &str, name: &str) -> Option<&Arc<EgressPolicy>> {
        self.policies
            .get(&(namespace.to_string(), name.to_string()))
    }

    pub fn apps_on(&self, network: &str) -> impl Iterator<Item = &Key> {
        self.apps_by_network.get(network).into_iter().flatten()
    }

    /// The apps of one namespace (a range of the ordered app map: no scan of the others).
    pub fn apps_in(&self, namespace: &str) -> Vec<Key> {
        let from = (namespace.to_string(), String::new());
        self.ctx
            .apps
            .range(from..)
            .take_while(|((ns, _), _)| ns == namespace)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The EgressPolicies of one namespace (a range of the ordered map).
    pub fn policies_in(&self, namespace: &str) -> Vec<Key> {
        let from = (namespace.to_string(), String::new());
        self.policies
            .range(from..)
            .take_while(|((ns, _), _)| ns == namespace)
            .map(|(k, _)| k.clone())
            .collect()
    }

    pub fn app_count(&self, network: &str) -> usize {
        self.apps_by_network.get(network).map_or(0, BTreeSet::len)
    }

    pub fn policies_on(&self, network: &str) -> impl Iterator<Item = &Key> {
        self.policies_by_network.get(network).into_iter().flatten()
    }

    /// Who names app (`is_app`) or Service `namespace/name` as a peer.
    pub fn referrers(&self, is_app: bool, namespace: &str, name: &str) -> Option<&Referrers> {
        self.referrers
            .get(&(is_app, (namespace.to_string(), name.to_string())))
    }

    /// Networks whose ingress tier takes its addresses from Service `namespace/name`.
    pub fn networks_of_tier_service(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Iterator<Item = &String> {
        self.tier_services
            .get(&(namespace.to_string(), name.to_string()))
            .into_iter()
            .flatten()
    }

    /// Apps other than `except` naming one of `hosts` (routes or tcp).
    pub fn apps_sharing_hosts<'a>(
        &'a self,
        hosts: impl Iterator<Item = &'a String>,
        except: &'a Key,
    ) -> BTreeSet<Key> {
        let mut out = BTreeSet::new();
        for h in hosts {
            for (_, ns, name) in self.ctx.claimants(h) {
                if ns != &except.0 || name != &except.1 {
                    out.insert((ns.clone(), name.clone()));
                }
            }
        }
        out
    }

    /// The apps and networks requesting load-balancer address `addr`.
    pub fn requesters_of(&self, addr: IpAddr) -> impl Iterator<Item = &Requester> {
        self.requesters.get(&addr).into_iter().flatten()
    }

    /// The LoadBalancer Services naming `pool` that hold no address yet.
    pub fn pending_in_pool(&self, pool: &str) -> impl Iterator<Item = &Arc<Service>> {
        self.pool_members
            .get(pool)
            .into_iter()
            .flatten()
            .filter_map(|k| self.ctx.services.get(k))
            .filter(|s| assigned_addresses(s).is_empty())
    }

    /// For every pool of every network containing one of `addrs`: which
    /// of its families are used up. Time: the networks' pools, plus a range query per pool
    /// that contains one (its allocated addresses); nothing when `addrs` is empty.
    pub fn pool_fullness(&self, addrs: &[IpAddr]) -> Fullness {
        let mut out = Fullness::new();
        if addrs.is_empty() {
            return out;
        }
        for (name, n) in &self.ctx.networks {
            for p in &n.spec.load_balancer.pools {
                let touched = p
                    .addresses
                    .iter()
                    .filter_map(|e| ip::parse_pool_entry(e))
                    .any(|r| addrs.iter().any(|a| r.contains(*a)));
                if touched {
                    let full = pool::usage(p, &self.ctx).full();
                    out.insert((name.clone(), p.name.clone()), full);
                }
            }
        }
        out
    }

    /// How many children of ours the caches hold, per kind (the children-managed gauge).
    pub fn count_children(&self) -> Vec<(&'static str, usize)> {
        let mut counts: std::collections::BTreeMap<ChildKind, usize> =
            ChildKind::ALL.iter().map(|k| (*k, 0)).collect();
        for (kind, ..) in self.owner_of_child.keys() {
            *counts.entry(*kind).or_default() += 1;
        }
        counts.into_iter().map(|(k, n)| (k.kind(), n)).collect()
    }

    /// The children the caches hold for `owner`.
    pub fn children_of(&self, owner: &OwnerKey) -> Vec<ChildKey> {
        self.children
            .get(owner)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The hosts of an app and of the app it replaced, for triggering their other claimants.
pub fn hosts_of<'a>(new: Option<&'a ExposedApp>, old: Option<&'a ExposedApp>) -> Vec<&'a String> {
    let mut out: Vec<&String> = new.into_iter().flat_map(app_hosts).collect();
    out.extend(old.into_iter().flat_map(app_hosts));
    out.sort();
    out.dedup();
    out
}

/// The keys for which `exists` is false.
fn gone<'m, K: Clone + 'm>(
    keys: impl Iterator<Item = &'m K>,
    mut exists: impl FnMut(&K) -> bool,
) -> Vec<K> {
    keys.filter(|k| !exists(k)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn app(ns: &str, name: &str, mut spec: serde_json::Value) -> Arc<ExposedApp> {
        spec["ports"] = json!([{"name": "http", "port": 80}]);
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ExposedApp",
                "metadata": {"name": name, "namespace": ns}, "spec": spec,
            }))
            .unwrap(),
        )
    }

    fn service(ns: &str, name: &str, labels: serde_json::Value, ty: &str) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "spec": {"type": ty},
            }))
            .unwrap(),
        )
    }

    fn key(ns: &str, name: &str) -> Key {
        (ns.into(), name.into())
    }

    #[test]
    fn apps_are_indexed_by_network_peer_and_host_and_unindexed_on_change() {
        let mut ix = Index::default();
        ix.upsert_app(app("a", "web", json!({"network": "n1", "selector": {"x": "y"}, "routes": [{"hosts": ["w.example.com"]}]})));
        ix.upsert_app(app(
            "b",
            "api",
            json!({"network": "n1", "selector": {"x": "y"},
            "allowFrom": [{"app": {"name": "web", "namespace": "a"}}, {"service": {"name": "db"}}],
            "routes": [{"hosts": ["w.example.com"]}]}),
        ));
        assert_eq!(ix.app_count("n1"), 2);
        assert_eq!(
            ix.referrers(true, "a", "web").unwrap().apps,
            BTreeSet::from([key("b", "api")])
        );
        assert_eq!(
            ix.referrers(false, "b", "db").unwrap().apps,
            BTreeSet::from([key("b", "api")])
        );
        let web = key("a", "web");
        let hosts = ["w.example.com".to_string()];
        assert_eq!(
            ix.apps_sharing_hosts(hosts.iter(), &web),
            BTreeSet::from([key("b", "api")])
        );

        // api moves network, drops its peers and its host.
        let old = ix.upsert_app(app(
            "b",
            "api",
            json!({"network": "n2", "selector": {"x": "y"}}),
        ));
        assert!(old.is_some());
        assert_eq!(ix.app_count("n1"), 1);
        assert_eq!(ix.app_count("n2"), 1);
        assert!(ix.referrers(true, "a", "web").is_none());
        assert!(ix.referrers(false, "b", "db").is_none());
        assert!(ix.apps_sharing_hosts(hosts.iter(), &web).is_empty());

        ix.retain_apps(|k| k.1 == "web");
        assert_eq!(ix.app_count("n2"), 0);
        assert!(ix.ctx.app("b", "api").is_none());
        assert!(ix.ctx.app("a", "web").is_some());
    }

    #[test]
    fn children_follow_their_owner_labels() {
        let mut ix = Index::default();
        let ours = json!({"app.kubernetes.io/managed-by": "gatehouse", "gatehouse.dev/owner-kind": "ExposedApp",
            "gatehouse.dev/owner-name": "web", "gatehouse.dev/owner-namespace": "a"});
        ix.upsert_service(service("a", "web-external", ours.clone(), "LoadBalancer"));
        ix.upsert_service(service("a", "other", json!({}), "LoadBalancer"));
        let owner: OwnerKey = ("ExposedApp".into(), Some("a".into()), "web".into());
        assert_eq!(
            ix.children_of(&owner),
            vec![(ChildKind::Service, Some("a".into()), "web-external".into())]
        );
        // Labels removed by hand: no longer ours.
        ix.upsert_service(service("a", "web-external", json!({}), "LoadBalancer"));
        assert!(ix.children_of(&owner).is_empty());
        ix.upsert_service(service("a", "web-external", ours, "LoadBalancer"));
        ix.remove_service("a", "web-external");
        assert!(ix.children_of(&owner).is_empty());
        assert!(ix.ctx.service("a", "web-external").is_none());
    }

    #[test]
    fn pools_know_their_waiting_services_requests_their_requesters_and_fullness_flips() {
        let mut ix = Index::default();
        let n: ClusterNetwork = serde_json::from_value(json!({
            "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ClusterNetwork", "metadata": {"name": "n1"},
            "spec": {"loadBalancer": {"provider": "MetalLB", "pools": [{"name": "p", "addresses": ["10.0.0.1-10.0.0.2"]}]},
                     "ingress": {"external": {"className": "x", "namespace": "ing", "podSelector": {"matchLabels": {"a": "b"}},
                                              "loadBalancer": {"addresses": ["10.0.0.9"]}}}},
        }))
        .unwrap();
        ix.upsert_network(Arc::new(n));
        ix.upsert_app(app(
            "a",
            "mail",
            json!({"network": "n1", "selector": {"x": "y"},
            "tcp": [{"port": "http", "addresses": ["10.0.0.1"]}]}),
        ));
        let lb = |name: &str, ips: &[&str]| -> Arc<Service> {
            Arc::new(
                serde_json::from_value(json!({
                    "metadata": {"name": name, "namespace": "s", "annotations": {"metallb.io/address-pool": "p"}},
                    "spec": {"type": "LoadBalancer"},
                    "status": {"loadBalancer": {"ingress": ips.iter().map(|i| json!({"ip": i})).collect::<Vec<_>>()}},
                }))
                .unwrap(),
            )
        };
        let addr = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            ix.requesters_of(addr("10.0.0.1")).collect::<Vec<_>>(),
            [&Requester::App(key("a", "mail"))]
        );
        assert_eq!(
            ix.requesters_of(addr("10.0.0.9")).collect::<Vec<_>>(),
            [&Requester::Network("n1".into())]
        );
        ix.upsert_service(lb("first", &["10.0.0.1"]));
        ix.upsert_service(lb("waiting", &[]));
        let pool = ("n1".to_string(), "p".to_string());
        let touched = [addr("10.0.0.2")];
        let before = ix.pool_fullness(&touched);
        assert_eq!(before.get(&pool), Some(&[false, false]));
        let second = lb("second", &["10.0.0.2"]);
        assert_eq!(
            moved_addresses(None, Some(&second)).0,
            touched,
            "the address it came to hold"
        );
        ix.upsert_service(second);
        assert_eq!(
            ix.pool_fullness(&touched).get(&pool),
            Some(&[true, false]),
            "IPv4 used up"
        );
        let waiting: Vec<String> = ix.pending_in_pool("p").map(|s| s.name_any()).collect();
        assert_eq!(waiting, ["waiting"], "only the Service without an address");
        assert!(
            ix.pool_fullness(&[addr("10.9.9.9")]).is_empty(),
            "in no pool"
        );
        ix.remove_service("s", "second");
        assert_eq!(ix.pool_fullness(&touched).get(&pool), Some(&[false, false]));
        ix.remove_app("a", "mail");
        assert_eq!(ix.requesters_of(addr("10.0.0.1")).count(), 0);
        ix.remove_network("n1");
        assert_eq!(ix.requesters_of(addr("10.0.0.9")).count(), 0);
    }

    #[test]
    fn networks_index_the_services_their_tiers_read() {
        let mut ix = Index::default();
        let n: ClusterNetwork = serde_json::from_value(json!({
            "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ClusterNetwork", "metadata": {"name": "n1"},
            "spec": {"ingress": {"external": {"className": "x", "service": {"namespace": "ing", "name": "lb"}}}},
        }))
        .unwrap();
        ix.upsert_network(Arc::new(n));
        assert_eq!(
            ix.networks_of_tier_service("ing", "lb").collect::<Vec<_>>(),
            vec!["n1"]
        );
        ix.remove_network("n1");
        assert_eq!(ix.networks_of_tier_service("ing", "lb").count(), 0);
    }
}
