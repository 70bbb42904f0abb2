//! The NetworkPolicies Gatehouse renders for each sample set admit exactly what the set's
//! Gatehouse objects declare: a truth table of probes whose verdicts come from the objects'
//! meaning (gatehouse_tests::policy, after shared/design/api.md), checked against the
//! rendered policies by gatehouse-policy (cyclonus's NetworkPolicy matcher, tests/stack/policy).
//! Offline: the sets are rendered from their files, as `gatehouse render` would, with no
//! cluster; the pods are synthesized from the workloads and the probe pods. Set
//! POLICY_TABLES=1 to print every set's whole truth table.

use std::path::PathBuf;

use gatehouse_operator::input;
use gatehouse_operator::render::ChildKind;
use gatehouse_tests::policy::*;
use gatehouse_tests::*;
use serde_json::{Value, json};

/// The gatehouse-policy binary: `POLICY_BIN`, which the Makefile exports (hack/stack.mk).
fn policy_bin() -> PathBuf {
    let Some(path) = std::env::var_os("POLICY_BIN").filter(|p| !p.is_empty()) else {
        panic!(
            "POLICY_BIN is not set: this test needs the gatehouse-policy helper. Run it through \
             `make test` (hack/stack.mk exports POLICY_BIN), or `make policy-bin` and then \
             POLICY_BIN=$(make -s datapath-paths | tail -1) cargo test -p gatehouse-tests --test policy"
        )
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "POLICY_BIN={} does not exist; build it with `make policy-bin`",
        path.display()
    );
    path
}

/// The NetworkPolicies the set renders to offline: what `expected_children` in samples.rs
/// computes, with the set's own Services and the given Namespaces as context.
fn rendered_network_policies(set: &std::path::Path, namespaces: &[Value]) -> Vec<Value> {
    let mut inputs = input::load(&[set.to_path_buf()]).expect("sample loads");
    // The renderer sees the same namespaces as the expectations (probe namespaces too), as
    // the operator sees every namespace of a live cluster.
    for n in namespaces {
        inputs
            .ctx
            .add_namespace(serde_json::from_value(n.clone()).expect("a Namespace"));
    }
    let out = gatehouse_tests::sets::render_all(&inputs);
    out.into_iter()
        .filter(|c| c.kind == ChildKind::NetworkPolicy)
        .map(|c| c.object)
        .collect()
}

/// How much of the rendered policies the truth table exercises: each policy removed, and
/// each of its rules removed, one at a time; a part whose removal changes no verdict is
/// unprobed (or redundant, such as a DNS rule the default deny also has). Returns (parts
/// that decide some probe, parts, the others).
fn coverage(
    bin: &std::path::Path,
    policies: &[Value],
    pods: &[Value],
    namespaces: &[Value],
    probes: &[ExpectedProbe],
    verdicts: &[Value],
) -> (usize, usize, Vec<String>) {
    let directions = |v: &[Value]| -> Vec<(Value, Value)> {
        v.iter()
            .map(|x| {
                (
                    x["ingress"]["allowed"].clone(),
                    x["egress"]["allowed"].clone(),
                )
            })
            .collect()
    };
    let baseline = directions(verdicts);
    let mut variants: Vec<(String, Vec<Value>)> = Vec::new();
    for (i, np) in policies.iter().enumerate() {
        let id = format!(
            "{}/{}",
            np["metadata"]["namespace"].as_str().unwrap_or_default(),
            np["metadata"]["name"].as_str().unwrap_or_default()
        );
        let mut without = policies.to_vec();
        without.remove(i);
        variants.push((format!("NetworkPolicy {id}"), without));
        for dir in ["ingress", "egress"] {
            let n = np["spec"][dir].as_array().map_or(0, Vec::len);
            for j in 0..n {
                let mut changed = policies.to_vec();
                changed[i]["spec"][dir].as_array_mut().unwrap().remove(j);
                variants.push((format!("{id} spec.{dir}[{j}]"), changed));
            }
        }
    }
    let total = variants.len();
    let mut uncovered = Vec::new();
    for (what, nps) in variants {
        let v = evaluate_verdicts(bin, &nps, pods, namespaces, probes)
            .unwrap_or_else(|e| panic!("{what} removed: {e}"));
        if directions(&v) == baseline {
            uncovered.push(what);
        }
    }
    (total - uncovered.len(), total, uncovered)
}

#[test]
fn sample_policies_admit_exactly_what_the_objects_declare_offline() {
    let bin = policy_bin();
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for set in sample_sets() {
        let name = set.file_name().unwrap().to_string_lossy().to_string();
        let objects = sample_objects(&set);
        let pods = offline_pods(&objects);
        let namespaces = offline_namespaces(&objects);
        let probes = expected_probes(&objects, &pods, &namespaces);
        assert!(!probes.is_empty(), "{name}: no probes");
        let policies = rendered_network_policies(&set, &namespaces);
        let verdicts = evaluate_verdicts(&bin, &policies, &pods, &namespaces, &probes)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        if std::env::var_os("POLICY_TABLES").is_some() {
            println!("{name}:\n{}", table(&probes, &verdicts));
        }
        match compare_verdicts(&name, &probes, &verdicts) {
            Ok(summary) => report.push(format!(
                "{name}: {summary} ({} NetworkPolicies, {} pods)",
                policies.len(),
                pods.len()
            )),
            Err(table) => {
                let mut detail = String::new();
                for (p, v) in probes.iter().zip(&verdicts) {
                    if v["ingress"]["allowed"].as_bool() != Some(p.ingress)
                        || v["egress"]["allowed"].as_bool() != Some(p.egress)
                    {
                        detail += &format!(
                            "  {} -> {} {}/{}: ingress {} egress {}\n",
                            p.from(),
                            p.to(),
                            p.port(),
                            p.protocol(),
                            v["ingress"],
                            v["egress"]
                        );
                    }
                }
                report.push(format!("{name}: MISMATCHES"));
                failures.push(format!(
                    "{table}gatehouse-policy's verdicts on the mismatches:\n{detail}"
                ));
            }
        }
        let (covered, total, uncovered) =
            coverage(&bin, &policies, &pods, &namespaces, &probes, &verdicts);
        report.push(format!(
            "  {name}: {covered} of {total} rendered policies and rules decide some probe"
        ));
        for u in uncovered {
            report.push(format!("  {name}: no probe depends on {u}"));
        }
        for note in probe_notes(&objects) {
            report.push(format!("  {name}: {note}"));
        }
    }
    println!("{}", report.join("\n"));
    assert!(
        failures.is_empty(),
        "rendered NetworkPolicies differ from what the Gatehouse objects declare:\n{}",
        failures.join("\n")
    );
}

/// A small set, written out here, whose verdicts are known by heart: the derivation of
/// expectations itself is checked, independently of any renderer.
#[test]
fn expected_probes_follow_the_contract_on_a_small_scenario() {
    let objects = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ingress"}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"zero-trust": "true"}}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "clients"}}),
        json!({"apiVersion": "gatehouse.dev/v1alpha1", "kind": "ClusterNetwork", "metadata": {"name": "default"}, "spec": {
            "ingress": {"external": {"className": "nginx", "namespace": "ingress", "podSelector": {"matchLabels": {"app": "ctrl"}}}},
            "policy": {"defaultDeny": {"namespaceSelector": {"matchLabels": {"zero-trust": "true"}}, "ingress": true, "egress": true}},
        }}),
        json!({"apiVersion": "gatehouse.dev/v1alpha1", "kind": "ExposedApp", "metadata": {"name": "web", "namespace": "shop"}, "spec": {
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "smtp", "port": 25}],
            "routes": [{"hosts": ["web.example.com"]}],
            "tcp": [{"port": "smtp"}],
            "allowFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "clients"}}, "podSelector": {"matchLabels": {"role": "client"}}}],
        }}),
        json!({"apiVersion": "gatehouse.dev/v1alpha1", "kind": "EgressPolicy", "metadata": {"name": "web", "namespace": "shop"}, "spec": {
            "podSelector": {"matchLabels": {"app": "web"}},
            "rules": [{"to": [{"cidr": "192.0.2.0/24", "except": ["192.0.2.128/25"]}], "ports": [{"port": 5432}]}],
        }}),
    ];
    let pods = offline_pods(&objects);
    let namespaces = offline_namespaces(&objects);
    let names: Vec<String> = pods
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                p["metadata"]["namespace"].as_str().unwrap(),
                p["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    for want in [
        "shop/web-backend",
        "ingress/probe-ingress-external",
        "kube-system/probe-dns",
        "shop/probe-acme",
        "shop/probe-stranger",
        "gatehouse-probe-outsider/probe-outsider",
        "clients/probe-from-web-0",
    ] {
        assert!(names.contains(&want.to_string()), "{want} in {names:?}");
    }
    let ns_names: Vec<&str> = namespaces
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap())
        .collect();
    for want in ["kube-system", "gatehouse-probe-outsider"] {
        assert!(ns_names.contains(&want), "{want} in {ns_names:?}");
    }
    let controller = pods
        .iter()
        .find(|p| p["metadata"]["name"] == "probe-ingress-external")
        .unwrap();
    assert_eq!(controller["metadata"]["labels"]["app"], "ctrl");
    assert_eq!(
        controller["spec"]["containers"][0]["image"],
        backend_image().as_str()
    );
    let dns = pods
        .iter()
        .find(|p| p["metadata"]["name"] == "probe-dns")
        .unwrap();
    assert_eq!(dns["metadata"]["labels"]["k8s-app"], "kube-dns");

    let probes = expected_probes(&objects, &pods, &namespaces);
    let verdict = |from: &str, to: &str, port: i64, proto: &str| -> bool {
        probes
            .iter()
            .find(|p| p.from() == from && p.to() == to && p.port() == port && p.protocol() == proto)
            .unwrap_or_else(|| {
                panic!(
                    "no probe {from} -> {to} {port}/{proto} among:\n{}",
                    probes
                        .iter()
                        .map(|p| format!(
                            "{} -> {} {}/{}",
                            p.from(),
                            p.to(),
                            p.port(),
                            p.protocol()
                        ))
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            })
            .allowed
    };
    let web = "shop/web-backend";
    let ctrl = "ingress/probe-ingress-external";
    let stranger = "shop/probe-stranger";
    let outsider = "gatehouse-probe-outsider/probe-outsider";
    let dns = "kube-system/probe-dns";
    let acme = "shop/probe-acme";
    let client = "clients/probe-from-web-0";
    // Routes: the controller on the route target port only.
    assert!(verdict(ctrl, web, 8080, "TCP"));
    assert!(!verdict(ctrl, web, 9, "TCP"));
    assert!(!verdict("203.0.113.250", web, 8080, "TCP"));
    assert!(!verdict(outsider, web, 8080, "TCP"));
    // tcp[]: anyone.
    assert!(verdict("203.0.113.250", web, 25, "TCP"));
    assert!(verdict(outsider, web, 25, "TCP"));
    // The stranger is in the default-deny namespace: it may not send even to tcp[] ports.
    assert!(!verdict(stranger, web, 25, "TCP"));
    // allowFrom: every port.
    assert!(verdict(client, web, 8080, "TCP"));
    // The EgressPolicy: the cidr on 5432, not its except, not another port; DNS; nothing else.
    assert!(verdict(web, "192.0.2.1", 5432, "TCP"));
    assert!(!verdict(web, "192.0.2.129", 5432, "TCP"));
    assert!(!verdict(web, "192.0.2.1", 9, "TCP"));
    assert!(verdict(web, dns, 53, "UDP"));
    assert!(!verdict(web, outsider, PROBE_PORT, "TCP"));
    // Default deny: DNS for everyone, the ACME solver from the controllers only.
    assert!(verdict(stranger, dns, 53, "UDP"));
    assert!(verdict(stranger, dns, 53, "TCP"));
    assert!(verdict(ctrl, acme, ACME_SOLVER_PORT, "TCP"));
    assert!(!verdict(outsider, acme, ACME_SOLVER_PORT, "TCP"));
}

/// compare: a summary when every verdict is the expected one, else the whole table with
/// the differing probes marked.
#[test]
fn compare_marks_exactly_the_mismatches() {
    let probe = |to: &str, allowed: bool| ExpectedProbe {
        probe: json!({"from": {"namespace": "a", "pod": "x"}, "to": {"ip": to}, "port": 80, "protocol": "TCP"}),
        allowed,
        ingress: true,
        egress: allowed,
        reason: "r".into(),
    };
    let probes = vec![probe("192.0.2.1", true), probe("192.0.2.2", false)];
    assert_eq!(
        compare("s", &probes, &[true, false]),
        Ok("2 probes: 1 allowed, 1 denied".into())
    );
    let table = compare("s", &probes, &[true, true]).unwrap_err();
    let marked: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("MISMATCH"))
        .collect();
    assert_eq!(marked.len(), 1, "{table}");
    assert!(marked[0].contains("192.0.2.2"), "{table}");
    // Per direction: the right overall verdict for the wrong reason is a mismatch too.
    let verdicts = vec![
        json!({"allowed": true, "ingress": {"allowed": true}, "egress": {"allowed": true}}),
        json!({"allowed": false, "ingress": {"allowed": false}, "egress": {"allowed": true}}),
    ];
    let table = compare_verdicts("s", &probes, &verdicts).unwrap_err();
    assert!(table.contains("deny[in]"), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.starts_with("MISMATCH")).count(),
        1
    );
}

/// Corners of the contract the sample sets do not reach, through the same truth table: a
/// tier that names only a podSelector (its controllers may run in any namespace) and one
/// that names neither (its route ports are open to all), a named targetPort, a UDP port,
/// ingress-only default deny, a non-default cluster DNS, allowFrom by Service, by an app
/// that does not exist (never widens), by podSelector alone and by cidr with except, and
/// EgressPolicies with an empty and a NotIn podSelector, a namespaceSelector peer, an
/// endPort range, a rule without ports, an fqdn peer and allowDNS false; isolation as the
/// objects state it (routes alone outside default deny isolate nothing, `Isolated` with
/// nothing declared) and the platform's allowEverywhere (a scraper on its port, a node
/// CIDR on all ports) into default deny and app policies alike.
#[test]
fn contract_corners_admit_exactly_what_the_objects_declare_offline() {
    let bin = policy_bin();
    let v1 = gatehouse_api::API_VERSION;
    let objects = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "locked", "labels": {"tier": "locked"}}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "open"}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dns-system"}}),
        json!({"apiVersion": v1, "kind": "ClusterNetwork", "metadata": {"name": "default"}, "spec": {
            "ingress": {
                "external": {"className": "edge", "podSelector": {"matchLabels": {"app": "edge"}}},
                "internal": {"className": "lan"},
            },
            "policy": {
                "clusterDNS": {"namespace": "dns-system", "podSelector": {"matchLabels": {"app": "coredns"}}},
                "defaultDeny": {"namespaceSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["locked"]}]}, "ingress": true, "egress": false},
                "allowEverywhere": [
                    {"name": "prometheus", "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}, "podSelector": {"matchLabels": {"app": "prometheus"}}}], "ports": [{"port": 9090}]},
                    {"name": "nodes", "from": [{"cidr": "10.200.0.0/24"}]},
                ],
            },
        }}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "frontend-svc", "namespace": "open"}, "spec": {
            "selector": {"app": "frontend"}, "ports": [{"port": 80, "targetPort": 8080}],
        }}),
        json!({"apiVersion": v1, "kind": "ExposedApp", "metadata": {"name": "api", "namespace": "locked"}, "spec": {
            "selector": {"app": "api"},
            "ports": [
                {"name": "http", "port": 80, "targetPort": "web"},
                {"name": "metrics", "port": 9090},
                {"name": "dns", "port": 53, "protocol": "UDP"},
            ],
            "routes": [{"hosts": ["api.example.com"], "paths": [{"path": "/", "port": "http"}], "exposure": "Both", "tls": false, "redirectToHttps": false}],
            "allowFrom": [
                {"service": {"name": "frontend-svc", "namespace": "open"}},
                {"app": {"name": "missing"}},
                {"podSelector": {"matchLabels": {"role": "sidecar"}}},
                {"cidr": "192.0.2.0/24", "except": ["192.0.2.0/28"]},
            ],
        }}),
        json!({"apiVersion": v1, "kind": "ExposedApp", "metadata": {"name": "frontend", "namespace": "open"}, "spec": {
            "selector": {"app": "frontend"},
            "ports": [{"name": "http", "port": 8080}],
        }}),
        // Outside default deny: routes alone isolate nothing; Isolated with nothing
        // declared admits only the platform's allowEverywhere.
        json!({"apiVersion": v1, "kind": "ExposedApp", "metadata": {"name": "site", "namespace": "open"}, "spec": {
            "selector": {"app": "site"},
            "ports": [{"name": "http", "port": 80}],
            "routes": [{"hosts": ["site.example.com"], "tls": false}],
        }}),
        json!({"apiVersion": v1, "kind": "ExposedApp", "metadata": {"name": "vault", "namespace": "open"}, "spec": {
            "selector": {"app": "vault"},
            "ports": [{"name": "api", "port": 8200}, {"name": "metrics", "port": 9090}],
            "isolation": "Isolated",
        }}),
        json!({"apiVersion": v1, "kind": "EgressPolicy", "metadata": {"name": "front", "namespace": "open"}, "spec": {
            "podSelector": {},
            "allowDNS": false,
            "rules": [
                {"to": [{"namespaceSelector": {"matchLabels": {"tier": "locked"}}}], "ports": [{"port": 80}, {"port": 9000, "endPort": 9100}]},
                {"to": [{"app": {"name": "api", "namespace": "locked"}}]},
                {"to": [{"fqdn": "api.example.org"}], "ports": [{"port": 443}]},
            ],
        }}),
        json!({"apiVersion": v1, "kind": "EgressPolicy", "metadata": {"name": "not-api", "namespace": "locked"}, "spec": {
            "podSelector": {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["api"]}]},
            "rules": [{"to": [{"cidr": "198.51.100.0/24"}], "ports": [{"port": 443}]}],
        }}),
    ];
    let dir = std::env::temp_dir().join(format!("gatehouse-policy-corners-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let yaml: Vec<String> = objects
        .iter()
        .map(|o| yaml_serde::to_string(o).unwrap())
        .collect();
    std::fs::write(dir.join("set.yaml"), yaml.join("---\n")).unwrap();
    let pods = offline_pods(&objects);
    let namespaces = offline_namespaces(&objects);
    let policies = rendered_network_policies(&dir, &namespaces);
    let _ = std::fs::remove_dir_all(&dir);

    let probes = expected_probes(&objects, &pods, &namespaces);
    let verdicts = evaluate_verdicts(&bin, &policies, &pods, &namespaces, &probes)
        .unwrap_or_else(|e| panic!("corners: {e}"));
    if std::env::var_os("POLICY_TABLES").is_some() {
        println!("corners:\n{}", table(&probes, &verdicts));
    }
    let summary = compare_verdicts("corners", &probes, &verdicts).unwrap_or_else(|t| {
        panic!(
            "{t}\nrendered NetworkPolicies:\n{}",
            serde_json::to_string_pretty(&policies).unwrap()
        )
    });
    println!("corners: {summary}");
}

/// The MultiNetworkPolicies a set (a sample directory or a fixture file) renders to offline.
fn rendered_multi_network_policies(set: &std::path::Path, namespaces: &[Value]) -> Vec<Value> {
    let mut inputs = input::load(&[set.to_path_buf()]).expect("set loads");
    for n in namespaces {
        inputs
            .ctx
            .add_namespace(serde_json::from_value(n.clone()).expect("a Namespace"));
    }
    gatehouse_tests::sets::render_all(&inputs)
        .into_iter()
        .filter(|c| c.kind == ChildKind::MultiNetworkPolicy)
        .map(|c| c.object)
        .collect()
}

/// The secondary networks: on each attachment of a network with
/// `policy.multiNetworkPolicy`, its MultiNetworkPolicies (judged by gatehouse-policy with
/// NetworkPolicy's semantics, over the pods on that attachment at their addresses there)
/// admit exactly what the objects declare for it (gatehouse_tests::multinet): the sample
/// sets that opt in (seed 001's DMZ) and the render fixture's corners (Isolated, default
/// deny, pod peers on and off the attachment, a LAN range with an except, EgressPolicy to
/// the world). Every rule of every MultiNetworkPolicy must decide some probe.
#[test]
fn attachment_policies_admit_exactly_what_the_objects_declare_offline() {
    let bin = policy_bin();
    let fixture = root().join("operator/tests/fixtures/render/multi-network-policy/input.yaml");
    let mut sets: Vec<(PathBuf, Vec<Value>)> = sample_sets()
        .into_iter()
        .map(|s| {
            let o = sample_objects(&s);
            (s, o)
        })
        .collect();
    let text = std::fs::read_to_string(&fixture).unwrap();
    sets.push((fixture, yaml_docs(&text)));
    let mut report = Vec::new();
    let mut failures = Vec::new();
    let mut worlds = 0;
    for (set, objects) in &sets {
        let name = set.file_name().unwrap().to_string_lossy().to_string();
        let namespaces = offline_namespaces(objects);
        let mnps = rendered_multi_network_policies(set, &namespaces);
        let policed = gatehouse_tests::multinet::policed_attachments(objects);
        if policed.is_empty() {
            assert!(
                mnps.is_empty(),
                "{name}: no network opts in, yet MultiNetworkPolicies were rendered: {mnps:?}"
            );
            continue;
        }
        for (network, attachment) in policed {
            let world = gatehouse_tests::multinet::attachment_world(
                objects,
                &namespaces,
                &network,
                &attachment,
            );
            let policies = gatehouse_tests::multinet::policies_for(&mnps, &attachment);
            let what = format!("{name} over {attachment}");
            assert!(!world.probes.is_empty(), "{what}: no probes");
            let verdicts =
                evaluate_verdicts(&bin, &policies, &world.pods, &namespaces, &world.probes)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
            if std::env::var_os("POLICY_TABLES").is_some() {
                println!("== {what}\n{}", table(&world.probes, &verdicts));
            }
            match compare_verdicts(&what, &world.probes, &verdicts) {
                Ok(summary) => {
                    // How much of the policies the table exercises. A platform hole whose
                    // sources have no pod on the attachment (a scraper on the pod network)
                    // cannot decide a probe here; every other part must.
                    let (covered, total, uncovered) = coverage(
                        &bin,
                        &policies,
                        &world.pods,
                        &namespaces,
                        &world.probes,
                        &verdicts,
                    );
                    if total > 0 && covered == 0 {
                        failures.push(format!("{what}: no part of the policies decides a probe"));
                    }
                    report.push(format!(
                        "{what}: {} policies, {summary}; {covered}/{total} parts decide (not: {uncovered:?})",
                        policies.len()
                    ));
                }
                Err(t) => failures.push(t),
            }
            worlds += 1;
        }
    }
    println!("{}", report.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // The fixture polices dmz-net, dmz-out and lan; seed 001's sample dmz-net and dmz-out.
    assert!(worlds >= 5, "only {worlds} attachments judged");
}
