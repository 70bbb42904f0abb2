//! The operator's watch caches and the views the reconcilers need of them.

use std::collections::BTreeMap;
use std::sync::Arc;

use gatehouse_api::{ClusterNetwork, EgressPolicy, ExposedApp, labels};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::api::{DynamicObject, PartialObjectMeta};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::Value;

use crate::render::{ChildKind, Owner};

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
    /// The `default/kubernetes` Service's EndpointSlices (the `apiServer` peer).
    pub api_server_slices: Store<EndpointSlice>,
    /// Metadata-only caches of every object of each child kind (ours or not; Services are
    /// in `services`): absent here means absent from the cluster.
    pub children: BTreeMap<ChildKind, Store<PartialObjectMeta<DynamicObject>>>,
    /// Full caches of our children whose status we read (Certificate, DNSEndpoint,
    /// HTTPRoute).
    pub full_children: BTreeMap<ChildKind, Store<DynamicObject>>,
    /// Every Gateway (the platform's: apps add listeners to those their tiers name), when
    /// the cluster serves the Gateway API.
    pub gateways: Option<Store<DynamicObject>>,
}

fn dynamic_ref(kind: ChildKind, name: &str, namespace: Option<&str>) -> ObjectRef<DynamicObject> {
    let mut r = ObjectRef::new_with(name, super::api_resource(kind));
    if let Some(ns) = namespace {
        r = r.within(ns);
    }
    r
}

impl Stores {
    /// The live Gateway `namespace/name`, if the cluster serves Gateways and has it.
    pub fn gateway(&self, namespace: &str, name: &str) -> Option<Arc<DynamicObject>> {
        let r = ObjectRef::new_with(name, gateway_resource()).within(namespace);
        self.gateways.as_ref()?.get(&r)
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
        if let Some(obj) = self.full_children.get(&kind).and_then(|s| s.get(&r)) {
            return Some(LiveChild {
                meta: obj.metadata.clone(),
                content: serde_json::to_value(obj.as_ref()).ok(),
            });
        }
        // Not ours with content: the metadata cache of every object of the kind tells
        // whether something else holds the name.
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
}

/// The Gateway API's Gateway (not a child kind: Gatehouse never owns one).
pub fn gateway_resource() -> kube::api::ApiResource {
    kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk(crate::render::gateway::GROUP, "v1", "Gateway"),
        "gateways",
    )
}

/// The apps whose listeners a Gateway holds (spec or status), by listener name.
pub fn gateway_apps(gateway: &Value) -> std::collections::BTreeSet<(String, String)> {
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["name"].as_str().map(str::to_string))
            .collect()
    };
    names(&gateway["spec"]["listeners"])
        .into_iter()
        .chain(names(&gateway["status"]["listeners"]))
        .filter_map(|n| crate::render::gateway::listener_owner(&n))
        .collect()
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
