//! The reconcilers' behaviour on a live API server, one concern per test, all sharing one
//! in-process operator. Every test has its own ClusterNetwork, namespaces and hosts, so
//! tests run in parallel without seeing each other.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gatehouse_tests::*;
use k8s_openapi::api::core::v1::{Event, Namespace, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

static OPERATOR: OnceLock<Operator> = OnceLock::new();

const LONG: Duration = Duration::from_secs(30);

/// Client, a fresh namespace, and a fresh ClusterNetwork (with a zone of its own) per test.
async fn setup(prefix: &str, network_spec: Value) -> (Client, String, String, String) {
    OPERATOR.get_or_init(Operator::start);
    let client = client().await;
    let ns = namespace(&client, prefix, json!({})).await;
    let net = format!("{prefix}-{}", std::process::id());
    let zone = format!("{net}.example.com");
    let mut spec = json!({
        "ipFamilies": ["IPv4", "IPv6"],
        "loadBalancer": {"provider": "MetalLB", "namespace": ns, "pools": [{"name": "external", "addresses": ["192.0.2.0/28", "2001:db8:1::/120"]}]},
        "ingress": {"external": {"className": "nginx", "namespace": "ingress-nginx", "podSelector": {"matchLabels": {"app": "ingress-nginx"}}, "addresses": ["192.0.2.1", "2001:db8:1::1"]}},
        "tls": {"issuerRef": {"name": "letsencrypt"}},
        "dns": {"external": {"zone": zone}},
    });
    merge(&mut spec, network_spec);
    apply(&client, &json!({"apiVersion": gatehouse_api::API_VERSION, "kind": "ClusterNetwork", "metadata": {"name": net}, "spec": spec}), false)
        .await
        .unwrap();
    (client, ns, net, zone)
}

/// An ExposedApp; `isolation: Isolated` unless `spec` says otherwise, so every test here
/// sees the app's ingress policy among its children (isolation itself has its own test).
fn app(ns: &str, name: &str, net: &str, spec: Value) -> Value {
    let mut s = json!({"network": net, "selector": {"app": name}, "isolation": "Isolated",
                       "ports": [{"name": "http", "port": 80}]});
    merge(&mut s, spec);
    json!({"apiVersion": gatehouse_api::API_VERSION, "kind": "ExposedApp", "metadata": {"name": name, "namespace": ns}, "spec": s})
}

fn apps(client: &Client, ns: &str) -> Api<DynamicObject> {
    gatehouse_api(client, "ExposedApp", Some(ns))
}

fn dyn_api(
    client: &Client,
    kind: gatehouse_operator::render::ChildKind,
    ns: &str,
) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        ns,
        &gatehouse_operator::reconcile::api_resource(kind),
    )
}

async fn exists(api: &Api<DynamicObject>, name: &str) -> bool {
    api.get_opt(name).await.unwrap().is_some()
}

async fn wait_exists(api: &Api<DynamicObject>, name: &str, want: bool) {
    let what = format!("{name} to {}", if want { "exist" } else { "be gone" });
    eventually(LONG, &what, || async {
        (exists(api, name).await == want).then_some(())
    })
    .await;
}

/// Waits until the app is Ready for its generation: the real cert-manager issued its
/// certificate, MetalLB assigned its addresses, external-dns published its records.
async fn converge(client: &Client, ns: &str, name: &str) -> DynamicObject {
    let deadline = Instant::now() + LONG;
    loop {
        let obj = apps(client, ns).get(name).await.unwrap();
        if condition(&obj, "Ready").is_some_and(|c| c.0 == "True")
            && obj.data["status"]["observedGeneration"].as_i64() == obj.metadata.generation
        {
            return obj;
        }
        assert!(
            Instant::now() < deadline,
            "{ns}/{name} not Ready: {}",
            obj.data["status"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_changes_only_what_it_should_and_removing_a_route_prunes() {
    let (client, ns, net, zone) = setup("update", json!({})).await;
    let spec =
        json!({"routes": [{"hosts": [format!("a.{zone}")]}, {"hosts": [format!("b.{zone}")]}]});
    apply(&client, &app(&ns, "web", &net, spec), false)
        .await
        .unwrap();
    converge(&client, &ns, "web").await;
    let svc_rv = Api::<Service>::namespaced(client.clone(), &ns)
        .get("web")
        .await
        .unwrap()
        .resource_version();
    let np_rv = Api::<NetworkPolicy>::namespaced(client.clone(), &ns)
        .get("web-ingress")
        .await
        .unwrap()
        .resource_version();

    // Rename host b -> c: Ingress, Certificate and DNSEndpoint change; Service and policy don't.
    let spec =
        json!({"routes": [{"hosts": [format!("a.{zone}")]}, {"hosts": [format!("c.{zone}")]}]});
    apply(&client, &app(&ns, "web", &net, spec), false)
        .await
        .unwrap();
    let obj = converge(&client, &ns, "web").await;
    let ing = Api::<Ingress>::namespaced(client.clone(), &ns)
        .get("web-external")
        .await
        .unwrap();
    let hosts: Vec<String> = ing
        .spec
        .unwrap()
        .rules
        .unwrap()
        .into_iter()
        .filter_map(|r| r.host)
        .collect();
    assert_eq!(hosts, [format!("a.{zone}"), format!("c.{zone}")]);
    let cert = dyn_api(
        &client,
        gatehouse_operator::render::ChildKind::Certificate,
        &ns,
    )
    .get("web-external")
    .await
    .unwrap();
    assert_eq!(
        cert.data["spec"]["dnsNames"],
        json!([format!("a.{zone}"), format!("c.{zone}")])
    );
    assert_eq!(
        Api::<Service>::namespaced(client.clone(), &ns)
            .get("web")
            .await
            .unwrap()
            .resource_version(),
        svc_rv,
        "Service untouched"
    );
    assert_eq!(
        Api::<NetworkPolicy>::namespaced(client.clone(), &ns)
            .get("web-ingress")
            .await
            .unwrap()
            .resource_version(),
        np_rv,
        "policy untouched"
    );
    assert_eq!(
        obj.data["status"]["urls"],
        json!([format!("https://a.{zone}/"), format!("https://c.{zone}/")])
    );

    // Remove every route: Ingress, Certificate and DNSEndpoint are pruned; Service stays.
    apply(&client, &app(&ns, "web", &net, json!({})), false)
        .await
        .unwrap();
    for kind in [
        gatehouse_operator::render::ChildKind::Ingress,
        gatehouse_operator::render::ChildKind::Certificate,
        gatehouse_operator::render::ChildKind::DnsEndpoint,
    ] {
        // One of each per tier: the external one here.
        wait_exists(&dyn_api(&client, kind, &ns), "web-external", false).await;
    }
    assert!(
        exists(
            &dyn_api(&client, gatehouse_operator::render::ChildKind::Service, &ns),
            "web"
        )
        .await
    );
    converge(&client, &ns, "web").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_or_edited_child_is_put_back() {
    let (client, ns, net, zone) = setup("repair", json!({})).await;
    apply(
        &client,
        &app(
            &ns,
            "web",
            &net,
            json!({"routes": [{"hosts": [format!("www.{zone}")]}]}),
        ),
        false,
    )
    .await
    .unwrap();
    converge(&client, &ns, "web").await;
    let ingresses = Api::<Ingress>::namespaced(client.clone(), &ns);

    let start = Instant::now();
    ingresses
        .delete("web-external", &DeleteParams::default())
        .await
        .unwrap();
    eventually(LONG, "the deleted Ingress to come back", || async {
        ingresses.get_opt("web-external").await.unwrap().map(|_| ())
    })
    .await;
    let repaired_delete = start.elapsed();

    let start = Instant::now();
    let edit = json!({"spec": {"ingressClassName": "someone-else"}});
    ingresses
        .patch(
            "web-external",
            &PatchParams::default(),
            &Patch::Merge(&edit),
        )
        .await
        .unwrap();
    eventually(LONG, "the edited Ingress to be put back", || async {
        let i = ingresses.get("web-external").await.unwrap();
        (i.spec.unwrap().ingress_class_name.as_deref() == Some("nginx")).then_some(())
    })
    .await;
    let repaired_edit = start.elapsed();
    println!(
        "repair: deleted child back in {repaired_delete:?}, edited child back in {repaired_edit:?}"
    );
    assert!(repaired_delete < Duration::from_secs(5) && repaired_edit < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unowned_object_is_never_touched_and_the_app_is_stalled_with_conflict() {
    let (client, ns, net, zone) = setup("conflict", json!({})).await;
    let theirs = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": ns, "labels": {"owner": "someone"}},
        "spec": {"selector": {"app": "other"}, "ports": [{"port": 8080}]},
    });
    let created = apply(&client, &theirs, false).await.unwrap();
    let ing = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "web-external", "namespace": ns},
        "spec": {"ingressClassName": "theirs", "defaultBackend": {"service": {"name": "x", "port": {"number": 80}}}},
    });
    let ing_created = apply(&client, &ing, false).await.unwrap();
    apply(
        &client,
        &app(
            &ns,
            "web",
            &net,
            json!({"routes": [{"hosts": [format!("w.{zone}")]}]}),
        ),
        false,
    )
    .await
    .unwrap();
    let obj = wait_condition(
        &apps(&client, &ns),
        "web",
        "Stalled",
        "True",
        Some("Conflict"),
        LONG,
    )
    .await;
    let (_, _, message) = condition(&obj, "Stalled").unwrap();
    assert!(
        message.contains("Service") && message.contains("web"),
        "{message}"
    );
    // A later reconcile (the spec changed: one more host) still leaves theirs alone.
    apply(
        &client,
        &app(
            &ns,
            "web",
            &net,
            json!({"routes": [{"hosts": [format!("w.{zone}"), format!("w2.{zone}")]}]}),
        ),
        false,
    )
    .await
    .unwrap();
    wait_condition(
        &apps(&client, &ns),
        "web",
        "Stalled",
        "True",
        Some("Conflict"),
        LONG,
    )
    .await;
    let svc = Api::<Service>::namespaced(client.clone(), &ns)
        .get("web")
        .await
        .unwrap();
    assert_eq!(
        svc.resource_version(),
        created.resource_version(),
        "the unowned Service was modified"
    );
    let i = Api::<Ingress>::namespaced(client.clone(), &ns)
        .get("web-external")
        .await
        .unwrap();
    assert_eq!(
        i.resource_version(),
        ing_created.resource_version(),
        "the unowned Ingress was modified"
    );
    // An Event tells the user.
    let events = Api::<Event>::namespaced(client.clone(), &ns);
    eventually(LONG, "a Conflict event", || async {
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("Conflict")
                    && e.involved_object.name.as_deref() == Some("web")
            })
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_namespace_claiming_a_host_gets_host_conflict() {
    let (client, ns, net, zone) = setup("claims", json!({})).await;
    let other = namespace(&client, "claims-b", json!({})).await;
    let host = format!("shop.{zone}");
    apply(
        &client,
        &app(&ns, "shop", &net, json!({"routes": [{"hosts": [host]}]})),
        false,
    )
    .await
    .unwrap();
    converge(&client, &ns, "shop").await;
    apply(
        &client,
        &app(&other, "shop", &net, json!({"routes": [{"hosts": [host]}]})),
        false,
    )
    .await
    .unwrap();
    let obj = wait_condition(
        &apps(&client, &other),
        "shop",
        "Stalled",
        "True",
        Some("HostConflict"),
        LONG,
    )
    .await;
    let (_, _, message) = condition(&obj, "Stalled").unwrap();
    assert!(
        message.contains(&format!("{ns}/shop")),
        "names the holder: {message}"
    );
    assert!(
        !exists(
            &dyn_api(
                &client,
                gatehouse_operator::render::ChildKind::Ingress,
                &other
            ),
            "shop-external"
        )
        .await,
        "no route for the loser"
    );
    // When the holder goes, the claim passes to the second app.
    apps(&client, &ns)
        .delete("shop", &DeleteParams::default())
        .await
        .unwrap();
    wait_condition(
        &apps(&client, &other),
        "shop",
        "Stalled",
        "False",
        None,
        LONG,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_app_removes_dns_first_and_all_children_after() {
    let (client, ns, net, zone) = setup("teardown", json!({})).await;
    apply(
        &client,
        &app(
            &ns,
            "web",
            &net,
            json!({"routes": [{"hosts": [format!("t.{zone}")]}]}),
        ),
        false,
    )
    .await
    .unwrap();
    converge(&client, &ns, "web").await;
    let dns = dyn_api(
        &client,
        gatehouse_operator::render::ChildKind::DnsEndpoint,
        &ns,
    );
    let ing = dyn_api(&client, gatehouse_operator::render::ChildKind::Ingress, &ns);
    // The real external-dns published the record into the external tier's BIND.
    let host = format!("t.{zone}");
    wait_dns("external", &host, "A", &["192.0.2.1".into()], LONG).await;
    apps(&client, &ns)
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    let start = Instant::now();
    let (mut records_gone, mut dns_gone, mut ing_gone) = (None, None, None);
    while (dns_gone.is_none() || ing_gone.is_none()) && start.elapsed() < Duration::from_secs(60) {
        if records_gone.is_none() && dig("external", &host, "A").status == "NXDOMAIN" {
            records_gone = Some(start.elapsed());
        }
        if dns_gone.is_none() && !exists(&dns, "web-external").await {
            dns_gone = Some(start.elapsed());
        }
        if ing_gone.is_none() && !exists(&ing, "web-external").await {
            ing_gone = Some(start.elapsed());
            // Asked after the Ingress was seen gone: BIND must already have dropped the name.
            let answer = dig("external", &host, "A");
            assert_eq!(
                answer.status, "NXDOMAIN",
                "the routes went while BIND still answered {answer:?}"
            );
            records_gone.get_or_insert(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (records_gone, dns_gone, ing_gone) = (
        records_gone.expect("records removed from BIND"),
        dns_gone.expect("DNSEndpoint removed"),
        ing_gone.expect("Ingress removed"),
    );
    assert!(
        records_gone <= ing_gone && dns_gone <= ing_gone,
        "records went from BIND at {records_gone:?}, the DNSEndpoint at {dns_gone:?}, routes at {ing_gone:?}"
    );
    println!(
        "teardown: records gone from BIND at {records_gone:?}, DNSEndpoint at {dns_gone:?}, Ingress at {ing_gone:?}"
    );
    for (kind, name) in [
        (gatehouse_operator::render::ChildKind::Service, "web"),
        (
            gatehouse_operator::render::ChildKind::Certificate,
            "web-external",
        ),
        (
            gatehouse_operator::render::ChildKind::NetworkPolicy,
            "web-ingress",
        ),
    ] {
        wait_exists(&dyn_api(&client, kind, &ns), name, false).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_deny_reaches_a_namespace_created_later_and_leaves_when_it_stops_matching() {
    let label = format!("deny-{}", std::process::id());
    let (client, _ns, net, _) =
        setup("deny", json!({"policy": {"defaultDeny": {"namespaceSelector": {"matchLabels": {"gatehouse-test": label}}}}})).await;
    wait_condition(
        &gatehouse_api(&client, "ClusterNetwork", None),
        &net,
        "Ready",
        "True",
        None,
        LONG,
    )
    .await;
    let later = namespace(&client, "deny-later", json!({"gatehouse-test": label})).await;
    let policies = Api::<NetworkPolicy>::namespaced(client.clone(), &later);
    let np = eventually(LONG, "default deny in the new namespace", || async {
        policies.get_opt("gatehouse-default-deny").await.unwrap()
    })
    .await;
    assert_eq!(np.labels().get("gatehouse.dev/owner-name"), Some(&net));
    // The DNS hole is there.
    let egress = np.spec.unwrap().egress.unwrap();
    assert_eq!(egress[0].ports.as_ref().unwrap().len(), 2);
    // Remove the label: the baseline goes.
    let patch = json!({"metadata": {"labels": {"gatehouse-test": null}}});
    Api::<Namespace>::all(client.clone())
        .patch(&later, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually(LONG, "default deny to leave the namespace", || async {
        policies
            .get_opt("gatehouse-default-deny")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fqdn_under_the_kubernetes_engine_stalls_while_other_rules_apply() {
    let (client, ns, net, _) = setup("fqdn", json!({})).await;
    let policy = json!({
        "apiVersion": gatehouse_api::API_VERSION, "kind": "EgressPolicy",
        "metadata": {"name": "out", "namespace": ns},
        "spec": {"network": net, "rules": [
            {"to": [{"fqdn": "api.github.com"}], "ports": [{"port": 443}]},
            {"to": [{"cidr": "10.0.0.0/8"}], "ports": [{"port": 5432}]}]},
    });
    apply(&client, &policy, false).await.unwrap();
    let obj = wait_condition(
        &gatehouse_api(&client, "EgressPolicy", Some(&ns)),
        "out",
        "Stalled",
        "True",
        Some("FQDNUnsupported"),
        LONG,
    )
    .await;
    assert!(
        condition(&obj, "Stalled")
            .unwrap()
            .2
            .contains("spec.rules[0].to[0].fqdn")
    );
    let np = Api::<NetworkPolicy>::namespaced(client.clone(), &ns)
        .get("out-egress")
        .await
        .unwrap();
    let rules = np.spec.unwrap().egress.unwrap();
    assert_eq!(rules.len(), 2, "DNS plus the cidr rule");
    assert_eq!(
        rules[1].to.as_ref().unwrap()[0]
            .ip_block
            .as_ref()
            .unwrap()
            .cidr,
        "10.0.0.0/8"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_to_a_service_that_appears_later_resolves_when_it_appears() {
    let (client, ns, net, _) = setup("laterref", json!({})).await;
    apply(
        &client,
        &app(
            &ns,
            "db",
            &net,
            json!({"allowFrom": [{"service": {"name": "backup"}}]}),
        ),
        false,
    )
    .await
    .unwrap();
    let obj = wait_condition(
        &apps(&client, &ns),
        "db",
        "Reconciling",
        "True",
        Some("ReferenceNotFound"),
        LONG,
    )
    .await;
    assert!(
        condition(&obj, "Ready")
            .unwrap()
            .2
            .contains("spec.allowFrom[0]")
    );
    let policies = Api::<NetworkPolicy>::namespaced(client.clone(), &ns);
    let np = policies.get("db-ingress").await.unwrap();
    assert!(
        np.spec.unwrap().ingress.unwrap_or_default().is_empty(),
        "an unresolved peer admits nobody"
    );
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "backup", "namespace": ns}, "spec": {"selector": {"app": "restic"}, "ports": [{"port": 1}]}});
    apply(&client, &svc, false).await.unwrap();
    wait_condition(&apps(&client, &ns), "db", "Ready", "True", None, LONG).await;
    let np = policies.get("db-ingress").await.unwrap();
    assert_eq!(first_peer_app_label(&np), "restic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_spec_is_stalled_naming_the_field_and_recovers_on_a_fix() {
    let (client, ns, net, zone) = setup("invalid", json!({})).await;
    apply(
        &client,
        &app(
            &ns,
            "web",
            &net,
            json!({"routes": [{"hosts": ["www.elsewhere.org"]}]}),
        ),
        false,
    )
    .await
    .unwrap();
    let obj = wait_condition(
        &apps(&client, &ns),
        "web",
        "Stalled",
        "True",
        Some("InvalidSpec"),
        LONG,
    )
    .await;
    let message = condition(&obj, "Stalled").unwrap().2;
    assert!(
        message.contains("spec.routes[0].hosts[0]") && message.contains("www.elsewhere.org"),
        "{message}"
    );
    apply(
        &client,
        &app(
            &ns,
            "web",
            &net,
            json!({"routes": [{"hosts": [format!("www.{zone}")]}]}),
        ),
        false,
    )
    .await
    .unwrap();
    converge(&client, &ns, "web").await;
}

/// Issue 12 item 4: a requested load-balancer address that another Service holds (here one
/// of another load-balancer class, whose status the test writes as its controller would,
/// so MetalLB leaves it alone) or that lies outside the pool is refused before the app's
/// Service is written: Stalled, naming the field and the holder. Once the holder lets the
/// address go (its deletion wakes the app: nothing else about the app changed), the
/// Service is written asking for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_address_held_by_another_service_is_refused_before_the_service_is_written() {
    // An address of this run's own (the pool stays in the test's namespace, where MetalLB
    // does not look): a Service left by an earlier run may still request another one.
    let held = format!("198.18.1.{}", 10 + std::process::id() % 200);
    let (client, ns, net, _zone) = setup(
        "inuse",
        json!({"loadBalancer": {"pools": [{"name": "external", "addresses": ["198.18.1.0/24"]}]}}),
    )
    .await;
    let services = Api::<Service>::namespaced(client.clone(), &ns);
    let holder = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "legacy", "namespace": ns},
        "spec": {"type": "LoadBalancer", "loadBalancerClass": "example.com/other", "ports": [{"port": 25}]}});
    apply(&client, &holder, false).await.unwrap();
    services
        .patch_status(
            "legacy",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": held}]}}})),
        )
        .await
        .unwrap();
    let spec = |addr: &str| json!({"ports": [{"name": "smtp", "port": 25}], "tcp": [{"port": "smtp", "addresses": [addr]}]});
    let stalled = |reason: &'static str| {
        let api = apps(&client, &ns);
        async move {
            let obj = wait_condition(&api, "mail", "Stalled", "True", Some(reason), LONG).await;
            condition(&obj, "Stalled").unwrap().2
        }
    };
    apply(&client, &app(&ns, "mail", &net, spec(&held)), false)
        .await
        .unwrap();
    let message = stalled("AddressInUse").await;
    assert!(
        message.starts_with(&format!(
            "spec.tcp[0].addresses[0]: {held} is already assigned to"
        )) && message.contains(&format!("Service {ns}/legacy")),
        "{message}"
    );
    assert!(
        services.get_opt("mail-external").await.unwrap().is_none(),
        "refused before the Service is written"
    );
    apply(&client, &app(&ns, "mail", &net, spec("192.0.2.200")), false)
        .await
        .unwrap();
    let message = stalled("InvalidSpec").await;
    assert!(
        message.contains("spec.tcp[0].addresses[0]")
            && message.contains("192.0.2.200 is outside pool \"external\" (198.18.1.0/24)"),
        "{message}"
    );
    assert!(services.get_opt("mail-external").await.unwrap().is_none());

    apply(&client, &app(&ns, "mail", &net, spec(&held)), false)
        .await
        .unwrap();
    stalled("AddressInUse").await;
    services
        .delete("legacy", &DeleteParams::default())
        .await
        .unwrap();
    let svc = eventually(LONG, "mail-external written", || async {
        services.get_opt("mail-external").await.unwrap()
    })
    .await;
    assert_eq!(
        svc.annotations()
            .get("metallb.io/loadBalancerIPs")
            .map(String::as_str),
        Some(held.as_str()),
        "written asking for the address the holder let go"
    );
    wait_condition(&apps(&client, &ns), "mail", "Stalled", "False", None, LONG).await;
    // Its Service goes with it, so no later run finds the address requested.
    apps(&client, &ns)
        .delete("mail", &DeleteParams::default())
        .await
        .unwrap();
    let _ = gatehouse_api(&client, "ClusterNetwork", None)
        .delete(&net, &DeleteParams::default())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_dns_records_appear_once_the_address_is_assigned() {
    // The pool starts in the test's namespace, where MetalLB does not look: no address.
    let pool = format!("tcpdns-{}", std::process::id());
    let pools = |ns: &str| json!({"loadBalancer": {"namespace": ns, "pools": [{"name": pool, "addresses": ["192.0.2.0/28", "2001:db8:1::/120"]}]}});
    let (client, ns, net, zone) = setup("tcpdns", json!({})).await;
    gatehouse_api(&client, "ClusterNetwork", None)
        .patch(
            &net,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": pools(&ns)})),
        )
        .await
        .unwrap();
    let spec = json!({"ports": [{"name": "smtp", "port": 25}], "tcp": [{"port": "smtp", "pool": pool, "hosts": [format!("mx.{zone}")]}]});
    apply(&client, &app(&ns, "mail", &net, spec), false)
        .await
        .unwrap();
    let obj = wait_condition(
        &apps(&client, &ns),
        "mail",
        "AddressAssigned",
        "False",
        None,
        LONG,
    )
    .await;
    assert_eq!(condition(&obj, "Ready").unwrap().0, "False");
    let dns = dyn_api(
        &client,
        gatehouse_operator::render::ChildKind::DnsEndpoint,
        &ns,
    );
    assert!(
        !exists(&dns, "mail-external").await,
        "no record before an address exists"
    );
    // The pool moves to MetalLB's namespace: the real MetalLB assigns from it.
    gatehouse_api(&client, "ClusterNetwork", None)
        .patch(
            &net,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": pools("metallb-system")})),
        )
        .await
        .unwrap();
    let obj = converge(&client, &ns, "mail").await;
    let record = dns.get("mail-external").await.unwrap();
    let endpoints = record.data["spec"]["endpoints"].as_array().unwrap().clone();
    let types: Vec<&str> = endpoints
        .iter()
        .map(|e| e["recordType"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["A", "AAAA"], "dual stack gives A and AAAA");
    assert_eq!(obj.data["status"]["addresses"].as_array().unwrap().len(), 2);
    // The pool's addresses leave MetalLB's namespace with the network.
    gatehouse_api(&client, "ClusterNetwork", None)
        .delete(&net, &DeleteParams::default())
        .await
        .unwrap();
}

/// Seeds 002/004: a Helm chart made the Service already. The app routes to it, owns no
/// Service, never writes it, waits while it is missing and is Stalled, naming the field,
/// when a route names a port it lacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_routes_to_an_existing_service_and_never_writes_it() {
    let (client, ns, net, zone) = setup("existing", json!({})).await;
    let route = |port: &str| {
        json!({"service": {"name": "grafana"},
               "ports": [{"name": "http", "port": 80, "targetPort": 3000}, {"name": "metrics", "port": 9090}],
               "routes": [{"hosts": [format!("grafana.{zone}")], "tls": false, "redirectToHttps": false,
                           "paths": [{"path": "/", "port": port}]}]})
    };
    apply(&client, &app(&ns, "dashboards", &net, route("http")), false)
        .await
        .unwrap();
    // The chart has not run yet: the routes wait for its Service.
    let obj = wait_condition(
        &apps(&client, &ns),
        "dashboards",
        "Ready",
        "False",
        Some("ReferenceNotFound"),
        LONG,
    )
    .await;
    let (_, _, message) = condition(&obj, "Ready").unwrap();
    assert!(message.contains("spec.service.name"), "{message}");
    let chart = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "grafana", "namespace": ns, "labels": {"app.kubernetes.io/managed-by": "Helm"}},
        "spec": {"selector": {"app": "grafana"}, "ports": [{"name": "http", "port": 80, "targetPort": 3000}]},
    });
    let created = apply(&client, &chart, false).await.unwrap();
    converge(&client, &ns, "dashboards").await;
    let ing = Api::<Ingress>::namespaced(client.clone(), &ns)
        .get("dashboards-external")
        .await
        .unwrap();
    let backend = ing.spec.unwrap().rules.unwrap()[0]
        .http
        .as_ref()
        .unwrap()
        .paths[0]
        .backend
        .service
        .clone()
        .unwrap();
    assert_eq!(backend.name, "grafana");
    assert!(
        !exists(
            &dyn_api(&client, gatehouse_operator::render::ChildKind::Service, &ns),
            "dashboards"
        )
        .await,
        "the app owns no Service"
    );
    // A route to a port the chart's Service lacks: Stalled, naming the field.
    apply(
        &client,
        &app(&ns, "dashboards", &net, route("metrics")),
        false,
    )
    .await
    .unwrap();
    let obj = wait_condition(
        &apps(&client, &ns),
        "dashboards",
        "Stalled",
        "True",
        Some("InvalidSpec"),
        LONG,
    )
    .await;
    let (_, _, message) = condition(&obj, "Stalled").unwrap();
    assert!(
        message.contains("spec.routes[0].paths[0].port") && message.contains("\"metrics\""),
        "{message}"
    );
    let svc = Api::<Service>::namespaced(client.clone(), &ns)
        .get("grafana")
        .await
        .unwrap();
    assert_eq!(
        svc.resource_version(),
        created.resource_version(),
        "the chart's Service was written"
    );
}

/// The `app` label of the first ingress rule's first peer's pod selector.
fn first_peer_app_label(np: &NetworkPolicy) -> String {
    let from = np.spec.clone().unwrap().ingress.unwrap()[0]
        .from
        .clone()
        .unwrap();
    from[0]
        .pod_selector
        .as_ref()
        .unwrap()
        .match_labels
        .as_ref()
        .unwrap()["app"]
        .clone()
}

/// The `apiServer` peer's host blocks, as the live NetworkPolicy has them.
fn api_blocks(np: &NetworkPolicy) -> Vec<String> {
    np.spec
        .as_ref()
        .and_then(|s| s.egress.clone())
        .unwrap_or_default()
        .iter()
        .flat_map(|r| r.to.clone().unwrap_or_default())
        .filter_map(|p| p.ip_block.map(|b| b.cidr))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_peer_follows_the_kubernetes_endpoint_slices() {
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let (client, ns, net, _) = setup("apiserver", json!({})).await;
    let policy = json!({
        "apiVersion": gatehouse_api::API_VERSION, "kind": "EgressPolicy",
        "metadata": {"name": "ctl", "namespace": ns},
        "spec": {"network": net, "allowDNS": false, "rules": [{"to": [{"apiServer": {}}]}]},
    });
    apply(&client, &policy, false).await.unwrap();
    wait_condition(
        &gatehouse_api(&client, "EgressPolicy", Some(&ns)),
        "ctl",
        "Ready",
        "True",
        None,
        LONG,
    )
    .await;
    // What the API server itself keeps: its Service's cluster IP and its endpoints.
    let svc = Api::<Service>::namespaced(client.clone(), "default")
        .get("kubernetes")
        .await
        .unwrap();
    // (Without a node the test cluster runs no endpoint reconciler: then there are none.)
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), "default");
    let live = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=kubernetes"))
        .await
        .unwrap()
        .items;
    let mut want: Vec<String> = svc
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ips.clone())
        .unwrap_or_default()
        .into_iter()
        .chain(
            live.iter()
                .flat_map(|s| s.endpoints.iter())
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
                .flat_map(|e| e.addresses.clone()),
        )
        .map(|a| gatehouse_operator::render::ip::host_cidr(a.parse().unwrap()))
        .collect();
    want.sort();
    let policies = Api::<NetworkPolicy>::namespaced(client.clone(), &ns);
    let np = policies.get("ctl-egress").await.unwrap();
    let mut got = api_blocks(&np);
    got.sort();
    assert_eq!(got, want, "the Service's and the endpoints' addresses");
    let mut ports: Vec<i32> = np.spec.unwrap().egress.unwrap()[0]
        .ports
        .clone()
        .unwrap()
        .iter()
        .filter_map(|p| match p.port {
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => Some(n),
            _ => None,
        })
        .collect();
    ports.sort();
    let mut want_ports: Vec<i32> = svc
        .spec
        .unwrap()
        .ports
        .unwrap()
        .iter()
        .map(|p| p.port)
        .collect();
    want_ports.extend(
        live.iter()
            .flat_map(|s| s.ports.iter().flatten())
            .filter_map(|p| p.port),
    );
    want_ports.sort();
    want_ports.dedup();
    assert_eq!(
        ports, want_ports,
        "a rule without ports gets the API server's"
    );

    // A control-plane address appears (a second slice of the kubernetes Service) and goes:
    // the policy follows without being touched.
    let extra = format!("kubernetes-gatehouse-test-{}", std::process::id());
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": extra, "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["192.0.2.50"], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
    });
    apply(&client, &slice, false).await.unwrap();
    eventually(
        LONG,
        "the new control-plane address in the policy",
        || async {
            let np = policies.get("ctl-egress").await.ok()?;
            api_blocks(&np)
                .contains(&"192.0.2.50/32".to_string())
                .then_some(())
        },
    )
    .await;
    slices
        .delete(&extra, &DeleteParams::default())
        .await
        .unwrap();
    eventually(LONG, "the removed address gone from the policy", || async {
        let np = policies.get("ctl-egress").await.ok()?;
        (!api_blocks(&np).contains(&"192.0.2.50/32".to_string())).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_follows_what_the_objects_state() {
    let label = format!("deny-{}", std::process::id());
    let (client, ns, net, zone) = setup(
        "isolation",
        json!({"policy": {"defaultDeny": {"namespaceSelector": {"matchLabels": {label.as_str(): "true"}}, "egress": false}}}),
    )
    .await;
    let web = app(
        &ns,
        "web",
        &net,
        json!({"isolation": "Auto", "routes": [{"hosts": [format!("web.{zone}")], "tls": false}]}),
    );
    apply(&client, &web, false).await.unwrap();
    converge(&client, &ns, "web").await;
    let policies = Api::<NetworkPolicy>::namespaced(client.clone(), &ns);
    assert!(
        policies.get_opt("web-ingress").await.unwrap().is_none(),
        "outside default deny an app with routes isolates nothing"
    );
    // The platform puts the namespace under default deny: the baseline and the app's
    // policy (opening its route port) both appear, without touching the app.
    let namespaces = Api::<Namespace>::all(client.clone());
    let label_patch = |v: Value| Patch::Merge(json!({"metadata": {"labels": {label.as_str(): v}}}));
    namespaces
        .patch(&ns, &PatchParams::default(), &label_patch(json!("true")))
        .await
        .unwrap();
    eventually(
        LONG,
        "web-ingress once the namespace is under default deny",
        || async {
            let np = policies.get_opt("web-ingress").await.ok()??;
            let rules = np.spec?.ingress?;
            (rules.len() == 1).then_some(())
        },
    )
    .await;
    eventually(LONG, "the baseline in the namespace", || async {
        policies
            .get_opt("gatehouse-default-deny")
            .await
            .ok()?
            .map(|_| ())
    })
    .await;
    // Out from under it again: both go.
    namespaces
        .patch(&ns, &PatchParams::default(), &label_patch(Value::Null))
        .await
        .unwrap();
    eventually(LONG, "web-ingress gone with the default deny", || async {
        policies
            .get_opt("web-ingress")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    // allowFrom asks for isolation wherever the app is.
    let mut db = app(
        &ns,
        "db",
        &net,
        json!({"isolation": "Auto", "allowFrom": [{"podSelector": {"matchLabels": {"app": "web"}}}]}),
    );
    db["spec"]["ports"] = json!([{"name": "sql", "port": 5432}]);
    apply(&client, &db, false).await.unwrap();
    converge(&client, &ns, "db").await;
    let np = policies.get("db-ingress").await.unwrap();
    assert_eq!(first_peer_app_label(&np), "web");
}

/// The platform's Gateway API objects in `ns`, written under the platform's own field
/// manager (as its GitOps tool would, by server-side apply).
async fn platform_apply(client: &Client, ns: &str, obj: &Value) {
    let ar = gatehouse_operator::reconcile::stores::gateway_resource();
    Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar)
        .patch(
            obj["metadata"]["name"].as_str().unwrap(),
            &PatchParams::apply("platform").force(),
            &Patch::Apply(obj),
        )
        .await
        .unwrap();
}

fn gateway_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    let ar = gatehouse_operator::reconcile::stores::gateway_resource();
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// The Gateway's listeners: (name, hostname) in order.
async fn listeners_of(client: &Client, ns: &str) -> Vec<(String, String)> {
    let gw = gateway_api(client, ns).get("public").await.unwrap();
    gw.data["spec"]["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            (
                l["name"].as_str().unwrap_or_default().to_string(),
                l["hostname"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn wait_listeners(client: &Client, ns: &str, want: &[(String, String)], what: &str) {
    eventually(LONG, what, || async {
        (listeners_of(client, ns).await == want).then_some(())
    })
    .await;
}

/// A Gateway tier: the app's routes become HTTPRoutes, its TLS host a listener of its own in
/// the platform's Gateway (another namespace: a ReferenceGrant lets it read the app's
/// Secret), added under the app's field manager. The platform re-applying its Gateway keeps
/// the app's listener; someone replacing the whole list gets it put back; a host change moves
/// it; the app's deletion takes it out and leaves the platform's listener alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_tier_gets_routes_and_the_apps_own_listeners_in_the_platforms_gateway() {
    use gatehouse_operator::render::ChildKind;
    let (client, ns, _, zone) = setup("gwapp", json!({})).await;
    let gw_ns = namespace(&client, "gwsys", json!({})).await;
    let gateway = json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "public", "namespace": gw_ns},
        "spec": {"gatewayClassName": "no-controller-here", "listeners": [
            {"name": "web", "port": 80, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}},
        ]},
    });
    platform_apply(&client, &gw_ns, &gateway).await;
    // A network of its own whose external tier is the Gateway (no className).
    let net = format!("gwnet-{}", std::process::id());
    apply(&client, &json!({"apiVersion": gatehouse_api::API_VERSION, "kind": "ClusterNetwork", "metadata": {"name": net}, "spec": {
        "ipFamilies": ["IPv4"],
        "ingress": {"external": {"gateway": {"name": "public", "namespace": gw_ns, "httpListener": "web"},
                                 "controller": "Traefik", "addresses": ["192.0.2.1"]}},
        "tls": {"issuerRef": {"name": "letsencrypt"}},
        "dns": {"external": {"zone": zone}},
    }}), false)
    .await
    .unwrap();
    let (a, b) = (format!("a.{zone}"), format!("b.{zone}"));
    let spec = json!({"routes": [{"hosts": [a]}, {"hosts": [b]}]});
    apply(&client, &app(&ns, "web", &net, spec), false)
        .await
        .unwrap();

    let routes = dyn_api(&client, ChildKind::HttpRoute, &ns);
    for name in ["web-external", "web-external-1", "web-external-redirect"] {
        wait_exists(&routes, name, true).await;
    }
    assert!(
        !exists(&dyn_api(&client, ChildKind::Ingress, &ns), "web-external").await,
        "a Gateway tier gets no Ingress"
    );
    let listener = format!("{ns}.web.0");
    let second = format!("{ns}.web.1");
    let want = vec![
        ("web".to_string(), String::new()),
        (listener.clone(), a.clone()),
        (second.clone(), b.clone()),
    ];
    wait_listeners(&client, &gw_ns, &want, "the app's listener in the Gateway").await;
    let tls_route = routes.get("web-external").await.unwrap();
    assert_eq!(
        tls_route.data["spec"]["parentRefs"],
        json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public", "namespace": gw_ns, "sectionName": listener}])
    );
    let other = routes.get("web-external-1").await.unwrap();
    assert_eq!(
        other.data["spec"]["parentRefs"][0]["sectionName"],
        json!(second)
    );
    assert_eq!(other.data["spec"]["hostnames"], json!([b]));
    let redirect = routes.get("web-external-redirect").await.unwrap();
    assert_eq!(redirect.data["spec"]["parentRefs"][0]["sectionName"], "web");
    assert_eq!(redirect.data["spec"]["hostnames"], json!([a, b]));
    let grant = dyn_api(&client, ChildKind::ReferenceGrant, &ns)
        .get("web-external-gateway")
        .await
        .unwrap();
    assert_eq!(
        grant.data["spec"]["to"],
        json!([{"group": "", "kind": "Secret", "name": "web-external-tls"}])
    );
    let live = gateway_api(&client, &gw_ns).get("public").await.unwrap();
    let managers: Vec<String> = live
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.contains(&format!("gatehouse/{ns}/web")) && managers.contains(&"platform".into()),
        "{managers:?}"
    );
    let ours = &live.data["spec"]["listeners"][1];
    assert_eq!(ours["tls"]["certificateRefs"][0]["namespace"], json!(ns));
    assert_eq!(
        ours["allowedRoutes"]["namespaces"]["selector"]["matchLabels"]["kubernetes.io/metadata.name"],
        json!(ns)
    );

    // The platform re-applies its Gateway as it was: the app's listener is not its field.
    platform_apply(&client, &gw_ns, &gateway).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(listeners_of(&client, &gw_ns).await, want);

    // Someone replaces the whole list (a merge patch, as client-side apply does): the
    // Gateway watch brings the app back, which puts its listener back.
    gateway_api(&client, &gw_ns)
        .patch(
            "public",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"listeners": gateway["spec"]["listeners"]}})),
        )
        .await
        .unwrap();
    wait_listeners(&client, &gw_ns, &want, "the app's listener put back").await;

    // The TLS host changes: the same listener carries the new one.
    let c = format!("c.{zone}");
    let spec = json!({"routes": [{"hosts": [c]}, {"hosts": [b]}]});
    apply(&client, &app(&ns, "web", &net, spec), false)
        .await
        .unwrap();
    let moved = vec![
        ("web".to_string(), String::new()),
        (listener.clone(), c.clone()),
        (second.clone(), b.clone()),
    ];
    wait_listeners(&client, &gw_ns, &moved, "the listener on the new host").await;

    // Deleted: its listener goes, the platform's stays, and its routes go with it.
    apps(&client, &ns)
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    let only_platform = vec![("web".to_string(), String::new())];
    wait_listeners(
        &client,
        &gw_ns,
        &only_platform,
        "the app's listener removed",
    )
    .await;
    eventually(LONG, "the app to be gone", || async {
        apps(&client, &ns)
            .get_opt("web")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let _ = gatehouse_api(&client, "ClusterNetwork", None)
        .delete(&net, &DeleteParams::default())
        .await;
}

/// The line of `kubectl describe`'s Events table with this type and reason (the columns
/// are padded to the widest entry).
fn event_line<'a>(described: &'a str, type_: &str, reason: &str) -> Option<&'a str> {
    let events = described.split("\nEvents:").nth(1)?;
    events.lines().find(|l| {
        let mut words = l.split_whitespace();
        words.next() == Some(type_) && words.next() == Some(reason)
    })
}

/// The Events of one object with `reason`, each with how often it happened (an Event the
/// recorder repeats is one object whose series counts the repeats).
async fn events_of(client: &Client, ns: &str, name: &str, reason: &str) -> Vec<(String, i32)> {
    let list = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    list.items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .map(|e| {
            let count = e.series.as_ref().map(|s| s.count).unwrap_or(1);
            (e.note.unwrap_or_default(), count)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_shows_tiers_urls_and_children_wide_and_describe_shows_what_was_written_and_pruned()
{
    let (client, ns, net, zone) = setup(
        "kubectl",
        json!({"ingress": {"internal": {"className": "nginx-internal", "namespace": "ingress-nginx", "podSelector": {"matchLabels": {"app": "ingress-nginx-internal"}}, "addresses": ["192.0.2.2"]}}}),
    )
    .await;
    let host = format!("wide.{zone}");
    let both = app(
        &ns,
        "wide",
        &net,
        json!({"dns": {"enabled": false}, "routes": [{"hosts": [host], "exposure": "Both", "tls": false, "redirectToHttps": false}]}),
    );
    let started = Instant::now();
    apply(&client, &both, false).await.unwrap();
    let obj = wait_condition(&apps(&client, &ns), "wide", "Ready", "True", None, LONG).await;
    let status = &obj.data["status"];
    let resources = status["resources"].as_array().unwrap();
    assert_eq!(status["children"].as_i64(), Some(resources.len() as i64));
    assert_eq!(
        status["readyChildren"].as_i64(),
        Some(resources.len() as i64)
    );
    assert_eq!(status["wide"]["tiers"], json!("External,Internal"));

    // -o wide: the default columns, then the tiers, URLs and child counts as the status has them.
    let wide = kubectl(&["get", "xapp", "wide", "-n", &ns, "-o", "wide"]);
    let mut lines = wide.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "HOSTS",
            "ADDRESS",
            "READY",
            "REASON",
            "AGE",
            "TIERS",
            "URLS",
            "CHILDREN",
            "READY-CHILDREN"
        ],
        "{wide}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let urls: Vec<&str> = status["urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    assert!(!urls.is_empty(), "{status}");
    let n = resources.len().to_string();
    assert_eq!(
        &row[row.len() - 4..],
        ["External,Internal", &urls.join(","), &n, &n],
        "{wide}"
    );
    // Without -o wide the extra columns stay out of the way.
    let plain = kubectl(&["get", "xapp", "wide", "-n", &ns]);
    assert!(
        !plain.contains("TIERS") && plain.contains("READY"),
        "{plain}"
    );

    // describe: a Normal Applied Event naming the children written.
    eventually(LONG, "an Applied event", || async {
        let applied = events_of(&client, &ns, "wide", "Applied").await;
        applied
            .iter()
            .any(|(note, _)| note.contains(&format!("Ingress {ns}/wide-internal")))
            .then_some(())
    })
    .await;
    let described = kubectl(&["describe", "xapp", "wide", "-n", &ns]);
    assert!(
        event_line(&described, "Normal", "Applied").is_some_and(|l| l.contains("children: ")),
        "{described}"
    );

    // Serving on one tier only prunes the other tier's Ingress: a Pruned Event names it.
    let mut external = both.clone();
    external["spec"]["routes"][0]["exposure"] = json!("External");
    apply(&client, &external, false).await.unwrap();
    eventually(
        LONG,
        "a Pruned event naming the internal Ingress",
        || async {
            let pruned = events_of(&client, &ns, "wide", "Pruned").await;
            pruned
                .iter()
                .any(|(note, _)| note == &format!("deleted 1 child: Ingress {ns}/wide-internal"))
                .then_some(())
        },
    )
    .await;
    let obj = wait_condition(&apps(&client, &ns), "wide", "Ready", "True", None, LONG).await;
    assert_eq!(obj.data["status"]["wide"]["tiers"], json!("External"));

    // Rate limit: many changes in a row publish at most the object's burst (3) in the minute.
    for port in 81..87 {
        let mut changed = external.clone();
        changed["spec"]["ports"][0]["port"] = json!(port);
        apply(&client, &changed, false).await.unwrap();
        wait_condition(&apps(&client, &ns), "wide", "Ready", "True", None, LONG).await;
    }
    let mut published = 0;
    for reason in ["Applied", "Pruned"] {
        published += events_of(&client, &ns, "wide", reason)
            .await
            .iter()
            .map(|(_, count)| count)
            .sum::<i32>();
    }
    // The burst, plus one a minute since the first (the bucket refills while we run).
    let refilled = (started.elapsed().as_secs() / 60) as i32;
    assert!(
        (3..=3 + refilled).contains(&published),
        "{published} Applied + Pruned Events of one object in {:?} after 8 or more changes",
        started.elapsed()
    );

    // A Stalled reason gets a Warning Event with the condition's message.
    let mut bad = external.clone();
    bad["spec"]["network"] = json!(format!("{net}-missing"));
    apply(&client, &bad, false).await.unwrap();
    wait_condition(
        &apps(&client, &ns),
        "wide",
        "Stalled",
        "True",
        Some("NetworkNotFound"),
        LONG,
    )
    .await;
    eventually(LONG, "a NetworkNotFound warning", || async {
        let described = kubectl(&["describe", "xapp", "wide", "-n", &ns]);
        event_line(&described, "Warning", "NetworkNotFound").map(|_| ())
    })
    .await;
}
