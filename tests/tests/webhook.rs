//! The Multus attachment webhook, called by the real API server on Pod create: a Pod an
//! ExposedApp with attachments selects is stored with `k8s.v1.cni.cncf.io/networks` (ips and
//! mac); other Pods are untouched; with the operator down, Pods are still admitted.

use std::time::Duration;

use gatehouse_operator::webhook::{Target, WebhookOptions};
use gatehouse_tests::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use serde_json::{Value, json};

fn pod(name: &str, labels: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}], "automountServiceAccountToken": false},
    }))
    .unwrap()
}

fn networks(p: &Pod) -> Option<Value> {
    let text = p
        .metadata
        .annotations
        .as_ref()?
        .get("k8s.v1.cni.cncf.io/networks")?;
    serde_json::from_str(text).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_selected_by_an_app_with_attachments_get_the_multus_annotation() {
    let client = client().await;
    let ns = namespace(&client, "webhook", json!({})).await;
    // No service-account controller runs here: the Pods' default account must exist.
    apply(&client, &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}}), false)
        .await
        .unwrap();
    let net = format!("webhook-{}", std::process::id());
    let network = json!({"apiVersion": gatehouse_api::API_VERSION, "kind": "ClusterNetwork", "metadata": {"name": net},
        "spec": {"attachments": [{"name": "dmz-out", "master": "kdmzout", "ipam": {"type": "static", "ranges": [{"subnet": "192.168.31.0/24"}]}}]}});
    apply(&client, &network, false).await.unwrap();
    let app = json!({"apiVersion": gatehouse_api::API_VERSION, "kind": "ExposedApp", "metadata": {"name": "wordpress", "namespace": ns},
        "spec": {"network": net, "selector": {"app": "wordpress"}, "ports": [{"name": "http", "port": 80}],
                 "attachments": [{"network": "dmz-out", "ips": ["192.168.31.13/24"], "mac": "02:42:ac:11:00:04"}]}});
    apply(&client, &app, false).await.unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = WebhookOptions {
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        configuration: "gatehouse".into(),
        target: Target::Url(format!("https://127.0.0.1:{port}/mutate-pods")),
        subject_alt_names: vec!["127.0.0.1".into()],
        excluded_namespaces: vec!["kube-system".into(), "gatehouse-system".into()],
    };
    let op = Operator::start_options(None, None, Some(options));
    wait_condition(
        &gatehouse_api(&client, "ExposedApp", Some(&ns)),
        "wordpress",
        "Ready",
        "True",
        None,
        Duration::from_secs(30),
    )
    .await;

    // The API server picks up a new webhook configuration within a moment: retry with new
    // Pods until one is mutated.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mut attempt = 0;
    let stored = eventually(Duration::from_secs(30), "a Pod to be mutated", || {
        attempt += 1;
        let pods = pods.clone();
        let name = format!("wordpress-{attempt}");
        async move {
            let created = pods
                .create(
                    &PostParams::default(),
                    &pod(&name, json!({"app": "wordpress"})),
                )
                .await
                .ok()?;
            networks(&created).map(|_| created)
        }
    })
    .await;
    assert_eq!(
        networks(&stored).unwrap(),
        json!([{"name": "dmz-out", "namespace": ns, "ips": ["192.168.31.13/24"], "mac": "02:42:ac:11:00:04"}])
    );
    // Read back from storage, not just the create response.
    let again = pods
        .get(&stored.metadata.name.clone().unwrap())
        .await
        .unwrap();
    assert_eq!(networks(&again), networks(&stored));
    // The attachment definition exists where the app uses it.
    let nads: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &gatehouse_operator::reconcile::api_resource(
            gatehouse_operator::render::ChildKind::NetworkAttachmentDefinition,
        ),
    );
    eventually(
        Duration::from_secs(30),
        "the NetworkAttachmentDefinition",
        || async { nads.get_opt("dmz-out").await.ok().flatten() },
    )
    .await;

    let other = pods
        .create(
            &PostParams::default(),
            &pod("mariadb", json!({"app": "mariadb"})),
        )
        .await
        .unwrap();
    assert!(networks(&other).is_none(), "an unrelated Pod was mutated");

    // Operator down: Pods are still admitted (failurePolicy Ignore), just not attached.
    op.stop();
    let during_outage = pods
        .create(
            &PostParams::default(),
            &pod("wordpress-outage", json!({"app": "wordpress"})),
        )
        .await;
    assert!(
        during_outage.is_ok(),
        "an operator outage blocked a Pod: {during_outage:?}"
    );

    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
        ),
        "mutatingwebhookconfigurations",
    );
    let _ = Api::<DynamicObject>::all_with(client.clone(), &ar)
        .delete("gatehouse", &DeleteParams::default())
        .await;
}
