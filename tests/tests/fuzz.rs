//! Hostile and malformed input, differentially: random ClusterNetworks, ExposedApps and
//! EgressPolicies (the sample sets' and the error fixtures' objects, unchanged or mutated:
//! fields dropped, values swapped for edge cases or values of another type, list entries
//! duplicated) go to the real API server (server-side dry run) and to the offline checker
//! `gatehouse render` uses (`schema_check`). Their verdicts must agree. Every input the server
//! accepts is then rendered with its set (never a panic; every error names a field of it), and
//! every child it renders is dry-run against the real (upstream) CRDs.
//!
//! `FUZZ_CASES` (default 1000) and `FUZZ_SEED` (default fixed, so `make test` is repeatable)
//! choose the run; `make fuzz CASES=N` runs a long one with a fresh seed.

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;

use gatehouse_operator::render_cmd::render_paths;
use gatehouse_operator::schema_check;
use gatehouse_tests::rng::Rng;
use gatehouse_tests::{api_for, apply, client, root, sample_objects, sample_sets};
use serde_json::{Value, json};

const KINDS: [&str; 3] = ["ClusterNetwork", "ExposedApp", "EgressPolicy"];

/// A seed set and the index of one of its Gatehouse objects, to mutate.
fn pick_target<'a>(rng: &mut Rng, seeds: &'a [Seed]) -> (&'a Seed, usize) {
    let s = rng.pick(seeds);
    let targets: Vec<usize> = (0..s.docs.len())
        .filter(|&i| is_gatehouse(&s.docs[i]))
        .collect();
    (s, *rng.pick(&targets))
}

struct Seed {
    name: String,
    docs: Vec<Value>,
}

fn seeds() -> Vec<Seed> {
    let mut out: Vec<Seed> = sample_sets()
        .iter()
        .map(|s| Seed {
            name: s.display().to_string(),
            docs: sample_objects(s),
        })
        .collect();
    let errors = root().join("operator/tests/fixtures/errors");
    let mut files: Vec<_> = std::fs::read_dir(&errors)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        // Some fixtures are not YAML on purpose: they seed nothing.
        let text = std::fs::read_to_string(&f).unwrap();
        let docs: Result<Vec<Value>, _> = yaml_serde::Deserializer::from_str(&text)
            .map(serde::Deserialize::deserialize)
            .collect();
        let Ok(docs) =
            docs.map(|d: Vec<Value>| d.into_iter().filter(|v| !v.is_null()).collect::<Vec<_>>())
        else {
            continue;
        };
        out.push(Seed {
            name: f.display().to_string(),
            docs,
        });
    }
    out
}

const STRINGS: &[&str] = &[
    "",
    "x",
    "web",
    "-bad-",
    "UPPER",
    "a.example.com",
    "*.example.com",
    "blog.example.com",
    "10.0.0.1",
    "192.0.2.5",
    "010.0.0.1",
    "10.0.0.0/8",
    "10.0.0.0/33",
    "10.0.0.0/08",
    "2001:db8::1",
    "2001:db8::/64",
    "::ffff:10.0.0.1",
    "fe80::1%eth0",
    "10.0.0.1-10.0.0.9",
    "10.0.0.1-2001:db8::9",
    "10.0.0.1-",
    "Nginx",
    "Traefik",
    "IngressNginx",
    "IPv4",
    "IPv6",
    "L2",
    "BGP",
    "MetalLB",
    "Cilium",
    "Hetzner",
    "None",
    "TCP",
    "UDP",
    "SCTP",
    "Prefix",
    "Exact",
    "OAuth2",
    "macvlan",
    "ipvlan",
    "bridge",
    "l3",
    "static",
    "https://auth.example.com",
    "http",
    "https",
    "external",
    "internal",
];
const INTS: &[i64] = &[
    -1, 0, 1, 53, 80, 443, 1000, 65535, 65536, 100, 101, 4294967295, 4294967296,
];

/// Every path (object keys and list indexes) under `spec`.
fn paths(v: &Value, at: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                at.push(json!(k));
                paths(c, at, out);
                at.pop();
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                at.push(json!(i));
                paths(c, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn get_mut<'a>(v: &'a mut Value, path: &[Value]) -> Option<&'a mut Value> {
    let mut cur = v;
    for p in path {
        cur = match p {
            Value::String(k) => cur.get_mut(k.as_str())?,
            Value::Number(i) => cur.get_mut(i.as_u64()? as usize)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn random_scalar(rng: &mut Rng) -> Value {
    match rng.below(10) {
        0..=5 => json!(rng.pick(STRINGS)),
        6..=8 => json!(rng.pick(INTS)),
        _ => json!(rng.below(2) == 0),
    }
}

/// One mutation somewhere under `spec`.
fn mutate(rng: &mut Rng, obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec") else {
        return;
    };
    let mut all = Vec::new();
    paths(spec, &mut Vec::new(), &mut all);
    let path = rng.pick(&all).clone();
    let (parent_path, last) = match path.split_last() {
        Some((last, parent)) => (parent.to_vec(), Some(last.clone())),
        None => (vec![], None),
    };
    let op = rng.below(6);
    // Dropping a field or list entry.
    if op == 0
        && let Some(last) = &last
    {
        match (get_mut(spec, &parent_path), last) {
            (Some(Value::Object(m)), Value::String(k)) => {
                m.remove(k);
            }
            (Some(Value::Array(a)), Value::Number(i)) => {
                a.remove(i.as_u64().unwrap() as usize);
            }
            _ => {}
        }
        return;
    }
    let Some(target) = get_mut(spec, &path) else {
        return;
    };
    match (op, target) {
        // Duplicating a list entry (uniqueness rules, list-map keys, maxItems).
        (1, Value::Array(a)) if !a.is_empty() => {
            let i = rng.below(a.len());
            let dup = a[i].clone();
            a.push(dup);
        }
        // A value of another type.
        (2, t) => {
            *t = match rng.below(4) {
                0 => json!({}),
                1 => json!([]),
                2 => json!([random_scalar(rng)]),
                _ => random_scalar(rng),
            }
        }
        // A string near its limits: long, or with characters patterns refuse.
        (3, t @ Value::String(_)) => {
            *t = match rng.below(3) {
                0 => json!("a".repeat(rng.pick(&[63usize, 64, 253, 254, 300, 5000]).to_owned())),
                1 => json!(format!("{}.", t.as_str().unwrap())),
                _ => json!(t.as_str().unwrap().to_uppercase()),
            }
        }
        // A new field in an object, known to some kind (unknown ones are pruned by the
        // server and refused by render's typed parse: not what this compares).
        (4, Value::Object(m)) => {
            let keys = [
                "addresses",
                "hostname",
                "service",
                "loadBalancer",
                "implementation",
                "entryPoints",
                "gateway",
                "className",
                "endPort",
                "except",
                "fqdn",
                "apiServer",
                "mode",
                "namespace",
            ];
            let key = rng.pick(&keys).to_string();
            let v = match rng.below(3) {
                0 => json!([rng.pick(STRINGS)]),
                1 => json!({}),
                _ => random_scalar(rng),
            };
            m.insert(key, v);
        }
        // An edge-case scalar in place of any value.
        (_, t) => *t = random_scalar(rng),
    }
}

/// The server's verdict: Ok(()) accepted, Err(message) refused as invalid.
async fn server_verdict(client: &kube::Client, obj: &Value) -> Result<(), String> {
    // A create (POST), as `kubectl create --dry-run=server`: server-side apply would refuse
    // some type errors with a 500 before validating (it types the patch first).
    let api = api_for(client, obj).await;
    let dynamic: kube::api::DynamicObject = serde_json::from_value(obj.clone()).unwrap();
    let pp = kube::api::PostParams {
        dry_run: true,
        ..Default::default()
    };
    match api.create(&pp, &dynamic).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 422 || e.code == 400 => Err(e.message),
        Err(e) => panic!("the API server failed otherwise on {obj}: {e}"),
    }
}

fn is_gatehouse(doc: &Value) -> bool {
    doc["apiVersion"] == gatehouse_api::API_VERSION
        && KINDS.contains(&doc["kind"].as_str().unwrap_or_default())
}

async fn ensure_namespace(client: &kube::Client, ns: &str, done: &mut BTreeSet<String>) {
    if done.insert(ns.to_string()) {
        apply(
            client,
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            false,
        )
        .await
        .unwrap_or_else(|e| panic!("namespace {ns}: {e}"));
    }
}

#[tokio::test]
async fn offline_verdicts_match_the_api_server_and_accepted_inputs_render_acceptable_children() {
    let started = std::time::Instant::now();
    let cases: usize = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1000);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0x6A7E_4005_F022);
    println!("fuzz: {cases} cases, FUZZ_SEED={seed}");
    let mut rng = Rng(seed.max(1));
    let client = client().await;
    let seeds = seeds();
    let tmp = std::env::temp_dir().join(format!("gatehouse-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let mut namespaces = BTreeSet::new();
    let (mut accepted, mut refused, mut children) = (0usize, 0usize, 0usize);
    let mut per_kind = std::collections::BTreeMap::<String, usize>::new();
    let mut disagreements = Vec::new();
    let mut render_failures = Vec::new();
    let mut child_failures = Vec::new();
    // Only sets holding one of the three kinds seed inputs.
    let seeds: Vec<Seed> = seeds
        .into_iter()
        .filter(|s| s.docs.iter().any(is_gatehouse))
        .collect();
    for case in 0..cases {
        let (s, t) = pick_target(&mut rng, &seeds);
        let mut obj = s.docs[t].clone();
        // A quarter unchanged (valid-shaped), the rest with 1-4 mutations.
        let n = if rng.below(4) == 0 {
            0
        } else {
            1 + rng.below(4)
        };
        for _ in 0..n {
            mutate(&mut rng, &mut obj);
        }
        let kind = obj["kind"].as_str().unwrap().to_string();
        *per_kind.entry(kind.clone()).or_default() += 1;
        // The server sees it under a name of its own (dry run, so nothing collides with other
        // tests' objects, and a create is what is checked).
        let mut probe = obj.clone();
        probe["metadata"] = json!({"name": format!("fuzz-{}-{case}", std::process::id())});
        if kind != "ClusterNetwork" {
            let ns = obj["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string();
            ensure_namespace(&client, &ns, &mut namespaces).await;
            probe["metadata"]["namespace"] = json!(ns);
        }
        let server = server_verdict(&client, &probe).await;
        let offline = schema_check::check(&kind, &probe);
        if server.is_ok() != offline.is_empty() {
            disagreements.push(format!(
                "case {case} ({} {kind}): server {server:?}, offline {offline:?}\n  {probe}",
                s.name
            ));
        }
        if server.is_err() {
            refused += 1;
            continue;
        }
        accepted += 1;
        // Render it with its set, as `gatehouse render` would (files in, lines out).
        let mut docs = s.docs.clone();
        docs[t] = obj.clone();
        let file = tmp.join(format!("case-{case}.yaml"));
        let text: String = docs
            .iter()
            .map(|d| format!("---\n{}", yaml_serde::to_string(d).unwrap()))
            .collect();
        std::fs::write(&file, text).unwrap();
        let out = match std::panic::catch_unwind(AssertUnwindSafe(|| {
            render_paths(std::slice::from_ref(&file))
        })) {
            Ok(out) => out,
            Err(_) => {
                render_failures.push(format!("case {case}: render panicked on {obj}"));
                continue;
            }
        };
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let display = match obj["metadata"]["namespace"].as_str() {
            Some(ns) if kind != "ClusterNetwork" => format!("{ns}/{name}"),
            _ if kind != "ClusterNetwork" => format!("default/{name}"),
            _ => name.to_string(),
        };
        let origin = format!("{}: {kind} {display}: ", file.display());
        for line in &out.errors {
            // Each of its errors is a Stalled finding naming one of its fields.
            if let Some(rest) = line.strip_prefix(&origin)
                && !(rest.starts_with("spec") || rest.starts_with("metadata"))
            {
                render_failures.push(format!("case {case}: error names no field: {line}"));
            }
        }
        // Every child rendered from it is accepted by the API server.
        for child in &out.children {
            let labels = &child.object["metadata"]["labels"];
            if labels[gatehouse_api::labels::OWNER_KIND] != json!(kind)
                || labels[gatehouse_api::labels::OWNER_NAME] != json!(name)
            {
                continue;
            }
            if let Some(ns) = child.namespace() {
                ensure_namespace(&client, ns, &mut namespaces).await;
            }
            if let Err(e) = apply(&client, &child.object, true).await {
                child_failures.push(format!(
                    "case {case}: {} {}/{} of {obj} refused: {e}",
                    child.kind.kind(),
                    child.namespace().unwrap_or_default(),
                    child.name()
                ));
            }
            children += 1;
        }
        let _ = std::fs::remove_file(&file);
    }
    let _ = std::fs::remove_dir_all(&tmp);
    println!(
        "fuzz: {cases} inputs ({per_kind:?}), server accepted {accepted}, refused {refused}; \
         disagreements {}; accepted inputs' children dry-run {children}, refused {}; render \
         failures {}; {:.1} s",
        disagreements.len(),
        child_failures.len(),
        render_failures.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        accepted > 0 && refused > 0,
        "the inputs must reach both verdicts"
    );
    let problems: Vec<&String> = disagreements
        .iter()
        .chain(&render_failures)
        .chain(&child_failures)
        .collect();
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems
            .iter()
            .take(20)
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Validate and render never panic, also on what the schema would refuse (the operator's
/// own guard against an object that reached it some other way, e.g. under a stale CRD):
/// every typed-parseable mutation of every seed object is rendered with its set, bypassing the
/// offline check, and every finding names a field. No cluster.
#[test]
fn validate_and_render_never_panic_on_arbitrary_input() {
    use gatehouse_operator::render::{self, Context};
    let cases: usize = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1000)
        * 2;
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0x6A7E_4005_F022);
    let mut rng = Rng(seed.max(1) ^ 0x5555);
    let seeds: Vec<Seed> = seeds()
        .into_iter()
        .filter(|s| s.docs.iter().any(is_gatehouse))
        .collect();
    let (mut rendered, mut unparsed, mut schema_refused, mut findings) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for case in 0..cases {
        let (s, t) = pick_target(&mut rng, &seeds);
        let mut docs = s.docs.clone();
        for _ in 0..1 + rng.below(4) {
            mutate(&mut rng, &mut docs[t]);
        }
        let kind = docs[t]["kind"].as_str().unwrap().to_string();
        if !schema_check::check(&kind, &docs[t]).is_empty() {
            schema_refused += 1;
        }
        // The context as `gatehouse render` builds it, without its schema check.
        let mut ctx = Context::default();
        let mut objects = Vec::new();
        let mut parsed_target = false;
        for (i, d) in docs.iter().enumerate() {
            let mut d = d.clone();
            if d["kind"] != "ClusterNetwork"
                && d["kind"] != "Namespace"
                && d["metadata"]["namespace"].is_null()
            {
                d["metadata"]["namespace"] = json!("default");
            }
            let ok = match d["kind"].as_str().unwrap_or_default() {
                "ClusterNetwork" => serde_json::from_value(d)
                    .map(|n: gatehouse_api::ClusterNetwork| {
                        ctx.add_network(n.clone());
                        objects.push((i, Some(n), None, None));
                    })
                    .is_ok(),
                "ExposedApp" => serde_json::from_value(d)
                    .map(|a: gatehouse_api::ExposedApp| {
                        ctx.add_app(a.clone());
                        objects.push((i, None, Some(a), None));
                    })
                    .is_ok(),
                "EgressPolicy" => serde_json::from_value(d)
                    .map(|p: gatehouse_api::EgressPolicy| {
                        ctx.add_object_namespace(
                            p.metadata.namespace.as_deref().unwrap_or("default"),
                        );
                        objects.push((i, None, None, Some(p)));
                    })
                    .is_ok(),
                "Namespace" => serde_json::from_value(d)
                    .map(|n| ctx.add_namespace(n))
                    .is_ok(),
                "Service" => serde_json::from_value(d)
                    .map(|v| ctx.add_service(v))
                    .is_ok(),
                _ => true,
            };
            if i == t {
                parsed_target = ok;
            }
        }
        if !parsed_target {
            unparsed += 1;
            continue;
        }
        for (i, n, a, p) in &objects {
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| match (n, a, p) {
                (Some(n), _, _) => render::render_cluster_network(n, &ctx),
                (_, Some(a), _) => render::render_exposed_app(a, &ctx),
                (_, _, Some(p)) => render::render_egress_policy(p, &ctx),
                _ => unreachable!(),
            }));
            let found = match result {
                Err(_) => {
                    failures.push(format!("case {case}: render panicked on {}", docs[*i]));
                    continue;
                }
                Ok(Ok(r)) => r.findings,
                Ok(Err(f)) => f,
            };
            for f in found.iter() {
                findings += 1;
                if !(f.field.starts_with("spec") || f.field.starts_with("metadata")) {
                    failures.push(format!(
                        "case {case}: finding names no field: {} {}",
                        f.field, f.message
                    ));
                }
            }
        }
        rendered += 1;
    }
    println!(
        "never-panic: {cases} inputs, {schema_refused} of them refused by the schema check, \
         {unparsed} not of the typed shape, {rendered} rendered with their sets, {findings} \
         findings; failures {}",
        failures.len()
    );
    assert!(rendered > cases / 10, "too few inputs rendered: {rendered}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
