//! What the fault tests (tests/chaos.rs, issue 13) run on: a control plane of their own (no
//! node: it is stopped, its etcd restarted, and the shared cluster must not suffer that), the
//! operator as a real process that can be SIGKILLed, a TCP proxy that partitions one replica
//! from the API server, a workload of a few hundred objects, and the check that the live
//! children are exactly what `gatehouse render` gives for the same inputs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child as Process, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatehouse_operator::reconcile::plan::{HASH_ANNOTATION, contains, first_difference};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::audit::AuditLog;
pub use crate::rng::Rng;
use crate::sets::{ChildKey, expected_children, live_children, owners};
use crate::{apply, condition, gatehouse_api, root};

/// A node-less control plane of one test (hack/cluster-up.sh in a directory of its own),
/// stopped when dropped; the watchdog stops it too if the test process dies.
pub struct OwnCluster(ClusterDir);

/// What a test does with a running control plane, by its directory (a blocking task can
/// hold a copy; only the [`OwnCluster`] stops it).
#[derive(Clone, Debug)]
pub struct ClusterDir {
    pub dir: PathBuf,
}

impl std::ops::Deref for OwnCluster {
    type Target = ClusterDir;
    fn deref(&self) -> &ClusterDir {
        &self.0
    }
}

impl OwnCluster {
    pub fn start(name: &str) -> OwnCluster {
        let bin = std::env::var_os("CONTROLPLANE_BIN")
            .expect("CONTROLPLANE_BIN is not set: run through `make test`");
        let dir = root()
            .join("target/chaos")
            .join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new(root().join("hack/cluster-up.sh"))
            .env("CLUSTER_DIR", &dir)
            .env("CLUSTER_KUBECONFIG", dir.join("kubeconfig"))
            .env("CONTROLPLANE_BIN", bin)
            .env("CLUSTER_NODE", "0")
            .env("CLUSTER_WATCH_PID", std::process::id().to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "control plane {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        OwnCluster(ClusterDir { dir })
    }
}

impl ClusterDir {
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    pub async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(self.kubeconfig()).unwrap();
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .unwrap();
        Client::try_from(config).unwrap()
    }

    pub fn audit(&self) -> AuditLog {
        AuditLog(self.dir.join("logs/audit.log"))
    }

    /// A value of the cluster's cluster.env.
    pub fn env(&self, key: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join("cluster.env")).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} not in cluster.env"))
            .to_string()
    }

    pub fn pid(&self, component: &str) -> i32 {
        let path = self.dir.join(format!("run/{component}.pid"));
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .parse()
            .unwrap()
    }

    pub fn signal(&self, component: &str, signal: &str) {
        let pid = self.pid(component);
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} {component} ({pid})");
    }

    /// Stops etcd (SIGTERM), keeps it down for `down`, and starts it again on its data
    /// (tmpfs, kept) with the command line it had. Returns when it answers /health again.
    pub fn restart_etcd(&self, down: Duration) {
        let pid = self.pid("etcd");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        self.signal("etcd", "TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid) {
            assert!(Instant::now() < deadline, "etcd did not stop");
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(down);
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.dir.join("logs/etcd.log"))
            .unwrap();
        // As hack/lib.sh launches it: its own session, the cluster's marker in its
        // environment (cluster-down finds it by that too).
        let mut child = Command::new("setsid")
            .args(&args)
            .env("GATEHOUSE_CLUSTER_DIR", &self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        std::fs::write(self.dir.join("run/etcd.pid"), child.id().to_string()).unwrap();
        // Reaped when it exits (cluster-down stops it by its pid file).
        std::thread::spawn(move || child.wait());
        let url = format!("{}/health", self.env("ETCD_URL"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !Command::new("curl")
            .args(["-fsS", "--max-time", "2", &url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
        {
            assert!(Instant::now() < deadline, "etcd did not come back");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A copy of the admin kubeconfig that reaches the API server through `proxy`.
    pub fn kubeconfig_via(&self, proxy: &Proxy, name: &str) -> PathBuf {
        let text = std::fs::read_to_string(self.kubeconfig()).unwrap();
        let server = format!("https://{}:{}", self.env("API_HOST"), self.env("API_PORT"));
        let path = self.dir.join(format!("kubeconfig-{name}"));
        std::fs::write(
            &path,
            text.replace(&server, &format!("https://127.0.0.1:{}", proxy.port)),
        )
        .unwrap();
        path
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split_whitespace().nth(2) == Some("Z"))
        .unwrap_or(true)
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = Command::new(root().join("hack/cluster-down.sh"))
            .arg("--quiet")
            .env("CLUSTER_DIR", &self.dir)
            .output();
    }
}

/// The operator's binary: target/<profile>/gatehouse, which `make test` (cargo test
/// --workspace) has just built. Built here only when it is missing or older than a source of
/// the operator or the API types, since a `cargo build -p` of it alone unifies features
/// differently and rebuilds half the dependencies.
pub fn operator_binary() -> PathBuf {
    // The test binary is target/<profile>/deps/chaos-…; the operator is target/<profile>/.
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("gatehouse");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let newest_source = ["operator/src", "api/src"]
        .iter()
        .flat_map(|d| walk(&root().join(d)))
        .filter_map(|p| modified(&p))
        .max();
    let fresh = modified(&bin).is_some_and(|b| newest_source.is_none_or(|s| b >= s));
    if !fresh {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args([
                "build",
                "-q",
                "-p",
                "gatehouse-operator",
                "--bin",
                "gatehouse",
            ])
            .current_dir(root())
            .status()
            .unwrap()
            .success();
        assert!(ok, "cargo build of the operator binary failed");
    }
    bin
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `gatehouse run` as a process of its own: SIGKILL is a crash, nothing is flushed.
pub struct OperatorProcess {
    process: Process,
    pub identity: String,
    pub http: SocketAddr,
    /// What it sends as User-Agent (its requests in the audit log).
    pub user_agent: String,
    pub started: Instant,
}

/// Leader election as the chart runs it, with short times so a test sees takeovers.
#[derive(Clone, Copy, Debug)]
pub struct Lease {
    pub duration_seconds: u64,
    pub renew_seconds: u64,
}

impl OperatorProcess {
    pub fn spawn(
        binary: &Path,
        kubeconfig: &Path,
        log_dir: &Path,
        identity: &str,
        lease: Option<Lease>,
    ) -> OperatorProcess {
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut cmd = Command::new(binary);
        cmd.args(["run", "--http-addr", &http.to_string()]);
        let version = env!("CARGO_PKG_VERSION");
        let user_agent = match lease {
            Some(l) => {
                cmd.args([
                    "--leader-elect",
                    "--leader-election-namespace",
                    "kube-system",
                    "--identity",
                    identity,
                    "--lease-duration-seconds",
                    &l.duration_seconds.to_string(),
                    "--renew-period-seconds",
                    &l.renew_seconds.to_string(),
                ]);
                format!("gatehouse/{version} ({identity})")
            }
            None => format!("gatehouse/{version}"),
        };
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(log_dir.join(format!("operator-{identity}.log")))
            .unwrap();
        let process = cmd
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,kube=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        OperatorProcess {
            process,
            identity: identity.to_string(),
            http,
            user_agent,
            started: Instant::now(),
        }
    }

    /// SIGKILL, as the OOM killer or a node failure would, and reap it.
    pub fn kill(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.process.try_wait().unwrap()
    }

    /// The status code of its /readyz (None: no answer).
    pub async fn readyz(&self) -> Option<u16> {
        http_get(self.http, "/readyz").await.map(|(code, _)| code)
    }

    /// The sum of a counter of its /metrics over all label sets.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = http_get(self.http, "/metrics").await?;
        Some(
            body.lines()
                .filter(|l| {
                    l.starts_with(name)
                        && matches!(l.as_bytes().get(name.len()), Some(b' ') | Some(b'{'))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum(),
        )
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A plain HTTP/1.1 GET with a 3 s bound: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let code = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((code, body))
    };
    tokio::time::timeout(Duration::from_secs(3), exchange)
        .await
        .ok()
        .flatten()
}

/// How the proxy treats a replica's connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Link {
    /// Bytes flow both ways.
    Up = 0,
    /// Requests fail: open connections are cut, new ones are refused (closed at once).
    Refused = 1,
    /// Requests hang: nothing is forwarded either way, connections stay open (a dropped
    /// route, a firewall discarding packets). Healing closes what hung.
    Blackhole = 2,
}

/// A TCP proxy in front of the API server for one replica: TLS passes through untouched
/// (the API server's certificate holds 127.0.0.1, whatever the port).
pub struct Proxy {
    pub port: u16,
    link: Arc<AtomicU8>,
    /// Bumped on every change of the link: connections of an older epoch close.
    epoch: Arc<Mutex<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let link = Arc::new(AtomicU8::new(Link::Up as u8));
        let epoch = Arc::new(Mutex::new(0u64));
        let (l, e) = (link.clone(), epoch.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let state = l.load(Ordering::SeqCst);
                if state == Link::Refused as u8 {
                    drop(client);
                    continue;
                }
                let (link, epoch) = (l.clone(), e.clone());
                let born = *epoch.lock().unwrap();
                tokio::spawn(async move {
                    if state == Link::Blackhole as u8 {
                        // Accepted, never answered, until the link changes.
                        while *epoch.lock().unwrap() == born {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        return;
                    }
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.split();
                    let (mut sr, mut sw) = server.split();
                    let changed = async {
                        while *epoch.lock().unwrap() == born {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    };
                    let blackholed = async {
                        // Blackhole: stop moving bytes but keep both sockets open.
                        loop {
                            if link.load(Ordering::SeqCst) == Link::Blackhole as u8 {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    };
                    tokio::select! {
                        _ = tokio::io::copy(&mut cr, &mut sw) => {}
                        _ = tokio::io::copy(&mut sr, &mut cw) => {}
                        _ = async { blackholed.await; changed.await } => {}
                        _ = async {
                            // Refused: cut at once.
                            loop {
                                if link.load(Ordering::SeqCst) == Link::Refused as u8 {
                                    return;
                                }
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        } => {}
                    }
                });
            }
        });
        Proxy {
            port,
            link,
            epoch,
            task,
        }
    }

    pub fn set(&self, link: Link) {
        self.link.store(link as u8, Ordering::SeqCst);
        *self.epoch.lock().unwrap() += 1;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A number from the environment, else `default`.
pub fn env_number(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The objects of a fault test: one ClusterNetwork (two Ingress tiers, a default deny over
/// half the namespaces), `apps` ExposedApps and `policies` EgressPolicies over `namespaces`
/// namespaces. Nothing needs a controller that does not run on a node-less control plane:
/// no TLS (cert-manager), no DNS zone (external-dns), no LoadBalancer (MetalLB); what is
/// left still gives every app two to five children and every policy one.
#[derive(Clone, Debug)]
pub struct Workload {
    pub network: String,
    pub namespaces: Vec<String>,
    pub apps: BTreeMap<(String, String), Value>,
    pub policies: BTreeMap<(String, String), Value>,
    /// Objects deleted since: (kind, namespace, name). None of their children may remain.
    pub deleted: Vec<(String, Option<String>, String)>,
}

impl Workload {
    pub fn new(prefix: &str, namespaces: usize, apps: usize, policies: usize) -> Workload {
        let network = format!("{prefix}-net");
        let namespaces: Vec<String> = (0..namespaces).map(|i| format!("{prefix}-{i}")).collect();
        let mut w = Workload {
            network,
            namespaces,
            apps: BTreeMap::new(),
            policies: BTreeMap::new(),
            deleted: Vec::new(),
        };
        for i in 0..apps {
            let (ns, name, app) = w.app(i, 0);
            w.apps.insert((ns, name), app);
        }
        for i in 0..policies {
            let ns = w.namespaces[i % w.namespaces.len()].clone();
            let name = format!("p{i}");
            let target = (i + 1) % apps.max(1);
            let to = json!({"name": format!("a{target}"),
                            "namespace": w.namespaces[target % w.namespaces.len()]});
            let policy = json!({
                "apiVersion": gatehouse_api::API_VERSION, "kind": "EgressPolicy",
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "network": w.network,
                    "podSelector": {"matchLabels": {"app": format!("a{i}")}},
                    "rules": [
                        {"to": [{"app": to}], "ports": [{"port": 80}]},
                        {"to": [{"cidr": "198.51.100.0/24"}], "ports": [{"port": 443}]},
                    ],
                },
            });
            w.policies.insert((ns, name), policy);
        }
        w
    }

    /// App `i` in version `v` (a new version changes its host and port: new children, old
    /// ones pruned).
    pub fn app(&self, i: usize, v: usize) -> (String, String, Value) {
        let ns = self.namespaces[i % self.namespaces.len()].clone();
        let name = format!("a{i}");
        let exposure = ["External", "Internal", "Both"][i % 3];
        let mut spec = json!({
            "network": self.network,
            "selector": {"app": name},
            "dns": {"enabled": false},
            "ports": [{"name": "http", "port": 80 + v as u64}],
            "routes": [{"hosts": [format!("{name}-v{v}.{}.example.com", self.network)],
                        "paths": [{"path": "/", "port": "http"}],
                        "exposure": exposure, "tls": false, "redirectToHttps": false}],
        });
        if i.is_multiple_of(4) {
            spec["allowFrom"] = json!([{"podSelector": {"matchLabels": {"role": "client"}}}]);
        }
        if i.is_multiple_of(5) {
            spec["isolation"] = json!("Isolated");
        }
        let app = json!({
            "apiVersion": gatehouse_api::API_VERSION, "kind": "ExposedApp",
            "metadata": {"name": name, "namespace": ns}, "spec": spec,
        });
        (ns, name, app)
    }

    /// Apps `range` in version `v` (new ones, or changed ones: new host and port), now part
    /// of the workload; returns them to apply.
    pub fn set_versions(&mut self, range: std::ops::Range<usize>, v: usize) -> Vec<Value> {
        range
            .map(|i| {
                let (ns, name, app) = self.app(i, v);
                self.apps.insert((ns, name), app.clone());
                app
            })
            .collect()
    }

    pub fn network_object(&self) -> Value {
        json!({
            "apiVersion": gatehouse_api::API_VERSION, "kind": "ClusterNetwork",
            "metadata": {"name": self.network},
            "spec": {
                "ingress": {
                    "external": {"className": "nginx", "namespace": "ingress-nginx",
                                 "podSelector": {"matchLabels": {"app": "ingress-nginx"}},
                                 "addresses": ["192.0.2.1"]},
                    "internal": {"className": "nginx-internal", "namespace": "ingress-nginx",
                                 "podSelector": {"matchLabels": {"app": "ingress-nginx-internal"}},
                                 "addresses": ["192.0.2.2"]},
                },
                // A zone, so the app that publishes DNS (the outage test's) has records to
                // remove first; the workload's own apps keep DNS off (no external-dns here).
                "dns": {"external": {"zone": format!("{}.example.com", self.network)}},
                "policy": {"defaultDeny": {
                    "namespaceSelector": {"matchLabels": {"gatehouse.dev/test-deny": "true"}},
                    "ingress": true, "egress": true}},
            },
        })
    }

    pub fn namespace_objects(&self) -> Vec<Value> {
        self.namespaces
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                json!({"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": ns, "labels": {"gatehouse.dev/test-deny": (i % 2 == 0).to_string()}}})
            })
            .collect()
    }

    /// Everything, in the order it is applied.
    pub fn objects(&self) -> Vec<Value> {
        let mut out = self.namespace_objects();
        out.push(self.network_object());
        out.extend(self.apps.values().cloned());
        out.extend(self.policies.values().cloned());
        out
    }

    /// Writes the objects where `gatehouse render` reads them.
    pub fn write(&self, path: &Path) {
        let text: Vec<String> = self
            .objects()
            .iter()
            .map(|o| yaml_serde::to_string(o).unwrap())
            .collect();
        std::fs::write(path, text.join("---\n")).unwrap();
    }
}

/// Applies `objects` with `parallel` requests in flight (a GitOps sync, a Helm install).
pub async fn apply_all(client: &Client, objects: &[Value], parallel: usize) {
    use futures::StreamExt;
    futures::stream::iter(objects.iter().cloned())
        .for_each_concurrent(parallel, |o| {
            let client = client.clone();
            async move {
                // A server that is briefly unavailable (an outage test) is retried.
                for attempt in 0.. {
                    match apply(&client, &o, false).await {
                        Ok(_) => break,
                        Err(e) if attempt < 60 => {
                            let _ = e;
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        Err(e) => panic!("{}: {e}", o["metadata"]["name"]),
                    }
                }
            }
        })
        .await;
}

/// [`apply_all`] in the background.
pub fn apply_in_background(
    client: &Client,
    objects: Vec<Value>,
    parallel: usize,
) -> tokio::task::JoinHandle<()> {
    let client = client.clone();
    tokio::spawn(async move { apply_all(&client, &objects, parallel).await })
}

/// Every Gatehouse object of the workload Ready for its current generation; the ones that
/// are not, with their Ready condition, else.
pub async fn not_ready(client: &Client, w: &Workload) -> Vec<String> {
    let mut bad = Vec::new();
    let mut check = |kind: &str, list: Vec<kube::api::DynamicObject>, want: &BTreeSet<String>| {
        let mut seen = BTreeSet::new();
        for o in list {
            let key = format!(
                "{}/{}",
                o.metadata.namespace.clone().unwrap_or_default(),
                o.metadata.name.clone().unwrap_or_default()
            );
            if !want.contains(&key) {
                continue;
            }
            seen.insert(key.clone());
            let ready = condition(&o, "Ready");
            let current = o.data["status"]["observedGeneration"].as_i64() == o.metadata.generation;
            if !(current && ready.as_ref().is_some_and(|c| c.0 == "True")) {
                bad.push(format!("{kind} {key}: {ready:?}"));
            }
        }
        for missing in want.difference(&seen) {
            bad.push(format!("{kind} {missing}: missing"));
        }
    };
    let list = |kind: &'static str| {
        let client = client.clone();
        async move {
            gatehouse_api(&client, kind, None)
                .list(&kube::api::ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default()
        }
    };
    let apps: BTreeSet<String> = w.apps.keys().map(|(n, a)| format!("{n}/{a}")).collect();
    let policies: BTreeSet<String> = w.policies.keys().map(|(n, p)| format!("{n}/{p}")).collect();
    let nets: BTreeSet<String> = [format!("/{}", w.network)].into();
    check("ExposedApp", list("ExposedApp").await, &apps);
    check("EgressPolicy", list("EgressPolicy").await, &policies);
    check("ClusterNetwork", list("ClusterNetwork").await, &nets);
    bad
}

/// Waits until every object of the workload is Ready; returns how long that took.
pub async fn wait_ready(client: &Client, w: &Workload, timeout: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let bad = not_ready(client, w).await;
        if bad.is_empty() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < timeout,
            "{} objects not Ready after {timeout:?}, e.g. {:?}",
            bad.len(),
            &bad[..bad.len().min(10)]
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The live children are exactly what the renderer gives for the workload: none missing,
/// none extra (also none left of deleted objects), each carrying its owner labels and the
/// hash of exactly the rendered object, and holding what was rendered. Ok(number of
/// children), else what differs.
pub async fn children_match_render(
    client: &Client,
    w: &Workload,
    dir: &Path,
) -> Result<usize, String> {
    let file = dir.join("workload.yaml");
    w.write(&file);
    let expected = expected_children(client, &[file]).await;
    let mut owners = owners(&w.objects());
    owners.extend(w.deleted.iter().cloned());
    let live = live_children(client, &owners).await;
    let want: BTreeMap<ChildKey, &gatehouse_operator::render::Child> =
        expected.iter().map(|c| (c.key(), c)).collect();
    if want.len() != expected.len() {
        return Err("the render has duplicate children".into());
    }
    let have: BTreeSet<ChildKey> = live.iter().map(|(k, _)| k.clone()).collect();
    let want_keys: BTreeSet<ChildKey> = want.keys().cloned().collect();
    let missing: Vec<_> = want_keys.difference(&have).collect();
    let extra: Vec<_> = have.difference(&want_keys).collect();
    if !missing.is_empty() || !extra.is_empty() {
        return Err(format!(
            "live children differ from the render: {} missing, e.g. {:?}; {} extra, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)],
            extra.len(),
            &extra[..extra.len().min(5)]
        ));
    }
    for (key, live) in &live {
        let child = want[key];
        let labels = &live["metadata"]["labels"];
        for label in [
            gatehouse_api::labels::MANAGED_BY,
            gatehouse_api::labels::OWNER_KIND,
            gatehouse_api::labels::OWNER_NAME,
        ] {
            if !labels[label].is_string() {
                return Err(format!("{key:?} has no label {label}"));
            }
        }
        // The hash itself is of the object with its ownerReferences (the owner's uid), which
        // an offline render cannot know: that it is there is checked, what it covers is the
        // content check below.
        if !live["metadata"]["annotations"][HASH_ANNOTATION]
            .as_str()
            .is_some_and(|h| h.len() == 16 && h.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(format!("{key:?} carries no desired-hash annotation"));
        }
        let mut desired = child.object.clone();
        if let Some(m) = desired["metadata"].as_object_mut() {
            m.remove("ownerReferences");
        }
        if !contains(Some(live), &desired) {
            return Err(format!(
                "{key:?} does not hold the rendered object: {:?}",
                first_difference(Some(live), &desired, "")
            ));
        }
    }
    Ok(live.len())
}

/// Waits (garbage collection of deleted objects' children takes a moment) until
/// [`children_match_render`] holds; returns the number of children.
pub async fn wait_children_match_render(
    client: &Client,
    w: &Workload,
    dir: &Path,
    timeout: Duration,
) -> usize {
    let started = Instant::now();
    loop {
        match children_match_render(client, w, dir).await {
            Ok(n) => return n,
            Err(e) if started.elapsed() > timeout => panic!("after {timeout:?}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}
