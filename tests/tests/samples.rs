//! Every sample set converges on the real API server with exactly the expected children,
//! Ready because the real controllers made it so: cert-manager issued each certificate (read
//! back with openssl, chained to the stack's CA), MetalLB assigned each address, external-dns
//! published each record into the tier's BIND server (read back with dig). Only Hetzner's
//! cloud load balancer and Cilium's LB-IPAM are played; a set with Gateway tiers is served by
//! the real Traefik of each tier (its Gateway provider reports listeners and routes). The operator then keeps its hands
//! still: an idle window and a restart cause zero mutating requests (counted in the
//! operator's own client), and a new ExposedApp without DNS records costs its children and
//! one status write. Sets run one after another: they reuse names.

use std::collections::BTreeSet;
use std::time::Duration;

use gatehouse_operator::reconcile::plan::{contains, first_difference};
use gatehouse_operator::render::ChildKind;
use gatehouse_tests::audit;
use gatehouse_tests::sets::{
    apply_set, converge, delete_set, expected_children, live_children, namespaces_of, owners,
    played_load_balancer,
};
use gatehouse_tests::*;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

type Key = (ChildKind, Option<String>, String);

struct RealCheck {
    summary: String,
    /// Every (tier, host, record type) published.
    records: Vec<(String, String, String)>,
}

/// Checks what the real controllers made of the live children: every Certificate's Secret
/// holds a certificate for exactly its dnsNames that chains to the stack's CA; every record
/// of every DNSEndpoint is answered, with exactly its targets, by its tier's BIND server;
/// every LoadBalancer Service has its address (already part of Ready).
async fn check_real_controllers(client: &Client, set: &str, live: &[(Key, Value)]) -> RealCheck {
    let mut certificates = 0;
    let mut records = Vec::new();
    for ((kind, ns, _), obj) in live {
        let ns = ns.clone().unwrap_or_default();
        match kind {
            ChildKind::Certificate => {
                let secret = obj["spec"]["secretName"].as_str().unwrap();
                let mut want: Vec<String> = obj["spec"]["dnsNames"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| h.as_str().unwrap().to_string())
                    .collect();
                want.sort();
                let cert = issued_certificate(client, &ns, secret)
                    .await
                    .unwrap_or_else(|e| panic!("{set}: {ns}/{secret}: {e}"));
                assert_eq!(
                    cert.dns_names, want,
                    "{set}: {ns}/{secret} is not for exactly the TLS hosts"
                );
                certificates += 1;
            }
            ChildKind::DnsEndpoint => {
                let tier = obj["metadata"]["labels"]["gatehouse.dev/dns-tier"]
                    .as_str()
                    .unwrap()
                    .to_string();
                for e in obj["spec"]["endpoints"].as_array().unwrap() {
                    let host = e["dnsName"].as_str().unwrap().to_string();
                    let rtype = e["recordType"].as_str().unwrap().to_string();
                    let targets: Vec<String> = e["targets"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t.as_str().unwrap().to_string())
                        .collect();
                    wait_dns(&tier, &host, &rtype, &targets, Duration::from_secs(30)).await;
                    records.push((tier.clone(), host, rtype));
                }
            }
            _ => {}
        }
    }
    let per_tier = |t: &str| records.iter().filter(|r| r.0 == t).count();
    RealCheck {
        summary: format!(
            "{certificates} certificates verified, {} external and {} internal records answered by BIND",
            per_tier("external"),
            per_tier("internal")
        ),
        records,
    }
}

/// Every LoadBalancer Service of the set (Gatehouse's and the set's own ingress controller
/// Services) has an address: the one it requests, else one from its pool, as MetalLB (or the
/// played load balancer) assigned it.
async fn load_balancer_addresses(client: &Client, namespaces: &[String], played: bool) -> String {
    let mut out = Vec::new();
    for ns in namespaces {
        for s in Api::<Service>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
        {
            let spec = s.spec.clone().unwrap_or_default();
            if spec.type_.as_deref() != Some("LoadBalancer") {
                continue;
            }
            let ips: Vec<String> = s
                .status
                .as_ref()
                .and_then(|st| st.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .map(|i| i.iter().filter_map(|x| x.ip.clone()).collect())
                .unwrap_or_default();
            let annotations = s.annotations();
            if let Some(requested) = annotations
                .get("metallb.io/loadBalancerIPs")
                .or(annotations.get("lbipam.cilium.io/ips"))
            {
                let mut want: Vec<String> =
                    requested.split(',').map(|x| x.trim().to_string()).collect();
                want.sort();
                let mut got = ips.clone();
                got.sort();
                assert_eq!(got, want, "{ns}/{}: requested address", s.name_any());
            }
            assert!(!ips.is_empty(), "{ns}/{} has no address", s.name_any());
            out.push(format!("{ns}/{}={}", s.name_any(), ips.join("+")));
        }
    }
    format!(
        "; load balancers ({}): {}",
        if played { "PLAYED" } else { "real MetalLB" },
        out.join(" ")
    )
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
        // MetalLB runs here; Hetzner's and Cilium's load balancers cannot, so they are
        // played, with MetalLB stopped (it would claim their Services and clear them).
        let played = played_load_balancer(&objects);
        let _metallb_paused = played.as_ref().map(|provider| {
            println!("{name}: {provider} load balancer PLAYED; MetalLB stopped for this set");
            pause("metallb")
        });
        apply_set(&client, &name, &objects).await;
        let namespaces = namespaces_of(&objects);
        // Gateway tiers: the real Traefik of each tier reconciles the set's Gateways (the
        // apps' listeners and routes are Ready only when it reports them so).
        let gateway_classes = gatehouse_tests::datapath::gateway_classes(&objects);
        for c in &gateway_classes {
            apply(&client, c, false).await.unwrap();
        }
        if !gateway_classes.is_empty() {
            gatehouse_tests::datapath::start_traefik(&objects);
        }

        // Converge on the real controllers (playing only the load balancers above).
        let converged = converge(&client, &name, &owners, &namespaces, played.is_some()).await;

        // Exactly the expected children, each holding what render says.
        let expected = expected_children(&client, std::slice::from_ref(&set)).await;
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

        // What the real controllers did: each certificate issued for exactly its hosts,
        // each record answered by its tier's BIND server.
        let mut real = check_real_controllers(&client, &name, &live).await;
        real.summary += &load_balancer_addresses(&client, &namespaces, played.is_some()).await;

        // Idle: nothing changes, nothing is written.
        // Idle: every object reconciled once more (touched with an annotation) writes
        // nothing.
        settle(&op, Duration::from_secs(2), Duration::from_secs(30)).await;
        let gatehouse_objects: Vec<Value> = objects
            .iter()
            .filter(|o| o["apiVersion"] == gatehouse_api::API_VERSION)
            .cloned()
            .collect();
        let mark = audit::AuditLog::shared().mark();
        let before =
            touch_and_wait(&client, &op, &gatehouse_objects, Duration::from_secs(60)).await;
        let idle = settle(&op, Duration::from_secs(2), Duration::from_secs(30)).await - before;
        assert_eq!(
            idle,
            0,
            "{name}: {idle} writes in an idle window: {:?}",
            op.metrics.last_writes(idle as usize)
        );
        // The API server's count, independent of the operator's own counter.
        let audited = op.audited_writes(mark);
        assert!(
            audited.is_empty(),
            "{name}: the audit log has {} writes of the idle operator: {:?}",
            audited.len(),
            audited.iter().map(audit::line).collect::<Vec<_>>()
        );

        // Restart: a new operator reads everything and writes nothing.
        op.stop();
        let mark = audit::AuditLog::shared().mark();
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
            restart_writes,
            0,
            "{name}: the restarted operator wrote {restart_writes} times: {:?}",
            op.metrics.last_writes(restart_writes as usize)
        );
        let audited = op.audited_writes(mark);
        assert!(
            audited.is_empty(),
            "{name}: the audit log has {} writes of the restarted operator: {:?}",
            audited.len(),
            audited.iter().map(audit::line).collect::<Vec<_>>()
        );

        report.push(format!(
            "{name}: {} objects, {} children, Ready in {:.1}s ({}), idle writes {idle}, restart writes {restart_writes}",
            owners.len(),
            want.len(),
            converged.as_secs_f64(),
            real.summary
        ));
        delete_set(&client, &objects).await;
        gatehouse_tests::datapath::delete_gateway_classes(&client, &gateway_classes).await;
        // external-dns removed every record of the set from BIND.
        for (tier, host, rtype) in &real.records {
            wait_dns(tier, host, rtype, &[], Duration::from_secs(30)).await;
        }
    }
    report.push(new_app_cost(&client, &op).await);
    println!("{}", report.join("\n"));
    op.stop();
}

/// A new ExposedApp without DNS records costs its children plus at most one status write
/// (no finalizer: nothing needs an ordered teardown). Runs with the same operator (two operators on one cluster would both write).
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
    let mark = audit::AuditLog::shared().mark();
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
    // The API server logged exactly as many (its count, not ours).
    let audited = op.audited_writes(mark);
    assert_eq!(
        audited.len() as u64,
        writes,
        "the operator counted {writes} writes, the audit log {}: {:?}",
        audited.len(),
        audited.iter().map(audit::line).collect::<Vec<_>>()
    );
    // The one Event (Applied, naming the children) is a write too, in the app's namespace.
    let event_writes = what
        .iter()
        .filter(|w| w.contains(&format!("/namespaces/{ns}/events")))
        .count() as u64;
    let app_writes = what
        .iter()
        .filter(|w| w.contains(&format!("/namespaces/{ns}/")))
        .count() as u64
        - event_writes;
    // The network's status counts its apps (status.exposedApps): that write is the
    // network's, not the app's, and is reported separately.
    let network_writes = what
        .iter()
        .filter(|w| w.contains(&format!("/clusternetworks/{network}/status")))
        .count() as u64;
    assert_eq!(
        app_writes + network_writes + event_writes,
        writes,
        "unexpected writes: {what:#?}"
    );
    assert!(network_writes <= 1, "{what:#?}");
    assert_eq!(
        event_writes, 1,
        "one Applied Event for the new app: {what:#?}"
    );
    // No route or tcp host, so no DNS records and no finalizer: children + one status write.
    assert!(
        app_writes <= children + 1,
        "{app_writes} writes for {children} children (budget: children + status; an app without DNS records needs no finalizer): {what:#?}"
    );
    assert!(writes >= children, "the children must have been written");
    let _ = Api::<Namespace>::all(client.clone())
        .delete(&ns, &DeleteParams::default())
        .await;
    let _ = gatehouse_api(&client, "ClusterNetwork", None)
        .delete(&network, &DeleteParams::default())
        .await;
    format!(
        "new ExposedApp with {children} children: {app_writes} writes to the app and its children, {event_writes} Event, {network_writes} to its network's status: {what:?}"
    )
}
