//! GitOps and dashboards: the ArgoCD Lua health checks run (in a real Lua 5.4) against their
//! fixtures; the real kstatus library reads live objects as Current / InProgress / Failed;
//! the kube-state-metrics and Grafana configurations refer to what we really expose.

use std::time::Duration;

use gatehouse_tests::*;
use kube::api::{Api, DynamicObject};
use mlua::{Lua, LuaSerdeExt};
use serde_json::{Value, json};

/// Runs an ArgoCD health script on one object, as ArgoCD does (the object as global `obj`).
fn argocd_health(script: &str, obj: &Value) -> (String, String) {
    let lua = Lua::new();
    lua.globals()
        .set("obj", lua.to_value(obj).unwrap())
        .unwrap();
    let hs: mlua::Table = lua
        .load(script)
        .eval()
        .unwrap_or_else(|e| panic!("lua error: {e}"));
    (
        hs.get::<String>("status").unwrap(),
        hs.get::<String>("message").unwrap_or_default(),
    )
}

#[test]
fn argocd_health_checks_pass_their_fixtures() {
    let base = root().join("config/argocd");
    // One script serves all three kinds; ArgoCD's layout wants a copy per kind.
    let source = std::fs::read_to_string(base.join("gatehouse.dev/ExposedApp/health.lua")).unwrap();
    let mut cases = 0;
    for kind in ["ClusterNetwork", "ExposedApp", "EgressPolicy"] {
        let dir = base.join("gatehouse.dev").join(kind);
        let script = std::fs::read_to_string(dir.join("health.lua")).unwrap();
        assert_eq!(
            script, source,
            "{kind}/health.lua differs from ExposedApp/health.lua"
        );
        let tests = &yaml_docs(&std::fs::read_to_string(dir.join("health_test.yaml")).unwrap())[0];
        for t in tests["tests"].as_array().unwrap() {
            let input = yaml_docs(
                &std::fs::read_to_string(dir.join(t["inputPath"].as_str().unwrap())).unwrap(),
            )
            .remove(0);
            let (status, message) = argocd_health(&script, &input);
            assert_eq!(
                status, t["healthStatus"]["status"],
                "{kind} {}",
                t["inputPath"]
            );
            assert_eq!(
                message, t["healthStatus"]["message"],
                "{kind} {}",
                t["inputPath"]
            );
            cases += 1;
        }
    }
    assert!(cases >= 15, "{cases} fixtures");
    // The argocd-cm snippet carries the same script for each kind.
    let cm = yaml_docs(&std::fs::read_to_string(base.join("argocd-cm.yaml")).unwrap()).remove(0);
    for kind in ["ClusterNetwork", "ExposedApp", "EgressPolicy"] {
        assert_eq!(
            cm["data"][format!("resource.customizations.health.gatehouse.dev_{kind}")],
            json!(source)
        );
    }
}

/// The status kstatus gives an object: the real library (sigs.k8s.io/cli-utils
/// `pkg/kstatus/status.Compute`, the rules kubectl, kpt, Flux and Argo CD's kstatus mode
/// follow), run by the small Go helper in tests/stack/kstatus that `make test` builds.
fn kstatus(obj: &Value) -> String {
    use std::io::Write;
    let bin = std::env::var("KSTATUS_BIN")
        .expect("KSTATUS_BIN is set by make (run the tests through `make test`)");
    let mut child = std::process::Command::new(&bin)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{bin}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(obj.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kstatus helper: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "kstatus helper output {:?}: {e}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    line["status"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kstatus_reads_live_objects_as_current_in_progress_and_failed() {
    let client = client().await;
    let op = Operator::start();
    let ns = namespace(&client, "kstatus", json!({})).await;
    let net = format!("kstatus-{}", std::process::id());
    let zone = format!("{net}.example.com");
    // An issuer that does not exist yet keeps the certificate pending (InProgress) until the
    // test creates it; then the real cert-manager issues (Current).
    let issuer = format!("kstatus-{}", std::process::id());
    let network = json!({"apiVersion": gatehouse_api::API_VERSION, "kind": "ClusterNetwork", "metadata": {"name": net},
        "spec": {"ingress": {"external": {"className": "nginx", "addresses": ["192.0.2.1"]}}, "tls": {"issuerRef": {"name": issuer}},
                 "dns": {"external": {"zone": zone}}}});
    apply(&client, &network, false).await.unwrap();
    let app = |name: &str, host: &str| {
        json!({"apiVersion": gatehouse_api::API_VERSION, "kind": "ExposedApp", "metadata": {"name": name, "namespace": ns},
               "spec": {"network": net, "selector": {"app": name}, "ports": [{"name": "http", "port": 80}], "routes": [{"hosts": [host]}]}})
    };
    let apps = gatehouse_api(&client, "ExposedApp", Some(&ns));
    // In progress: its Certificate is not issued (nobody plays cert-manager for it yet).
    apply(&client, &app("pending", &format!("pending.{zone}")), false)
        .await
        .unwrap();
    let pending = wait_condition(
        &apps,
        "pending",
        "Reconciling",
        "True",
        None,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        kstatus(&serde_json::to_value(&pending).unwrap()),
        "InProgress"
    );
    // Failed: a host outside the zone needs a human.
    apply(&client, &app("broken", "www.elsewhere.org"), false)
        .await
        .unwrap();
    let broken = wait_condition(
        &apps,
        "broken",
        "Stalled",
        "True",
        None,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(kstatus(&serde_json::to_value(&broken).unwrap()), "Failed");
    // Current: the issuer appears, cert-manager issues, external-dns publishes.
    apply(&client, &json!({"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": issuer},
        "spec": {"ca": {"secretName": "gatehouse-test-ca"}}}), false)
        .await
        .unwrap();
    let ready = wait_condition(
        &apps,
        "pending",
        "Ready",
        "True",
        None,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(kstatus(&serde_json::to_value(&ready).unwrap()), "Current");
    let network = gatehouse_api(&client, "ClusterNetwork", None)
        .get(&net)
        .await
        .unwrap();
    assert_eq!(kstatus(&serde_json::to_value(&network).unwrap()), "Current");
    let _ = Api::<DynamicObject>::all_with(
        client.clone(),
        &kube::discovery::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("cert-manager.io", "v1", "ClusterIssuer"),
            "clusterissuers",
        ),
    )
    .delete(&issuer, &Default::default())
    .await;
    op.stop();
}

#[test]
fn kube_state_metrics_and_grafana_refer_to_real_fields_and_metrics() {
    let ksm = yaml_docs(
        &std::fs::read_to_string(root().join("config/monitoring/kube-state-metrics.yaml")).unwrap(),
    )
    .remove(0);
    let resources = ksm["spec"]["resources"].as_array().unwrap();
    let kinds: Vec<&str> = resources
        .iter()
        .map(|r| r["groupVersionKind"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ClusterNetwork", "ExposedApp", "EgressPolicy"]);
    for r in resources {
        assert_eq!(r["groupVersionKind"]["group"], "gatehouse.dev");
        let paths: Vec<String> = r["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                m["each"]["stateSet"]["path"].to_string() + &m["each"]["gauge"]["path"].to_string()
            })
            .collect();
        assert!(
            paths.iter().any(|p| p.contains("conditions")),
            "{} exposes its conditions",
            r["groupVersionKind"]["kind"]
        );
    }
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("config/monitoring/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    // What a scrape shows once a reconcile has failed: error series exist only from the
    // first failure (each needs its reason), the other families from the start.
    let metrics = gatehouse_operator::metrics::Metrics::default();
    metrics.observe_reconcile(
        "ExposedApp",
        std::time::Duration::from_millis(1),
        Some("apply"),
    );
    let exposed = metrics.render(&[("Service", 0)]);
    // kube-state-metrics names custom-resource metrics kube_customresource_<prefix>_<name>.
    let ksm_names: Vec<String> = resources
        .iter()
        .flat_map(|r| {
            let prefix = r["metricNamePrefix"].as_str().unwrap().to_string();
            r["metrics"].as_array().unwrap().iter().map(move |m| {
                format!(
                    "kube_customresource_{prefix}_{}",
                    m["name"].as_str().unwrap()
                )
            })
        })
        .collect();
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            queries += 1;
            let metrics: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("gatehouse_") || w.starts_with("kube_customresource_"))
                .collect();
            assert!(
                !metrics.is_empty(),
                "panel query without a Gatehouse metric: {expr}"
            );
            for metric in metrics {
                let base = metric
                    .trim_end_matches("_bucket")
                    .trim_end_matches("_count")
                    .trim_end_matches("_sum");
                let known = exposed.contains(&format!("# TYPE {base} "))
                    || ksm_names.iter().any(|n| n == metric);
                assert!(known, "the dashboard uses {metric}, which nothing exposes");
            }
        }
    }
    assert!(queries >= 5);
}
