//! Render throughput: renders a few thousand generated ExposedApps (routes on both tiers,
//! tcp exposure, allowFrom peers, attachments) against one network and reports apps/second.
//! Run with `make bench` (release build). Pure CPU: no I/O inside the timed loop.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::time::Instant;

use gatehouse_api::{ClusterNetwork, ExposedApp};
use gatehouse_operator::render::{Context, render_exposed_app};
use serde_json::json;

fn network() -> ClusterNetwork {
    serde_json::from_value(json!({
        "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ClusterNetwork",
        "metadata": {"name": "default"},
        "spec": {
            "ipFamilies": ["IPv4", "IPv6"],
            "loadBalancer": {"provider": "MetalLB", "pools": [
                {"name": "external", "addresses": ["203.0.113.0/24", "2001:db8::/112"]},
                {"name": "internal", "addresses": ["10.0.0.0/16"]}]},
            "ingress": {
                "external": {"className": "nginx", "namespace": "ingress-nginx", "podSelector": {"matchLabels": {"app": "nginx"}}, "addresses": ["203.0.113.1", "2001:db8::1"]},
                "internal": {"className": "nginx-internal", "namespace": "ingress-nginx", "addresses": ["10.0.0.1"]}},
            "tls": {"issuerRef": {"name": "le"}},
            "auth": {"oauth2Proxy": {"url": "https://auth.example.com"}},
            "dns": {"external": {"zone": "example.com"}, "internal": {"zone": "example.com"}},
            "attachments": [{"name": "dmz", "master": "eth1", "ipam": {"ranges": [{"subnet": "192.168.0.0/16"}]}}],
        }
    }))
    .unwrap()
}

/// A typical web app: one host on the external tier with TLS: Service, Ingress,
/// Certificate, NetworkPolicy, DNSEndpoint.
fn web_app(i: usize) -> ExposedApp {
    serde_json::from_value(json!({
        "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ExposedApp",
        "metadata": {"name": format!("web{i}"), "namespace": format!("team{}", i % 50)},
        "spec": {
            "selector": {"app": format!("web{i}")},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
            "routes": [{"hosts": [format!("web{i}.example.com")]}],
        }
    }))
    .unwrap()
}

/// A heavy app: routes on both tiers with OAuth2, tcp exposure with DNS, an attachment and
/// two allowFrom peers: 8 children.
fn app(i: usize) -> ExposedApp {
    serde_json::from_value(json!({
        "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ExposedApp",
        "metadata": {"name": format!("app{i}"), "namespace": format!("team{}", i % 50)},
        "spec": {
            "selector": {"app": format!("app{i}")},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "smtp", "port": 25}],
            "routes": [
                {"hosts": [format!("app{i}.example.com")], "exposure": "Both", "auth": "OAuth2"},
                {"hosts": [format!("www{i}.example.com")], "auth": "OAuth2"}],
            "tcp": [{"port": "smtp", "hosts": [format!("mx{i}.example.com")]}],
            "attachments": [{"network": "dmz"}],
            "allowFrom": [{"app": {"name": format!("app{}", (i + 1) % 4000)}}, {"cidr": "10.0.0.0/8"}],
        }
    }))
    .unwrap()
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(4000);
    bench("typical web app (1 host, TLS, 5 children)", n, web_app);
    bench(
        "heavy app (2 tiers, OAuth2, tcp, attachment, peers, 8 children)",
        n,
        app,
    );
}

fn bench(label: &str, n: usize, make: fn(usize) -> ExposedApp) {
    let mut ctx = Context::default();
    ctx.add_network(network());
    let apps: Vec<ExposedApp> = (0..n).map(make).collect();
    for a in &apps {
        ctx.add_app(a.clone());
    }
    // Host-claim checks consult every app's hosts; measure with all apps known.
    let mut children = 0usize;
    for a in apps.iter().take(100) {
        children += render_exposed_app(a, &ctx)
            .expect("valid app")
            .children
            .len();
    }
    let rounds = 20;
    let start = Instant::now();
    for _ in 0..rounds {
        for a in &apps {
            children += black_box(render_exposed_app(a, &ctx))
                .map(|r| r.children.len())
                .unwrap_or(0);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let rendered = (n * rounds) as f64;
    println!(
        "{label}: {} renders ({} children) in {:.3}s: {:.0} apps/s, {:.1} µs/app",
        n * rounds,
        children,
        secs,
        rendered / secs,
        secs * 1e6 / rendered
    );
}
