//! The install manifests: `config/default` (kustomize) applies cleanly to a real API server,
//! the operator Pod meets Pod Security "restricted" (enforced by the API server's admission),
//! and the Helm chart renders the same objects.

use std::collections::BTreeMap;
use std::process::Command;

use gatehouse_operator::reconcile::plan::first_difference;
use gatehouse_tests::{apply, client, root, yaml_docs};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

fn kustomize() -> Vec<Value> {
    let out = Command::new("kubectl")
        .args(["kustomize"])
        .arg(root().join("config/default"))
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    yaml_docs(&String::from_utf8(out.stdout).unwrap())
}

fn numbers_as_f64(v: Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64()),
        Value::Array(a) => Value::Array(a.into_iter().map(numbers_as_f64).collect()),
        Value::Object(m) => {
            Value::Object(m.into_iter().map(|(k, v)| (k, numbers_as_f64(v))).collect())
        }
        other => other,
    }
}

fn key(o: &Value) -> (String, String, String) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (
        s(&o["kind"]),
        s(&o["metadata"]["namespace"]),
        s(&o["metadata"]["name"]),
    )
}

#[tokio::test]
async fn config_default_applies_and_the_operator_pod_is_restricted() {
    let client = client().await;
    let objects = kustomize();
    let kinds: Vec<String> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap().to_string())
        .collect();
    for k in [
        "CustomResourceDefinition",
        "ClusterRole",
        "ServiceAccount",
        "Deployment",
        "Service",
    ] {
        assert!(kinds.iter().any(|x| x == k), "config/default lacks a {k}");
    }
    // The namespace and the ServiceAccount are created for real (the Pod check below needs
    // them); everything else is a server-side dry run.
    let real = |o: &&Value| o["kind"] == "Namespace" || o["kind"] == "ServiceAccount";
    for o in objects.iter().filter(real) {
        apply(&client, o, false).await.unwrap();
    }
    for o in objects.iter().filter(|o| !real(o)) {
        apply(&client, o, true)
            .await
            .unwrap_or_else(|e| panic!("{:?} rejected: {e}", key(o)));
    }

    // The namespace enforces "restricted"; the API server admits a Pod made from the
    // Deployment's template there, and refuses one that breaks the profile.
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let template = &deployment["spec"]["template"];
    let pods: Api<Pod> = Api::namespaced(client.clone(), "gatehouse-system");
    let mut pod: Pod = serde_json::from_value(json!({"metadata": {"name": "restricted-check", "labels": template["metadata"]["labels"]}, "spec": template["spec"]})).unwrap();
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    pods.create(&dry, &pod)
        .await
        .expect("the operator pod meets Pod Security restricted");
    pod.spec.as_mut().unwrap().containers[0]
        .security_context
        .as_mut()
        .unwrap()
        .allow_privilege_escalation = Some(true);
    let refused = pods.create(&dry, &pod).await;
    assert!(
        matches!(refused, Err(kube::Error::Api(ref e)) if e.code == 403),
        "restricted is not enforced: {refused:?}"
    );
}

#[test]
fn the_helm_chart_renders_the_same_objects_as_kustomize() {
    let helm = std::env::var("HELM_BIN").expect("HELM_BIN is set by `make test` (it builds helm)");
    let out = Command::new(&helm)
        .args(["template", "gatehouse"])
        .arg(root().join("charts/gatehouse"))
        .args(["--namespace", "gatehouse-system", "--include-crds"])
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let from_helm: BTreeMap<_, _> = yaml_docs(&String::from_utf8(out.stdout).unwrap())
        .into_iter()
        .map(|o| (key(&o), o))
        .collect();
    // Helm installs into an existing namespace (--create-namespace): no Namespace object.
    let from_kustomize: BTreeMap<_, _> = kustomize()
        .into_iter()
        .filter(|o| o["kind"] != "Namespace")
        .map(|o| (key(&o), o))
        .collect();
    assert_eq!(
        from_helm.keys().collect::<Vec<_>>(),
        from_kustomize.keys().collect::<Vec<_>>()
    );
    for (k, o) in &from_kustomize {
        // YAML writers differ in number spelling (604800 vs 604800.0): compare values.
        let (h, o) = (
            numbers_as_f64(from_helm[k].clone()),
            numbers_as_f64(o.clone()),
        );
        let diff =
            first_difference(Some(&h), &o, "").or_else(|| first_difference(Some(&o), &h, ""));
        assert!(
            diff.is_none(),
            "{k:?} differs between the chart and config/default: {diff:?}"
        );
    }
}
