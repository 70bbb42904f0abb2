//! /metrics, /healthz and /readyz of a running operator, scraped over HTTP.

use std::time::Duration;

use gatehouse_tests::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

fn free_port() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_readiness_are_served() {
    let client = client().await;
    let addr = free_port();
    let op = Operator::start_full(None, Some(addr));
    eventually(Duration::from_secs(30), "/readyz to answer 200", || async {
        (get(addr, "/readyz").await?.0 == 200).then_some(())
    })
    .await;
    assert_eq!(get(addr, "/healthz").await.unwrap().0, 200);
    assert_eq!(get(addr, "/nope").await.unwrap().0, 404);

    let ns = namespace(&client, "metrics", json!({})).await;
    let net = format!("metrics-{}", std::process::id());
    apply(&client, &json!({"apiVersion": gatehouse_api::API_VERSION, "kind": "ClusterNetwork", "metadata": {"name": net}, "spec": {}}), false)
        .await
        .unwrap();
    let app = json!({"apiVersion": gatehouse_api::API_VERSION, "kind": "ExposedApp", "metadata": {"name": "web", "namespace": ns},
                     "spec": {"network": net, "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}});
    apply(&client, &app, false).await.unwrap();
    wait_condition(
        &gatehouse_api(&client, "ExposedApp", Some(&ns)),
        "web",
        "Ready",
        "True",
        None,
        Duration::from_secs(30),
    )
    .await;

    let body = eventually(
        Duration::from_secs(10),
        "metrics to show the app's children",
        || async {
            let (status, body) = get(addr, "/metrics").await?;
            (status == 200 && body.contains("gatehouse_children_managed{kind=\"NetworkPolicy\"}"))
                .then_some(body)
        },
    )
    .await;
    let value = |prefix: &str| -> f64 {
        body.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in\n{body}"))
    };
    assert!(value("gatehouse_reconciles_total{kind=\"ExposedApp\"}") >= 1.0);
    assert!(value("gatehouse_reconcile_duration_seconds_count{kind=\"ExposedApp\"}") >= 1.0);
    assert!(value("gatehouse_children_managed{kind=\"Service\"}") >= 1.0);
    assert!(
        value("gatehouse_api_requests_total{verb=\"patch\"}") >= 3.0,
        "children and status were patched"
    );
    assert!(body.contains("# TYPE gatehouse_reconcile_duration_seconds histogram"));
    op.stop();
}

/// `gatehouse run --log-json` logs JSON lines (the binary itself, against the local cluster).
#[test]
fn run_logs_json_lines_when_asked() {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let bin = target.join("debug/gatehouse");
    assert!(
        bin.exists(),
        "{} not built (make test builds every target)",
        bin.display()
    );
    let mut child = std::process::Command::new(bin)
        .args(["run", "--log-json", "--http-addr", ""])
        .env("KUBECONFIG", kubeconfig_path())
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let first = std::io::BufRead::lines(std::io::BufReader::new(stdout)).next();
    let _ = child.kill();
    let _ = child.wait();
    let line = first.expect("a log line").unwrap();
    let parsed: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert!(
        parsed["level"].is_string() && parsed["fields"]["message"].is_string(),
        "{parsed}"
    );
}
