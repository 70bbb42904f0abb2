//! The Gatehouse CRDs against the real kube-apiserver: they install and become Established,
//! every sample object is accepted, every child `gatehouse render` produces for the samples
//! is accepted (core kinds validated for real, third-party kinds by tests/crds), owned
//! children are garbage-collected, and kubectl works with .cluster/kubeconfig.

use std::time::Duration;

use gatehouse_operator::render_cmd::render_paths;
use gatehouse_tests::{
    api_for, apply, client, eventually, kubectl, namespace, root, sample_objects, sample_sets,
    yaml_docs,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

#[tokio::test]
async fn gatehouse_crds_install_and_become_established() {
    let client = client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let text = std::fs::read_to_string(root().join("config/crd/gatehouse.dev_crds.yaml")).unwrap();
    let docs = yaml_docs(&text);
    assert_eq!(docs.len(), 3);
    for doc in docs {
        apply(&client, &doc, false).await.expect("CRD applies");
        let name = doc["metadata"]["name"].as_str().unwrap().to_string();
        eventually(
            Duration::from_secs(30),
            &format!("{name} Established"),
            || {
                let crds = crds.clone();
                let name = name.clone();
                async move {
                    let crd = crds.get(&name).await.ok()?;
                    let established = crd
                        .status?
                        .conditions?
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True");
                    established.then_some(())
                }
            },
        )
        .await;
    }
}

/// Every sample set, applied for real where objects must exist (Namespaces) and with
/// server-side dry run otherwise (the sets reuse names such as ClusterNetwork `default`).
#[tokio::test]
async fn every_sample_object_is_accepted() {
    let client = client().await;
    let mut count = 0;
    for set in sample_sets() {
        let objects = sample_objects(&set);
        assert!(!objects.is_empty(), "{} is empty", set.display());
        for obj in objects.iter().filter(|o| o["kind"] == "Namespace") {
            apply(&client, obj, false)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", set.display()));
        }
        for obj in objects.iter().filter(|o| o["kind"] != "Namespace") {
            apply(&client, obj, true).await.unwrap_or_else(|e| {
                panic!(
                    "{}: {} {} rejected: {e}",
                    set.display(),
                    obj["kind"],
                    obj["metadata"]["name"]
                )
            });
            count += 1;
        }
    }
    assert!(count >= 20, "only {count} sample objects");
}

/// What the renderer produces must be what the API server accepts.
#[tokio::test]
async fn every_rendered_child_of_the_samples_is_accepted() {
    let client = client().await;
    let mut count = 0;
    for set in sample_sets() {
        for obj in sample_objects(&set)
            .iter()
            .filter(|o| o["kind"] == "Namespace")
        {
            apply(&client, obj, false).await.unwrap();
        }
        let out = render_paths(std::slice::from_ref(&set));
        assert!(out.errors.is_empty(), "{}: {:?}", set.display(), out.errors);
        for child in &out.children {
            let ns = child.namespace().map(str::to_string);
            if let Some(ns) = &ns {
                // Pool objects live in the provider's namespace, which samples need not declare.
                apply(
                    &client,
                    &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                    false,
                )
                .await
                .unwrap();
            }
            apply(&client, &child.object, true)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "{}: rendered {} {:?}/{} rejected: {e}",
                        set.display(),
                        child.kind.kind(),
                        ns,
                        child.name()
                    )
                });
            count += 1;
        }
        // What apps add to the platform's Gateways: the set's Gateways exist, and each app's
        // listeners merge into them (server-side apply under the app's field manager, as
        // the operator sends it; dry run).
        for gw in sample_objects(&set)
            .iter()
            .filter(|o| o["kind"] == "Gateway")
        {
            apply(&client, gw, false).await.unwrap();
        }
        for l in &out.listeners {
            let ar = gatehouse_operator::reconcile::stores::gateway_resource();
            let api: kube::Api<kube::api::DynamicObject> =
                kube::Api::namespaced_with(client.clone(), &l.namespace, &ar);
            let mut pp = kube::api::PatchParams::apply(&l.manager);
            pp.dry_run = true;
            api.patch(&l.gateway, &pp, &kube::api::Patch::Apply(l.apply_body()))
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "{}: listeners of {} into Gateway {}/{} rejected: {e}",
                        set.display(),
                        l.manager,
                        l.namespace,
                        l.gateway
                    )
                });
            count += 1;
        }
    }
    assert!(count >= 50, "only {count} rendered children");
}

#[tokio::test]
async fn owned_child_is_garbage_collected_after_its_parent_is_deleted() {
    let client = client().await;
    let ns = namespace(&client, "gc", json!({})).await;
    let app = json!({
        "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ExposedApp",
        "metadata": {"name": "parent", "namespace": ns},
        "spec": {"selector": {"app": "p"}, "ports": [{"name": "http", "port": 80}]},
    });
    let parent = apply(&client, &app, false).await.expect("parent created");
    let uid = parent.metadata.uid.clone().unwrap();
    let child = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "child", "namespace": ns, "ownerReferences": [{
            "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ExposedApp", "name": "parent", "uid": uid,
            "controller": true, "blockOwnerDeletion": true,
        }]},
    });
    let children = api_for(&client, &child).await;
    children
        .create(
            &PostParams::default(),
            &serde_json::from_value(child.clone()).unwrap(),
        )
        .await
        .unwrap();
    api_for(&client, &app)
        .await
        .delete("parent", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        Duration::from_secs(60),
        "the child to be garbage-collected",
        || {
            let children = children.clone();
            async move {
                children
                    .get_opt("child")
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

#[test]
fn kubectl_works_with_the_admin_kubeconfig() {
    assert!(kubectl(&["get", "namespace", "default", "-o", "name"]).contains("namespace/default"));
    // The category lists all three kinds, and explain shows the field descriptions.
    kubectl(&["get", "gatehouse", "-A"]);
    let explain = kubectl(&["explain", "exposedapp.spec.tcp.proxyProtocol"]);
    assert!(explain.contains("PROXY protocol"), "{explain}");
    let explain = kubectl(&["explain", "clusternetwork.spec.policy.defaultDeny"]);
    assert!(explain.contains("gatehouse-default-deny"), "{explain}");
    // The status fields behind `kubectl get xapp -o wide`.
    let explain = kubectl(&["explain", "exposedapp.status.readyChildren"]);
    assert!(explain.contains("report ready"), "{explain}");
    let explain = kubectl(&["explain", "exposedapp.status.wide.tiers"]);
    assert!(explain.contains("comma-separated"), "{explain}");
}
