//! Faults (issue 13): the operator SIGKILLed at random moments of a rollout, the API server
//! stopped and etcd restarted under it, a leader killed or cut off from the API server. Each
//! test runs on a node-less control plane of its own (the faults must not reach the shared
//! cluster), with the operator as a real process, and ends with every object Ready, the live
//! children exactly what `gatehouse render` gives, and no write in an idle window, counted
//! by the API server's audit log.
//!
//! Sizes from the environment (the bounded defaults run in `make test`; `make chaos-long`
//! runs the long ones): CHAOS_APPS, CHAOS_POLICIES, CHAOS_KILLS, CHAOS_OUTAGE_SECONDS,
//! CHAOS_SEED (repeat a run's random moments).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gatehouse_tests::audit::{self, AuditLog};
use gatehouse_tests::chaos::*;
use k8s_openapi::api::coordination::v1::Lease as LeaseObject;
use kube::Client;
use kube::api::{Api, DeleteParams};
use serde_json::Value;

/// One fault test at a time: each has a control plane and operators of its own, and timing
/// figures mean something only on a machine that is not running the others too.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const IDLE: Duration = Duration::from_secs(10);

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// The operator's mutating requests (by its User-Agent) after `mark`.
fn writes(log: &AuditLog, agent: &str, mark: u64) -> Vec<Value> {
    log.writes_of(agent, mark)
}

/// After convergence: an idle window in which the audit log records no write of `agent`.
fn assert_idle(log: &AuditLog, agent: &str) {
    let mark = log.mark();
    std::thread::sleep(IDLE);
    // A leader renews its Lease (every renew period): that is the only write allowed.
    let w: Vec<Value> = writes(log, agent, mark)
        .into_iter()
        .filter(|e| !is_lease(e))
        .collect();
    assert!(
        w.is_empty(),
        "{} writes in an idle window of {IDLE:?}: {:?}",
        w.len(),
        w.iter().take(10).map(audit::line).collect::<Vec<_>>()
    );
}

async fn delete_object(client: &Client, kind: &str, ns: &str, name: &str) {
    let api = gatehouse_tests::gatehouse_api(client, kind, Some(ns));
    api.delete(name, &DeleteParams::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_at_random_moments_the_operator_converges_to_exactly_the_render() {
    let _serial = SERIAL.lock().await;
    let apps = env_number("CHAOS_APPS", 200);
    let policies = env_number("CHAOS_POLICIES", apps / 2);
    let kills = env_number("CHAOS_KILLS", 10);
    let mut rng = Rng::from_env();
    let cluster = OwnCluster::start("kill");
    let client = cluster.client().await;
    let log = cluster.audit();
    let logs = cluster.dir.join("logs");
    let binary = operator_binary();
    let mut w = Workload::new("kill", 10, apps, policies);

    let started = Instant::now();
    let spawn = || OperatorProcess::spawn(&binary, &cluster.kubeconfig(), &logs, "kill", None);
    let mut op = spawn();
    // The rollout: namespaces and the network, then every app and policy, 8 at a time.
    apply_all(&client, &w.objects()[..w.namespaces.len() + 1], 4).await;
    let rest: Vec<Value> = w.objects()[w.namespaces.len() + 1..].to_vec();
    let rollout = tokio::spawn({
        let client = client.clone();
        async move { apply_all(&client, &rest, 8).await }
    });
    let mut killed_at = Vec::new();
    let mut changed = 0;
    for k in 0..kills {
        tokio::time::sleep(Duration::from_millis(rng.range(500, 3500))).await;
        op.kill();
        killed_at.push(started.elapsed());
        // While it is down, the world moves on (once the rollout is in): apps change
        // (new host and port: children to replace and prune), apps and policies go.
        if rollout.is_finished() && k % 2 == 1 {
            for _ in 0..5 {
                let i = rng.range(0, apps as u64) as usize;
                let (ns, name, _) = w.app(i, 0);
                if w.apps.contains_key(&(ns.clone(), name.clone())) {
                    let (_, _, app) = w.app(i, k + 1);
                    gatehouse_tests::apply(&client, &app, false).await.unwrap();
                    w.apps.insert((ns, name), app);
                    changed += 1;
                }
            }
            // Not an app a policy names (a1..=a<policies>): those would rightly leave the
            // policy waiting for its peer (ReferenceNotFound).
            let i = rng.range(policies as u64 + 1, apps as u64) as usize;
            let (ns, name, _) = w.app(i, 0);
            if i > policies && w.apps.remove(&(ns.clone(), name.clone())).is_some() {
                delete_object(&client, "ExposedApp", &ns, &name).await;
                w.deleted.push(("ExposedApp".into(), Some(ns), name));
                changed += 1;
            }
            if let Some((ns, name)) = w.policies.keys().nth(k).cloned() {
                w.policies.remove(&(ns.clone(), name.clone()));
                delete_object(&client, "EgressPolicy", &ns, &name).await;
                w.deleted.push(("EgressPolicy".into(), Some(ns), name));
                changed += 1;
            }
        }
        op = spawn();
    }
    rollout.await.unwrap();
    let ready = wait_ready(&client, &w, Duration::from_secs(180)).await;
    let children =
        wait_children_match_render(&client, &w, &cluster.dir, Duration::from_secs(60)).await;
    let total_writes = writes(&log, &op.user_agent, 0).len();
    assert_idle(&log, &op.user_agent);
    assert!(op.exited().is_none(), "the last operator exited");
    println!(
        "{kills} SIGKILLs at {:?}; {} apps and {} policies ({changed} changed or deleted between kills), \
         every object Ready {:.1}s after the start ({:.1}s of it after the last restart and the rollout), {children} children exactly as rendered, \
         {total_writes} writes in the audit log, 0 in {IDLE:?} idle",
        killed_at
            .iter()
            .map(|d| format!("{:.1}s", d.as_secs_f64()))
            .collect::<Vec<_>>(),
        w.apps.len(),
        w.policies.len(),
        started.elapsed().as_secs_f64(),
        ready.as_secs_f64(),
    );
}

/// Polls /readyz every 500 ms for `window`: (answers 200, answers not 200).
async fn readyz_during(op: &OperatorProcess, window: Duration) -> (u32, u32) {
    let end = Instant::now() + window;
    let (mut ok, mut not) = (0, 0);
    while Instant::now() < end {
        match op.readyz().await {
            Some(200) => ok += 1,
            _ => not += 1,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    (ok, not)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_server_stopped_and_etcd_restarted_the_operator_recovers_by_itself() {
    let _serial = SERIAL.lock().await;
    let outage = Duration::from_secs(env_number("CHAOS_OUTAGE_SECONDS", 60) as u64);
    let cluster = OwnCluster::start("outage");
    let client = cluster.client().await;
    let log = cluster.audit();
    let binary = operator_binary();
    let mut w = Workload::new("outage", 4, 40, 20);
    let mut op = OperatorProcess::spawn(
        &binary,
        &cluster.kubeconfig(),
        &cluster.dir.join("logs"),
        "outage",
        None,
    );
    apply_all(&client, &w.objects(), 8).await;
    wait_ready(&client, &w, Duration::from_secs(120)).await;

    // An app that publishes DNS: its deletion must remove the records first.
    let (ns, _, mut dns_app) = w.app(1000, 0);
    dns_app["metadata"]["name"] = "published".into();
    dns_app["spec"]["selector"]["app"] = "published".into();
    dns_app["spec"]["routes"][0]["hosts"][0] =
        format!("published.{}.example.com", w.network).into();
    dns_app["spec"]["routes"][0]["exposure"] = "External".into();
    dns_app["spec"]["dns"]["enabled"] = true.into();
    gatehouse_tests::apply(&client, &dns_app, false)
        .await
        .unwrap();
    let dns_api = Api::<kube::api::DynamicObject>::namespaced_with(
        client.clone(),
        &ns,
        &gatehouse_operator::reconcile::api_resource(
            gatehouse_operator::render::ChildKind::DnsEndpoint,
        ),
    );
    gatehouse_tests::eventually(Duration::from_secs(30), "the app's DNSEndpoint", || {
        let api = dns_api.clone();
        async move { api.get_opt("published-external").await.ok().flatten() }
    })
    .await;
    assert_eq!(op.readyz().await, Some(200), "ready before the outage");
    let mark = log.mark();

    // 1. The API server stops (SIGSTOP: its sockets stay open, nothing answers). A user
    // deletes the DNS app and creates more apps meanwhile: their requests wait in the
    // stopped server's socket queue, as a client of a hung API server would.
    let requests_before = op.metric("gatehouse_api_requests_total").await.unwrap();
    cluster.signal("kube-apiserver", "STOP");
    let stopped = Instant::now();
    let deletion = tokio::spawn({
        let client = client.clone();
        let ns = ns.clone();
        async move { delete_object(&client, "ExposedApp", &ns, "published").await }
    });
    let creation = apply_in_background(&client, w.set_versions(40..50, 0), 4);
    let (ok, not) = readyz_during(&op, outage).await;
    let requests_during =
        op.metric("gatehouse_api_requests_total").await.unwrap() - requests_before;
    cluster.signal("kube-apiserver", "CONT");
    let resumed = Instant::now();
    let down = stopped.elapsed();
    assert!(
        not > 0,
        "/readyz never said not ready during a {down:?} outage"
    );
    // The probe gives the API server 2 s: at most the first few polls still pass.
    assert!(ok <= 6, "/readyz said ready {ok} times during the outage");
    let rate = requests_during / down.as_secs_f64();
    assert!(
        rate < 5.0,
        "{requests_during} requests in {down:?} of outage ({rate:.2}/s): not bounded by backoff"
    );
    deletion.await.unwrap();
    creation.await.unwrap();
    wait_ready(&client, &w, Duration::from_secs(120)).await;
    let recovered = resumed.elapsed();
    gatehouse_tests::eventually(Duration::from_secs(60), "the DNS app to be gone", || {
        let client = client.clone();
        let ns = ns.clone();
        async move {
            gatehouse_tests::gatehouse_api(&client, "ExposedApp", Some(&ns))
                .get_opt("published")
                .await
                .ok()
                .and_then(|o| o.is_none().then_some(()))
        }
    })
    .await;
    assert!(
        op.exited().is_none(),
        "the operator exited during the outage"
    );
    gatehouse_tests::eventually(
        Duration::from_secs(10),
        "/readyz 200 after the outage",
        || async { (op.readyz().await == Some(200)).then_some(()) },
    )
    .await;
    // DNS first: the operator deleted the DNSEndpoint before garbage collection deleted
    // the Ingress (which only starts once the operator lets the app go).
    let events = log.requests_since(mark);
    let at = |pred: &dyn Fn(&Value) -> bool| events.iter().find(|e| pred(e)).map(audit::micros);
    let dns_deleted = at(&|e| {
        e["verb"] == "delete"
            && e["objectRef"]["resource"] == "dnsendpoints"
            && e["objectRef"]["name"] == "published-external"
            && e["userAgent"] == op.user_agent.as_str()
    })
    .expect("the operator deleted the DNSEndpoint");
    let ingress_deleted = at(&|e| {
        e["verb"] == "delete"
            && e["objectRef"]["resource"] == "ingresses"
            && e["objectRef"]["name"] == "published-external"
    })
    .expect("the Ingress was deleted");
    assert!(
        dns_deleted < ingress_deleted,
        "the Ingress went before the DNS records"
    );
    w.deleted
        .push(("ExposedApp".into(), Some(ns.clone()), "published".into()));
    wait_children_match_render(&client, &w, &cluster.dir, Duration::from_secs(60)).await;
    println!(
        "API server stopped {:.1}s: /readyz not ready {not} of {} polls, {requests_during} operator requests \
         ({rate:.2}/s); every object Ready {:.1}s after the resume; DNSEndpoint deleted {:.1} ms before the Ingress",
        down.as_secs_f64(),
        ok + not,
        recovered.as_secs_f64(),
        (ingress_deleted - dns_deleted) as f64 / 1000.0,
    );

    // 2. etcd restarts (5 s down) while apps change.
    let mark = log.mark();
    let changes = w.set_versions(0..10, 1);
    let restart = tokio::task::spawn_blocking({
        let c: ClusterDir = (*cluster).clone();
        move || c.restart_etcd(Duration::from_secs(5))
    });
    let etcd_started = Instant::now();
    let changing = apply_in_background(&client, changes, 4);
    let mut not_ready = 0;
    while !restart.is_finished() {
        if op.readyz().await != Some(200) {
            not_ready += 1;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    restart.await.unwrap();
    let etcd_down = etcd_started.elapsed();
    changing.await.unwrap();
    let recovered = wait_ready(&client, &w, Duration::from_secs(120)).await;
    wait_children_match_render(&client, &w, &cluster.dir, Duration::from_secs(60)).await;
    let during = writes(&log, &op.user_agent, mark).len();
    let requests = log
        .requests_since(mark)
        .iter()
        .filter(|e| e["userAgent"] == op.user_agent.as_str())
        .count();
    assert!(
        not_ready > 0,
        "/readyz never said not ready while etcd was down"
    );
    assert!(
        op.exited().is_none(),
        "the operator exited when etcd restarted"
    );
    assert_idle(&log, &op.user_agent);
    println!(
        "etcd restarted ({:.1}s until it answered): /readyz not ready {not_ready} times; {requests} operator requests \
         logged from the restart to convergence ({during} writes); Ready {:.1}s after etcd was back; 0 writes in {IDLE:?} idle",
        etcd_down.as_secs_f64(),
        recovered.as_secs_f64(),
    );
}

async fn holder(leases: &Api<LeaseObject>) -> Option<String> {
    leases
        .get_opt("gatehouse-leader")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
}

/// Waits until `identity` holds the Lease; returns how long that took.
async fn wait_holder(leases: &Api<LeaseObject>, identity: &str, timeout: Duration) -> Duration {
    let started = Instant::now();
    while holder(leases).await.as_deref() != Some(identity) {
        assert!(
            started.elapsed() < timeout,
            "{identity} does not hold the Lease after {timeout:?} (holder {:?})",
            holder(leases).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

fn is_lease(e: &Value) -> bool {
    e["objectRef"]["resource"] == "leases"
}

/// When `agent` first held the Lease (its first lease write the server accepted) after
/// `mark`, and its first write of anything else; audit times in microseconds.
fn acquisition_and_first_write(log: &AuditLog, agent: &str, mark: u64) -> (i64, Option<i64>) {
    let w = writes(log, agent, mark);
    let acquired = w
        .iter()
        .find(|e| {
            is_lease(e)
                && e["responseStatus"]["code"]
                    .as_i64()
                    .is_some_and(|c| c < 300)
        })
        .map(audit::micros)
        .unwrap_or_else(|| panic!("{agent} never wrote the Lease"));
    let first = w.iter().find(|e| !is_lease(e)).map(audit::micros);
    (acquired, first)
}

/// The last Lease renewal of `agent` the server accepted (microseconds).
fn last_renewal(log: &AuditLog, agent: &str, mark: u64) -> i64 {
    writes(log, agent, mark)
        .iter()
        .filter(|e| {
            is_lease(e)
                && e["responseStatus"]["code"]
                    .as_i64()
                    .is_some_and(|c| c < 300)
        })
        .map(audit::micros)
        .max()
        .unwrap_or_else(|| panic!("{agent} never renewed"))
}

/// Cuts the leader off (`link`), and checks it stops writing and exits before its Lease
/// could be taken, and that the standby takes over only after that. Returns (exit before
/// expiry, takeover after the cut).
async fn partition(
    log: &AuditLog,
    leases: &Api<LeaseObject>,
    leader: &mut OperatorProcess,
    proxy: &Proxy,
    link: Link,
    standby: &OperatorProcess,
    lease: Lease,
) -> (Duration, Duration) {
    let mark = log.mark();
    proxy.set(link);
    let cut = Instant::now();
    let cut_micros = now_micros();
    // It gives up within the lease duration by its own clock.
    while leader.exited().is_none() {
        assert!(
            cut.elapsed() < Duration::from_secs(lease.duration_seconds + 5),
            "the partitioned leader ({link:?}) still runs {:?} after the cut",
            cut.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exited_micros = now_micros();
    wait_holder(
        leases,
        &standby.identity,
        Duration::from_secs(lease.duration_seconds + 10),
    )
    .await;
    let takeover = cut.elapsed();
    proxy.set(Link::Up);
    // The last renewal the server saw from the leader is before the cut (none got through
    // after); the Lease could be taken from that plus its duration on: the leader had
    // exited by then.
    let renewed = last_renewal(log, &leader.user_agent, 0);
    let expiry = renewed + lease.duration_seconds as i64 * 1_000_000;
    assert!(
        exited_micros < expiry,
        "the leader exited {} ms after its Lease could be taken",
        (exited_micros - expiry) / 1000
    );
    let late: Vec<_> = writes(log, &leader.user_agent, mark)
        .into_iter()
        .filter(|e| audit::received_micros(e) > cut_micros || audit::micros(e) >= expiry)
        .collect();
    assert!(
        late.is_empty(),
        "the partitioned leader wrote after the cut: {:?}",
        late.iter().map(audit::line).collect::<Vec<_>>()
    );
    let (acquired, first) = acquisition_and_first_write(log, &standby.user_agent, mark);
    assert!(
        acquired >= expiry,
        "the standby took a Lease that had not expired"
    );
    if let Some(first) = first {
        assert!(
            first >= acquired,
            "the standby wrote before it held the Lease"
        );
    }
    (
        Duration::from_micros((expiry - exited_micros) as u64),
        takeover,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_or_partitioned_leader_hands_over_and_never_writes_beside_the_new_one() {
    let _serial = SERIAL.lock().await;
    let apps = env_number("CHAOS_LEADER_APPS", 150);
    let lease = Lease {
        duration_seconds: 6,
        renew_seconds: 2,
    };
    let mut rng = Rng::from_env();
    let cluster = OwnCluster::start("leader");
    let client = cluster.client().await;
    let log = cluster.audit();
    let logs = cluster.dir.join("logs");
    let binary = operator_binary();
    let leases: Api<LeaseObject> = Api::namespaced(client.clone(), "kube-system");
    let api: std::net::SocketAddr = format!("127.0.0.1:{}", cluster.env("API_PORT"))
        .parse()
        .unwrap();
    let proxy_a = Proxy::start(api).await;
    let proxy_b = Proxy::start(api).await;
    let via_a = cluster.kubeconfig_via(&proxy_a, "a");
    let via_b = cluster.kubeconfig_via(&proxy_b, "b");
    let mut w = Workload::new("leader", 6, apps, apps / 3);

    // 1. The leader is SIGKILLed mid-rollout; the standby takes over.
    let mut a = OperatorProcess::spawn(&binary, &via_a, &logs, "replica-a", Some(lease));
    wait_holder(&leases, "replica-a", Duration::from_secs(60)).await;
    let mut b = OperatorProcess::spawn(&binary, &via_b, &logs, "replica-b", Some(lease));
    let mark = log.mark();
    let rollout = tokio::spawn({
        let client = client.clone();
        let objects = w.objects();
        async move { apply_all(&client, &objects, 8).await }
    });
    tokio::time::sleep(Duration::from_millis(rng.range(2000, 5000))).await;
    assert!(
        !writes(&log, &a.user_agent, mark).is_empty(),
        "the leader was writing"
    );
    a.kill();
    let killed = Instant::now();
    let killed_micros = now_micros();
    let takeover = wait_holder(
        &leases,
        "replica-b",
        Duration::from_secs(lease.duration_seconds + 10),
    )
    .await;
    rollout.await.unwrap();
    let ready = wait_ready(&client, &w, Duration::from_secs(180)).await;
    let children =
        wait_children_match_render(&client, &w, &cluster.dir, Duration::from_secs(60)).await;
    let (acquired, first) = acquisition_and_first_write(&log, &b.user_agent, mark);
    assert!(
        acquired > killed_micros,
        "replica-b held the Lease while replica-a lived"
    );
    assert!(
        first.is_some_and(|f| f >= acquired),
        "replica-b wrote before it held the Lease"
    );
    // What the dead leader had in flight (written to its sockets before the kill, read by
    // the server after) was answered before the standby took over: their writes never
    // overlap.
    let a_writes = writes(&log, &a.user_agent, mark);
    let in_flight = a_writes
        .iter()
        .filter(|e| audit::received_micros(e) > killed_micros)
        .count();
    let overlapping = a_writes
        .iter()
        .filter(|e| audit::micros(e) >= acquired)
        .count();
    assert_eq!(
        overlapping, 0,
        "the killed leader's writes completed after the takeover"
    );
    println!(
        "leader SIGKILLed mid-rollout ({in_flight} of its writes still in flight, answered before the takeover): \
         replica-b led {:.1}s later (lease {}s), wrote nothing before; {} objects Ready {:.1}s after the kill, \
         {children} children exactly as rendered",
        takeover.as_secs_f64(),
        lease.duration_seconds,
        w.apps.len() + w.policies.len() + 1,
        killed.elapsed().as_secs_f64().max(ready.as_secs_f64()),
    );

    // 2. The leader's requests fail (connections refused), the process lives: it stops and
    // exits before its Lease could be taken; the restarted replica-a takes over.
    a = OperatorProcess::spawn(&binary, &via_a, &logs, "replica-a", Some(lease));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let changing = apply_in_background(&client, w.set_versions(0..20, 1), 2);
    let (margin_refused, takeover_refused) =
        partition(&log, &leases, &mut b, &proxy_b, Link::Refused, &a, lease).await;
    changing.await.unwrap();
    wait_ready(&client, &w, Duration::from_secs(120)).await;

    // 3. The leader's requests hang (packets dropped): the same, which needs the renewal
    // bounded by the time left (the client's own timeout is minutes).
    b = OperatorProcess::spawn(&binary, &via_b, &logs, "replica-b", Some(lease));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let changing = apply_in_background(&client, w.set_versions(20..40, 1), 2);
    let (margin_hung, takeover_hung) =
        partition(&log, &leases, &mut a, &proxy_a, Link::Blackhole, &b, lease).await;
    changing.await.unwrap();
    wait_ready(&client, &w, Duration::from_secs(120)).await;
    let children =
        wait_children_match_render(&client, &w, &cluster.dir, Duration::from_secs(60)).await;
    assert_idle(&log, &b.user_agent);
    println!(
        "partitioned leader, requests refused: exited {:.1}s before its Lease could be taken, replica-a led {:.1}s after the cut; \
         requests hanging: exited {:.1}s before, replica-b led {:.1}s after the cut; {children} children exactly as rendered, 0 writes but Lease renewals in {IDLE:?} idle",
        margin_refused.as_secs_f64(),
        takeover_refused.as_secs_f64(),
        margin_hung.as_secs_f64(),
        takeover_hung.as_secs_f64(),
    );
}
