//! Cache and index setup: one watch per kind feeding its cache, the index (index.rs) and the
//! dependency triggers (triggers.rs). Objects enter the index as the caches share them (the
//! Arc in the store), so they are held once; no cache keeps managedFields field sets
//! (nothing reads them), which are a large part of each object.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, future};
use gatehouse_api::{ClusterNetwork, EgressPolicy, ExposedApp, labels};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::reflector::{self, ObjectRef, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use super::stores::Stores;
use super::{api_resource, apply, index, triggers};
use crate::render::ChildKind;
use crate::render::context::{API_SERVER_NAMESPACE, API_SERVER_SERVICE, SERVICE_NAME_LABEL};

/// The caches, the index over them, and the streams that keep both current.
pub struct Watches {
    pub stores: Stores,
    pub index: Arc<RwLock<index::Index>>,
    /// Emptied of a child when its watch reports it gone (see apply::Verified).
    pub verified: Arc<Mutex<apply::Verified>>,
    /// The watch streams: they run for the operator's life.
    pub drivers: Vec<BoxFuture<'static, ()>>,
    /// The controllers' views of the three kinds' shared caches.
    pub apps: ReflectHandle<ExposedApp>,
    pub policies: ReflectHandle<EgressPolicy>,
    pub networks: ReflectHandle<ClusterNetwork>,
}

fn managed() -> watcher::Config {
    // Small pages keep the initial list of a large cluster from arriving as one huge body.
    watcher::Config::default()
        .labels(&format!(
            "{}={}",
            labels::MANAGED_BY,
            labels::MANAGED_BY_VALUE
        ))
        .page_size(100)
}

/// Sets up every watch (nothing runs until the drivers are polled): the three Gatehouse
/// kinds, Services and Namespaces with content, each served child kind metadata-only (every
/// object of the kind, ours or not), Certificates and DNSEndpoints also with content.
pub fn start(client: &Client, served: &[ChildKind], triggers: &triggers::Triggers) -> Watches {
    let mut drivers: Vec<BoxFuture<'static, ()>> = Vec::new();

    // The three kinds: shared caches, so the controllers and the dependency triggers read
    // one copy of each object.
    let (networks, net_writer) = reflector::store_shared::<ClusterNetwork>(256);
    let (apps, app_writer) = reflector::store_shared::<ExposedApp>(256);
    let (policies, egress_writer) = reflector::store_shared::<EgressPolicy>(256);
    let net_sub = net_writer.subscribe().expect("shared store");
    let app_sub = app_writer.subscribe().expect("shared store");
    let egress_sub = egress_writer.subscribe().expect("shared store");

    // Services: all of them (peers and ingress-controller addresses), full content.
    let (services, svc_writer) = reflector::store::<Service>();
    let (namespaces, ns_writer) = reflector::store::<Namespace>();
    let (api_server_slices, slice_writer) = reflector::store::<EndpointSlice>();

    let index: Arc<RwLock<index::Index>> = Arc::default();
    let verified: Arc<Mutex<apply::Verified>> = Arc::default();
    let mut children = BTreeMap::new();
    let mut full_children = BTreeMap::new();
    let mut child_streams: Vec<BoxFuture<'static, ()>> = Vec::new();
    for kind in served.iter().copied().filter(|k| *k != ChildKind::Service) {
        let ar = api_resource(kind);
        // Readiness of these lives in their status: their content is cached too.
        let with_content = kind.ready_by_status();
        let meta_feeds = if with_content {
            Feeds::Index
        } else {
            Feeds::IndexAndOwners
        };
        // Every object of the kind, ours or not, metadata only: "not in the cache" then means
        // "absent", so creating a child needs no GET, and an object of someone else with a
        // child's name is seen as such without one.
        {
            let writer =
                reflector::store::Writer::<kube::api::PartialObjectMeta<DynamicObject>>::new(
                    ar.clone(),
                );
            children.insert(kind, writer.as_reader());
            let (t, ix, store, v) = (
                triggers.clone(),
                index.clone(),
                writer.as_reader(),
                verified.clone(),
            );
            let meta_api: Api<kube::api::PartialObjectMeta<DynamicObject>> =
                Api::all_with(client.clone(), &ar);
            let events = watcher(meta_api, watcher::Config::default().page_size(100))
                .default_backoff()
                .modify(|o: &mut kube::api::PartialObjectMeta<DynamicObject>| {
                    keep_only_managers(&mut o.metadata)
                })
                .reflect(writer);
            let ar = ar.clone();
            child_streams.push(on_events(
                events,
                move |e: watcher::Event<kube::api::PartialObjectMeta<DynamicObject>>| {
                    child_event(kind, meta_feeds, e, &ix, &t, Some(&v), |(_, ns, name)| {
                        let mut r =
                            ObjectRef::<kube::api::PartialObjectMeta<DynamicObject>>::new_with(
                                name,
                                ar.clone(),
                            );
                        if let Some(ns) = ns {
                            r = r.within(ns);
                        }
                        store.get(&r).is_some()
                    })
                },
            ));
        }
        if with_content {
            let writer = reflector::store::Writer::<DynamicObject>::new(ar.clone());
            full_children.insert(kind, writer.as_reader());
            let (t, ix, store) = (triggers.clone(), index.clone(), writer.as_reader());
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
            let events = watcher(api, managed())
                .default_backoff()
                .modify(|o: &mut DynamicObject| o.metadata.managed_fields = None)
                .reflect(writer);
            child_streams.push(on_events(
                events,
                move |e: watcher::Event<DynamicObject>| {
                    child_event(kind, Feeds::Owners, e, &ix, &t, None, |k| {
                        store.get(&dynamic_ref(k)).is_some()
                    })
                },
            ));
        }
    }

    // Gateways: every one (a handful per cluster), full content, without managedFields.
    // Apps add listeners to the ones their tiers name; a change triggers the apps whose
    // listeners it holds (triggers::gateway_changed). Served when HTTPRoutes are.
    let gateways = served.contains(&ChildKind::HttpRoute).then(|| {
        let ar = super::stores::gateway_resource();
        let writer = reflector::store::Writer::<DynamicObject>::new(ar.clone());
        let store = writer.as_reader();
        let (t, ix, st) = (triggers.clone(), index.clone(), store.clone());
        let events = watcher(
            Api::<DynamicObject>::all_with(client.clone(), &ar),
            watcher::Config::default().page_size(100),
        )
        .default_backoff()
        .modify(|o: &mut DynamicObject| o.metadata.managed_fields = None)
        .reflect(writer);
        child_streams.push(on_events(
            events,
            move |e: watcher::Event<DynamicObject>| {
                use watcher::Event::*;
                let key = |o: &DynamicObject| (o.namespace().unwrap_or_default(), o.name_any());
                let apps = |o: &DynamicObject| {
                    super::stores::gateway_apps(&serde_json::to_value(o).unwrap_or_default())
                };
                let mut w = ix.write().unwrap_or_else(|e| e.into_inner());
                match e {
                    Apply(o) => {
                        let (k, now) = (key(&o), apps(&o));
                        let before = w.upsert_gateway(k.clone(), Some(now.clone()));
                        t.gateway_changed(&k, before.as_ref(), Some(&now), &w);
                    }
                    Delete(o) => {
                        let k = key(&o);
                        let before = w.upsert_gateway(k.clone(), None);
                        t.gateway_changed(&k, before.as_ref(), None, &w);
                    }
                    InitApply(_) | Init => {}
                    InitDone => {
                        for o in st.state() {
                            let (k, now) = (key(&o), apps(&o));
                            let before = w.upsert_gateway(k.clone(), Some(now.clone()));
                            if before.as_ref() != Some(&now) {
                                t.gateway_changed(&k, before.as_ref(), Some(&now), &w);
                            }
                        }
                        w.retain_gateways(|(ns, name), _| {
                            st.get(
                                &ObjectRef::new_with(name, super::stores::gateway_resource())
                                    .within(ns),
                            )
                            .is_some()
                        });
                    }
                }
            },
        ));
        store
    });

    let stores = Stores {
        networks: networks.clone(),
        apps: apps.clone(),
        policies: policies.clone(),
        services: services.clone(),
        namespaces: namespaces.clone(),
        api_server_slices: api_server_slices.clone(),
        children,
        full_children,
        gateways,
    };

    // Watches feeding the caches, the index and the dependency triggers. Objects enter the
    // index as the caches share them (the Arc in the store), so they are held once: an
    // Apply takes the cache's copy just reflected; a (re)list is taken from the cache when
    // it is done (InitDone), because while listing the cache keeps the objects in a buffer
    // of its own. No cache keeps managedFields (nothing reads them there), which are a large
    // part of each object.
    let page = || watcher::Config::default().page_size(100);
    let (t, ix, st) = (triggers.clone(), index.clone(), stores.clone());
    let net_events = watcher(Api::<ClusterNetwork>::all(client.clone()), page())
        .default_backoff()
        .modify(|o: &mut ClusterNetwork| o.managed_fields_mut().clear())
        .reflect_shared(net_writer);
    drivers.push(on_events(
        net_events,
        move |e: watcher::Event<ClusterNetwork>| {
            use watcher::Event::*;
            match e {
                Apply(o) => {
                    let o = shared_of(&st.networks, o);
                    let name = o.name_any();
                    let mut w = ix.write().unwrap_or_else(|e| e.into_inner());
                    w.upsert_network(o);
                    t.network_changed(&name, &w);
                }
                InitApply(_) => {}
                Delete(o) => {
                    let mut w = ix.write().unwrap_or_else(|e| e.into_inner());
                    w.remove_network(&o.name_any());
                    t.network_changed(&o.name_any(), &w);
                }
                Init => {}
                InitDone => {
                    let mut w = ix.write().unwrap_or_else(|e| e.into_inner());
                    for o in st.networks.state() {
                        let old = w.upsert_network(o.clone());
                        if changed(old.as_deref(), &o) {
                            t.network_changed(&o.name_any(), &w);
                        }
                    }
                    w.retain_networks(|n| st.networks.get(&ObjectRef::new(n)).is_some());
                }
            }
        },
    ));
    let (t, ix, st) = (triggers.clone(), index.clone(), stores.clone());
    let app_events = watcher(Api::<ExposedApp>::all(client.clone()), page())
        .default_backoff()
        .modify(|o: &mut ExposedApp| o.managed_fields_mut().clear())
        .reflect_shared(app_writer);
    drivers.push(on_events(
        app_events,
        move |e: watcher::Event<ExposedApp>| {
            use watcher::Event::*;
            let mut w = ix.write().unwrap_or_else(|e| e.into_inner());
            match e {
                Apply(o) => {
                    let o = shared_of(&st.apps, o);
                    let old = w.upsert_app(o.clone());
                    t.app_changed(Some(&o), old.as_deref(), &w);
                }
                InitApply(_) => {}
                Delete(o) => {
                    let old = w.remove_app(&o.namespace().unwrap_or_default(), &o.name_any());
                    t.app_changed(None, old.as_deref().or(Some(&o)), &w);
                }
                Init => {}
                // A (re)list reconciles every app anyway: no triggers needed.
                InitDone => {
                    for o in st.apps.state() {
                        w.upsert_app(o);
                    }
                    w.retain_apps(|(ns, name)| {
                        st.apps.get(&ObjectRef::new(name).within(ns)).is_some()
                    })
                }
            }
        },
    ));
    // EgressPolicies trigger only themselves (the controller's own subscription).
    let (ix, st) = (index.clone(), stores.clone());
    let egress_events = watcher(Api::<EgressPolicy>::all(client.clone()), page())
        .default_backoff()
        .modify(|o: &mut EgressPolicy| o.managed_fields_mut().clear())
        .reflect_shared(egress_writer);
    drivers.push(on_events(
        egress_events,
        move |e: watcher::Event<EgressPolicy>| {
            use watcher::Event::*;
            let mut w = ix.write().unwrap_or_else(|e| e.into_inner());
            match e {
                Apply(o) => {
                    w.upsert_policy(shared_of(&st.policies, o));
                }
                InitApply(_) => {}
                Delete(o) => {
                    w.remove_policy(&o.namespace().unwrap_or_default(), &o.name_any());
                }
                Init => {}
                InitDone => {
                    for o in st.policies.state() {
                        w.upsert_policy(o);
                    }
                    w.retain_policies(|(ns, name)| {
                        st.policies.get(&ObjectRef::new(name).within(ns)).is_some()
                    })
                }
            }
        },
    ));
    let (t, ix, st, v) = (
        triggers.clone(),
        index.clone(),
        stores.clone(),
        verified.clone(),
    );
    let svc_events = watcher(Api::<Service>::all(client.clone()), page())
        .default_backoff()
        .modify(|o: &mut Service| o.managed_fields_mut().clear())
        .reflect(svc_writer);
    drivers.push(on_events(svc_events, move |e: watcher::Event<Service>| {
        use watcher::Event::*;
        let mut w = ix.write().unwrap_or_else(|e| e.into_inner());
        match e {
            Apply(o) => {
                let o = shared_of(&st.services, o);
                let key = (o.namespace().unwrap_or_default(), o.name_any());
                let old = w.ctx.services.get(&key).cloned();
                let before = w.pool_fullness(&index::moved_addresses(old.as_deref(), Some(&o)).0);
                w.upsert_service(o.clone());
                let echo = echo_of_our_write(ChildKind::Service, &o.metadata, &v);
                t.service_changed(&o, echo, &w);
                t.addresses_moved(old.as_deref(), Some(&o), &before, &w);
            }
            InitApply(_) => {}
            Delete(o) => {
                let key = (o.namespace().unwrap_or_default(), o.name_any());
                let old = w.ctx.services.get(&key).cloned();
                let gone = old.as_deref().unwrap_or(&o);
                let before = w.pool_fullness(&index::moved_addresses(Some(gone), None).0);
                w.remove_service(&o.namespace().unwrap_or_default(), &o.name_any());
                v.lock().unwrap_or_else(|e| e.into_inner()).remove(&(
                    ChildKind::Service,
                    o.namespace(),
                    o.name_any(),
                ));
                t.service_changed(&o, false, &w);
                t.addresses_moved(Some(gone), None, &before, &w);
            }
            Init => {}
            InitDone => {
                let exists = |ns: &str, name: &str| {
                    st.services.get(&ObjectRef::new(name).within(ns)).is_some()
                };
                v.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|(k, ns, name), _| {
                        *k != ChildKind::Service || exists(ns.as_deref().unwrap_or_default(), name)
                    });
                for o in st.services.state() {
                    let old = w
                        .ctx
                        .services
                        .get(&(o.namespace().unwrap_or_default(), o.name_any()))
                        .cloned();
                    if !changed(old.as_deref(), &o) {
                        w.upsert_service(o);
                        continue;
                    }
                    let moved = index::moved_addresses(old.as_deref(), Some(&o)).0;
                    let before = w.pool_fullness(&moved);
                    w.upsert_service(o.clone());
                    t.service_changed(&o, false, &w);
                    t.addresses_moved(old.as_deref(), Some(&o), &before, &w);
                }
                let gone: Vec<Arc<Service>> = w
                    .ctx
                    .services
                    .iter()
                    .filter(|((ns, name), _)| !exists(ns, name))
                    .map(|(_, s)| s.clone())
                    .collect();
                for s in gone {
                    let before = w.pool_fullness(&index::moved_addresses(Some(&s), None).0);
                    w.remove_service(&s.namespace().unwrap_or_default(), &s.name_any());
                    t.service_changed(&s, false, &w);
                    t.addresses_moved(Some(&s), None, &before, &w);
                }
            }
        }
    }));
    let (t, ix, st) = (triggers.clone(), index.clone(), stores.clone());
    let ns_events = watcher(Api::<Namespace>::all(client.clone()), page())
        .default_backoff()
        .modify(|o: &mut Namespace| o.managed_fields_mut().clear())
        .reflect(ns_writer);
    drivers.push(on_events(ns_events, move |e: watcher::Event<Namespace>| {
        use watcher::Event::*;
        let mut w = ix.write().unwrap_or_else(|e| e.into_inner());
        match e {
            Apply(o) => {
                let name = o.name_any();
                w.upsert_namespace(shared_of(&st.namespaces, o));
                t.namespaces_changed(&[name], &w);
            }
            InitApply(_) => {}
            Delete(o) => {
                w.remove_namespace(&o.name_any());
                t.namespaces_changed(&[o.name_any()], &w);
            }
            Init => {}
            InitDone => {
                let mut changed_names = Vec::new();
                for o in st.namespaces.state() {
                    let old = w.ctx.namespaces.get(&o.name_any()).cloned();
                    if changed(old.as_deref(), &o) {
                        changed_names.push(o.name_any());
                    }
                    w.upsert_namespace(o);
                }
                let before: Vec<String> = w.ctx.namespaces.keys().cloned().collect();
                w.retain_namespaces(|n| st.namespaces.get(&ObjectRef::new(n)).is_some());
                changed_names.extend(
                    before
                        .into_iter()
                        .filter(|n| !w.ctx.namespaces.contains_key(n)),
                );
                if !changed_names.is_empty() {
                    t.namespaces_changed(&changed_names, &w);
                }
            }
        }
    }));
    // The API server's EndpointSlices: one Service's, in one namespace (a handful of
    // objects), so policies naming `apiServer` follow control-plane address changes.
    let (t, ix, st) = (triggers.clone(), index.clone(), stores.clone());
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), API_SERVER_NAMESPACE);
    let slice_events = watcher(
        slices,
        watcher::Config::default().labels(&format!("{SERVICE_NAME_LABEL}={API_SERVER_SERVICE}")),
    )
    .default_backoff()
    .modify(|o: &mut EndpointSlice| o.managed_fields_mut().clear())
    .reflect(slice_writer);
    drivers.push(on_events(
        slice_events,
        move |e: watcher::Event<EndpointSlice>| {
            use watcher::Event::*;
            let mut w = ix.write().unwrap_or_else(|e| e.into_inner());
            match e {
                Apply(o) => {
                    w.ctx
                        .insert_api_server_slice(shared_of(&st.api_server_slices, o));
                    t.api_server_changed(&w);
                }
                Delete(o) => {
                    w.ctx.remove_api_server_slice(&o.name_any());
                    t.api_server_changed(&w);
                }
                InitApply(_) | Init => {}
                InitDone => {
                    w.ctx.api_server_slices.clear();
                    for o in st.api_server_slices.state() {
                        w.ctx.insert_api_server_slice(o);
                    }
                    t.api_server_changed(&w);
                }
            }
        },
    ));
    drivers.extend(child_streams);
    Watches {
        stores,
        index,
        verified,
        drivers,
        apps: app_sub,
        policies: egress_sub,
        networks: net_sub,
    }
}

/// Whether a relisted object differs from what the index held (new, or another version).
fn changed<K: kube::Resource>(old: Option<&K>, new: &K) -> bool {
    old.is_none_or(|old| old.meta().resource_version != new.meta().resource_version)
}

/// Resolves once every cache has its initial list.
pub async fn synced(stores: &Stores) {
    let _ = stores.networks.wait_until_ready().await;
    let _ = stores.apps.wait_until_ready().await;
    let _ = stores.policies.wait_until_ready().await;
    let _ = stores.services.wait_until_ready().await;
    let _ = stores.namespaces.wait_until_ready().await;
    let _ = stores.api_server_slices.wait_until_ready().await;
    for s in stores.children.values() {
        let _ = s.wait_until_ready().await;
    }
    for s in stores.full_children.values() {
        let _ = s.wait_until_ready().await;
    }
    if let Some(s) = &stores.gateways {
        let _ = s.wait_until_ready().await;
    }
}

/// Drives a watch stream (which keeps its cache current) and calls `f` for every event it
/// reports. Watch errors are retried by the stream's backoff; they are only logged here.
fn on_events<K, E, S>(
    events: S,
    mut f: impl FnMut(watcher::Event<K>) + Send + 'static,
) -> BoxFuture<'static, ()>
where
    K: Send + 'static,
    S: futures::Stream<Item = Result<watcher::Event<K>, E>> + Send + 'static,
    E: std::fmt::Display,
{
    events
        .for_each(move |event| {
            match event {
                Ok(e) => f(e),
                Err(e) => tracing::warn!(error = %e, "watch error; retrying"),
            }
            future::ready(())
        })
        .boxed()
}

/// What the metadata caches keep of managedFields: who wrote (manager, operation,
/// subresource), not the field sets, which are most of an object's metadata and which no
/// step reads (plan::written_only_by_us needs only the managers).
fn keep_only_managers(meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
    for f in meta.managed_fields.iter_mut().flatten() {
        f.fields_v1 = None;
        f.fields_type = None;
        f.time = None;
    }
}

/// The cache's own shared copy of an object just reflected (so the index holds no second
/// copy); a fresh one only if the cache lost it meanwhile.
fn shared_of<K>(store: &Store<K>, o: K) -> Arc<K>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    store
        .get(&ObjectRef::from_obj(&o))
        .unwrap_or_else(|| Arc::new(o))
}

/// What one child watch feeds. A kind with a full-content cache (Certificate,
/// DNSEndpoint) has two watches: the metadata one (every object of the kind) keeps the
/// index, the full one (ours) triggers the owners, after its cache holds the content their
/// readiness is read from; each event is handled once.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Feeds {
    IndexAndOwners,
    Index,
    Owners,
}

/// A child kind's watch event: the index follows it, the owner is triggered (not for an
/// echo of our own write); after a relist the index keeps only what `exists` in the cache.
/// With `verified` (the cache of every object of the kind), a child that went is also
/// forgotten there, so it is written again rather than taken as "just written".
fn child_event<K: kube::Resource<DynamicType = ApiResource>>(
    kind: ChildKind,
    feeds: Feeds,
    e: watcher::Event<K>,
    ix: &RwLock<index::Index>,
    t: &triggers::Triggers,
    verified: Option<&Mutex<apply::Verified>>,
    mut exists: impl FnMut(&index::ChildKey) -> bool,
) {
    use watcher::Event::*;
    let (index, owners) = (feeds != Feeds::Owners, feeds != Feeds::Index);
    let mut w = ix.write().unwrap_or_else(|e| e.into_inner());
    match e {
        Apply(o) | InitApply(o) => {
            if index {
                w.upsert_child(kind, o.meta());
            }
            if owners && !verified.is_some_and(|v| echo_of_our_write(kind, o.meta(), v)) {
                t.child_changed(o.meta());
            }
        }
        Delete(o) => {
            let m = o.meta();
            let name = m.name.clone().unwrap_or_default();
            if index {
                w.remove_child(kind, m.namespace.as_deref(), &name);
            }
            if let Some(v) = verified {
                v.lock().unwrap_or_else(|e| e.into_inner()).remove(&(
                    kind,
                    m.namespace.clone(),
                    name,
                ));
            }
            if owners {
                t.child_changed(m);
            }
        }
        Init => {}
        InitDone => {
            if let Some(v) = verified {
                v.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|k, _| k.0 != kind || exists(k));
            }
            if index {
                w.retain_children(kind, exists);
            }
        }
    }
}

/// Whether a child's watch event only shows what our own last write made it (its
/// resourceVersion is the one that write returned): its owner rendered and judged exactly
/// this, so the event needs no reconcile of it. Not for Certificates and DNSEndpoints,
/// whose readiness is read from content the reconcile that wrote them could not see yet.
fn echo_of_our_write(
    kind: ChildKind,
    meta: &ObjectMeta,
    verified: &Mutex<apply::Verified>,
) -> bool {
    if kind.ready_by_status() {
        return false;
    }
    let key = (
        kind,
        meta.namespace.clone(),
        meta.name.clone().unwrap_or_default(),
    );
    verified
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .is_some_and(|(rv, _)| meta.resource_version.as_ref() == Some(rv))
}

/// The reflector key of a full-content child.
fn dynamic_ref((kind, ns, name): &index::ChildKey) -> ObjectRef<DynamicObject> {
    let mut r = ObjectRef::new_with(name, api_resource(*kind));
    if let Some(ns) = ns {
        r = r.within(ns);
    }
    r
}
