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
    serde_yaml::Deserializer::from_str(text)
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
