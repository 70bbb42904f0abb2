//! Every sample set converges on the real API server with exactly the expected children, and
//! the operator then keeps its hands still: an idle window and a restart cause zero mutating
//! requests (counted in the operator's own client), and a new ExposedApp costs its children,
//! one status write and one finalizer write. Sets run one after another: they reuse names.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use gatehouse_operator::input;
use gatehouse_operator::reconcile::apply::{contains, first_difference};
use gatehouse_operator::render::{self, ChildKind};
use gatehouse_tests::*;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const PROTECTED: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

type Key = (ChildKind, Option<String>, String);

/// Gatehouse objects of a set: (kind, namespace, name).
fn owners(objects: &[Value]) -> Vec<(String, Option<String>, String)> {
    objects
        .iter()
        .filter(|o| o["apiVersion"] == gatehouse_api::API_VERSION)
        .map(|o| {
            let ns = o["metadata"]["namespace"]
                .as_str()
                .map(str::to_string)
                .or_else(|| (o["kind"] != "ClusterNetwork").then(|| "default".to_string()));
            (
                o["kind"].as_str().unwrap().to_string(),
                ns,
                o["metadata"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// What the renderer says the cluster should hold for the set, given the cluster's live
/// Services (with the addresses we assigned) and Namespaces.
async fn expected_children(client: &Client, set: &std::path::Path) -> Vec<render::Child> {
    let mut inputs = input::load(&[set.to_path_buf()]).expect("sample loads");
    for s in Api::<Service>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
    {
        inputs.ctx.add_service(s);
    }
    for n in Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
    {
        inputs.ctx.add_namespace(n);
    }
    let mut out = Vec::new();
    for (_, n) in &inputs.networks {
        out.extend(
            render::render_cluster_network(n, &inputs.ctx)
                .expect("network renders")
                .children,
        );
    }
    for (_, a) in &inputs.apps {
        out.extend(
            render::render_exposed_app(a, &inputs.ctx)
                .expect("app renders")
                .children,
        );
    }
    for (_, p) in &inputs.policies {
        out.extend(
            render::render_egress_policy(p, &inputs.ctx)
                .expect("policy renders")
                .children,
        );
    }
    out
}

/// Live Gatehouse children whose owner is one of `owners`.
async fn live_children(
    client: &Client,
    owners: &[(String, Option<String>, String)],
) -> Vec<(Key, Value)> {
    let mut out = Vec::new();
    for kind in ChildKind::ALL {
        let api: Api<DynamicObject> = Api::all_with(
            client.clone(),
            &gatehouse_operator::reconcile::api_resource(kind),
        );
        let lp = ListParams::default().labels("app.kubernetes.io/managed-by=gatehouse");
        for o in api.list(&lp).await.unwrap().items {
            let l = o.labels();
            let owner = (
                l.get("gatehouse.dev/owner-kind")
                    .cloned()
                    .unwrap_or_default(),
                l.get("gatehouse.dev/owner-namespace").cloned(),
                l.get("gatehouse.dev/owner-name")
                    .cloned()
                    .unwrap_or_default(),
            );
            if owners.contains(&owner) {
                // List items carry no apiVersion/kind of their own.
                let mut value = serde_json::to_value(&o).unwrap();
                value["apiVersion"] = json!(kind.api_version());
                value["kind"] = json!(kind.kind());
                out.push(((kind, o.namespace(), o.name_any()), value));
            }
        }
    }
    out
}

async fn all_ready(
    client: &Client,
    owners: &[(String, Option<String>, String)],
) -> Result<(), String> {
    for (kind, ns, name) in owners {
        let api = gatehouse_api(client, kind, ns.as_deref());
        let obj = api.get(name).await.map_err(|e| e.to_string())?;
        let ready = condition(&obj, "Ready");
        let observed = obj.data["status"]["observedGeneration"].as_i64();
        if ready.as_ref().map(|r| r.0.as_str()) != Some("True")
            || observed != obj.metadata.generation
        {
            return Err(format!(
                "{kind} {}/{name}: Ready={ready:?}",
                ns.clone().unwrap_or_default()
            ));
        }
    }
    Ok(())
}

async fn delete_set(client: &Client, objects: &[Value]) {
    let _ = gatehouse_api(client, "ClusterNetwork", None)
        .delete("default", &DeleteParams::default())
        .await;
    let namespaces: Vec<String> = objects
        .iter()
        .filter(|o| o["kind"] == "Namespace")
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
        .filter(|n| !PROTECTED.contains(&n.as_str()))
        .collect();
    let api = Api::<Namespace>::all(client.clone());
    for n in &namespaces {
        let _ = api.delete(n, &DeleteParams::default()).await;
    }
    // Pool objects live in the provider's namespace, outside the set's namespaces.
    for ns in ["metallb-system"] {
        let _ = api.delete(ns, &DeleteParams::default()).await;
    }
    eventually(
        Duration::from_secs(120),
        "the sample set's namespaces to be deleted",
        || {
            let api = api.clone();
            let namespaces = namespaces.clone();
            async move {
                for n in namespaces
                    .iter()
                    .map(String::as_str)
                    .chain(["metallb-system"])
                {
                    if api.get_opt(n).await.ok().flatten().is_some() {
                        return None;
                    }
                }
                gatehouse_api(&client_for_check().await, "ClusterNetwork", None)
                    .get_opt("default")
                    .await
                    .ok()
                    .flatten()
                    .is_none()
                    .then_some(())
            }
        },
    )
    .await;
}

async fn client_for_check() -> Client {
    client().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_converge_and_then_the_operator_is_quiet() {
    let client = client().await;
    let mut op = Operator::start();
    let mut report = Vec::new();
    for set in sample_sets() {
        let name = set.file_name().unwrap().to_string_lossy().to_string();
        let objects = sample_objects(&set);
        let owners = owners(&objects);
        for obj in objects.iter().filter(|o| o["kind"] == "Namespace") {
            apply(&client, obj, false).await.unwrap();
        }
        apply(&client, &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "metallb-system"}}), false).await.unwrap();
        for obj in objects.iter().filter(|o| o["kind"] != "Namespace") {
            apply(&client, obj, false)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let mut namespaces: Vec<String> = objects
            .iter()
            .filter(|o| o["kind"] == "Namespace")
            .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        namespaces.push("metallb-system".into());

        // Converge: play cert-manager, the load balancer and external-dns until all Ready.
        let start = Instant::now();
        loop {
            play_controllers(&client, &namespaces).await;
            match all_ready(&client, &owners).await {
                Ok(()) => break,
                Err(e) if start.elapsed() > Duration::from_secs(90) => {
                    panic!("{name}: not Ready after 90 s: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
        let converged = start.elapsed();

        // Exactly the expected children, each holding what render says.
        let expected = expected_children(&client, &set).await;
        let live = live_children(&client, &owners).await;
        let want: BTreeSet<Key> = expected
            .iter()
            .map(|c| {
                (
                    c.kind,
                    c.namespace().map(str::to_string),
                    c.name().to_string(),
                )
            })
            .collect();
        let have: BTreeSet<Key> = live.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(
            have, want,
            "{name}: live children differ from the rendered ones"
        );
        for c in &expected {
            let key = (
                c.kind,
                c.namespace().map(str::to_string),
                c.name().to_string(),
            );
            let (_, obj) = live.iter().find(|(k, _)| *k == key).unwrap();
            let mut desired = c.object.clone();
            desired["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("ownerReferences");
            assert!(
                contains(Some(obj), &desired),
                "{name}: live {key:?} does not hold the rendered object: {:?}",
                first_difference(Some(obj), &desired, "")
            );
        }

        // Idle: nothing changes, nothing is written.
        let before = settle(&op, Duration::from_secs(2), Duration::from_secs(30)).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let idle = op.writes() - before;
        assert_eq!(idle, 0, "{name}: {idle} writes in an idle window");

        // Restart: a new operator reads everything and writes nothing.
        op.stop();
        op = Operator::start();
        let reconciles_wanted = owners.len() as u64;
        eventually(
            Duration::from_secs(60),
            "the restarted operator to reconcile every object",
            || {
                let m = op.metrics.clone();
                async move {
                    (m.reconciles.load(std::sync::atomic::Ordering::Relaxed) >= reconciles_wanted)
                        .then_some(())
                }
            },
        )
        .await;
        let restart_writes = settle(&op, Duration::from_secs(2), Duration::from_secs(30)).await;
        assert_eq!(
            restart_writes, 0,
            "{name}: the restarted operator wrote {restart_writes} times"
        );

        report.push(format!(
            "{name}: {} objects, {} children, Ready in {:.1}s, idle writes {idle}, restart writes {restart_writes}",
            owners.len(),
            want.len(),
            converged.as_secs_f64()
        ));
        delete_set(&client, &objects).await;
    }
    report.push(new_app_cost(&client, &op).await);
    println!("{}", report.join("\n"));
    op.stop();
}

/// A new ExposedApp costs its children plus at most one status write and one finalizer
/// write. Runs with the same operator (two operators on one cluster would both write).
async fn new_app_cost(client: &Client, op: &Operator) -> String {
    let client = client.clone();
    let ns = namespace(&client, "cost", json!({})).await;
    let network = format!("cost-{}", std::process::id());
    apply(&client, &json!({"apiVersion": gatehouse_api::API_VERSION, "kind": "ClusterNetwork", "metadata": {"name": network}, "spec": {}}), false)
        .await
        .unwrap();
    wait_condition(
        &gatehouse_api(&client, "ClusterNetwork", None),
        &network,
        "Ready",
        "True",
        None,
        Duration::from_secs(30),
    )
    .await;
    let before = settle(op, Duration::from_secs(2), Duration::from_secs(30)).await;
    let app = json!({
        "apiVersion": gatehouse_api::API_VERSION, "kind": "ExposedApp",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"network": network, "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}], "allowFrom": [{"podSelector": {}}]},
    });
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
    let after = settle(op, Duration::from_secs(2), Duration::from_secs(30)).await;
    let children = 2; // Service web, NetworkPolicy web-ingress
    let writes = after - before;
    let what = op.metrics.last_writes(writes as usize);
    let app_writes = what
        .iter()
        .filter(|w| w.contains(&format!("/namespaces/{ns}/")))
        .count() as u64;
    // The network's status counts its apps (status.exposedApps): that write is the
    // network's, not the app's, and is reported separately.
    let network_writes = what
        .iter()
        .filter(|w| w.contains(&format!("/clusternetworks/{network}/status")))
        .count() as u64;
    assert_eq!(
        app_writes + network_writes,
        writes,
        "unexpected writes: {what:#?}"
    );
    assert!(network_writes <= 1, "{what:#?}");
    assert!(
        app_writes <= children + 2,
        "{app_writes} writes for {children} children (budget: children + status + finalizer): {what:#?}"
    );
    assert!(writes >= children, "the children must have been written");
    let _ = gatehouse_api(&client, "ClusterNetwork", None)
        .delete(&network, &DeleteParams::default())
        .await;
    format!(
        "new ExposedApp with {children} children: {app_writes} writes to the app and its children, {network_writes} to its network's status: {what:?}"
    )
}
