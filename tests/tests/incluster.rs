//! The operator as users run it: its own image, installed by its own Helm chart into a
//! namespace that enforces Pod Security "restricted", on the real node. The kubelet runs it
//! (its probes pass), it reconciles a sample set whose workloads run as real pods beside it,
//! and the API server's audit log shows that RBAC refused none of its requests and that the
//! chart grants nothing the operator does not use.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use gatehouse_tests::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const NAMESPACE: &str = "gatehouse-chart";
const RELEASE: &str = "gatehouse";
const SET: &str = "metallb-oauth2-openwrt";

fn helm(args: &[&str]) -> Result<String, String> {
    let bin = std::env::var("HELM_BIN").expect("HELM_BIN is set by `make test` (it builds helm)");
    let out = Command::new(&bin)
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig_path())
        .output()
        .map_err(|e| format!("{bin}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

/// When dropped, also when the test fails: deletes the sample set (its namespaces, while the
/// operator still runs: the apps' DNS-first finalizer needs it) and then uninstalls the
/// release: a stray operator would write into every later test's objects.
struct Release(Vec<String>);

fn kubectl() -> Command {
    let mut c = Command::new("kubectl");
    c.arg("--kubeconfig").arg(kubeconfig_path());
    c
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = kubectl()
            .args([
                "delete",
                "clusternetwork",
                "default",
                "--ignore-not-found",
                "--wait=false",
            ])
            .output();
        if !self.0.is_empty() {
            let _ = kubectl()
                .args([
                    "delete",
                    "namespace",
                    "--ignore-not-found",
                    "--timeout=120s",
                ])
                .args(&self.0)
                .output();
        }
        let _ = helm(&[
            "uninstall",
            RELEASE,
            "-n",
            NAMESPACE,
            "--wait",
            "--timeout",
            "60s",
        ]);
        let _ = kubectl()
            .args([
                "delete",
                "mutatingwebhookconfiguration",
                "gatehouse",
                "--ignore-not-found",
            ])
            .output();
    }
}

/// The operator image `make image` built (and `make test` imported into the node).
fn operator_image() -> (String, String) {
    let image = std::env::var("GATEHOUSE_IMAGE")
        .expect("GATEHOUSE_IMAGE is set by `make test` (make image builds it)");
    let (repo, tag) = image.rsplit_once(':').expect("GATEHOUSE_IMAGE is repo:tag");
    (repo.to_string(), tag.to_string())
}

async fn wait_pods_ready(client: &Client, ns: &str, selector: &str, want: usize) -> Vec<Pod> {
    eventually(
        Duration::from_secs(180),
        &format!("{want} Ready pods {selector} in {ns}"),
        || {
            let api = Api::<Pod>::namespaced(client.clone(), ns);
            let lp = ListParams::default().labels(selector);
            async move {
                let pods = api.list(&lp).await.ok()?.items;
                let ready = |p: &Pod| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                };
                (pods.len() == want && pods.iter().all(ready)).then_some(pods)
            }
        },
    )
    .await
}

/// Every request of `user` the shared cluster's audit log recorded after `mark`.
fn audit_events(user: &str, mark: u64) -> Vec<Value> {
    gatehouse_tests::audit::AuditLog::shared()
        .requests_since(mark)
        .into_iter()
        .filter(|e| e["user"]["username"] == user)
        .collect()
}

/// (apiGroup, resource[/subresource], verb) of an audit event.
fn permission(e: &Value) -> (String, String, String) {
    let r = &e["objectRef"];
    let mut resource = r["resource"].as_str().unwrap_or_default().to_string();
    if let Some(sub) = r["subresource"].as_str() {
        resource = format!("{resource}/{sub}");
    }
    (
        r["apiGroup"].as_str().unwrap_or_default().to_string(),
        resource,
        e["verb"].as_str().unwrap_or_default().to_string(),
    )
}

/// What the chart's ClusterRoles and Roles grant, as (apiGroup, resource, verb).
fn granted() -> BTreeSet<(String, String, String)> {
    let rendered = helm(&[
        "template",
        RELEASE,
        &root().join("charts/gatehouse").to_string_lossy(),
        "--namespace",
        NAMESPACE,
    ])
    .unwrap();
    let mut out = BTreeSet::new();
    for doc in yaml_docs(&rendered)
        .into_iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
    {
        for rule in doc["rules"].as_array().unwrap() {
            for g in rule["apiGroups"].as_array().unwrap() {
                for r in rule["resources"].as_array().unwrap() {
                    for v in rule["verbs"].as_array().unwrap() {
                        out.insert((
                            g.as_str().unwrap().to_string(),
                            r.as_str().unwrap().to_string(),
                            v.as_str().unwrap().to_string(),
                        ));
                    }
                }
            }
        }
    }
    out
}

/// Rules the operator has a use for that this test's path does not take, each as
/// "apiGroup resource verb: the code path that uses it" ("core" for the core group).
/// Anything else granted and unused fails the test.
const USED_ELSEWHERE: &[&str] = &[
    "core services delete: prune of a LoadBalancer Service whose tcp[] port was removed",
    "networking.k8s.io ingresses get: a child of ours that another field manager also wrote (metadata-only cache): its content is read to compare",
    "networking.k8s.io ingresses delete: prune when a tier's last route is removed",
    "networking.k8s.io networkpolicies get: a child of ours that another field manager also wrote (metadata-only cache): its content is read to compare",
    "networking.k8s.io networkpolicies create: isolated apps and default deny (this set isolates nothing: no namespace under default deny, no allowFrom)",
    "networking.k8s.io networkpolicies patch: isolated apps and default deny",
    "networking.k8s.io networkpolicies delete: prune when allowFrom, isolation or defaultDeny goes",
    "cert-manager.io certificates delete: prune when the last TLS route goes",
    "externaldns.k8s.io dnsendpoints delete: DNS-first teardown of a deleted app",
    "k8s.cni.cncf.io network-attachment-definitions get: a child of ours that another field manager also wrote (metadata-only cache): its content is read to compare",
    "k8s.cni.cncf.io network-attachment-definitions create: samples with attachments (home-multus-traefik)",
    "k8s.cni.cncf.io network-attachment-definitions patch: samples with attachments",
    "k8s.cni.cncf.io network-attachment-definitions delete: prune of an attachment",
    "k8s.cni.cncf.io multi-networkpolicies get: a child of ours that another field manager also wrote (metadata-only cache): its content is read to compare",
    "k8s.cni.cncf.io multi-networkpolicies create: policy.multiNetworkPolicy on a network with attachments (home-multus-traefik)",
    "k8s.cni.cncf.io multi-networkpolicies patch: policy.multiNetworkPolicy on a network with attachments",
    "k8s.cni.cncf.io multi-networkpolicies delete: prune when an attachment, its allowFrom or the opt-in goes",
    "metallb.io ipaddresspools get: a child of ours that another field manager also wrote (metadata-only cache): its content is read to compare",
    "metallb.io ipaddresspools delete: prune of a removed pool",
    "metallb.io l2advertisements get: a child of ours that another field manager also wrote (metadata-only cache): its content is read to compare",
    "metallb.io l2advertisements delete: prune of a removed pool",
    "metallb.io bgpadvertisements get: a child of ours that another field manager also wrote (metadata-only cache): its content is read to compare",
    "metallb.io bgpadvertisements create: BGP pools (enterprise-opnsense-calico)",
    "metallb.io bgpadvertisements patch: BGP pools",
    "metallb.io bgpadvertisements delete: prune of a removed BGP pool",
    "metallb.io bgppeers get: a child of ours that another field manager also wrote (metadata-only cache): its content is read to compare",
    "metallb.io bgppeers create: loadBalancer.bgp under MetalLB (enterprise-opnsense-calico)",
    "metallb.io bgppeers patch: loadBalancer.bgp under MetalLB",
    "metallb.io bgppeers delete: prune of a removed BGP peer",
    "cilium.io ciliumbgpclusterconfigs get: a child of ours that another field manager also wrote (metadata-only cache): its content is read to compare",
    "cilium.io ciliumbgpclusterconfigs create: loadBalancer.bgp under Cilium (cilium-zero-trust)",
    "cilium.io ciliumbgpclusterconfigs patch: loadBalancer.bgp under Cilium",
    "cilium.io ciliumbgpclusterconfigs delete: prune when loadBalancer.bgp goes",
    "cilium.io ciliumbgppeerconfigs get: a child of ours that another field manager also wrote (metadata-only cache): its content is read to compare",
    "cilium.io ciliumbgppeerconfigs create: loadBalancer.bgp under Cilium (cilium-zero-trust)",
    "cilium.io ciliumbgppeerconfigs patch: loadBalancer.bgp under Cilium",
    "cilium.io ciliumbgppeerconfigs delete: prune of a removed Cilium BGP peer",
    "cilium.io ciliumbgpadvertisements get: a child of ours that another field manager also wrote (metadata-only cache): its content is read to compare",
    "cilium.io ciliumbgpadvertisements create: BGP pools under Cilium (cilium-zero-trust)",
    "cilium.io ciliumbgpadvertisements patch: BGP pools under Cilium",
    "cilium.io ciliumbgpadvertisements delete: prune when the last BGP pool goes",
    "cilium.io ciliumnetworkpolicies get: a child of ours that another field manager also wrote (metadata-only cache): its content is read to compare",
    "cilium.io ciliumnetworkpolicies create: policy.engine Cilium (cilium-zero-trust)",
    "cilium.io ciliumnetworkpolicies patch: policy.engine Cilium",
    "cilium.io ciliumnetworkpolicies delete: prune under policy.engine Cilium",
    "cilium.io ciliumloadbalancerippools get: a child of ours that another field manager also wrote (metadata-only cache): its content is read to compare",
    "cilium.io ciliumloadbalancerippools create: loadBalancer.provider Cilium",
    "cilium.io ciliumloadbalancerippools patch: loadBalancer.provider Cilium",
    "cilium.io ciliumloadbalancerippools delete: prune of a removed Cilium pool",
    "traefik.io middlewares get: a child of ours that another field manager also wrote (metadata-only cache): its content is read to compare",
    "traefik.io middlewares create: Traefik tiers (home-multus-traefik)",
    "traefik.io middlewares patch: Traefik tiers",
    "traefik.io middlewares delete: prune of a Traefik middleware",
    "gateway.networking.k8s.io httproutes create: Gateway tiers (the gateway-migration sample, run by datapath.rs)",
    "gateway.networking.k8s.io httproutes patch: Gateway tiers",
    "gateway.networking.k8s.io httproutes delete: prune of a route on a Gateway tier",
    "gateway.networking.k8s.io referencegrants get: a child of ours that another field manager also wrote (metadata-only cache): its content is read to compare",
    "gateway.networking.k8s.io referencegrants create: an app's certificate read by a Gateway in another namespace",
    "gateway.networking.k8s.io referencegrants patch: Gateway tiers",
    "gateway.networking.k8s.io referencegrants delete: prune when the app's last TLS host on a Gateway tier goes",
    "gateway.networking.k8s.io gateways patch: an app's own listeners in the platform's Gateway (server-side apply under the app's field manager)",
    "gatehouse.dev egresspolicies/status patch: status of EgressPolicies (this set has none)",
    "gatehouse.dev clusternetworks/finalizers update: blockOwnerDeletion under OwnerReferencesPermissionEnforcement (not enabled here)",
    "gatehouse.dev exposedapps/finalizers update: blockOwnerDeletion under OwnerReferencesPermissionEnforcement",
    "gatehouse.dev egresspolicies/finalizers update: blockOwnerDeletion under OwnerReferencesPermissionEnforcement",
    "events.k8s.io events create: Events for Stalled reasons and unconfirmed DNS teardowns",
    "events.k8s.io events patch: a repeated Event (series)",
    "coordination.k8s.io leases create: the first leader, when no Lease exists yet",
    "admissionregistration.k8s.io mutatingwebhookconfigurations create: the first start, when the configuration does not exist",
];

/// USED_ELSEWHERE as permissions with their reasons.
fn used_elsewhere() -> BTreeMap<(String, String, String), &'static str> {
    USED_ELSEWHERE
        .iter()
        .map(|line| {
            let (what, why) = line.split_once(": ").unwrap();
            let f: Vec<&str> = what.split(' ').collect();
            let group = if f[0] == "core" { "" } else { f[0] };
            ((group.to_string(), f[1].to_string(), f[2].to_string()), why)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_runs_the_operator_image_on_the_node_within_its_rbac() {
    assert!(
        cluster_env("NODE_NAME").is_some(),
        "this cluster has no node: run through `make test`, which starts one"
    );
    let client = client().await;
    let (repo, tag) = operator_image();
    let audit_mark = gatehouse_tests::audit::AuditLog::shared().mark();

    // A namespace that enforces Pod Security "restricted", then the chart as shipped, with
    // the local image.
    apply(&client, &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE,
        "labels": {"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}}}), false)
        .await
        .unwrap();
    let set = root().join("config/samples").join(SET);
    let objects = sample_objects(&set);
    let _release = Release(deletable_namespaces(&objects));
    let start = Instant::now();
    helm(&[
        "install",
        RELEASE,
        &root().join("charts/gatehouse").to_string_lossy(),
        "--namespace",
        NAMESPACE,
        // Earlier tests applied config/rbac's objects of the same names.
        "--take-ownership",
        "--set",
        &format!("image.repository={repo}"),
        "--set",
        &format!("image.tag={tag}"),
        "--set",
        "image.pullPolicy=Never",
    ])
    .unwrap_or_else(|e| panic!("helm install: {e}"));
    // The kubelet's probes (/healthz, /readyz) pass for both replicas.
    let pods = wait_pods_ready(&client, NAMESPACE, "app.kubernetes.io/name=gatehouse", 2).await;
    let running_in = start.elapsed();
    for p in &pods {
        let status = p.status.as_ref().unwrap();
        let c = &status.container_statuses.as_ref().unwrap()[0];
        assert_eq!(c.restart_count, 0, "{}: restarted", p.name_any());
        assert_eq!(c.image, format!("{repo}:{tag}"));
        assert_eq!(
            p.spec.as_ref().unwrap().node_name,
            cluster_env("NODE_NAME"),
            "{}: runs on the node",
            p.name_any()
        );
    }
    // `kubectl logs` and `kubectl exec` reach the kubelet (the image has no shell: exec runs
    // the operator binary itself).
    let pod = pods[0].name_any();
    let logs = kubectl()
        .args(["logs", "-n", NAMESPACE, &pod])
        .output()
        .unwrap();
    let logs = String::from_utf8_lossy(&logs.stdout).to_string();
    assert!(
        logs.lines()
            .any(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v["level"].is_string())),
        "kubectl logs {pod}: JSON log lines expected, got {logs:?}"
    );
    let exec = kubectl()
        .args([
            "exec",
            "-n",
            NAMESPACE,
            &pod,
            "--",
            "/gatehouse",
            "--version",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&exec.stdout).starts_with("gatehouse "),
        "kubectl exec {pod} -- /gatehouse --version: {exec:?}"
    );
    // The Deployment controller reports them available a moment after the pods are Ready.
    let deployments = Api::<Deployment>::namespaced(client.clone(), NAMESPACE);
    eventually(
        Duration::from_secs(30),
        "the Deployment to report 2 available replicas",
        || {
            let deployments = deployments.clone();
            async move {
                let d = deployments.get(RELEASE).await.ok()?;
                (d.status?.available_replicas == Some(2)).then_some(())
            }
        },
    )
    .await;

    // A sample set and its workloads, as real pods; the in-cluster operator makes it Ready.
    for obj in objects.iter().filter(|o| o["kind"] == "Namespace") {
        apply(&client, obj, false).await.unwrap();
    }
    for obj in objects.iter().filter(|o| o["kind"] != "Namespace") {
        apply(&client, obj, false).await.unwrap();
    }
    let work = workloads(&objects);
    for d in &work {
        apply(&client, d, false).await.unwrap();
    }
    for app in objects.iter().filter(|o| o["kind"] == "ExposedApp") {
        let ns = app["metadata"]["namespace"].as_str().unwrap();
        wait_condition(
            &gatehouse_api(&client, "ExposedApp", Some(ns)),
            app["metadata"]["name"].as_str().unwrap(),
            "Ready",
            "True",
            None,
            Duration::from_secs(120),
        )
        .await;
    }
    for d in &work {
        let ns = d["metadata"]["namespace"].as_str().unwrap();
        let selector: Vec<String> = d["spec"]["selector"]["matchLabels"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
            .collect();
        wait_pods_ready(&client, ns, &selector.join(","), 1).await;
    }

    // The leader has renewed its Lease at least once (an update), so a fast run still sees
    // every verb leader election uses.
    let leases =
        Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), NAMESPACE);
    eventually(
        Duration::from_secs(60),
        "the leader to renew its Lease",
        || {
            let leases = leases.clone();
            async move {
                let spec = leases.get("gatehouse-leader").await.ok()?.spec?;
                (spec.renew_time?.0 > spec.acquire_time?.0).then_some(())
            }
        },
    )
    .await;

    // What the operator asked the API server for, from the audit log.
    let user = format!("system:serviceaccount:{NAMESPACE}:gatehouse");
    let events = audit_events(&user, audit_mark);
    assert!(
        events.len() > 20,
        "the audit log has {} requests of {user}",
        events.len()
    );
    let refused: Vec<String> = events
        .iter()
        .filter(|e| e["responseStatus"]["code"] == 403)
        .map(|e| format!("{:?} {}", permission(e), e["requestURI"]))
        .collect();
    assert!(refused.is_empty(), "RBAC refused: {refused:#?}");
    // A server-side apply that creates its object (201) is authorized as create too.
    // Discovery (/api, /apis/<group>/<version>: no objectRef) is every user's through the
    // default system:discovery role, not the chart's.
    let used: BTreeSet<_> = events
        .iter()
        .filter(|e| e["objectRef"].is_object())
        .flat_map(|e| {
            let p = permission(e);
            let created = (p.2 == "patch" && e["responseStatus"]["code"] == 201)
                .then(|| (p.0.clone(), p.1.clone(), "create".to_string()));
            std::iter::once(p).chain(created)
        })
        .collect();
    let granted = granted();
    let elsewhere = used_elsewhere();
    let unused: Vec<_> = granted
        .iter()
        .filter(|p| !used.contains(*p) && !elsewhere.contains_key(*p))
        .collect();
    assert!(
        unused.is_empty(),
        "the chart grants what the operator never used here and no known path uses: {unused:#?}\nused: {used:#?}"
    );
    let beyond: Vec<_> = used.iter().filter(|p| !granted.contains(*p)).collect();
    assert!(beyond.is_empty(), "used without a grant: {beyond:#?}");
    println!(
        "operator pods Ready {:.1}s after helm install; {} requests by {user}, 0 refused; {} of {} granted permissions used here, {} used on other paths",
        running_in.as_secs_f64(),
        events.len(),
        granted.iter().filter(|p| used.contains(*p)).count(),
        granted.len(),
        granted
            .iter()
            .filter(|p| !used.contains(*p) && elsewhere.contains_key(*p))
            .count()
    );

    // The set and the release go when `_release` drops (also on failure).
}
