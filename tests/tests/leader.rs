//! Leader election: with two operators on one control plane only the leader writes; when the
//! leader dies without releasing the Lease, the standby takes over within the lease duration
//! and reconciles.

use std::time::{Duration, Instant};

use gatehouse_operator::leader::LeaderConfig;
use gatehouse_tests::*;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::json;

fn config(identity: &str, lease: &str) -> LeaderConfig {
    LeaderConfig {
        namespace: "gatehouse-system".into(),
        name: lease.into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(4),
        renew_period: Duration::from_secs(1),
    }
}

async fn holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    leases
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_and_a_standby_takes_over_when_it_dies() {
    let client = client().await;
    let lease = format!("gatehouse-leader-test-{}", std::process::id());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "gatehouse-system");
    // The Lease's namespace (the install creates it; this test must not depend on running
    // after the install test).
    apply(
        &client,
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gatehouse-system"}}),
        false,
    )
    .await
    .unwrap();
    let a = Operator::start_with(Some(config("replica-a", &lease)));
    eventually(Duration::from_secs(30), "replica-a to lead", || async {
        (holder(&leases, &lease).await.as_deref() == Some("replica-a")).then_some(())
    })
    .await;
    let b = Operator::start_with(Some(config("replica-b", &lease)));

    let ns = namespace(&client, "leader", json!({})).await;
    let net = format!("leader-{}", std::process::id());
    apply(&client, &json!({"apiVersion": gatehouse_api::API_VERSION, "kind": "ClusterNetwork", "metadata": {"name": net}, "spec": {}}), false)
        .await
        .unwrap();
    let app = |name: &str| {
        json!({"apiVersion": gatehouse_api::API_VERSION, "kind": "ExposedApp", "metadata": {"name": name, "namespace": ns},
               "spec": {"network": net, "selector": {"app": name}, "ports": [{"name": "http", "port": 80}]}})
    };
    apply(&client, &app("first"), false).await.unwrap();
    let apps = gatehouse_api(&client, "ExposedApp", Some(&ns));
    wait_condition(
        &apps,
        "first",
        "Ready",
        "True",
        None,
        Duration::from_secs(30),
    )
    .await;
    assert!(a.writes() > 0, "the leader reconciled");
    assert_eq!(
        b.writes(),
        0,
        "the standby wrote: {:?}",
        b.metrics.last_writes(10)
    );

    // The leader dies without releasing the Lease.
    let killed = Instant::now();
    a.stop();
    eventually(
        Duration::from_secs(30),
        "replica-b to take over",
        || async { (holder(&leases, &lease).await.as_deref() == Some("replica-b")).then_some(()) },
    )
    .await;
    let takeover = killed.elapsed();
    println!("takeover after {takeover:?} (lease duration 4 s, retry 1 s)");
    assert!(
        takeover <= Duration::from_secs(4 + 2),
        "takeover took {takeover:?}"
    );

    apply(&client, &app("second"), false).await.unwrap();
    wait_condition(
        &apps,
        "second",
        "Ready",
        "True",
        None,
        Duration::from_secs(30),
    )
    .await;
    assert!(b.writes() > 0, "the new leader reconciles");
    b.stop();
}
