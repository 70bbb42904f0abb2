//! Convergence at scale (`make bench-scale`, issue 10): N simple ExposedApps (one route, no
//! TLS, no DNS: a Service, an Ingress and a NetworkPolicy each) against a local control
//! plane without a node, measured in one run:
//!
//! 1. baseline: a plain client (16 concurrent tasks, forced server-side apply) writes the
//!    children the operator would write, byte for byte (gatehouse's own render functions and
//!    desired-hash annotation), plus one status apply per app: the floor any controller pays;
//! 2. cold start: the children and statuses are removed again, the real `gatehouse run` is
//!    started over the N apps and timed until a watch of the apps has seen every one Ready;
//! 3. restart: SIGTERM, start again over the converged apps, time until it has reconciled
//!    every app (`gatehouse_reconciles_total{kind="ExposedApp"}` >= N) and count its writes;
//! 4. idle: writes and CPU over `--idle` seconds.
//!
//! Operator CPU comes from /proc/<pid>/stat, peak RSS from VmHWM, requests from its own
//! /metrics (the counting client: what it really sent). Prints a table and writes JSON.
//! Run through `make bench-scale` (hack/bench-scale.sh), which starts and stops the cluster.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child as Process, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::{StreamExt, TryStreamExt, stream};
use gatehouse_api::{ClusterNetwork, ExposedApp, ExposedAppStatus, ResourceStatus, labels};
use gatehouse_operator::reconcile::plan::{HASH_ANNOTATION, applied_body, stable_hash};
use gatehouse_operator::reconcile::status::{Assessment, conditions};
use gatehouse_operator::reconcile::{api_resource, apply_status};
use gatehouse_operator::render::{ChildKind, Context, render_exposed_app};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use serde::Deserialize;
use serde_json::{Value, json};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Parser, Debug)]
#[command(about = "Gatehouse convergence benchmark at scale (see README: make bench-scale)")]
struct Args {
    /// Number of ExposedApps.
    #[arg(long, default_value_t = 1000)]
    apps: usize,
    /// Seconds of the idle measurement.
    #[arg(long, default_value_t = 60)]
    idle: u64,
    /// Apps per namespace (namespaces bench-0, bench-1, ...).
    #[arg(long, default_value_t = 20)]
    apps_per_namespace: usize,
    /// Concurrent tasks of the plain client (and of the setup steps).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// The admin kubeconfig of the bench's own control plane.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// The control plane's state directory (its run/*.pid give the control plane's CPU;
    /// the operator carries it as GATEHOUSE_CLUSTER_DIR so cluster-down.sh stops it too).
    #[arg(long)]
    cluster_dir: Option<PathBuf>,
    /// The operator binary (`cargo build --release -p gatehouse-operator`).
    #[arg(long, default_value = "target/release/gatehouse")]
    operator: PathBuf,
    /// Where the JSON report goes.
    #[arg(long)]
    out: PathBuf,
    /// Directory for the operator's logs.
    #[arg(long)]
    log_dir: PathBuf,
    /// Seconds to wait for all apps to be Ready (default: 600 + 0.5 s per app).
    #[arg(long)]
    ready_timeout: Option<u64>,
    /// Seconds without an operator write that count as settled.
    #[arg(long, default_value_t = 5)]
    quiet: u64,
}

const NETWORK: &str = "bench-scale";
const BENCH_LABEL: &str = "gatehouse.dev/bench-scale";
/// Kinds a simple app renders (checked against the render below).
const CHILD_KINDS: [ChildKind; 3] = [
    ChildKind::Service,
    ChildKind::Ingress,
    ChildKind::NetworkPolicy,
];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match bench(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-scale: FAILED: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn bench(args: Args) -> Result<()> {
    let n = args.apps;
    if n == 0 || args.apps_per_namespace == 0 || args.concurrency == 0 {
        return Err("--apps, --apps-per-namespace and --concurrency must be positive".into());
    }
    if !args.operator.is_file() {
        return Err(format!(
            "{} does not exist (cargo build --release -p gatehouse-operator)",
            args.operator.display()
        )
        .into());
    }
    std::fs::create_dir_all(&args.log_dir)?;
    let client = client(&args.kubeconfig).await?;
    let control_plane = ControlPlane::new(args.cluster_dir.as_deref());
    let namespaces = n.div_ceil(args.apps_per_namespace);
    let mut report = Report {
        n,
        namespaces,
        concurrency: args.concurrency,
        idle_seconds: args.idle,
        quiet_seconds: args.quiet,
        cpus: std::thread::available_parallelism().map_or(0, |c| c.get()),
        loadavg_start: loadavg(),
        ..Report::default()
    };
    say(&format!(
        "{n} apps in {namespaces} namespaces; {} CPUs, load average {}",
        report.cpus, report.loadavg_start
    ));

    // Setup (not timed as part of any figure): namespaces, the network, the apps.
    let t = Instant::now();
    let (network, apps) = setup(&client, &args, namespaces).await?;
    report.setup_seconds = t.elapsed().as_secs_f64();
    say(&format!(
        "setup: {namespaces} namespaces, ClusterNetwork {NETWORK}, {n} ExposedApps in {:.1} s",
        report.setup_seconds
    ));

    // 1. Baseline.
    let jobs = baseline_jobs(&network, &apps)?;
    let expected_hashes: HashMap<ChildKey, String> = jobs
        .iter()
        .flat_map(|j| j.children.iter())
        .map(|(kind, obj)| (child_key(*kind, obj), hash_of(obj)))
        .collect();
    report.children_per_app =
        jobs.iter().map(|j| j.children.len()).sum::<usize>() as f64 / n as f64;
    let cp0 = control_plane.cpu_seconds();
    report.loadavg_baseline = loadavg();
    let t = Instant::now();
    let requests = baseline(&client, jobs, args.concurrency).await?;
    report.baseline_seconds = t.elapsed().as_secs_f64();
    report.baseline_requests = requests;
    report.baseline_control_plane_cpu = control_plane.cpu_seconds().map(|c| c - cp0.unwrap_or(0.0));
    say(&format!(
        "baseline: {requests} writes by a plain client in {:.2} s",
        report.baseline_seconds
    ));

    // Back to a cold state: no children, no status.
    let t = Instant::now();
    reset(&client, &apps, namespaces, args.concurrency).await?;
    say(&format!(
        "reset: children deleted and statuses cleared in {:.1} s",
        t.elapsed().as_secs_f64()
    ));

    // 1b. The same writes while the operator's watches are open (nobody reconciling): what
    // the API server's watch fan-out costs a writer on this machine, the part of the
    // operator's time that is not the operator's work.
    let watches = operator_watches(&client).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let jobs = baseline_jobs(&network, &apps)?;
    let cp0 = control_plane.cpu_seconds();
    let t = Instant::now();
    baseline(&client, jobs, args.concurrency).await?;
    report.watched_baseline_seconds = t.elapsed().as_secs_f64();
    report.watched_baseline_control_plane_cpu =
        control_plane.cpu_seconds().map(|c| c - cp0.unwrap_or(0.0));
    for w in watches {
        w.abort();
    }
    say(&format!(
        "baseline with the operator's watches open: {:.2} s",
        report.watched_baseline_seconds
    ));
    let t = Instant::now();
    reset(&client, &apps, namespaces, args.concurrency).await?;
    say(&format!(
        "reset: children deleted and statuses cleared in {:.1} s",
        t.elapsed().as_secs_f64()
    ));

    // 2. Operator, cold start.
    let ready_timeout = Duration::from_secs(args.ready_timeout.unwrap_or(600 + n as u64 / 2));
    report.loadavg_operator = loadavg();
    let cp0 = control_plane.cpu_seconds();
    let mut op = Operator::start(&args, "cold")?;
    let ready = wait_all_ready(&client, &mut op, n, ready_timeout).await?;
    report.cold_seconds = ready.as_secs_f64();
    report.cold_cpu = op.cpu_seconds()?;
    report.cold_control_plane_cpu = control_plane.cpu_seconds().map(|c| c - cp0.unwrap_or(0.0));
    let at_ready = op.scrape().await?;
    report.cold_requests = at_ready.requests.clone();
    report.cold_reconciles = at_ready.reconciles("ExposedApp");
    report.cold_reconcile_errors = at_ready.errors;
    say(&format!(
        "operator: all {n} apps Ready after {:.2} s, {:.2} CPU s",
        report.cold_seconds, report.cold_cpu
    ));
    let settled = settle(
        &mut op,
        Duration::from_secs(args.quiet),
        Duration::from_secs(120),
    )
    .await?;
    report.cold_writes_after_ready = settled.writes() - at_ready.writes();
    report.cold_peak_rss_mib = op.peak_rss_mib()?;
    let (matching, total) = compare_children(&client, &expected_hashes).await?;
    report.children_matching = matching;
    report.children_live = total;
    report.children_expected = expected_hashes.len();

    // 3. Restart over the converged apps.
    report.exit_after_sigterm = op.terminate()?.as_secs_f64();
    let mut op = Operator::start(&args, "restart")?;
    let reconciled = wait_reconciled(&mut op, n, ready_timeout).await?;
    report.restart_seconds = reconciled.0.as_secs_f64();
    report.restart_cpu = op.cpu_seconds()?;
    let settled = settle(
        &mut op,
        Duration::from_secs(args.quiet),
        Duration::from_secs(120),
    )
    .await?;
    report.restart_requests = settled.requests.clone();
    report.restart_writes_at_reconciled = reconciled.1.writes();
    report.restart_ready = count_ready(&client).await?.0;
    say(&format!(
        "restart: the first operator exited {:.2} s after SIGTERM; the new one reconciled {n} apps after {:.2} s, {} writes",
        report.exit_after_sigterm,
        report.restart_seconds,
        settled.writes()
    ));

    // 4. Idle.
    let cpu0 = op.cpu_seconds()?;
    let m0 = op.scrape().await?;
    let cp0 = control_plane.cpu_seconds();
    say(&format!("idle: measuring {} s", args.idle));
    tokio::time::sleep(Duration::from_secs(args.idle)).await;
    op.check_alive()?;
    let m1 = op.scrape().await?;
    report.idle_cpu = op.cpu_seconds()? - cpu0;
    report.idle_requests = m1.minus(&m0);
    report.idle_reconciles = m1.reconciles("ExposedApp") - m0.reconciles("ExposedApp");
    report.idle_control_plane_cpu = control_plane.cpu_seconds().map(|c| c - cp0.unwrap_or(0.0));
    report.restart_peak_rss_mib = op.peak_rss_mib()?;
    op.terminate()?;

    report.print();
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        &args.out,
        serde_json::to_string_pretty(&report.json())? + "\n",
    )?;
    println!("\nJSON: {}", args.out.display());
    Ok(())
}

fn say(msg: &str) {
    eprintln!("bench-scale: {msg}");
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

async fn client(path: &Path) -> Result<Client> {
    let kubeconfig =
        Kubeconfig::read_from(path).map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

// ---------------------------------------------------------------------------------------
// Setup

fn namespace_of(i: usize, namespaces: usize) -> String {
    format!("bench-{}", i % namespaces)
}

/// The network: one external tier with static `addresses`, so routes need no load balancer
/// and (with DNS off in the apps) nothing waits for a third-party controller.
fn network() -> Value {
    json!({
        "apiVersion": gatehouse_api::API_VERSION, "kind": "ClusterNetwork",
        "metadata": {"name": NETWORK, "labels": {BENCH_LABEL: "true"}},
        "spec": {"ingress": {"external": {"className": "nginx", "addresses": ["203.0.113.10"]}}},
    })
}

/// A simple app: one route on the external tier, no TLS, no DNS, isolated (so its pods get
/// the app's NetworkPolicy): Service, Ingress, NetworkPolicy, the shape every earlier run
/// measured. Written as a user would (only these fields), not as the typed struct
/// serializes with every default.
fn app(i: usize, namespaces: usize) -> Value {
    let name = format!("app-{i}");
    json!({
        "apiVersion": gatehouse_api::API_VERSION, "kind": "ExposedApp",
        "metadata": {"name": name, "namespace": namespace_of(i, namespaces), "labels": {BENCH_LABEL: "true"}},
        "spec": {
            "network": NETWORK,
            "selector": {"app": name},
            "isolation": "Isolated",
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
            "routes": [{"hosts": [format!("{name}.bench.example")], "tls": false}],
            "dns": {"enabled": false},
        },
    })
}

/// The field manager of the bench's own inputs (apps, network).
const BENCH_MANAGER: &str = "gatehouse-bench-scale";

async fn setup(
    client: &Client,
    args: &Args,
    namespaces: usize,
) -> Result<(ClusterNetwork, Vec<ExposedApp>)> {
    let ns_api = Api::<Namespace>::all(client.clone());
    stream::iter(0..namespaces)
        .map(|k| {
            let ns_api = ns_api.clone();
            async move {
                let ns: Namespace = serde_json::from_value(json!({
                    "metadata": {"name": format!("bench-{k}"), "labels": {BENCH_LABEL: "true"}}
                }))?;
                ns_api.create(&PostParams::default(), &ns).await?;
                Ok::<_, Error>(())
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let input = PatchParams::apply(BENCH_MANAGER);
    let network = Api::<ClusterNetwork>::all(client.clone())
        .patch(NETWORK, &input, &Patch::Apply(&network()))
        .await?;
    let apps: Vec<ExposedApp> = stream::iter(0..args.apps)
        .map(|i| {
            let client = client.clone();
            let input = input.clone();
            async move {
                let api = Api::<ExposedApp>::namespaced(client, &namespace_of(i, namespaces));
                let a = app(i, namespaces);
                Ok::<_, Error>(
                    api.patch(&format!("app-{i}"), &input, &Patch::Apply(&a))
                        .await?,
                )
            }
        })
        .buffered(args.concurrency)
        .try_collect()
        .await?;
    Ok((network, apps))
}

// ---------------------------------------------------------------------------------------
// Baseline

struct Job {
    app: ExposedApp,
    /// Each child as the operator applies it: rendered, with its desired-hash annotation.
    children: Vec<(ChildKind, Value)>,
    status: ExposedAppStatus,
}

type ChildKey = (ChildKind, String, String);

fn child_key(kind: ChildKind, obj: &Value) -> ChildKey {
    (
        kind,
        obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

fn hash_of(obj: &Value) -> String {
    obj["metadata"]["annotations"][HASH_ANNOTATION]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Renders every app with the operator's own functions against a context holding the same
/// network and apps the operator's caches will hold, and builds the status the operator
/// writes for an app whose children all exist (the same pure `conditions`).
fn baseline_jobs(network: &ClusterNetwork, apps: &[ExposedApp]) -> Result<Vec<Job>> {
    let mut ctx = Context::default();
    ctx.add_network(network.clone());
    for a in apps {
        ctx.add_app(a.clone());
    }
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let mut jobs = Vec::with_capacity(apps.len());
    for app in apps {
        let rendered = render_exposed_app(app, &ctx)
            .map_err(|f| format!("{} does not render: {f:?}", app.name_any()))?;
        let mut children = Vec::new();
        let mut resources = Vec::new();
        for child in &rendered.children {
            if !CHILD_KINDS.contains(&child.kind) {
                return Err(format!(
                    "{} renders a {}: not a simple app (expected {:?})",
                    app.name_any(),
                    child.kind.kind(),
                    CHILD_KINDS.map(ChildKind::kind)
                )
                .into());
            }
            // Exactly what the operator's plan writes.
            let desired = applied_body(child, &stable_hash(&child.object.to_string()));
            children.push((child.kind, desired));
            resources.push(ResourceStatus {
                api_version: child.kind.api_version(),
                kind: child.kind.kind().to_string(),
                name: child.name().to_string(),
                namespace: None,
                ready: true,
                message: None,
            });
        }
        let assessment = Assessment {
            resources: resources.clone(),
            ..Assessment::default()
        };
        let generation = app.metadata.generation;
        let status = ExposedAppStatus {
            observed_generation: generation,
            conditions: conditions(&assessment, generation, &[], &now),
            urls: rendered.urls.clone(),
            addresses: rendered.addresses.clone(),
            wide: gatehouse_api::WideColumns::of(&app.spec, &rendered.urls),
            children: resources.len() as i64,
            ready_children: resources.len() as i64,
            resources,
        };
        jobs.push(Job {
            app: app.clone(),
            children,
            status,
        });
    }
    Ok(jobs)
}

/// `concurrency` tasks, each taking the next app and writing its children then its status.
/// Returns the number of requests.
async fn baseline(client: &Client, jobs: Vec<Job>, concurrency: usize) -> Result<u64> {
    let params = PatchParams::apply(labels::FIELD_MANAGER).force();
    let counts: Vec<u64> = stream::iter(jobs)
        .map(|job| {
            let client = client.clone();
            let params = params.clone();
            async move {
                let ns = job.app.namespace().unwrap_or_default();
                for (kind, obj) in &job.children {
                    let api: Api<DynamicObject> =
                        Api::namespaced_with(client.clone(), &ns, &api_resource(*kind));
                    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
                    api.patch(name, &params, &Patch::Apply(obj)).await?;
                }
                let api = Api::<ExposedApp>::namespaced(client, &ns);
                apply_status(&api, "ExposedApp", &job.app.name_any(), &job.status).await?;
                Ok::<_, Error>(job.children.len() as u64 + 1)
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    Ok(counts.iter().sum())
}

/// Opens the watches `gatehouse run` holds (watches.rs: the three kinds, Services and
/// Namespaces with content, every served child kind metadata-only, Certificates and
/// DNSEndpoints labelled with content) plus the bench's own ExposedApp watch, each drained
/// by a task of its own.
async fn operator_watches(client: &Client) -> Vec<tokio::task::JoinHandle<()>> {
    use kube::api::PartialObjectMeta;
    use kube::runtime::watcher;
    fn drain<K>(
        events: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    ) -> tokio::task::JoinHandle<()>
    where
        K: Send + 'static,
    {
        tokio::spawn(events.for_each(|_| async {}))
    }
    let page = || watcher::Config::default().page_size(100);
    let all = |kind: ChildKind| Api::<DynamicObject>::all_with(client.clone(), &api_resource(kind));
    let mut tasks = vec![
        drain(watcher(Api::<ClusterNetwork>::all(client.clone()), page())),
        drain(watcher(Api::<ExposedApp>::all(client.clone()), page())),
        drain(watcher(
            Api::<gatehouse_api::EgressPolicy>::all(client.clone()),
            page(),
        )),
        drain(watcher(Api::<ExposedApp>::all(client.clone()), page())),
        drain(watcher(
            Api::<k8s_openapi::api::core::v1::Service>::all(client.clone()),
            page(),
        )),
        drain(watcher(Api::<Namespace>::all(client.clone()), page())),
    ];
    for kind in ChildKind::ALL {
        let (group, version, k, ..) = kind.gvk();
        let gvk = kube::api::GroupVersionKind::gvk(group, version, k);
        if kind == ChildKind::Service || kube::discovery::pinned_kind(client, &gvk).await.is_err() {
            continue;
        }
        let meta: Api<PartialObjectMeta<DynamicObject>> =
            Api::all_with(client.clone(), &api_resource(kind));
        tasks.push(drain(watcher(meta, page())));
        if matches!(kind, ChildKind::Certificate | ChildKind::DnsEndpoint) {
            let managed = page().labels(&format!(
                "{}={}",
                labels::MANAGED_BY,
                labels::MANAGED_BY_VALUE
            ));
            tasks.push(drain(watcher(all(kind), managed)));
        }
    }
    tasks
}

fn children_selector() -> ListParams {
    ListParams::default().labels(&format!("{}=ExposedApp", labels::OWNER_KIND))
}

/// Deletes every child (by label, one DELETE collection per namespace and kind) and clears
/// every app's status, then waits until no child is left: the operator must start cold.
async fn reset(
    client: &Client,
    apps: &[ExposedApp],
    namespaces: usize,
    concurrency: usize,
) -> Result<()> {
    let work: Vec<(usize, ChildKind)> = (0..namespaces)
        .flat_map(|k| CHILD_KINDS.map(|kind| (k, kind)))
        .collect();
    stream::iter(work)
        .map(|(k, kind)| {
            let client = client.clone();
            async move {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(client, &format!("bench-{k}"), &api_resource(kind));
                match api
                    .delete_collection(&DeleteParams::default(), &children_selector())
                    .await
                {
                    Ok(_) => {}
                    // Some resources do not serve DELETE on a collection: one by one.
                    Err(kube::Error::Api(e)) if e.code == 405 => {
                        for o in api.list_metadata(&children_selector()).await?.items {
                            api.delete(&o.name_any(), &DeleteParams::default()).await?;
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
                Ok::<_, Error>(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let clear = json!({"status": null});
    stream::iter(apps)
        .map(|a| {
            let api =
                Api::<ExposedApp>::namespaced(client.clone(), &a.namespace().unwrap_or_default());
            let clear = &clear;
            async move {
                api.patch_status(&a.name_any(), &PatchParams::default(), &Patch::Merge(clear))
                    .await?;
                Ok::<_, Error>(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let mut left = 0;
        for kind in CHILD_KINDS {
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &api_resource(kind));
            left += api.list_metadata(&children_selector()).await?.items.len();
        }
        let (ready, with_status) = count_ready(client).await?;
        if left == 0 && ready == 0 && with_status == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "reset: {left} children and {with_status} statuses still there after 300 s"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Watching the apps

#[derive(Deserialize)]
struct SlimList {
    items: Vec<SlimApp>,
}

#[derive(Deserialize)]
struct SlimApp {
    metadata: SlimMeta,
    #[serde(default)]
    status: Option<SlimStatus>,
}

#[derive(Deserialize)]
struct SlimMeta {
    generation: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SlimStatus {
    observed_generation: Option<i64>,
    #[serde(default)]
    conditions: Vec<SlimCondition>,
}

#[derive(Deserialize)]
struct SlimCondition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
}

impl SlimApp {
    fn ready_condition(&self) -> Option<&SlimCondition> {
        self.status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
    }

    /// Ready=True for the current generation.
    fn ready(&self) -> bool {
        let current = self
            .status
            .as_ref()
            .is_some_and(|s| s.observed_generation == self.metadata.generation);
        current && self.ready_condition().is_some_and(|c| c.status == "True")
    }
}

/// One LIST of every ExposedApp, served from the API server's watch cache
/// (resourceVersion=0: no quorum read from etcd), decoded into only the fields readiness
/// needs.
async fn list_apps(client: &Client) -> Result<Vec<SlimApp>> {
    let req = http::Request::get(format!(
        "/apis/{}/exposedapps?resourceVersion=0",
        gatehouse_api::API_VERSION
    ))
    .body(Vec::new())?;
    Ok(client.request::<SlimList>(req).await?.items)
}

/// (apps Ready, apps with any status).
async fn count_ready(client: &Client) -> Result<(usize, usize)> {
    let apps = list_apps(client).await?;
    Ok((
        apps.iter().filter(|a| a.ready()).count(),
        apps.iter()
            .filter(|a| a.status.as_ref().is_some_and(|s| !s.conditions.is_empty()))
            .count(),
    ))
}

/// Watches every ExposedApp until all `n` are Ready; returns the time since the operator
/// was started. A watch sees each status as it is written, so the figure is exact (a
/// polling LIST would add up to its interval, and load the API server the operator needs).
async fn wait_all_ready(
    client: &Client,
    op: &mut Operator,
    n: usize,
    timeout: Duration,
) -> Result<Duration> {
    use kube::runtime::watcher;
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &exposed_app_resource());
    let mut events = watcher(api, watcher::Config::default().page_size(500)).boxed();
    let mut apps: HashMap<(String, String), SlimApp> = HashMap::new();
    let mut listed = false;
    let mut last_note = Instant::now();
    loop {
        op.check_alive()?;
        let key = |o: &DynamicObject| (o.namespace().unwrap_or_default(), o.name_any());
        let slim = |o: &DynamicObject| -> Result<SlimApp> {
            Ok(serde_json::from_value(serde_json::to_value(o)?)?)
        };
        match tokio::time::timeout(Duration::from_secs(1), events.next()).await {
            Ok(Some(Ok(event))) => match event {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                    apps.insert(key(&o), slim(&o)?);
                }
                watcher::Event::Delete(o) => {
                    apps.remove(&key(&o));
                }
                watcher::Event::Init => apps.clear(),
                watcher::Event::InitDone => listed = true,
            },
            Ok(Some(Err(e))) => say(&format!("  watch error (retrying): {e}")),
            Ok(None) => return Err("the ExposedApp watch ended".into()),
            Err(_) => {}
        }
        let elapsed = op.started.elapsed();
        let ready = apps.values().filter(|a| a.ready()).count();
        if listed && ready >= n {
            return Ok(elapsed);
        }
        if elapsed > timeout {
            let mut reasons: BTreeMap<String, (usize, String)> = BTreeMap::new();
            for a in apps.values().filter(|a| !a.ready()) {
                let (reason, message) = a
                    .ready_condition()
                    .map(|c| (c.reason.clone(), c.message.clone()))
                    .unwrap_or_else(|| ("NoStatus".into(), String::new()));
                let e = reasons.entry(reason).or_insert((0, message));
                e.0 += 1;
            }
            return Err(format!(
                "only {ready} of {n} apps Ready after {timeout:?}; not ready by reason: {reasons:?}; operator log {}",
                op.log.display()
            )
            .into());
        }
        if last_note.elapsed() > Duration::from_secs(10) {
            say(&format!(
                "  {ready}/{n} Ready after {:.0} s",
                elapsed.as_secs_f64()
            ));
            last_note = Instant::now();
        }
    }
}

fn exposed_app_resource() -> kube::api::ApiResource {
    kube::api::ApiResource::erase::<ExposedApp>(&())
}

/// Polls /metrics until the operator has finished `n` ExposedApp reconciles; returns the
/// time since it was started and the scrape.
async fn wait_reconciled(
    op: &mut Operator,
    n: usize,
    timeout: Duration,
) -> Result<(Duration, Scrape)> {
    loop {
        op.check_alive()?;
        if let Ok(m) = op.scrape().await
            && m.reconciles("ExposedApp") >= n as u64
        {
            return Ok((op.started.elapsed(), m));
        }
        if op.started.elapsed() > timeout {
            return Err(format!(
                "the restarted operator did not reconcile {n} apps in {timeout:?}; log {}",
                op.log.display()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the operator's write count has not moved for `quiet` (at most `timeout`);
/// returns the last scrape.
async fn settle(op: &mut Operator, quiet: Duration, timeout: Duration) -> Result<Scrape> {
    let deadline = Instant::now() + timeout;
    let mut last = op.scrape().await?;
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        op.check_alive()?;
        let now = op.scrape().await?;
        if now.writes() != last.writes() {
            since = Instant::now();
        }
        last = now;
        if since.elapsed() >= quiet || Instant::now() > deadline {
            return Ok(last);
        }
    }
}

/// Live children whose desired-hash equals the one the baseline computed: proof that the
/// baseline wrote what the operator writes. Returns (matching, live children).
async fn compare_children(
    client: &Client,
    expected: &HashMap<ChildKey, String>,
) -> Result<(usize, usize)> {
    let mut matching = 0;
    let mut live = 0;
    for kind in CHILD_KINDS {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &api_resource(kind));
        for o in api.list_metadata(&children_selector()).await?.items {
            live += 1;
            let key = (kind, o.namespace().unwrap_or_default(), o.name_any());
            let hash = o.annotations().get(HASH_ANNOTATION);
            if hash.is_some() && expected.get(&key) == hash {
                matching += 1;
            }
        }
    }
    Ok((matching, live))
}

// ---------------------------------------------------------------------------------------
// The operator process

struct Operator {
    process: Option<Process>,
    pid: u32,
    port: u16,
    started: Instant,
    log: PathBuf,
}

impl Operator {
    fn start(args: &Args, phase: &str) -> Result<Operator> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = args
            .log_dir
            .join(format!("operator-{}-{phase}.log", args.apps));
        let file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(&args.operator);
        cmd.arg("run")
            .arg(format!("--http-addr=127.0.0.1:{port}"))
            .env("KUBECONFIG", &args.kubeconfig)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        if let Some(dir) = &args.cluster_dir {
            // cluster-down.sh stops every process carrying this marker: no operator
            // outlives the bench's cluster, whatever happens to the bench.
            cmd.env("GATEHOUSE_CLUSTER_DIR", std::fs::canonicalize(dir)?);
        }
        let started = Instant::now();
        let process = cmd.spawn()?;
        let pid = process.id();
        say(&format!(
            "operator ({phase}) started: pid {pid}, /metrics on 127.0.0.1:{port}, log {}",
            log.display()
        ));
        Ok(Operator {
            process: Some(process),
            pid,
            port,
            started,
            log,
        })
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Some(p) = self.process.as_mut()
            && let Some(status) = p.try_wait()?
        {
            self.process = None;
            return Err(format!(
                "the operator exited ({status}); its log {}:\n{}",
                self.log.display(),
                tail(&self.log, 20)
            )
            .into());
        }
        Ok(())
    }

    fn cpu_seconds(&self) -> Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        process_cpu(&stat).ok_or_else(|| "cannot parse /proc/<pid>/stat".into())
    }

    fn peak_rss_mib(&self) -> Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .ok_or_else(|| "no VmHWM in /proc/<pid>/status".into())
    }

    async fn scrape(&self) -> Result<Scrape> {
        let port = self.port;
        let text = tokio::task::spawn_blocking(move || http_get(port, "/metrics")).await??;
        Ok(Scrape::parse(&text))
    }

    /// SIGTERM, as a pod is stopped; SIGKILL when it has not exited after 15 s. Returns
    /// how long it took to exit.
    fn terminate(&mut self) -> Result<Duration> {
        let Some(mut p) = self.process.take() else {
            return Ok(Duration::ZERO);
        };
        let t = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        while t.elapsed() < Duration::from_secs(15) {
            if p.try_wait()?.is_some() {
                return Ok(t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        say("operator did not exit 15 s after SIGTERM: SIGKILL");
        p.kill()?;
        p.wait()?;
        Ok(t.elapsed())
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.terminate();
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// utime + stime of a /proc/<pid>/stat line, in seconds.
fn process_cpu(stat: &str) -> Option<f64> {
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime and stime are fields 14 and 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn http_get(port: u16, path: &str) -> Result<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, body) = out
        .split_once("\r\n\r\n")
        .ok_or("malformed HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!("GET {path}: {}", head.lines().next().unwrap_or_default()).into());
    }
    Ok(body.to_string())
}

/// The operator's counters from one /metrics scrape.
#[derive(Clone, Debug, Default)]
struct Scrape {
    /// gatehouse_api_requests_total by verb.
    requests: BTreeMap<String, u64>,
    /// gatehouse_reconciles_total by kind.
    reconciles: BTreeMap<String, u64>,
    /// Sum of gatehouse_reconcile_errors_total.
    errors: u64,
}

const VERBS: [&str; 6] = ["get", "list_watch", "create", "update", "patch", "delete"];
const WRITE_VERBS: [&str; 4] = ["create", "update", "patch", "delete"];

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut s = Scrape::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let label = |name: &str| {
                let start = series.find(&format!("{name}=\""))? + name.len() + 2;
                let end = series[start..].find('"')? + start;
                Some(series[start..end].to_string())
            };
            if series.starts_with("gatehouse_api_requests_total{") {
                if let Some(verb) = label("verb") {
                    s.requests.insert(verb, value as u64);
                }
            } else if series.starts_with("gatehouse_reconciles_total{") {
                if let Some(kind) = label("kind") {
                    s.reconciles.insert(kind, value as u64);
                }
            } else if series.starts_with("gatehouse_reconcile_errors_total{") {
                s.errors += value as u64;
            }
        }
        s
    }

    fn writes(&self) -> u64 {
        writes(&self.requests)
    }

    fn reconciles(&self, kind: &str) -> u64 {
        self.reconciles.get(kind).copied().unwrap_or(0)
    }

    fn minus(&self, earlier: &Scrape) -> BTreeMap<String, u64> {
        self.requests
            .iter()
            .map(|(k, v)| {
                let before = earlier.requests.get(k).copied().unwrap_or(0);
                (k.clone(), v.saturating_sub(before))
            })
            .collect()
    }
}

fn writes(requests: &BTreeMap<String, u64>) -> u64 {
    WRITE_VERBS
        .iter()
        .map(|v| requests.get(*v).copied().unwrap_or(0))
        .sum()
}

/// CPU of the control plane's processes (etcd, kube-apiserver, kube-controller-manager),
/// from the pid files cluster-up.sh writes.
struct ControlPlane {
    pids: Vec<u32>,
}

impl ControlPlane {
    fn new(cluster_dir: Option<&Path>) -> ControlPlane {
        let pids = cluster_dir
            .map(|d| {
                ["etcd", "kube-apiserver", "kube-controller-manager"]
                    .iter()
                    .filter_map(|c| {
                        std::fs::read_to_string(d.join("run").join(format!("{c}.pid")))
                            .ok()?
                            .trim()
                            .parse()
                            .ok()
                    })
                    .collect()
            })
            .unwrap_or_default();
        ControlPlane { pids }
    }

    fn cpu_seconds(&self) -> Option<f64> {
        if self.pids.is_empty() {
            return None;
        }
        let mut total = 0.0;
        for pid in &self.pids {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            total += process_cpu(&stat)?;
        }
        Some(total)
    }
}

// ---------------------------------------------------------------------------------------
// The report

#[derive(Default)]
struct Report {
    n: usize,
    namespaces: usize,
    concurrency: usize,
    idle_seconds: u64,
    quiet_seconds: u64,
    cpus: usize,
    loadavg_start: String,
    loadavg_baseline: String,
    loadavg_operator: String,
    setup_seconds: f64,
    children_per_app: f64,
    baseline_seconds: f64,
    baseline_requests: u64,
    baseline_control_plane_cpu: Option<f64>,
    watched_baseline_seconds: f64,
    watched_baseline_control_plane_cpu: Option<f64>,
    cold_seconds: f64,
    cold_cpu: f64,
    cold_peak_rss_mib: f64,
    cold_requests: BTreeMap<String, u64>,
    cold_reconciles: u64,
    cold_reconcile_errors: u64,
    cold_writes_after_ready: u64,
    cold_control_plane_cpu: Option<f64>,
    children_expected: usize,
    children_live: usize,
    children_matching: usize,
    exit_after_sigterm: f64,
    restart_seconds: f64,
    restart_cpu: f64,
    restart_requests: BTreeMap<String, u64>,
    restart_writes_at_reconciled: u64,
    restart_ready: usize,
    restart_peak_rss_mib: f64,
    idle_cpu: f64,
    idle_requests: BTreeMap<String, u64>,
    idle_reconciles: u64,
    idle_control_plane_cpu: Option<f64>,
}

impl Report {
    fn ratio(&self) -> f64 {
        self.baseline_seconds / self.cold_seconds
    }

    fn per_app(&self, x: f64) -> f64 {
        x / self.n as f64
    }

    fn print(&self) {
        let n = self.n;
        let cp = |c: Option<f64>| c.map_or("-".to_string(), |c| format!("{c:.1} s"));
        let cold_writes = writes(&self.cold_requests);
        let restart_writes = writes(&self.restart_requests);
        let idle_writes = writes(&self.idle_requests);
        println!();
        println!(
            "Gatehouse bench-scale: {n} simple apps (1 route, no TLS, no DNS; {:.0} children each) in {} namespaces",
            self.children_per_app, self.namespaces
        );
        println!(
            "{} CPUs; load average at start {}, before the baseline {}, before the operator {}",
            self.cpus, self.loadavg_start, self.loadavg_baseline, self.loadavg_operator
        );
        println!();
        println!(
            "{:<36} {:>9} {:>10} {:>9} {:>9} {:>7} {:>8} {:>10}",
            "phase", "wall", "op CPU", "CPU/app", "peak RSS", "writes", "wr/app", "ctl-plane"
        );
        println!("{}", "-".repeat(105));
        println!(
            "{:<36} {:>7.2} s {:>10} {:>9} {:>9} {:>7} {:>8.2} {:>10}",
            format!("baseline: plain client, {} tasks", self.concurrency),
            self.baseline_seconds,
            "-",
            "-",
            "-",
            self.baseline_requests,
            self.per_app(self.baseline_requests as f64),
            cp(self.baseline_control_plane_cpu),
        );
        println!(
            "{:<36} {:>7.2} s {:>10} {:>9} {:>9} {:>7} {:>8} {:>10}",
            "baseline, operator's watches open",
            self.watched_baseline_seconds,
            "-",
            "-",
            "-",
            self.baseline_requests,
            format!("{:.2}", self.per_app(self.baseline_requests as f64)),
            cp(self.watched_baseline_control_plane_cpu),
        );
        println!(
            "{:<36} {:>7.2} s {:>8.2} s {:>6.1} ms {:>5.0} MiB {:>7} {:>8.2} {:>10}",
            "operator: cold start to all Ready",
            self.cold_seconds,
            self.cold_cpu,
            self.per_app(self.cold_cpu) * 1000.0,
            self.cold_peak_rss_mib,
            cold_writes,
            self.per_app(cold_writes as f64),
            cp(self.cold_control_plane_cpu),
        );
        println!(
            "{:<36} {:>7.2} s {:>8.2} s {:>6.1} ms {:>5.0} MiB {:>7} {:>8.2} {:>10}",
            "operator: restart to all reconciled",
            self.restart_seconds,
            self.restart_cpu,
            self.per_app(self.restart_cpu) * 1000.0,
            self.restart_peak_rss_mib,
            restart_writes,
            self.per_app(restart_writes as f64),
            "-",
        );
        println!(
            "{:<36} {:>7} s {:>8.2} s {:>9} {:>9} {:>7} {:>8.2} {:>10}",
            "operator: idle",
            self.idle_seconds,
            self.idle_cpu,
            "-",
            "-",
            idle_writes,
            self.per_app(idle_writes as f64),
            cp(self.idle_control_plane_cpu),
        );
        println!();
        println!(
            "ratio baseline / operator time: {:.2}   (1.0 = as fast as the plain client)",
            self.ratio()
        );
        println!(
            "ratio baseline with the operator's watches open / operator time: {:.2}   (the API server's watch fan-out taken out)",
            self.watched_baseline_seconds / self.cold_seconds
        );
        println!();
        println!(
            "{:<12} {:>12} {:>9} {:>16} {:>10}",
            "requests", "cold start", "per app", "restart+settle", "idle"
        );
        for verb in VERBS {
            let get = |m: &BTreeMap<String, u64>| m.get(verb).copied().unwrap_or(0);
            println!(
                "{:<12} {:>12} {:>9.2} {:>16} {:>10}",
                verb,
                get(&self.cold_requests),
                self.per_app(get(&self.cold_requests) as f64),
                get(&self.restart_requests),
                get(&self.idle_requests),
            );
        }
        println!();
        println!(
            "cold start: {} ExposedApp reconciles ({:.2} per app), {} failed reconciles; {} more writes after all Ready (until {} s without one)",
            self.cold_reconciles,
            self.per_app(self.cold_reconciles as f64),
            self.cold_reconcile_errors,
            self.cold_writes_after_ready,
            self.quiet_seconds,
        );
        println!(
            "children: {} live, {} of the baseline's {} with the same desired-hash (same bytes)",
            self.children_live, self.children_matching, self.children_expected
        );
        println!(
            "restart: {} writes when the last app was reconciled, {} after settling; {} of {n} apps Ready; the stopped operator exited {:.2} s after SIGTERM",
            self.restart_writes_at_reconciled,
            restart_writes,
            self.restart_ready,
            self.exit_after_sigterm
        );
        println!(
            "idle: {} ExposedApp reconciles, {:.2} operator CPU s over {} s",
            self.idle_reconciles, self.idle_cpu, self.idle_seconds
        );
    }

    fn json(&self) -> Value {
        let per_app = |m: &BTreeMap<String, u64>| -> BTreeMap<String, f64> {
            m.iter()
                .map(|(k, v)| (k.clone(), *v as f64 / self.n as f64))
                .collect()
        };
        json!({
            "apps": self.n,
            "namespaces": self.namespaces,
            "children_per_app": self.children_per_app,
            "concurrency": self.concurrency,
            "machine": {
                "cpus": self.cpus,
                "loadavg_start": self.loadavg_start,
                "loadavg_before_baseline": self.loadavg_baseline,
                "loadavg_before_operator": self.loadavg_operator,
            },
            "setup_seconds": self.setup_seconds,
            "quiet_seconds": self.quiet_seconds,
            "baseline_with_operator_watches": {
                "seconds": self.watched_baseline_seconds,
                "control_plane_cpu_seconds": self.watched_baseline_control_plane_cpu,
                "ratio_over_operator": self.watched_baseline_seconds / self.cold_seconds,
            },
            "baseline": {
                "seconds": self.baseline_seconds,
                "writes": self.baseline_requests,
                "writes_per_app": self.per_app(self.baseline_requests as f64),
                "control_plane_cpu_seconds": self.baseline_control_plane_cpu,
            },
            "cold_start": {
                "seconds_to_all_ready": self.cold_seconds,
                "ratio_baseline_over_operator": self.ratio(),
                "cpu_seconds": self.cold_cpu,
                "cpu_ms_per_app": self.per_app(self.cold_cpu) * 1000.0,
                "peak_rss_mib": self.cold_peak_rss_mib,
                "requests": self.cold_requests,
                "requests_per_app": per_app(&self.cold_requests),
                "writes": writes(&self.cold_requests),
                "writes_per_app": self.per_app(writes(&self.cold_requests) as f64),
                "writes_after_all_ready": self.cold_writes_after_ready,
                "reconciles": self.cold_reconciles,
                "reconcile_errors": self.cold_reconcile_errors,
                "control_plane_cpu_seconds": self.cold_control_plane_cpu,
                "children_live": self.children_live,
                "children_same_as_baseline": self.children_matching,
                "children_expected": self.children_expected,
            },
            "restart": {
                "previous_exit_after_sigterm_seconds": self.exit_after_sigterm,
                "seconds_to_all_reconciled": self.restart_seconds,
                "cpu_seconds": self.restart_cpu,
                "requests": self.restart_requests,
                "writes": writes(&self.restart_requests),
                "writes_at_all_reconciled": self.restart_writes_at_reconciled,
                "apps_ready": self.restart_ready,
                "peak_rss_mib": self.restart_peak_rss_mib,
            },
            "idle": {
                "seconds": self.idle_seconds,
                "cpu_seconds": self.idle_cpu,
                "requests": self.idle_requests,
                "writes": writes(&self.idle_requests),
                "reconciles": self.idle_reconciles,
                "control_plane_cpu_seconds": self.idle_control_plane_cpu,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_metrics() {
        let s = Scrape::parse(
            "# TYPE x counter\ngatehouse_reconciles_total{kind=\"ExposedApp\"} 12\n\
             gatehouse_reconcile_errors_total{kind=\"ExposedApp\",reason=\"apply\"} 2\n\
             gatehouse_api_requests_total{verb=\"patch\"} 7\n\
             gatehouse_api_requests_total{verb=\"get\"} 3\n",
        );
        assert_eq!(s.reconciles("ExposedApp"), 12);
        assert_eq!(s.errors, 2);
        assert_eq!(s.writes(), 7);
    }

    #[test]
    fn parses_proc_stat() {
        let stat = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        let cpu = process_cpu(stat).unwrap();
        assert!((cpu - 300.0 / clock_ticks()).abs() < 1e-9);
    }

    #[test]
    fn simple_apps_render_three_children() {
        let mut network: ClusterNetwork = serde_json::from_value(network()).unwrap();
        network.metadata.uid = Some("n".into());
        let mut a: ExposedApp = serde_json::from_value(app(3, 2)).unwrap();
        a.metadata.uid = Some("u".into());
        a.metadata.generation = Some(1);
        let jobs = baseline_jobs(&network, &[a]).unwrap();
        let kinds: Vec<ChildKind> = jobs[0].children.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, CHILD_KINDS);
        let ready = jobs[0]
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready");
        assert_eq!(ready.map(|c| c.status.as_str()), Some("True"));
    }
}
