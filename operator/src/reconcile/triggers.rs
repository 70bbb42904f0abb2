//! Dependency triggers: a change to one object re-reconciles every object whose children
//! depend on it. Mapping reads the index (reconcile::index), in time proportional to the
//! dependents, never the whole cluster; it never calls the API server.

use std::collections::BTreeSet;

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
        // The EgressPolicies of the namespace police every attachment used there
        // (MultiNetworkPolicies `P-egress-<attachment>`): a change of which attachments the
        // app uses, or of its network, changes theirs.
        fn attached(a: Option<&ExposedApp>) -> Option<(&str, BTreeSet<&str>)> {
            a.map(|a| {
                let names = a.spec.attachments.iter().map(|x| x.network.as_str());
                (a.spec.network.as_str(), names.collect())
            })
        }
        let (was, is) = (attached(old), attached(new));
        let uses =
            |x: &Option<(&str, BTreeSet<&str>)>| x.as_ref().is_some_and(|(_, n)| !n.is_empty());
        if was != is && (uses(&was) || uses(&is)) {
            for k in ix.policies_in(&key.0) {
                self.policy(&k);
            }
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

    /// A Gateway changed. The apps whose listeners it holds now or held before (their
    /// listeners may have been changed or removed by someone else, or got their status):
    /// at most the Gateway's 64 listeners. When it first appears (`before` None), also
    /// every app on a network with a tier it serves: their listeners wait for it.
    pub fn gateway_changed(
        &self,
        (ns, name): &Key,
        before: Option<&std::collections::BTreeSet<Key>>,
        now: Option<&std::collections::BTreeSet<Key>>,
        ix: &Index,
    ) {
        let mut apps: std::collections::BTreeSet<&Key> = before.into_iter().flatten().collect();
        apps.extend(now.into_iter().flatten());
        for k in apps {
            self.app(k);
        }
        if before.is_none() {
            for n in ix.networks_of_gateway(ns, name) {
                for k in ix.apps_on(&n) {
                    self.app(k);
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;
    use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

    type Receivers = (
        UnboundedReceiver<ObjectRef<ExposedApp>>,
        UnboundedReceiver<ObjectRef<ClusterNetwork>>,
    );

    fn triggers() -> (Triggers, Receivers) {
        let (apps, app_rx) = unbounded_channel();
        let (policies, _) = unbounded_channel();
        let (networks, net_rx) = unbounded_channel();
        (
            Triggers {
                apps,
                policies,
                networks,
            },
            (app_rx, net_rx),
        )
    }

    fn drain<K: kube::Resource>(rx: &mut UnboundedReceiver<ObjectRef<K>>) -> Vec<String>
    where
        K::DynamicType: Default + Eq + std::hash::Hash + Clone,
    {
        let mut out: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|r| match r.namespace {
                Some(ns) => format!("{ns}/{}", r.name),
                None => r.name,
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// A LoadBalancer Service of app `owner` in namespace `s`, naming pool `p`.
    fn lb(name: &str, owner: &str, ips: &[&str], requested: Option<&str>) -> Arc<Service> {
        let mut annotations = json!({"metallb.io/address-pool": "p"});
        if let Some(r) = requested {
            annotations["metallb.io/loadBalancerIPs"] = json!(r);
        }
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "s", "annotations": annotations,
                             "labels": {"app.kubernetes.io/managed-by": "gatehouse", "gatehouse.dev/owner-kind": "ExposedApp",
                                        "gatehouse.dev/owner-name": owner, "gatehouse.dev/owner-namespace": "s"}},
                "spec": {"type": "LoadBalancer"},
                "status": {"loadBalancer": {"ingress": ips.iter().map(|i| json!({"ip": i})).collect::<Vec<_>>()}},
            }))
            .unwrap(),
        )
    }

    /// As the Service watch does it: fullness before, the index update, then the triggers.
    fn apply(t: &Triggers, ix: &mut Index, new: Option<Arc<Service>>, old_name: &str) {
        let old = ix.ctx.services.get(&("s".into(), old_name.into())).cloned();
        let moved = moved_addresses(old.as_deref(), new.as_deref()).0;
        let before = ix.pool_fullness(&moved);
        match &new {
            Some(s) => {
                ix.upsert_service(s.clone());
            }
            None => {
                ix.remove_service("s", old_name);
            }
        }
        t.addresses_moved(old.as_deref(), new.as_deref(), &before, ix);
    }

    #[test]
    fn moved_addresses_wake_requesters_the_pool_network_and_on_a_flip_the_waiting() {
        let (t, (mut apps, mut nets)) = triggers();
        let mut ix = Index::default();
        let n: ClusterNetwork = serde_json::from_value(json!({
            "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ClusterNetwork", "metadata": {"name": "n1"},
            "spec": {"loadBalancer": {"provider": "MetalLB", "pools": [{"name": "p", "addresses": ["10.0.0.1-10.0.0.2"]}]}},
        }))
        .unwrap();
        ix.upsert_network(Arc::new(n));
        let app: ExposedApp = serde_json::from_value(json!({
            "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ExposedApp", "metadata": {"name": "asks", "namespace": "s"},
            "spec": {"network": "n1", "selector": {"a": "b"}, "ports": [{"name": "smtp", "port": 25}],
                     "tcp": [{"port": "smtp", "addresses": ["10.0.0.2"]}]},
        }))
        .unwrap();
        ix.upsert_app(Arc::new(app));
        apply(
            &t,
            &mut ix,
            Some(lb("waiting-external", "waiting", &[], None)),
            "waiting-external",
        );
        assert!(
            drain(&mut apps).is_empty() && drain(&mut nets).is_empty(),
            "nothing moved"
        );

        apply(
            &t,
            &mut ix,
            Some(lb("one-external", "one", &["10.0.0.1"], None)),
            "one-external",
        );
        assert_eq!(drain(&mut nets), ["n1"], "the pool's network (status)");
        assert!(
            drain(&mut apps).is_empty(),
            "1 of 2: no flip, no requester of 10.0.0.1"
        );

        // The last address goes: the requester of it, and the waiting Service's owner.
        apply(
            &t,
            &mut ix,
            Some(lb("two-external", "two", &["10.0.0.2"], None)),
            "two-external",
        );
        assert_eq!(drain(&mut nets), ["n1"]);
        assert_eq!(drain(&mut apps), ["s/asks", "s/waiting"]);

        // A change that moves no address wakes nobody here.
        apply(
            &t,
            &mut ix,
            Some(lb("two-external", "two", &["10.0.0.2"], None)),
            "two-external",
        );
        assert!(drain(&mut apps).is_empty() && drain(&mut nets).is_empty());

        // An address freed: the pool stops being full, the waiting owner hears of it.
        apply(&t, &mut ix, None, "one-external");
        assert_eq!(drain(&mut nets), ["n1"]);
        assert_eq!(drain(&mut apps), ["s/waiting"]);

        // A request that comes or goes wakes the app requesting the same address.
        apply(
            &t,
            &mut ix,
            Some(lb("waiting-external", "waiting", &[], Some("10.0.0.2"))),
            "waiting-external",
        );
        assert_eq!(drain(&mut apps), ["s/asks"]);
        assert!(drain(&mut nets).is_empty(), "no assigned address moved");
    }
}
