//! The controllers. One reconcile follows the data flow of architecture.md, each step a
//! named function: fetch context (from the caches) -> validate + render (pure, shared with
//! `gatehouse render`) -> apply children (only when different, only if ours) -> prune ->
//! read readiness -> compute conditions (pure) -> patch status only when it changed.

pub mod apply;
pub mod cluster_network;
pub mod egress_policy;
pub mod exposed_app;
pub mod index;
pub mod plan;
pub mod readiness;
pub mod status;
pub mod steps;
pub mod stores;
pub mod triggers;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::{FutureExt, StreamExt, future};
use gatehouse_api::{ClusterNetwork, EgressPolicy, ExposedApp, labels};
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::mpsc;

use crate::error::Error;
use crate::metrics::Metrics;
use crate::render::ChildKind;
use stores::Stores;

/// How often an object is reconciled when nothing triggers it: a safety net against missed
/// events, cheap because an unchanged object causes no writes.
pub const RESYNC: Duration = Duration::from_secs(600);

/// State shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub stores: Stores,
    /// Relations between the cached objects and the render context, kept current from the
    /// watch events: what a reconcile reads instead of scanning the caches.
    pub index: Arc<RwLock<index::Index>>,
    /// (child) -> (resourceVersion, desired hash) at which it was last written or seen to
    /// match what we desire.
    pub verified: Arc<Mutex<apply::Verified>>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// Consecutive failures per object, for exponential backoff; cleared on success.
    pub failures: Mutex<HashMap<String, u32>>,
}

pub type Shared = Arc<Context>;

/// The ApiResource of a child kind (no discovery needed: the table in `ChildKind` is fixed).
pub fn api_resource(kind: ChildKind) -> ApiResource {
    let (group, version, k, plural, _) = kind.gvk();
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, k), plural)
}

/// Why the operator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "the Gatehouse CRDs are not installed in this cluster ({0}); install them with `kubectl apply --server-side -k config/crd`"
    )]
    CrdsMissing(String),
    #[error("cannot reach the API server: {0}")]
    Unreachable(#[source] kube::Error),
    #[error("webhook: {0}")]
    Webhook(String),
    #[error("lost leadership: another replica leads now; exiting so no two replicas write")]
    LostLeadership,
}

/// Fails with a clear message when the Gatehouse CRDs are missing.
pub async fn check_crds(client: &Client) -> Result<(), StartError> {
    for (what, result) in [
        (
            "clusternetworks.gatehouse.dev",
            Api::<ClusterNetwork>::all(client.clone())
                .list_metadata(&ListParams::default().limit(1))
                .await
                .err(),
        ),
        (
            "exposedapps.gatehouse.dev",
            Api::<ExposedApp>::all(client.clone())
                .list_metadata(&ListParams::default().limit(1))
                .await
                .err(),
        ),
        (
            "egresspolicies.gatehouse.dev",
            Api::<EgressPolicy>::all(client.clone())
                .list_metadata(&ListParams::default().limit(1))
                .await
                .err(),
        ),
    ] {
        match result {
            None => {}
            Some(kube::Error::Api(e)) if e.code == 404 => {
                return Err(StartError::CrdsMissing(format!("{what} is not served")));
            }
            Some(e) => return Err(StartError::Unreachable(e)),
        }
    }
    Ok(())
}

/// Which child kinds the cluster serves. Kinds it does not serve (no Cilium, no MetalLB)
/// are not watched; an object that needs one is Stalled with reason KindNotInstalled.
async fn served_kinds(client: &Client) -> Vec<ChildKind> {
    let mut out = Vec::new();
    for kind in ChildKind::ALL {
        let (group, version, k, ..) = kind.gvk();
        let gvk = GroupVersionKind::gvk(group, version, k);
        if kube::discovery::pinned_kind(client, &gvk).await.is_ok() {
            out.push(kind);
        }
    }
    out
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

/// Runs the three controllers until `shutdown` resolves.
/// How `gatehouse run` runs: all optional.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Run the controllers only while holding this Lease.
    pub leader: Option<crate::leader::LeaderConfig>,
    /// Serve /metrics, /healthz and /readyz here.
    pub http_addr: Option<std::net::SocketAddr>,
    /// Serve the Multus attachment webhook and keep its configuration.
    pub webhook: Option<crate::webhook::WebhookOptions>,
}

pub async fn run(
    client: Client,
    metrics: Arc<Metrics>,
    options: RunOptions,
    shutdown: impl future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    check_crds(&client).await?;
    let served = served_kinds(&client).await;
    let missing: Vec<&str> = ChildKind::ALL
        .iter()
        .filter(|k| !served.contains(k))
        .map(|k| k.kind())
        .collect();
    if !missing.is_empty() {
        tracing::warn!(
            ?missing,
            "some child kinds are not served by this cluster; objects that need them will be Stalled"
        );
    }

    let (app_tx, app_rx) = mpsc::unbounded_channel::<ObjectRef<ExposedApp>>();
    let (egress_tx, egress_rx) = mpsc::unbounded_channel::<ObjectRef<EgressPolicy>>();
    let (net_tx, net_rx) = mpsc::unbounded_channel::<ObjectRef<ClusterNetwork>>();
    let triggers = triggers::Triggers {
        apps: app_tx,
        policies: egress_tx,
        networks: net_tx,
    };

    let mut drivers: Vec<future::BoxFuture<'static, ()>> = Vec::new();

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

    let index: Arc<RwLock<index::Index>> = Arc::default();
    let verified: Arc<Mutex<apply::Verified>> = Arc::default();
    let mut children = BTreeMap::new();
    let mut full_children = BTreeMap::new();
    let mut child_streams: Vec<future::BoxFuture<'static, ()>> = Vec::new();
    for kind in served.iter().copied().filter(|k| *k != ChildKind::Service) {
        let ar = api_resource(kind);
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
                    child_event(kind, e, &ix, &t, Some(&v), |(_, ns, name)| {
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
        if matches!(kind, ChildKind::Certificate | ChildKind::DnsEndpoint) {
            // Readiness lives in their status: cache the content.
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
                    child_event(kind, e, &ix, &t, None, |k| {
                        store.get(&dynamic_ref(k)).is_some()
                    })
                },
            ));
        }
    }

    let stores = Stores {
        networks: networks.clone(),
        apps: apps.clone(),
        policies: policies.clone(),
        services: services.clone(),
        namespaces: namespaces.clone(),
        children,
        full_children,
    };
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "gatehouse".into(),
            instance: None,
        },
    );
    let ctx: Shared = Arc::new(Context {
        client: client.clone(),
        stores: stores.clone(),
        index: index.clone(),
        verified: verified.clone(),
        metrics: metrics.clone(),
        recorder,
        failures: Mutex::default(),
    });

    // Watches feeding the caches, the index and the dependency triggers. Objects enter the
    // index as the caches share them (the Arc in the store), so they are held once; no cache
    // keeps managedFields (nothing reads them there), which are a large part of each object.
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
                Apply(o) | InitApply(o) => {
                    let o = shared_of(&st.networks, o);
                    let name = o.name_any();
                    let mut w = ix.write().unwrap_or_else(|e| e.into_inner());
                    w.upsert_network(o);
                    t.network_changed(&name, &w);
                }
                Delete(o) => {
                    let mut w = ix.write().unwrap_or_else(|e| e.into_inner());
                    w.remove_network(&o.name_any());
                    t.network_changed(&o.name_any(), &w);
                }
                Init => {}
                InitDone => {
                    let mut w = ix.write().unwrap_or_else(|e| e.into_inner());
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
                // The initial list reconciles every app anyway: no triggers needed.
                InitApply(o) => {
                    w.upsert_app(shared_of(&st.apps, o));
                }
                Delete(o) => {
                    let old = w.remove_app(&o.namespace().unwrap_or_default(), &o.name_any());
                    t.app_changed(None, old.as_deref().or(Some(&o)), &w);
                }
                Init => {}
                InitDone => w.retain_apps(|(ns, name)| {
                    st.apps.get(&ObjectRef::new(name).within(ns)).is_some()
                }),
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
                Apply(o) | InitApply(o) => {
                    w.upsert_policy(shared_of(&st.policies, o));
                }
                Delete(o) => {
                    w.remove_policy(&o.namespace().unwrap_or_default(), &o.name_any());
                }
                Init => {}
                InitDone => w.retain_policies(|(ns, name)| {
                    st.policies.get(&ObjectRef::new(name).within(ns)).is_some()
                }),
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
            Apply(o) | InitApply(o) => {
                let o = shared_of(&st.services, o);
                w.upsert_service(o.clone());
                t.service_changed(&o, &w);
            }
            Delete(o) => {
                w.remove_service(&o.namespace().unwrap_or_default(), &o.name_any());
                v.lock().unwrap_or_else(|e| e.into_inner()).remove(&(
                    ChildKind::Service,
                    o.namespace(),
                    o.name_any(),
                ));
                t.service_changed(&o, &w);
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
                w.retain_services(|(ns, name)| exists(ns, name));
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
            Apply(o) | InitApply(o) => {
                w.upsert_namespace(shared_of(&st.namespaces, o));
                t.namespace_changed(&w);
            }
            Delete(o) => {
                w.remove_namespace(&o.name_any());
                t.namespace_changed(&w);
            }
            Init => {}
            InitDone => w.retain_namespaces(|n| st.namespaces.get(&ObjectRef::new(n)).is_some()),
        }
    }));
    drivers.extend(child_streams);

    // Reconciles start only once every cache has its initial list, so a first render never
    // sees a half-filled cluster (and never prunes what it simply has not seen yet).
    let synced = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ready = {
        let stores = stores.clone();
        let synced = synced.clone();
        async move {
            wait_for_caches(&stores).await;
            synced.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    };
    if let Some(webhook) = options.webhook.clone() {
        let certs = crate::webhook::generate_certs(&webhook.subject_alt_names)
            .map_err(|e| StartError::Webhook(format!("certificates: {e}")))?;
        let client = client.clone();
        let apps = stores.apps.clone();
        drivers.push(
            async move {
                // Register (with retries) while serving: the API server only calls us once
                // the configuration carries our CA.
                let register = async {
                    let mut delay = Duration::from_secs(1);
                    while let Err(e) = crate::webhook::register(&client, &webhook, &certs.ca_pem).await {
                        tracing::warn!(error = %e, "cannot write the webhook configuration; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(60));
                    }
                };
                let serve = crate::webhook::serve(webhook.addr, &certs, apps);
                let (_, served) = futures::join!(register, serve);
                if let Err(e) = served {
                    tracing::error!(error = %e, "cannot serve the pod webhook");
                }
            }
            .boxed(),
        );
    }
    if let Some(addr) = options.http_addr {
        let counted = index.clone();
        let endpoints = crate::http::Endpoints {
            metrics: metrics.clone(),
            ready: synced.clone(),
            children: Arc::new(move || {
                counted
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .count_children()
            }),
        };
        drivers.push(
            async move {
                if let Err(e) = crate::http::serve(addr, endpoints).await {
                    tracing::error!(%addr, error = %e, "cannot serve metrics and health");
                }
            }
            .boxed(),
        );
    }

    // A reconcile mostly waits on the API server (its writes), not on CPU: 16 in flight per
    // kind keep the API server as busy as a plain 16-way client would (make bench-scale).
    let config = kube::runtime::controller::Config::default()
        .debounce(Duration::from_millis(200))
        .concurrency(16);
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let stopper = |tx: &tokio::sync::broadcast::Sender<()>| {
        let mut rx = tx.subscribe();
        async move {
            let _ = rx.recv().await;
        }
    };

    let app_ctl = Controller::for_shared_stream(app_sub, apps)
        .with_config(config.clone())
        .reconcile_on(tokio_stream(app_rx))
        .graceful_shutdown_on(stopper(&stop_tx))
        .run(
            exposed_app::reconcile,
            exposed_app::error_policy,
            ctx.clone(),
        )
        .for_each(|_| future::ready(()));
    let egress_ctl = Controller::for_shared_stream(egress_sub, policies)
        .with_config(config.clone())
        .reconcile_on(tokio_stream(egress_rx))
        .graceful_shutdown_on(stopper(&stop_tx))
        .run(
            egress_policy::reconcile,
            egress_policy::error_policy,
            ctx.clone(),
        )
        .for_each(|_| future::ready(()));
    let net_ctl = Controller::for_shared_stream(net_sub, networks)
        .with_config(config)
        .reconcile_on(tokio_stream(net_rx))
        .graceful_shutdown_on(stopper(&stop_tx))
        .run(
            cluster_network::reconcile,
            cluster_network::error_policy,
            ctx.clone(),
        )
        .for_each(|_| future::ready(()));

    // With leader election, caches fill on every replica (a standby is warm) but only the
    // leader runs the controllers, so only the leader writes.
    let mut elector = options
        .leader
        .map(|config| crate::leader::Elector::new(client.clone(), config));
    let controllers = async move {
        ready.await;
        if let Some(e) = elector.as_mut() {
            e.acquire().await;
        }
        tracing::info!("caches synced; controllers running");
        let keep = async {
            match elector.as_mut() {
                Some(e) => e.keep().await,
                None => future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = future::join3(app_ctl, egress_ctl, net_ctl) => Ok(()),
            _ = keep => Err(StartError::LostLeadership),
        }
    };
    let watches = future::join_all(drivers);
    tokio::select! {
        _ = watches => Ok(()),
        result = controllers => result,
        _ = shutdown => {
            let _ = stop_tx.send(());
            Ok(())
        }
    }
}

/// Runs one reconcile and records its duration and outcome in the metrics.
/// A success also clears the object's failure count (its backoff starts over).
pub async fn observed<K: kube::ResourceExt>(
    ctx: &Context,
    kind: &'static str,
    obj: &K,
    reconcile: impl future::Future<Output = Result<Action, Error>>,
) -> Result<Action, Error> {
    let key = failure_key(kind, obj);
    let started = std::time::Instant::now();
    let result = reconcile.await;
    ctx.metrics.observe_reconcile(
        kind,
        started.elapsed(),
        result.as_ref().err().map(Error::metric_label),
    );
    if result.is_ok() {
        ctx.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }
    result
}

/// The key under which an object's consecutive failures are counted.
fn failure_key<K: kube::ResourceExt>(kind: &str, obj: &K) -> String {
    format!(
        "{kind}/{}/{}",
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// Server-side applies `status` to the status subresource of `kind` `name` (field manager
/// `gatehouse`): fields we stop reporting are removed, fields others own are left alone.
pub async fn apply_status<K>(
    api: &Api<K>,
    kind: &str,
    name: &str,
    status: &impl serde::Serialize,
) -> Result<(), Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let body = serde_json::json!({"apiVersion": gatehouse_api::API_VERSION, "kind": kind, "status": status});
    let params = kube::api::PatchParams::apply(labels::FIELD_MANAGER).force();
    api.patch_status(name, &params, &kube::api::Patch::Apply(&body))
        .await
        .map(|_| ())
        .map_err(|source| Error::Status {
            what: format!("{kind} {name}"),
            source,
        })
}

/// Drives a watch stream (which keeps its cache current) and calls `f` for every event it
/// reports. Watch errors are retried by the stream's backoff; they are only logged here.
fn on_events<K, E, S>(
    events: S,
    mut f: impl FnMut(watcher::Event<K>) + Send + 'static,
) -> future::BoxFuture<'static, ()>
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
/// step reads (apply::written_only_by_us needs only the managers).
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

/// A child kind's watch event: the index follows it, the owner is triggered; after a
/// relist the index keeps only what `exists` in the cache.
/// With `verified` (the cache of every object of the kind), a child that went is also
/// forgotten there, so it is written again rather than taken as "just written".
fn child_event<K: kube::Resource<DynamicType = ApiResource>>(
    kind: ChildKind,
    e: watcher::Event<K>,
    ix: &RwLock<index::Index>,
    t: &triggers::Triggers,
    verified: Option<&Mutex<apply::Verified>>,
    mut exists: impl FnMut(&index::ChildKey) -> bool,
) {
    use watcher::Event::*;
    let mut w = ix.write().unwrap_or_else(|e| e.into_inner());
    match e {
        Apply(o) | InitApply(o) => {
            w.upsert_child(kind, o.meta());
            t.child_changed(o.meta());
        }
        Delete(o) => {
            let m = o.meta();
            let name = m.name.clone().unwrap_or_default();
            w.remove_child(kind, m.namespace.as_deref(), &name);
            if let Some(v) = verified {
                v.lock().unwrap_or_else(|e| e.into_inner()).remove(&(
                    kind,
                    m.namespace.clone(),
                    name,
                ));
            }
            t.child_changed(m);
        }
        Init => {}
        InitDone => {
            if let Some(v) = verified {
                v.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|k, _| k.0 != kind || exists(k));
            }
            w.retain_children(kind, exists);
        }
    }
}

/// The reflector key of a full-content child.
fn dynamic_ref((kind, ns, name): &index::ChildKey) -> ObjectRef<DynamicObject> {
    let mut r = ObjectRef::new_with(name, api_resource(*kind));
    if let Some(ns) = ns {
        r = r.within(ns);
    }
    r
}

async fn wait_for_caches(stores: &Stores) {
    let _ = stores.networks.wait_until_ready().await;
    let _ = stores.apps.wait_until_ready().await;
    let _ = stores.policies.wait_until_ready().await;
    let _ = stores.services.wait_until_ready().await;
    let _ = stores.namespaces.wait_until_ready().await;
    for s in stores.children.values() {
        let _ = s.wait_until_ready().await;
    }
    for s in stores.full_children.values() {
        let _ = s.wait_until_ready().await;
    }
}

fn tokio_stream<T: Send + 'static>(
    mut rx: mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Backoff for transient failures: 1 s doubling per consecutive failure of the same object,
/// at most 5 min. Waiting for DNS teardown is not a failure and polls quickly.
pub fn retry_after<K: kube::ResourceExt>(
    ctx: &Context,
    kind: &str,
    obj: &K,
    error: &Error,
) -> Action {
    // A teardown waiting for external-dns is progress, not a failure: poll it briskly
    // (watch events of the DNSEndpoint usually come sooner) and keep the log quiet.
    if let Error::DnsTeardownPending(_) = error {
        tracing::info!(object = %failure_key(kind, obj), "{error}");
        return Action::requeue(Duration::from_millis(500));
    }
    tracing::warn!(object = %failure_key(kind, obj), error = %error, reason = error.metric_label(), "reconcile failed");
    let mut failures = ctx.failures.lock().unwrap_or_else(|e| e.into_inner());
    let n = failures.entry(failure_key(kind, obj)).or_insert(0);
    *n = n.saturating_add(1);
    Action::requeue(backoff(*n))
}

/// Delay after `n` consecutive failures.
pub fn backoff(n: u32) -> Duration {
    Duration::from_secs(1u64 << n.saturating_sub(1).min(9)).min(Duration::from_secs(300))
}

pub fn store_get<K: Resource<DynamicType = ()> + Clone>(
    store: &Store<K>,
    name: &str,
    namespace: Option<&str>,
) -> Option<Arc<K>> {
    let mut r = ObjectRef::<K>::new(name);
    if let Some(ns) = namespace {
        r = r.within(ns);
    }
    store.get(&r)
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_and_caps() {
        let secs: Vec<u64> = [1, 2, 3, 4, 9, 10, 30]
            .iter()
            .map(|n| super::backoff(*n).as_secs())
            .collect();
        assert_eq!(secs, [1, 2, 4, 8, 256, 300, 300]);
    }
}
