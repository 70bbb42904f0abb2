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

use super::index::{Index, Key, hosts_of};
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

    /// A Service changed: its owner (if it is our child), apps on networks whose tier
    /// addresses come from it, apps and policies naming it as a peer, and the network whose
    /// pool usage counts it.
    /// A Service changed: its owner (unless `echo`: the event only shows our own write),
    /// the apps on networks whose tier it fronts, referrers naming it as a peer, and for our
    /// LoadBalancer Services the network (pool usage).
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
        if svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
            && let Some((kind, Some(owner_ns), owner)) = owner_of(svc.meta())
            && kind == "ExposedApp"
            && let Some(app) = ix.ctx.app(&owner_ns, &owner)
        {
            self.network(&app.spec.network);
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
