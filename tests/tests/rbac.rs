//! config/rbac is least privilege: no wildcards, no Secrets, and the identity the tests run
//! the operator as (the ServiceAccount bound by config/rbac) is refused what it does not need.
//! That the same identity suffices is shown by every reconcile test, which run as it.

use gatehouse_tests::{operator_config, root, yaml_docs};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, PostParams};

#[test]
fn the_cluster_role_has_no_wildcards_and_no_secrets() {
    let text = std::fs::read_to_string(root().join("config/rbac/role.yaml")).unwrap();
    for rule in yaml_docs(&text)
        .iter()
        .flat_map(|role| role["rules"].as_array().unwrap().clone())
    {
        for field in ["apiGroups", "resources", "verbs"] {
            for v in rule[field].as_array().unwrap() {
                assert_ne!(v, &"*", "wildcard in {field}: {rule}");
                assert_ne!(v, &"secrets", "{rule}");
            }
        }
    }
}

#[tokio::test]
async fn the_operator_identity_is_refused_what_it_does_not_need() {
    let client = kube::Client::try_from(operator_config().await).unwrap();
    let forbidden =
        |r: Result<(), kube::Error>| matches!(r, Err(kube::Error::Api(e)) if e.code == 403);
    let secrets = Api::<Secret>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|_| ());
    assert!(forbidden(secrets), "the operator may read Secrets");
    let cm: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "nope"}})).unwrap();
    let created = Api::<ConfigMap>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &cm)
        .await
        .map(|_| ());
    assert!(forbidden(created), "the operator may create ConfigMaps");
    // And it may do what it needs: list its kinds.
    let apps = gatehouse_tests::gatehouse_api(&client, "ExposedApp", None)
        .list(&ListParams::default())
        .await;
    assert!(apps.is_ok(), "{apps:?}");
}
