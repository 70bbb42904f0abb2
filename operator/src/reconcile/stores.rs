//! The operator's watch caches and the views the reconcilers need of them.

use std::collections::BTreeMap;
use std::sync::Arc;

use gatehouse_api::{ClusterNetwork, EgressPolicy, ExposedApp, labels};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DynamicObject, PartialObjectMeta};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::Value;

use crate::render::{ChildKind, Context, Owner};

/// A child as the caches know it: its metadata, and its content when the cache has it.
#[derive(Clone, Debug)]
pub struct LiveChild {
    pub meta: ObjectMeta,
    pub content: Option<Value>,
}

#[derive(Clone)]
pub struct Stores {
    pub networks: Store<ClusterNetwork>,
    pub apps: Store<ExposedApp>,
    pub policies: Store<EgressPolicy>,
    /// Every Service: peers, ingress-controller addresses, and our own Service children.
    pub services: Store<Service>,
    pub namespaces: Store<Namespace>,
    /// Metadata-only caches of our children, per kind, for kinds whose content we don't read.
    pub children: BTreeMap<ChildKind, Store<PartialObjectMeta<DynamicObject>>>,
    /// Full caches of our children whose status we read (Certificate, DNSEndpoint).
    pub full_children: BTreeMap<ChildKind, Store<DynamicObject>>,
}

fn dynamic_ref(kind: ChildKind, name: &str, namespace: Option<&str>) -> ObjectRef<DynamicObject> {
    let mut r = ObjectRef::new_with(name, super::api_resource(kind));
    if let Some(ns) = namespace {
        r = r.within(ns);
    }
    r
}

impl Stores {
    /// A snapshot of the cluster for one render. Objects are shared, not copied.
    pub fn render_context(&self) -> Context {
        let mut ctx = Context::default();
        for n in self.networks.state() {
            ctx.networks.insert(n.name_any(), n);
        }
        for a in self.apps.state() {
            ctx.insert_app(a);
        }
        for s in self.services.state() {
            ctx.services
                .insert((s.namespace().unwrap_or_default(), s.name_any()), s);
        }
        for n in self.namespaces.state() {
            ctx.namespaces.insert(n.name_any(), n);
        }
        ctx
    }

    /// Whether the cluster serves this kind (its watch could start).
    pub fn serves(&self, kind: ChildKind) -> bool {
        kind == ChildKind::Service
            || self.children.contains_key(&kind)
            || self.full_children.contains_key(&kind)
    }

    pub fn child(&self, kind: ChildKind, namespace: Option<&str>, name: &str) -> Option<LiveChild> {
        if kind == ChildKind::Service {
            let mut r = ObjectRef::<Service>::new(name);
            if let Some(ns) = namespace {
                r = r.within(ns);
            }
            let svc = self.services.get(&r)?;
            return Some(LiveChild {
                meta: svc.meta().clone(),
                content: serde_json::to_value(svc.as_ref()).ok(),
            });
        }
        let r = dynamic_ref(kind, name, namespace);
        if let Some(store) = self.full_children.get(&kind) {
            let obj = store.get(&r)?;
            return Some(LiveChild {
                meta: obj.metadata.clone(),
                content: serde_json::to_value(obj.as_ref()).ok(),
            });
        }
        let mut meta_ref = ObjectRef::<PartialObjectMeta<DynamicObject>>::new_with(
            name,
            super::api_resource(kind),
        );
        if let Some(ns) = namespace {
            meta_ref = meta_ref.within(ns);
        }
        let obj = self.children.get(&kind)?.get(&meta_ref)?;
        Some(LiveChild {
            meta: obj.metadata.clone(),
            content: None,
        })
    }

    /// Number of managed children per kind (for the children-managed gauge).
    pub fn count_children(&self) -> Vec<(&'static str, usize)> {
        let managed = |m: &ObjectMeta| owner_of(m).is_some();
        let mut out = vec![(
            ChildKind::Service.kind(),
            self.services
                .state()
                .iter()
                .filter(|s| managed(s.meta()))
                .count(),
        )];
        for (kind, store) in &self.children {
            out.push((kind.kind(), store.len()));
        }
        for (kind, store) in &self.full_children {
            out.push((kind.kind(), store.len()));
        }
        out
    }

    /// Every cached child carrying `owner`'s labels: (kind, namespace, name).
    pub fn owned_by(&self, owner: &Owner) -> Vec<(ChildKind, Option<String>, String)> {
        let mine = |meta: &ObjectMeta| owner_matches(meta, owner);
        let mut out = Vec::new();
        for s in self.services.state().iter().filter(|s| mine(s.meta())) {
            out.push((ChildKind::Service, s.namespace(), s.name_any()));
        }
        for (kind, store) in &self.children {
            for o in store.state().iter().filter(|o| mine(&o.metadata)) {
                out.push((*kind, o.namespace(), o.name_any()));
            }
        }
        for (kind, store) in &self.full_children {
            for o in store.state().iter().filter(|o| mine(&o.metadata)) {
                out.push((*kind, o.namespace(), o.name_any()));
            }
        }
        out
    }
}

/// Whether a child's labels name `owner` as its Gatehouse owner.
pub fn owner_matches(meta: &ObjectMeta, owner: &Owner) -> bool {
    let Some(l) = meta.labels.as_ref() else {
        return false;
    };
    l.get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGED_BY_VALUE)
        && l.get(labels::OWNER_KIND).map(String::as_str) == Some(owner.kind)
        && l.get(labels::OWNER_NAME) == Some(&owner.name)
        && l.get(labels::OWNER_NAMESPACE) == owner.namespace.as_ref()
}

/// The Gatehouse owner a child's labels name, if any: (kind, namespace, name).
pub fn owner_of(meta: &ObjectMeta) -> Option<(String, Option<String>, String)> {
    let l = meta.labels.as_ref()?;
    if l.get(labels::MANAGED_BY).map(String::as_str) != Some(labels::MANAGED_BY_VALUE) {
        return None;
    }
    Some((
        l.get(labels::OWNER_KIND)?.clone(),
        l.get(labels::OWNER_NAMESPACE).cloned(),
        l.get(labels::OWNER_NAME)?.clone(),
    ))
}

pub type Shared<T> = Arc<T>;
