//! Test support for integration tests against the shared local control plane started by
//! `make test` (hack/with-cluster.sh): a client for it and a namespace of one's own per test.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::ApiResource;
use kube::{Client, Config};
use serde_json::{Value, json};

pub mod audit;
pub mod chaos;
pub mod datapath;
pub mod multinet;
pub mod policy;
pub mod rng;
pub mod sets;

/// Repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The admin kubeconfig of the local control plane.
pub fn kubeconfig_path() -> PathBuf {
    std::env::var_os("CLUSTER_KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".cluster/kubeconfig"))
}

/// A client for the local control plane. Panics with instructions when it is not running.
pub async fn client() -> Client {
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path).unwrap_or_else(|e| {
        panic!(
            "no local control plane ({}: {e}); run `make test` or `make cluster-up` first",
            path.display()
        )
    });
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig of the local control plane is valid");
    Client::try_from(config).expect("client")
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Creates a namespace of the test's own, `<prefix>-<pid>-<n>`, with optional labels.
pub async fn namespace(client: &Client, prefix: &str, labels: Value) -> String {
    let name = format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let ns: Namespace = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels}
    }))
    .unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    name
}

/// The API resource of an object's apiVersion/kind, found by discovery.
pub async fn resource_of(client: &Client, api_version: &str, kind: &str) -> (ApiResource, bool) {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
    let (ar, caps) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .unwrap_or_else(|e| panic!("discovery of {api_version} {kind}: {e}"));
    (ar, caps.scope == kube::discovery::Scope::Namespaced)
}

/// An Api for an object given as JSON (namespaced by its metadata.namespace).
pub async fn api_for(client: &Client, obj: &Value) -> Api<DynamicObject> {
    let (ar, namespaced) = resource_of(
        client,
        obj["apiVersion"].as_str().unwrap(),
        obj["kind"].as_str().unwrap(),
    )
    .await;
    match (namespaced, obj["metadata"]["namespace"].as_str()) {
        (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ar),
        (true, None) => Api::default_namespaced_with(client.clone(), &ar),
        (false, _) => Api::all_with(client.clone(), &ar),
    }
}

/// Server-side apply of an object given as JSON; returns the API error on rejection.
pub async fn apply(
    client: &Client,
    obj: &Value,
    dry_run: bool,
) -> Result<DynamicObject, kube::Error> {
    let api = api_for(client, obj).await;
    let name = obj["metadata"]["name"].as_str().unwrap();
    let mut pp = PatchParams::apply("gatehouse-tests").force();
    pp.dry_run = dry_run;
    api.patch(name, &pp, &Patch::Apply(obj)).await
}

/// Parses a multi-document YAML string into JSON values (skipping empty documents).
pub fn yaml_docs(text: &str) -> Vec<Value> {
    yaml_serde::Deserializer::from_str(text)
        .filter_map(|d| {
            let v: Value = serde::Deserialize::deserialize(d).expect("valid YAML");
            (!v.is_null()).then_some(v)
        })
        .collect()
}

/// Polls `check` every 200 ms until it returns Some, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An operator running in this test process, on its own thread and runtime, with a client
/// whose requests are counted. Dropping it (or `stop`) shuts it down.
pub struct Operator {
    pub metrics: std::sync::Arc<gatehouse_operator::metrics::Metrics>,
    /// Its User-Agent, unique per operator: its requests in the API server's audit log.
    pub user_agent: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Operator {
    pub fn start() -> Operator {
        Operator::start_with(None)
    }

    /// An operator that runs its controllers only while it holds the leader Lease.
    pub fn start_with(leader: Option<gatehouse_operator::leader::LeaderConfig>) -> Operator {
        Operator::start_full(leader, None)
    }

    /// With every option: a leader Lease and an address for /metrics, /healthz, /readyz.
    pub fn start_full(
        leader: Option<gatehouse_operator::leader::LeaderConfig>,
        http_addr: Option<std::net::SocketAddr>,
    ) -> Operator {
        Operator::start_options(leader, http_addr, None)
    }

    /// With the Multus attachment webhook too.
    pub fn start_options(
        leader: Option<gatehouse_operator::leader::LeaderConfig>,
        http_addr: Option<std::net::SocketAddr>,
        webhook: Option<gatehouse_operator::webhook::WebhookOptions>,
    ) -> Operator {
        let metrics = std::sync::Arc::new(gatehouse_operator::metrics::Metrics::default());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let m = metrics.clone();
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let user_agent = format!(
            "gatehouse-test/{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        );
        let agent = user_agent.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let kubeconfig = Kubeconfig::read_from(kubeconfig_path()).expect("kubeconfig");
                let mut config =
                    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                        .await
                        .unwrap();
                config.headers.push((
                    http::header::USER_AGENT,
                    http::HeaderValue::from_str(&agent).unwrap(),
                ));
                let client =
                    gatehouse_operator::metrics::counting_client(config, m.clone()).unwrap();
                let shutdown = async move {
                    let _ = stop_rx.await;
                };
                gatehouse_operator::reconcile::run(
                    client,
                    m,
                    gatehouse_operator::reconcile::RunOptions {
                        leader,
                        http_addr,
                        webhook,
                    },
                    shutdown,
                )
                .await
                .expect("operator runs");
            });
        });
        Operator {
            metrics,
            user_agent,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn writes(&self) -> u64 {
        self.metrics.mutating_requests()
    }

    /// Its mutating requests the shared cluster's audit log recorded after `mark`.
    pub fn audited_writes(&self, mark: u64) -> Vec<Value> {
        audit::AuditLog::shared().writes_of(&self.user_agent, mark)
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The identity the operator runs as in tests: the ServiceAccount of config/rbac, with a
/// token from the TokenRequest API, so every test proves that config/rbac is enough.
pub async fn operator_config() -> Config {
    let admin = client().await;
    let dir = root().join("config/rbac");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files
        .iter()
        .filter(|f| f.file_name().is_some_and(|n| n != "kustomization.yaml"))
    {
        for doc in yaml_docs(&std::fs::read_to_string(f).unwrap()) {
            apply(&admin, &doc, false)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        }
    }
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig_path())
        .args([
            "create",
            "token",
            "gatehouse",
            "-n",
            "gatehouse-system",
            "--duration",
            "2h",
        ])
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "token request: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let mut kubeconfig: yaml_serde::Value =
        yaml_serde::from_str(&std::fs::read_to_string(kubeconfig_path()).unwrap()).unwrap();
    kubeconfig["users"][0]["user"] =
        yaml_serde::to_value(serde_json::json!({"token": token})).unwrap();
    let kubeconfig = Kubeconfig::from_yaml(&yaml_serde::to_string(&kubeconfig).unwrap()).unwrap();
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap()
}

/// Waits until the operator's write counter has not moved for `quiet` (it is idle), up
/// to `timeout`; returns the count.
pub async fn settle(op: &Operator, quiet: Duration, timeout: Duration) -> u64 {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = op.writes();
    let mut since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = op.writes();
        if now != last {
            last = now;
            since = tokio::time::Instant::now();
        } else if since.elapsed() >= quiet {
            return now;
        }
        if tokio::time::Instant::now() > deadline {
            return now;
        }
    }
}

/// Makes the operator reconcile each of `objects` (Gatehouse objects as JSON) once more
/// without changing what it renders (an annotation nothing reads), and waits until it has
/// finished at least that many reconciles; returns its write count before the touch. An
/// idle check after it covers real reconciles of every object, not a quiet stretch of time.
pub async fn touch_and_wait(
    client: &Client,
    op: &Operator,
    objects: &[Value],
    timeout: Duration,
) -> u64 {
    use std::sync::atomic::Ordering::Relaxed;
    let writes = op.writes();
    let before = op.metrics.reconciles.load(Relaxed);
    let stamp = format!("{:?}", std::time::SystemTime::now());
    for obj in objects {
        let api = api_for(client, obj).await;
        let name = obj["metadata"]["name"].as_str().unwrap();
        let touch =
            serde_json::json!({"metadata": {"annotations": {"gatehouse-tests/touched": stamp}}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&touch))
            .await
            .unwrap_or_else(|e| panic!("touching {name}: {e}"));
    }
    let wanted = before + objects.len() as u64;
    eventually(
        timeout,
        &format!(
            "the operator to reconcile the {} touched objects",
            objects.len()
        ),
        || {
            let m = op.metrics.clone();
            async move { (m.reconciles.load(Relaxed) >= wanted).then_some(()) }
        },
    )
    .await;
    writes
}

/// The state directory of the local cluster (hack/cluster-up.sh): next to its kubeconfig.
/// `kubectl ARGS` on the shared cluster; panics unless it succeeds, returns stdout. With a
/// private discovery cache: loopback ports get reused across clusters, and a cache from an
/// earlier cluster without our CRDs would hide them (and their printer columns).
pub fn kubectl(args: &[&str]) -> String {
    let cache =
        std::env::temp_dir().join(format!("gatehouse-kubectl-cache-{}", std::process::id()));
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig_path())
        .arg("--cache-dir")
        .arg(&cache)
        .args(args)
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn cluster_dir() -> PathBuf {
    kubeconfig_path()
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".cluster"))
}

/// A value hack/stack-up.sh recorded for the real controllers it started (DNS ports, the
/// CA). Panics with instructions when the stack is not up.
pub fn stack_env(key: &str) -> String {
    env_file_value("stack.env", key).unwrap_or_else(|| {
        panic!(
            "{} has no {key}; run the tests through `make test`, which starts the stack",
            cluster_dir().join("stack.env").display()
        )
    })
}

/// `KEY=value` from a file the cluster scripts write in the cluster directory, if present.
fn env_file_value(file: &str, key: &str) -> Option<String> {
    std::fs::read_to_string(cluster_dir().join(file))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_string))
}

/// Starts (`true`) or stops a component of the test stack: `cert-manager`, `metallb`, `dns`.
/// Starting is idempotent. Used around tests that must run without one of them.
pub fn stack_component(up: bool, component: &str) {
    let script = if up { "stack-up.sh" } else { "stack-down.sh" };
    let out = std::process::Command::new(root().join("hack").join(script))
        .arg(component)
        .env("CLUSTER_DIR", cluster_dir())
        .output()
        .expect("hack script runs");
    assert!(
        out.status.success(),
        "{script} {component}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A stack component stopped for as long as this value lives; dropping it (also when a test
/// panics) starts the component again.
pub struct Paused(&'static str);

/// Stops `component` until the returned guard is dropped.
pub fn pause(component: &'static str) -> Paused {
    stack_component(false, component);
    Paused(component)
}

impl Drop for Paused {
    fn drop(&mut self) {
        // No panic here: this may run while a failed test unwinds.
        let _ = std::process::Command::new(root().join("hack/stack-up.sh"))
            .arg(self.0)
            .env("CLUSTER_DIR", cluster_dir())
            .output();
    }
}

/// One DNS answer from a tier's BIND server: the response code and the answer records'
/// data (addresses for A/AAAA), sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsAnswer {
    pub status: String,
    pub records: Vec<String>,
}

/// Asks the BIND server of `tier` (external, internal) for `name`/`rtype` with the real
/// `dig`.
pub fn dig(tier: &str, name: &str, rtype: &str) -> DnsAnswer {
    let port = stack_env(&format!("DNS_{}_PORT", tier.to_uppercase()));
    let out = std::process::Command::new("dig")
        .args(["+noall", "+comments", "+answer", "+time=2", "+tries=1"])
        .arg("@127.0.0.1")
        .args(["-p", &port, name, rtype])
        .output()
        .expect("dig runs (make bind9 installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let status = text
        .lines()
        .find_map(|l| l.split("status: ").nth(1))
        .and_then(|s| s.split(',').next())
        .unwrap_or("NO-ANSWER")
        .to_string();
    let mut records: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 5 && f[3] == rtype).then(|| f[4..].join(" "))
        })
        .collect();
    records.sort();
    DnsAnswer { status, records }
}

/// Waits until `dig` on `tier` answers `name`/`rtype` with exactly `want` (NOERROR), or,
/// with `want` empty, says NXDOMAIN.
pub async fn wait_dns(tier: &str, name: &str, rtype: &str, want: &[String], timeout: Duration) {
    // dig prints a CNAME target fully qualified.
    let mut want: Vec<String> = want
        .iter()
        .map(|t| match rtype {
            "CNAME" if !t.ends_with('.') => format!("{t}."),
            _ => t.clone(),
        })
        .collect();
    want.sort();
    let expected = if want.is_empty() {
        DnsAnswer {
            status: "NXDOMAIN".into(),
            records: vec![],
        }
    } else {
        DnsAnswer {
            status: "NOERROR".into(),
            records: want,
        }
    };
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let got = dig(tier, name, rtype);
        if got == expected {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("dig {name} {rtype} on the {tier} tier: got {got:?}, want {expected:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What a certificate Secret holds, as read with the real `openssl`.
#[derive(Debug)]
pub struct IssuedCertificate {
    pub subject: String,
    pub issuer: String,
    pub dns_names: Vec<String>,
}

/// Reads Secret `namespace/name`, checks with `openssl verify` that its certificate chains
/// to the test stack's CA, and returns its subject, issuer and DNS names (sorted).
pub async fn issued_certificate(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<IssuedCertificate, String> {
    let secret = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("Secret {namespace}/{name} does not exist"))?;
    let pem = secret
        .data
        .as_ref()
        .and_then(|d| d.get("tls.crt"))
        .ok_or_else(|| format!("Secret {namespace}/{name} has no tls.crt"))?
        .0
        .clone();
    let file = std::env::temp_dir().join(format!(
        "gatehouse-cert-{}-{}.pem",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&file, &pem).map_err(|e| e.to_string())?;
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("openssl {}: {text}", args.join(" ")))
        }
    };
    let path = file.to_string_lossy().to_string();
    let ca = stack_env("CA_CERT");
    let verified = openssl(&["verify", "-CAfile", &ca, &path]);
    let text = openssl(&[
        "x509",
        "-in",
        &path,
        "-noout",
        "-subject",
        "-issuer",
        "-ext",
        "subjectAltName",
        "-nameopt",
        "RFC2253",
    ]);
    let _ = std::fs::remove_file(&file);
    verified?;
    let text = text?;
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let mut dns_names: Vec<String> = text
        .split([',', '\n'])
        .filter_map(|p| p.trim().strip_prefix("DNS:"))
        .map(str::to_string)
        .collect();
    dns_names.sort();
    Ok(IssuedCertificate {
        subject: field("subject="),
        issuer: field("issuer="),
        dns_names,
    })
}

/// Plays the load balancers that cannot run on one machine: Hetzner's cloud load balancer
/// and Cilium's LB-IPAM. Gives each unassigned LoadBalancer Service in `namespaces` the
/// address it requests (`lbipam.cilium.io/ips`), else the next of 198.51.100.0/24 and
/// 2001:db8:ffff::/112 (both for a Hetzner one, which is dual-stack whatever the Service's
/// families), by patching its status as those controllers would. MetalLB must be
/// stopped meanwhile (`stack_component(false, "metallb")`): it claims every LoadBalancer
/// Service without a class and clears addresses it did not assign.
pub async fn play_load_balancers(client: &Client, namespaces: &[String]) {
    use std::sync::atomic::AtomicU32;
    static NEXT_IP: AtomicU32 = AtomicU32::new(1);
    let status_pp = PatchParams::default();
    for ns in namespaces {
        let services = Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), ns);
        for s in services
            .list(&Default::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            let spec = s.spec.clone().unwrap_or_default();
            if spec.type_.as_deref() != Some("LoadBalancer") {
                continue;
            }
            let assigned = s
                .status
                .as_ref()
                .and_then(|st| st.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .is_some_and(|i| !i.is_empty());
            if assigned {
                continue;
            }
            let annotations = s.metadata.annotations.clone().unwrap_or_default();
            let ips: Vec<String> = match annotations.get("lbipam.cilium.io/ips") {
                Some(list) => list.split(',').map(|x| x.trim().to_string()).collect(),
                None => {
                    let n = NEXT_IP.fetch_add(1, Ordering::SeqCst);
                    // Hetzner's load balancers are dual-stack whatever the Service's
                    // families (hcloud-cloud-controller-manager reports both); Cilium's
                    // follow the Service.
                    let hetzner = annotations
                        .keys()
                        .any(|k| k.starts_with("load-balancer.hetzner.cloud/"));
                    let families = if hetzner {
                        vec!["IPv4".to_string(), "IPv6".to_string()]
                    } else {
                        spec.ip_families
                            .clone()
                            .unwrap_or_else(|| vec!["IPv4".into()])
                    };
                    families
                        .iter()
                        .map(|f| {
                            if f == "IPv6" {
                                format!("2001:db8:ffff::{:x}", n)
                            } else {
                                format!("198.51.100.{}", n % 250 + 1)
                            }
                        })
                        .collect()
                }
            };
            let ingress: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
            let patch = json!({"status": {"loadBalancer": {"ingress": ingress}}});
            let _ = services
                .patch_status(
                    &s.metadata.name.clone().unwrap(),
                    &status_pp,
                    &Patch::Merge(&patch),
                )
                .await;
        }
    }
}

/// The status condition `type_` of a Gatehouse object as (status, reason, message).
pub fn condition(obj: &DynamicObject, type_: &str) -> Option<(String, String, String)> {
    obj.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
                c["message"].as_str().unwrap_or_default().to_string(),
            )
        })
}

/// Api for a Gatehouse kind (`ExposedApp`, `EgressPolicy`, `ClusterNetwork`).
pub fn gatehouse_api(client: &Client, kind: &str, namespace: Option<&str>) -> Api<DynamicObject> {
    let plural = match kind {
        "ExposedApp" => "exposedapps",
        "EgressPolicy" => "egresspolicies",
        "ClusterNetwork" => "clusternetworks",
        other => panic!("not a Gatehouse kind: {other}"),
    };
    let ar = ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("gatehouse.dev", "v1alpha1", kind),
        plural,
    );
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

/// Waits until a Gatehouse object has condition `type_` with `status` (and `reason`, if
/// given) for its current generation; returns the object.
pub async fn wait_condition(
    api: &Api<DynamicObject>,
    name: &str,
    type_: &str,
    status: &str,
    reason: Option<&str>,
    timeout: Duration,
) -> DynamicObject {
    let what = format!(
        "{name} to have {type_}={status}{}",
        reason.map(|r| format!(" ({r})")).unwrap_or_default()
    );
    let mut last = None;
    let result = tokio::time::timeout(timeout, async {
        loop {
            if let Ok(Some(obj)) = api.get_opt(name).await {
                let generation = obj.metadata.generation;
                let observed = obj.data["status"]["observedGeneration"].as_i64();
                let c = condition(&obj, type_);
                let ok = c
                    .as_ref()
                    .is_some_and(|(s, r, _)| s == status && reason.is_none_or(|want| want == r));
                if ok && observed == generation {
                    return obj;
                }
                last = Some(obj.data["status"].clone());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    result.unwrap_or_else(|_| {
        panic!(
            "timed out waiting for {what}; last status: {}",
            serde_json::to_string_pretty(&last).unwrap()
        )
    })
}

/// Namespaces a sample set may name but a test must never delete: the cluster's own, and
/// the ones the test stack's controllers keep their state in (cert-manager's CA Secret,
/// MetalLB's ConfigurationState: without it MetalLB loads no pool).
pub const PROTECTED_NAMESPACES: [&str; 6] = [
    "default",
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "cert-manager",
    "metallb-system",
];

/// The namespaces of a set's objects that a test may delete afterwards.
pub fn deletable_namespaces(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .filter(|o| o["kind"] == "Namespace")
        .filter_map(|o| o["metadata"]["name"].as_str())
        .filter(|n| !PROTECTED_NAMESPACES.contains(n))
        .map(str::to_string)
        .collect()
}

/// The sample set directories under config/samples, sorted.
pub fn sample_sets() -> Vec<PathBuf> {
    let mut sets: Vec<_> = std::fs::read_dir(root().join("config/samples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    sets.sort();
    sets
}

/// Every document of a sample set, files in name order.
pub fn sample_objects(set: &std::path::Path) -> Vec<Value> {
    let mut files: Vec<_> = std::fs::read_dir(set)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| yaml_docs(&std::fs::read_to_string(f).unwrap()))
        .collect()
}

/// The image the node runs sample workloads from (hack/images.sh builds it; `make test`
/// imports it into the node's containerd).
pub fn backend_image() -> String {
    std::env::var("BACKEND_IMAGE").unwrap_or_else(|_| "gatehouse.local/backend:1".into())
}

/// Deployments that run a set's workloads on the node: per ExposedApp, one pod of the test
/// backend with the app's selector labels, listening on every TCP target port of the app
/// (numbered target ports as they are, named ones on the Service port under that name) and
/// answering with its pod name. Probed on its first port, so Ready means really serving.
pub fn workloads(objects: &[Value]) -> Vec<Value> {
    workloads_with(objects, None)
}

/// As [`workloads`], and with `sign_in` the set's OAuth2 Proxy app (the one serving the
/// network's `auth.oauth2Proxy.url`) runs a real OAuth2 Proxy against that issuer instead of
/// the backend (datapath::oauth2_proxy_container).
pub fn workloads_with(objects: &[Value], sign_in: Option<&datapath::SignIn>) -> Vec<Value> {
    let oauth2_app = datapath::oauth2_app(objects);
    let mut out = Vec::new();
    for app in objects.iter().filter(|o| o["kind"] == "ExposedApp") {
        let name = app["metadata"]["name"].as_str().unwrap();
        let ns = app["metadata"]["namespace"].as_str().unwrap_or("default");
        let labels = app["spec"]["selector"].clone();
        let mut ports: Vec<Value> = Vec::new();
        for p in app["spec"]["ports"].as_array().into_iter().flatten() {
            if p["protocol"].as_str().unwrap_or("TCP") != "TCP" {
                continue;
            }
            let port = p["port"].as_i64().unwrap();
            let entry = match &p["targetPort"] {
                Value::Number(n) => json!({"containerPort": n.as_i64().unwrap()}),
                Value::String(named) => json!({"containerPort": port, "name": named}),
                _ => json!({"containerPort": port}),
            };
            if !ports
                .iter()
                .any(|x| x["containerPort"] == entry["containerPort"])
            {
                ports.push(entry);
            }
        }
        if ports.is_empty() {
            continue;
        }
        let list: Vec<String> = ports
            .iter()
            .map(|p| p["containerPort"].to_string())
            .collect();
        let container = match sign_in {
            Some(s) if oauth2_app == Some(app) => {
                let port = ports[0]["containerPort"].as_i64().unwrap();
                datapath::oauth2_proxy_container(objects, port, s)
                    .expect("an OAuth2 Proxy app implies a URL")
            }
            _ => json!({
                "name": "backend",
                "image": backend_image(),
                "imagePullPolicy": "Never",
                "env": [
                    {"name": "PORTS", "value": list.join(",")},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                ],
                "ports": ports,
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": ports[0]["containerPort"]}, "periodSeconds": 1},
                "securityContext": {
                    "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"]},
                },
            }),
        };
        out.push(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": format!("{name}-backend"), "namespace": ns},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "automountServiceAccountToken": false,
                        "enableServiceLinks": false,
                        // Unprivileged binding of low ports (80, 443) without root or
                        // capabilities: a namespaced, safe sysctl since Kubernetes 1.22.
                        "securityContext": {
                            "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"},
                            "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}],
                        },
                        "containers": [container],
                    },
                },
            },
        }));
    }
    out
}

/// A value hack/cluster-up.sh recorded in $CLUSTER_DIR/cluster.env (NODE_NAME, NODE_IP...),
/// if present.
pub fn cluster_env(key: &str) -> Option<String> {
    env_file_value("cluster.env", key)
}

/// Merges `patch` into `base` (objects key by key, anything else replaced): a base object
/// with a test's changes.
pub fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}
