//! Dependency triggers: a change to one object re-reconciles every object whose children
//! depend on it. Mapping reads the caches; it never calls the API server.

use gatehouse_api::{ClusterNetwork, EgressPolicy, ExposedApp, Peer};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tokio::sync::mpsc::UnboundedSender;

use super::stores::{Stores, owner_of};
use crate::render::context::app_hosts;

#[derive(Clone)]
pub struct Triggers {
    pub apps: UnboundedSender<ObjectRef<ExposedApp>>,
    pub policies: UnboundedSender<ObjectRef<EgressPolicy>>,
    pub networks: UnboundedSender<ObjectRef<ClusterNetwork>>,
}

fn refers_to(peer: &Peer, own_ns: &str, kind_app: bool, ns: &str, name: &str) -> bool {
    let r = if kind_app {
        peer.app.as_ref()
    } else {
        peer.service.as_ref()
    };
    r.is_some_and(|r| r.name == name && r.namespace.as_deref().unwrap_or(own_ns) == ns)
}

impl Triggers {
    fn app(&self, a: &ExposedApp) {
        let _ = self.apps.send(ObjectRef::from_obj(a));
    }
    fn policy(&self, p: &EgressPolicy) {
        let _ = self.policies.send(ObjectRef::from_obj(p));
    }
    fn network(&self, n: &ClusterNetwork) {
        let _ = self.networks.send(ObjectRef::from_obj(n));
    }

    /// A child changed or vanished: its owner puts it back (or notices it is gone).
    pub fn child_changed(&self, meta: &ObjectMeta) {
        let Some((kind, namespace, name)) = owner_of(meta) else {
            return;
        };
        match (kind.as_str(), namespace) {
            ("ExposedApp", Some(ns)) => {
                let _ = self.apps.send(ObjectRef::new(&name).within(&ns));
            }
            ("EgressPolicy", Some(ns)) => {
                let _ = self.policies.send(ObjectRef::new(&name).within(&ns));
            }
            ("ClusterNetwork", None) => {
                let _ = self.networks.send(ObjectRef::new(&name));
            }
            _ => {}
        }
    }

    /// A network changed: every app and policy on it renders differently.
    pub fn network_changed(&self, n: &ClusterNetwork, s: &Stores) {
        let name = n.name_any();
        for a in s.apps.state().iter().filter(|a| a.spec.network == name) {
            self.app(a);
        }
        for p in s.policies.state().iter().filter(|p| p.spec.network == name) {
            self.policy(p);
        }
    }

    /// An app changed: apps and policies naming it as a peer, apps sharing a host with it
    /// (first claimant wins), and its network (attachments, app count).
    pub fn app_changed(&self, app: &ExposedApp, s: &Stores) {
        let (ns, name) = (app.namespace().unwrap_or_default(), app.name_any());
        let hosts: Vec<&String> = app_hosts(app).collect();
        for other in s.apps.state() {
            let own = other.namespace().unwrap_or_default();
            let peer = other
                .spec
                .allow_from
                .iter()
                .any(|p| refers_to(p, &own, true, &ns, &name));
            let shares_host = app_hosts(&other).any(|h| hosts.contains(&h));
            if (peer || shares_host) && (own != ns || other.name_any() != name) {
                self.app(&other);
            }
        }
        for p in s.policies.state() {
            let own = p.namespace().unwrap_or_default();
            if p.spec
                .rules
                .iter()
                .flat_map(|r| &r.to)
                .any(|peer| refers_to(peer, &own, true, &ns, &name))
            {
                self.policy(&p);
            }
        }
        if let Some(n) = super::store_get(&s.networks, &app.spec.network, None) {
            self.network(&n);
        }
    }

    /// A Service changed: our own child (readiness, assigned addresses), apps whose tier
    /// addresses come from it, and apps and policies naming it as a peer.
    pub fn service_changed(&self, svc: &Service, s: &Stores) {
        self.child_changed(svc.meta());
        let (ns, name) = (svc.namespace().unwrap_or_default(), svc.name_any());
        let tier_networks: Vec<String> = s
            .networks
            .state()
            .iter()
            .filter(|n| {
                [&n.spec.ingress.external, &n.spec.ingress.internal]
                    .into_iter()
                    .flatten()
                    .any(|t| {
                        t.service
                            .as_ref()
                            .is_some_and(|r| r.namespace == ns && r.name == name)
                    })
            })
            .map(|n| n.name_any())
            .collect();
        for a in s.apps.state() {
            let own = a.namespace().unwrap_or_default();
            if tier_networks.contains(&a.spec.network)
                || a.spec
                    .allow_from
                    .iter()
                    .any(|p| refers_to(p, &own, false, &ns, &name))
            {
                self.app(&a);
            }
        }
        for p in s.policies.state() {
            let own = p.namespace().unwrap_or_default();
            if p.spec
                .rules
                .iter()
                .flat_map(|r| &r.to)
                .any(|peer| refers_to(peer, &own, false, &ns, &name))
            {
                self.policy(&p);
            }
        }
        // Pool usage in ClusterNetwork status counts our LoadBalancer Services.
        if owner_of(svc.meta()).is_some()
            && svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
        {
            for n in s.networks.state() {
                self.network(&n);
            }
        }
    }

    /// A namespace appeared, changed labels or went: default deny may apply differently.
    pub fn namespace_changed(&self, s: &Stores) {
        for n in s
            .networks
            .state()
            .iter()
            .filter(|n| n.spec.policy.default_deny.is_some())
        {
            self.network(n);
        }
    }
}
