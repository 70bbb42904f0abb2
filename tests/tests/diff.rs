//! `gatehouse diff` against the real API server: a small set (one ClusterNetwork with two
//! Ingress tiers, an app in each of two namespaces, no TLS, DNS or load balancers, so it is
//! Ready on a node-less cluster) applied and reconciled by an in-process operator, then the
//! `gatehouse` binary run as a PR gate would run it, on the same files and on changed ones.
//! Every run's exit code and output are checked, and the API server's audit log shows that
//! the diff sent LIST requests only, none that writes. A whole sample set, converged on the
//! real controllers (cert-manager, MetalLB, external-dns), then diffs to no changes: what
//! those controllers and the API server add to the children is not taken for a change.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gatehouse_tests::audit::{self, AuditLog};
use gatehouse_tests::chaos::operator_binary;
use gatehouse_tests::*;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams};
use serde_json::{Value, json};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Each of `lines` appears in the output.
    fn assert_prints(&self, lines: &[String]) {
        for line in lines {
            assert!(
                self.stdout.contains(line),
                "no {line:?} in:\n{}",
                self.stdout
            );
        }
    }
}

fn diff(files: &[&Path], extra: &[&str]) -> Run {
    let mut cmd = Command::new(operator_binary());
    cmd.arg("diff").arg("--kubeconfig").arg(kubeconfig_path());
    for f in files {
        cmd.arg("-f").arg(f);
    }
    cmd.args(extra);
    let out = cmd.output().expect("gatehouse diff runs");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    println!(
        "--- gatehouse diff {} {}: exit {}\n{}{}",
        files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy())
            .collect::<Vec<_>>()
            .join(" "),
        extra.join(" "),
        run.code,
        run.stdout,
        run.stderr
    );
    run
}

fn write(dir: &Path, name: &str, objects: &[Value]) -> PathBuf {
    let text: Vec<String> = objects
        .iter()
        .map(|o| yaml_serde::to_string(o).unwrap())
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, text.join("---\n")).unwrap();
    path
}

fn network(name: &str) -> Value {
    let tier = |class: &str| json!({"className": class, "namespace": "ingress", "podSelector": {"matchLabels": {"app": class}}});
    json!({
        "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ClusterNetwork",
        "metadata": {"name": name},
        "spec": {"ingress": {"external": tier("external"), "internal": tier("internal")}},
    })
}

fn app(ns: &str, name: &str, network: &str, routes: Value, port: i64) -> Value {
    json!({
        "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ExposedApp",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"network": network, "selector": {"app": name}, "dns": {"enabled": false},
                 "ports": [{"name": "http", "port": port}], "routes": routes},
    })
}

fn route(host: &str, exposure: &str) -> Value {
    json!({"hosts": [host], "paths": [{"path": "/", "port": "http"}], "exposure": exposure, "tls": false})
}

/// One test at a time: each runs an operator of its own, and two would reconcile each
/// other's objects.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn diff_shows_what_an_apply_would_change_and_never_writes() {
    let _one = ONE_AT_A_TIME.lock().await;
    let client = client().await;
    let op = Operator::start();
    let pid = std::process::id();
    let shop = namespace(&client, "diff-shop", json!({})).await;
    let other = namespace(&client, "diff-other", json!({})).await;
    let net = format!("diff-{pid}");
    let (web_host, blog_host) = (
        format!("web-{pid}.example.com"),
        format!("blog-{pid}.example.com"),
    );
    let routes = json!([
        route(&web_host, "External"),
        route(&format!("web-{pid}.lan.example.com"), "Internal")
    ]);
    let web = app(&shop, "web", &net, routes.clone(), 80);
    let blog = app(
        &other,
        "blog",
        &net,
        json!([route(&blog_host, "External")]),
        80,
    );

    let dir = std::env::temp_dir().join(format!("gatehouse-diff-{pid}"));
    std::fs::create_dir_all(&dir).unwrap();
    let net_file = write(&dir, "10-network.yaml", &[network(&net)]);
    let apps_file = write(&dir, "30-apps.yaml", &[web.clone(), blog.clone()]);
    for obj in [network(&net), web.clone(), blog.clone()] {
        apply(&client, &obj, false).await.unwrap();
    }
    let apps = |ns: &str| gatehouse_api(&client, "ExposedApp", Some(ns));
    wait_condition(
        &apps(&shop),
        "web",
        "Ready",
        "True",
        None,
        Duration::from_secs(60),
    )
    .await;
    wait_condition(
        &apps(&other),
        "blog",
        "Ready",
        "True",
        None,
        Duration::from_secs(60),
    )
    .await;
    let network_api = gatehouse_api(&client, "ClusterNetwork", None);
    wait_condition(
        &network_api,
        &net,
        "Ready",
        "True",
        None,
        Duration::from_secs(60),
    )
    .await;
    settle(&op, Duration::from_secs(2), Duration::from_secs(30)).await;

    let log = AuditLog::shared();
    let mark = log.mark();

    // The files as applied: nothing changes. The apps alone too: the live network fills in.
    let same = diff(&[&net_file, &apps_file], &[]);
    assert_eq!(same.code, 0, "{}{}", same.stdout, same.stderr);
    assert!(
        same.stdout.ends_with("no changes; 0 Stalled\n"),
        "{}",
        same.stdout
    );
    assert!(
        same.stdout.contains(&format!("ExposedApp {shop}/web (")),
        "{}",
        same.stdout
    );
    assert!(
        same.stdout.contains("  = 3 children unchanged\n"),
        "{}",
        same.stdout
    );
    let apps_only = diff(&[&apps_file], &[]);
    assert_eq!(apps_only.code, 0, "{}", apps_only.stdout);
    // --context picks the kubeconfig's context; an unknown one is an error naming it.
    let kubeconfig: yaml_serde::Value =
        yaml_serde::from_str(&std::fs::read_to_string(kubeconfig_path()).unwrap()).unwrap();
    let context = kubeconfig["current-context"].as_str().unwrap().to_string();
    let by_context = diff(&[&apps_file], &["--context", &context]);
    assert_eq!(
        by_context.code, 0,
        "{}{}",
        by_context.stdout, by_context.stderr
    );
    let unknown = diff(&[&apps_file], &["--context", "no-such-context"]);
    assert_eq!(unknown.code, 2, "{}", unknown.stdout);
    assert!(
        unknown.stderr.contains("no-such-context"),
        "{}",
        unknown.stderr
    );

    // A changed port and a new host: exit 1, each field the operator would write named.
    let mut changed = app(&shop, "web", &net, routes.clone(), 8080);
    changed["spec"]["routes"][0]["hosts"] = json!([web_host, format!("www-{pid}.example.com")]);
    let changed_file = write(&dir, "changed.yaml", &[changed]);
    let run = diff(&[&changed_file], &[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    run.assert_prints(&[
        format!(
            "ExposedApp {shop}/web ({}): changed\n",
            changed_file.display()
        ),
        "    ~ spec.ports[0].port: 80 -> 8080\n".to_string(),
        format!("  ~ Service {shop}/web\n      ~ spec.ports[0].port: 80 -> 8080\n"),
        format!("  ~ Ingress {shop}/web-external\n"),
        "      + spec.rules[1]: {\"host\":\"www-".to_string(),
    ]);
    // The same as JSON, for machines.
    let json_run = diff(&[&changed_file], &["-o", "json"]);
    assert_eq!(json_run.code, 1);
    let j: Value = serde_json::from_str(&json_run.stdout).unwrap();
    assert_eq!(j["changes"], true);
    let service = j["objects"][0]["changed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "Service")
        .unwrap();
    assert_eq!(
        service["fields"],
        json!([
            {"path": "spec.ports[0].port", "live": 80, "desired": 8080},
            {"path": "spec.ports[0].targetPort", "live": 80, "desired": 8080}
        ])
    );

    // An added app: its children are created.
    let api = app(
        &shop,
        "api",
        &net,
        json!([route(&format!("api-{pid}.example.com"), "External")]),
        80,
    );
    let added_file = write(&dir, "added.yaml", &[web.clone(), api]);
    let run = diff(&[&added_file], &[]);
    assert_eq!(run.code, 1);
    run.assert_prints(&[
        format!(
            "ExposedApp {shop}/api ({}): created\n",
            added_file.display()
        ),
        format!("  + Service {shop}/api\n"),
        format!("  + Ingress {shop}/api-external\n"),
    ]);

    // A removed route: the internal tier's Ingress would be pruned.
    let removed = app(
        &shop,
        "web",
        &net,
        json!([route(&web_host, "External")]),
        80,
    );
    let removed_file = write(&dir, "removed.yaml", &[removed]);
    let run = diff(&[&removed_file], &[]);
    assert_eq!(run.code, 1);
    run.assert_prints(&[
        "    - spec.routes[1]: {".to_string(),
        format!("  - Ingress {shop}/web-internal\n"),
    ]);

    // A host another namespace holds: Stalled HostConflict naming the holder, exit 1 with
    // nothing of the app created.
    let thief = app(
        &shop,
        "thief",
        &net,
        json!([route(&blog_host, "External")]),
        80,
    );
    let thief_file = write(&dir, "thief.yaml", &[thief]);
    let run = diff(&[&thief_file], &[]);
    assert_eq!(run.code, 1);
    let conflict = format!(
        "  Stalled True (HostConflict): spec.routes[0].hosts[0]: host \"{blog_host}\" is already claimed by ExposedApp {other}/blog\n"
    );
    assert!(run.stdout.contains(&conflict), "{}", run.stdout);
    assert!(!run.stdout.contains("  + "), "{}", run.stdout);

    // A ClusterNetwork neither in the files nor in the cluster.
    let lost = app(&shop, "lost", &format!("missing-{pid}"), json!([]), 80);
    let lost_file = write(&dir, "lost.yaml", &[lost]);
    let run = diff(&[&lost_file], &[]);
    assert_eq!(run.code, 1);
    let missing = format!(
        "  Stalled True (NetworkNotFound): spec.network: ClusterNetwork \"missing-{pid}\" does not exist\n"
    );
    assert!(run.stdout.contains(&missing), "{}", run.stdout);

    // Bad input: exit 2, naming the file and the field, and nothing read from the cluster.
    let mut bad = web.clone();
    bad["spec"]["ports"][0]["port"] = json!("eighty");
    let bad_file = write(&dir, "bad.yaml", &[bad]);
    let run = diff(&[&bad_file], &[]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains(&bad_file.display().to_string()),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("spec.ports[0].port"), "{}", run.stderr);
    // An unreachable cluster is an error too, not "no changes".
    let nowhere = dir.join("nowhere.kubeconfig");
    std::fs::write(
        &nowhere,
        "apiVersion: v1\nkind: Config\nclusters: [{name: x, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: x, user: {}}]\ncontexts: [{name: x, context: {cluster: x, user: x}}]\ncurrent-context: x\n",
    )
    .unwrap();
    let out = Command::new(operator_binary())
        .args(["diff", "-f"])
        .arg(&apps_file)
        .arg("--kubeconfig")
        .arg(&nowhere)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the cluster"));

    // The audit log: every request of the diff runs was a list, none a write.
    let agent = format!("gatehouse-diff/{}", env!("CARGO_PKG_VERSION"));
    std::thread::sleep(Duration::from_millis(300));
    let requests: Vec<Value> = log
        .requests_since(mark)
        .into_iter()
        .filter(|e| e["userAgent"] == agent.as_str())
        .collect();
    let writes: Vec<String> = requests
        .iter()
        .filter(|e| audit::is_mutation(e))
        .map(audit::line)
        .collect();
    let verbs: std::collections::BTreeSet<&str> =
        requests.iter().filter_map(|e| e["verb"].as_str()).collect();
    println!(
        "audit: {} requests of the diff runs, verbs {verbs:?}",
        requests.len()
    );
    assert!(writes.is_empty(), "the diff wrote: {writes:?}");
    // 9 runs reached the cluster, 24 lists each (the 3 Gatehouse kinds, Namespaces,
    // Services, the API server's EndpointSlices and the 18 other child kinds, served or not).
    assert_eq!(verbs, ["list"].into_iter().collect(), "only lists");
    assert_eq!(requests.len(), 9 * 24, "one list per kind and run");

    // The operator still has nothing to do: the diff changed nothing.
    wait_condition(
        &apps(&shop),
        "web",
        "Ready",
        "True",
        None,
        Duration::from_secs(10),
    )
    .await;
    op.stop();
    let _ = network_api.delete(&net, &DeleteParams::default()).await;
    for ns in [&shop, &other] {
        let _ = Api::<Namespace>::all(client.clone())
            .delete(ns, &DeleteParams::default())
            .await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A sample set with certificates, DNS records, MetalLB pools and addresses, sign-in and
/// default deny, converged on the real controllers: its own files diff to "no changes".
#[tokio::test]
async fn a_converged_sample_set_diffs_to_no_changes() {
    use gatehouse_tests::sets::{apply_set, converge, delete_set, namespaces_of, owners};
    let _one = ONE_AT_A_TIME.lock().await;
    let client = client().await;
    let op = Operator::start();
    let set = root().join("config/samples/metallb-oauth2-openwrt");
    let objects = sample_objects(&set);
    apply_set(&client, "metallb-oauth2-openwrt", &objects).await;
    let took = converge(
        &client,
        "metallb-oauth2-openwrt",
        &owners(&objects),
        &namespaces_of(&objects),
        false,
    )
    .await;
    println!("metallb-oauth2-openwrt Ready after {took:?}");
    settle(&op, Duration::from_secs(2), Duration::from_secs(30)).await;
    let run = diff(&[&set], &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.ends_with("no changes; 0 Stalled\n"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("  ~ ") && !run.stdout.contains("  + "));
    // The apps' finalizers (DNS records first) need the operator for the deletion.
    delete_set(&client, &objects).await;
    op.stop();
}
