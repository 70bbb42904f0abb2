//! The controllers. `run` sets up the caches and the index (watches.rs), the side servers
//! (servers.rs) and one controller per kind. Each kind's driver (exposed_app.rs,
//! egress_policy.rs, cluster_network.rs) calls the steps of architecture.md in order
//! (steps.rs): snapshot -> validate -> render (pure, shared with `gatehouse render`) ->
//! plan (pure, plan.rs) -> execute (apply.rs) -> readiness (pure, readiness.rs) ->
//! conditions (pure, status.rs) -> status, written only when it changed.

pub mod apply;
pub mod cluster_network;
pub mod egress_policy;
pub mod events;
pub mod exposed_app;
pub mod index;
pub mod listeners;
pub mod plan;
pub mod readiness;
pub mod servers;
pub mod status;
pub mod steps;
pub mod stores;
pub mod triggers;
pub mod watches;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::{StreamExt, future};
use gatehouse_api::{ClusterNetwork, EgressPolicy, ExposedApp, labels};
use kube::api::{Api, ApiResource, GroupVersionKind, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource};
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
    /// The budget of the Events that report written and pruned children (events.rs).
    pub events: Mutex<events::Limiter>,
    /// Consecutive failures per object, for exponential backoff; cleared on success.
    pub failures: Mutex<HashMap<String, u32>>,
    /// (kind, namespace, name) -> the resourceVersion our last status write gave the
    /// object: its watch event only echoes that write and triggers no reconcile.
    pub status_echoes: Mutex<HashMap<ObjectKey, String>>,
}

pub type Shared = Arc<Context>;

/// A Gatehouse object: (kind, namespace, name).
pub type ObjectKey = (&'static str, Option<String>, String);

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

/// Runs the operator until `shutdown` resolves: checks the CRDs and which child kinds are
/// served, then (1) the caches and index (watches.rs), (2) the side servers (servers.rs),
/// (3) the three controllers once the caches are synced (and, with leader election, the
/// Lease is held).
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

    // 1. Caches and the index over them.
    let watches = watches::start(&client, &served, &triggers);
    let stores = watches.stores.clone();
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
        index: watches.index.clone(),
        verified: watches.verified.clone(),
        metrics: metrics.clone(),
        recorder,
        events: Mutex::default(),
        failures: Mutex::default(),
        status_echoes: Mutex::default(),
    });
    let mut drivers = watches.drivers;

    // Reconciles start only once every cache has its initial list, so a first render never
    // sees a half-filled cluster (and never prunes what it simply has not seen yet).
    let synced = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ready = {
        let stores = stores.clone();
        let synced = synced.clone();
        async move {
            watches::synced(&stores).await;
            synced.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    };

    // 2. Side servers.
    if let Some(webhook) = options.webhook.clone() {
        drivers.push(servers::webhook(&client, webhook, stores.apps.clone())?);
    }
    if let Some(addr) = options.http_addr {
        drivers.push(servers::health_and_metrics(
            &client,
            addr,
            metrics.clone(),
            synced.clone(),
            ctx.index.clone(),
        ));
    }

    // 3. The controllers, one per kind.
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

    let app_ctl = Controller::for_shared_stream(
        without_status_echoes(watches.apps, "ExposedApp", ctx.clone()),
        stores.apps.clone(),
    )
    .with_config(config.clone())
    .reconcile_on(tokio_stream(app_rx))
    .graceful_shutdown_on(stopper(&stop_tx))
    .run(
        exposed_app::reconcile,
        exposed_app::error_policy,
        ctx.clone(),
    )
    .for_each(|_| future::ready(()));
    let egress_ctl = Controller::for_shared_stream(
        without_status_echoes(watches.policies, "EgressPolicy", ctx.clone()),
        stores.policies.clone(),
    )
    .with_config(config.clone())
    .reconcile_on(tokio_stream(egress_rx))
    .graceful_shutdown_on(stopper(&stop_tx))
    .run(
        egress_policy::reconcile,
        egress_policy::error_policy,
        ctx.clone(),
    )
    .for_each(|_| future::ready(()));
    let net_ctl = Controller::for_shared_stream(
        without_status_echoes(watches.networks, "ClusterNetwork", ctx.clone()),
        stores.networks.clone(),
    )
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
    let streams = future::join_all(drivers);
    tokio::select! {
        _ = streams => Ok(()),
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
/// Returns the resourceVersion the write gave the object.
pub async fn apply_status<K>(
    api: &Api<K>,
    kind: &str,
    name: &str,
    status: &impl serde::Serialize,
) -> Result<Option<String>, Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug + Resource,
{
    let body = serde_json::json!({"apiVersion": gatehouse_api::API_VERSION, "kind": kind, "status": status});
    let params = kube::api::PatchParams::apply(labels::FIELD_MANAGER).force();
    api.patch_status(name, &params, &kube::api::Patch::Apply(&body))
        .await
        .map(|written| written.meta().resource_version.clone())
        .map_err(|source| Error::Status {
            what: format!("{kind} {name}"),
            source,
        })
}

/// A controller's stream of its kind without the events that only echo our own status
/// write (steps::write_status records the resourceVersion it gave the object): the
/// reconcile that wrote that status already judged exactly that object. Any other event of
/// the object (spec, metadata, someone else's status) passes, and clears the record.
fn without_status_echoes<K>(
    objects: impl futures::Stream<Item = Arc<K>> + Send + 'static,
    kind: &'static str,
    ctx: Shared,
) -> impl futures::Stream<Item = Arc<K>> + Send + 'static
where
    K: Resource + Send + Sync + 'static,
{
    objects.filter(move |obj| {
        let meta = obj.meta();
        let key = (
            kind,
            meta.namespace.clone(),
            meta.name.clone().unwrap_or_default(),
        );
        let written = ctx
            .status_echoes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        let echo = written.is_some() && written == meta.resource_version;
        future::ready(!echo)
    })
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
