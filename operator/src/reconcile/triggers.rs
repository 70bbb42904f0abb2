//! Dependency triggers: a change to one object re-reconciles every object whose children
//! depend on it. Mapping reads the index (reconcile::index), in time proportional to the
//! dependents, never the whole cluster; it never calls the API server.

use gatehouse_api::{ClusterNetwork, EgressPolicy, ExposedApp};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tokio::sync::mpsc::UnboundedSender;

use super::index::{Fullness, Index, Key, Requester, hosts_of, moved_addresses};
use super::stores::owner_of;

#[derive(Clone)]
pub struct Triggers {
    pub apps: UnboundedSender<ObjectRef<ExposedApp>>,
    pub policies: UnboundedSender<ObjectRef<EgressPolicy>>,
    pub networks: UnboundedSender<ObjectRef<ClusterNetwork>>,
}

impl Triggers {
    fn app(&self, (ns, name): &Key) {
        let _ = self.apps.send(ObjectRef::new(name).within(ns));
    }
    fn policy(&self, (ns, name): &Key) {
        let _ = self.policies.send(ObjectRef::new(name).within(ns));
    }
    fn network(&self, name: &str) {
        let _ = self.networks.send(ObjectRef::new(name));
    }

    /// A child changed or vanished: its owner puts it back (or notices it is gone).
    pub fn child_changed(&self, meta: &ObjectMeta) {
        let Some((kind, namespace, name)) = owner_of(meta) else {
            return;
        };
        match (kind.as_str(), namespace) {
            ("ExposedApp", Some(ns)) => self.app(&(ns, name)),
            ("EgressPolicy", Some(ns)) => self.policy(&(ns, name)),
            ("ClusterNetwork", None) => self.network(&name),
            _ => {}
        }
    }

    /// A network changed: every app and policy on it renders differently.
    pub fn network_changed(&self, name: &str, ix: &Index) {
        for k in ix.apps_on(name) {
            self.app(k);
        }
        for k in ix.policies_on(name) {
            self.policy(k);
        }
    }

    /// An app appeared, changed (`old` is what it was) or went (`new` is None): apps and
    /// policies naming it as a peer, apps sharing a host with it now or before (first
    /// claimant wins), and its networks (attachments, app count).
    pub fn app_changed(&self, new: Option<&ExposedApp>, old: Option<&ExposedApp>, ix: &Index) {
        let Some(app) = new.or(old) else {
            return;
        };
        let key = (app.namespace().unwrap_or_default(), app.name_any());
        if let Some(r) = ix.referrers(true, &key.0, &key.1) {
            r.apps.iter().for_each(|k| self.app(k));
            r.policies.iter().for_each(|k| self.policy(k));
        }
        for other in ix.apps_sharing_hosts(hosts_of(new, old).into_iter(), &key) {
            self.app(&other);
        }
        let networks = [new, old].into_iter().flatten().map(|a| &a.spec.network);
        let mut seen: Vec<&String> = Vec::new();
        for n in networks {
            if !seen.contains(&n) {
                self.network(n);
                seen.push(n);
            }
        }
    }

    /// A Service changed: its owner (unless `echo`: the event only shows our own write),
    /// the apps on networks whose tier it fronts, and referrers naming it as a peer. What
    /// its load-balancer addresses mean for pools and requests: [`Self::addresses_moved`].
    pub fn service_changed(&self, svc: &Service, echo: bool, ix: &Index) {
        if !echo {
            self.child_changed(svc.meta());
        }
        let (ns, name) = (svc.namespace().unwrap_or_default(), svc.name_any());
        for n in ix.networks_of_tier_service(&ns, &name) {
            for k in ix.apps_on(n) {
                self.app(k);
            }
        }
        if let Some(r) = ix.referrers(false, &ns, &name) {
            r.apps.iter().for_each(|k| self.app(k));
            r.policies.iter().for_each(|k| self.policy(k));
        }
    }

    /// A Service's load-balancer addresses moved (`old` -> `new`; `before`: the touched
    /// pools' fullness before the change, `Index::pool_fullness`). Wakes the apps and
    /// networks requesting an address that came or went (validation reads who holds it),
    /// the networks whose pools hold an assigned address that came or went (pool status),
    /// and, where a pool family turned used up or stopped being so, the owners of the
    /// pool's Services still waiting for an address (`PoolExhausted`). Time: the moved
    /// addresses' requesters and touched pools, and the waiting Services of a pool whose
    /// fullness flipped; never every Service.
    pub fn addresses_moved(
        &self,
        old: Option<&Service>,
        new: Option<&Service>,
        before: &Fullness,
        ix: &Index,
    ) {
        let (assigned, requested) = moved_addresses(old, new);
        for a in assigned.iter().chain(&requested) {
            for r in ix.requesters_of(*a) {
                match r {
                    Requester::App(k) => self.app(k),
                    Requester::Network(n) => self.network(n),
                }
            }
        }
        let after = ix.pool_fullness(&assigned);
        for ((network, pool), full) in &after {
            self.network(network);
            if before.get(&(network.clone(), pool.clone())) != Some(full) {
                for s in ix.pending_in_pool(pool) {
                    self.child_changed(s.meta());
                }
            }
        }
    }

    /// The API server's EndpointSlices changed: the policies naming `apiServer` (indexed
    /// as referrers of the `default/kubernetes` Service).
    pub fn api_server_changed(&self, ix: &Index) {
        use crate::render::context::{API_SERVER_NAMESPACE, API_SERVER_SERVICE};
        if let Some(r) = ix.referrers(false, API_SERVER_NAMESPACE, API_SERVER_SERVICE) {
            r.apps.iter().for_each(|k| self.app(k));
            r.policies.iter().for_each(|k| self.policy(k));
        }
    }

    /// A namespace appeared, changed labels or went: default deny may apply differently,
    /// to the namespace (its network's baseline) and to the apps in it (whether their
    /// ingress policy is needed: `isolation: Auto`).
    pub fn namespaces_changed(&self, namespaces: &[String], ix: &Index) {
        let mut any = false;
        for (name, n) in &ix.ctx.networks {
            if n.spec.policy.default_deny.is_some() {
                self.network(name);
                any = true;
            }
        }
        if any {
            for ns in namespaces {
                for k in ix.apps_in(ns) {
                    self.app(&k);
                }
            }
        }
    }
}
