//! What the tests that run whole sample sets share: the set's Gatehouse objects, waiting for
//! them to be Ready, and deleting the set again.

use std::time::Duration;

use gatehouse_operator::render::ChildKind;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::{
    apply, condition, deletable_namespaces, eventually, gatehouse_api, play_load_balancers,
};

/// A child's identity: kind, namespace (None for cluster-scoped kinds), name.
pub type ChildKey = (ChildKind, Option<String>, String);

/// Gatehouse objects of a set: (kind, namespace, name).
pub fn owners(objects: &[Value]) -> Vec<(String, Option<String>, String)> {
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

/// Ok when every one of `owners` is Ready for its current generation, else the first that
/// is not.
pub async fn all_ready(
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

/// Deletes a set: its ClusterNetwork and its deletable namespaces, and waits until they are
/// gone.
pub async fn delete_set(client: &Client, objects: &[Value]) {
    let _ = gatehouse_api(client, "ClusterNetwork", None)
        .delete("default", &DeleteParams::default())
        .await;
    let namespaces = deletable_namespaces(objects);
    let api = Api::<Namespace>::all(client.clone());
    for n in &namespaces {
        let _ = api.delete(n, &DeleteParams::default()).await;
    }
    eventually(
        Duration::from_secs(120),
        "the sample set's namespaces to be deleted",
        || {
            let api = api.clone();
            let namespaces = namespaces.clone();
            async move {
                for n in namespaces.iter().map(String::as_str) {
                    if api.get_opt(n).await.ok().flatten().is_some() {
                        return None;
                    }
                }
                gatehouse_api(&crate::client().await, "ClusterNetwork", None)
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

/// The load balancer of a set's ClusterNetwork when it is one that cannot run here.
pub fn played_load_balancer(objects: &[Value]) -> Option<String> {
    objects
        .iter()
        .filter(|o| o["kind"] == "ClusterNetwork")
        .filter_map(|o| o["spec"]["loadBalancer"]["provider"].as_str())
        .find(|p| matches!(*p, "Hetzner" | "Cilium"))
        .map(str::to_string)
}

/// Every child the loaded inputs render to (networks, apps, policies), as the operator would
/// create them; panics naming the kind when one does not render.
pub fn render_all(
    inputs: &gatehouse_operator::input::Inputs,
) -> Vec<gatehouse_operator::render::Child> {
    use gatehouse_operator::render;
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

/// Applies a set: its Namespaces first, then everything else; panics naming the set.
pub async fn apply_set(client: &Client, set: &str, objects: &[Value]) {
    for obj in objects.iter().filter(|o| o["kind"] == "Namespace") {
        apply(client, obj, false).await.unwrap();
    }
    for obj in objects.iter().filter(|o| o["kind"] != "Namespace") {
        apply(client, obj, false)
            .await
            .unwrap_or_else(|e| panic!("{set}: {e}"));
    }
}

/// The names of the set's Namespace objects.
pub fn namespaces_of(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .filter(|o| o["kind"] == "Namespace")
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

/// Waits up to 120 s until every one of `owners` is Ready, playing the load balancers of
/// `namespaces` meanwhile when `played` (those that cannot run here); returns how long it
/// took, or panics with the first object that is not Ready.
pub async fn converge(
    client: &Client,
    set: &str,
    owners: &[(String, Option<String>, String)],
    namespaces: &[String],
    played: bool,
) -> Duration {
    let start = std::time::Instant::now();
    loop {
        if played {
            play_load_balancers(client, namespaces).await;
        }
        match all_ready(client, owners).await {
            Ok(()) => return start.elapsed(),
            Err(e) if start.elapsed() > Duration::from_secs(120) => {
                panic!("{set}: not Ready after 120 s: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

/// What the renderer says the cluster should hold for the inputs in `paths`, given the cluster's live
/// Services (with the addresses we assigned), Namespaces and the API server's EndpointSlices.
pub async fn expected_children(
    client: &Client,
    paths: &[std::path::PathBuf],
) -> Vec<gatehouse_operator::render::Child> {
    let mut inputs = gatehouse_operator::input::load(paths).expect("inputs load");
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
    // Where the API server listens (the `apiServer` peer).
    for e in Api::<EndpointSlice>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
    {
        inputs.ctx.add_endpoint_slice(e);
    }
    render_all(&inputs)
}

/// Live Gatehouse children whose owner is one of `owners`.
pub async fn live_children(
    client: &Client,
    owners: &[(String, Option<String>, String)],
) -> Vec<(ChildKey, Value)> {
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
