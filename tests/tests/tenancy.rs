//! Tenancy attacks (issue 13 item 5): one table of hijack attempts against a live API server
//! and the in-process operator. Each case sets up a victim, applies an attacker object from
//! another namespace (or the victim's own, for child-name collisions), and checks that the
//! attacker gains nothing: the API server refuses it, or it is Stalled with the expected
//! reason and a message naming the holder; the victim's children keep their
//! spec, labels and annotations; the attacker gets no Ingress or DNSEndpoint for the contested thing.
//!
//! Every case is its own `#[tokio::test]` (a macro at the bottom), so each fails on its own
//! and by name. Every case has its own ClusterNetwork, namespaces and zone.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gatehouse_operator::render::ChildKind;
use gatehouse_tests::*;
use kube::api::{Api, DynamicObject};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

static OPERATOR: OnceLock<Operator> = OnceLock::new();

const LONG: Duration = Duration::from_secs(30);

/// What one case runs in: a fresh network with its own zone, the victim's namespace and the
/// attacker's.
struct World {
    client: Client,
    net: String,
    zone: String,
    victim_ns: String,
    attacker_ns: String,
}

/// What the attacker must end with.
enum Expect {
    /// The API server refuses the object; the error names this field.
    Rejected { field: &'static str },
    /// Stalled=True with this reason; the message names the holder.
    Stalled { reason: &'static str },
    /// Accepted and not stalled (its own business), but the victim is untouched.
    Contained,
}

struct Case {
    name: &'static str,
    /// Extra ClusterNetwork spec (merged), given the world's zone and victim namespace.
    network: fn(&str, &str) -> Value,
    /// Objects making up the victim (applied first, in the victim namespace unless set).
    victim: fn(&World) -> Vec<Value>,
    /// The attacker object.
    attacker: fn(&World) -> Value,
    expect: Expect,
    /// The holder the Stalled message must name, given the world.
    holder: fn(&World) -> String,
}

fn app(ns: &str, name: &str, net: &str, spec: Value) -> Value {
    let mut s = json!({"network": net, "selector": {"app": name}, "isolation": "Isolated",
                       "ports": [{"name": "http", "port": 80}]});
    merge(&mut s, spec);
    json!({"apiVersion": gatehouse_api::API_VERSION, "kind": "ExposedApp", "metadata": {"name": name, "namespace": ns}, "spec": s})
}

fn routes(hosts: &[String]) -> Value {
    json!({"routes": [{"hosts": hosts}]})
}

async fn world(case: &Case) -> World {
    OPERATOR.get_or_init(Operator::start);
    let client = client().await;
    let victim_ns = namespace(&client, "tn-victim", json!({})).await;
    let attacker_ns = namespace(&client, "tn-attacker", json!({})).await;
    let net = format!("tn-{}-{}", case.name.replace('_', "-"), std::process::id());
    let zone = format!("{net}.example.com");
    let mut spec = json!({
        "ipFamilies": ["IPv4"],
        "loadBalancer": {"provider": "MetalLB", "namespace": victim_ns, "pools": [{"name": "external", "addresses": ["192.0.2.0/28"]}]},
        "ingress": {"external": {"className": "nginx", "namespace": "ingress-nginx", "podSelector": {"matchLabels": {"app": "ingress-nginx"}}, "addresses": ["192.0.2.1"]}},
        "tls": {"issuerRef": {"name": "letsencrypt"}},
        "dns": {"external": {"zone": zone}},
    });
    merge(&mut spec, (case.network)(&zone, &victim_ns));
    apply(&client, &json!({"apiVersion": gatehouse_api::API_VERSION, "kind": "ClusterNetwork", "metadata": {"name": net}, "spec": spec}), false)
        .await
        .unwrap();
    World {
        client,
        net,
        zone,
        victim_ns,
        attacker_ns,
    }
}

fn child_api(client: &Client, kind: ChildKind, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        ns,
        &gatehouse_operator::reconcile::api_resource(kind),
    )
}

/// What the operator wrote (spec, labels, annotations) of every object in the victim's namespace of the kinds an attack
/// could touch (so "unchanged" covers Gatehouse children and unowned objects alike).
async fn victim_state(w: &World) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for kind in [
        ChildKind::Service,
        ChildKind::Ingress,
        ChildKind::DnsEndpoint,
        ChildKind::NetworkPolicy,
        ChildKind::Certificate,
    ] {
        let list = child_api(&w.client, kind, &w.victim_ns)
            .list(&Default::default())
            .await
            .unwrap();
        for o in list.items {
            // What the operator writes: spec, labels and annotations. Not the
            // resourceVersion: on the shared cluster the real external-dns and cert-manager
            // write the children's status, which is not the attacker's doing.
            let written =
                serde_json::json!([o.data["spec"], o.metadata.labels, o.metadata.annotations]);
            out.push((
                format!("{} {}", kind.kind(), o.name_any()),
                gatehouse_operator::render::child::stable_hash(&written.to_string()),
            ));
        }
    }
    out.sort();
    out
}

/// Hosts of the attacker's Ingresses and DNSEndpoints (its namespace): what it gained.
async fn attacker_hosts(w: &World, ns: &str) -> Vec<String> {
    let mut out = Vec::new();
    for o in child_api(&w.client, ChildKind::Ingress, ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
    {
        for r in o.data["spec"]["rules"].as_array().into_iter().flatten() {
            out.push(format!("ingress {}", r["host"].as_str().unwrap_or("")));
        }
    }
    for o in child_api(&w.client, ChildKind::DnsEndpoint, ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
    {
        for e in o.data["spec"]["endpoints"].as_array().into_iter().flatten() {
            out.push(format!("dns {}", e["dnsName"].as_str().unwrap_or("")));
        }
    }
    out
}

/// Waits until the victim's app(s) have been reconciled for their generation (Ready needs
/// the stack; on a node-less cluster they wait for addresses, which is fine: the claim and
/// the children exist).
async fn settled(w: &World, victim: &[Value]) {
    for v in victim.iter().filter(|v| v["kind"] == "ExposedApp") {
        let ns = v["metadata"]["namespace"].as_str().unwrap();
        let name = v["metadata"]["name"].as_str().unwrap();
        let api = gatehouse_api(&w.client, "ExposedApp", Some(ns));
        eventually(
            LONG,
            &format!("{ns}/{name} reconciled and not stalled"),
            || async {
                let o = api.get(name).await.unwrap();
                let seen = o.data["status"]["observedGeneration"].as_i64() == o.metadata.generation;
                let stalled = condition(&o, "Stalled").is_some_and(|c| c.0 == "True");
                assert!(
                    !(seen && stalled),
                    "victim {ns}/{name} is stalled: {}",
                    o.data["status"]
                );
                seen.then_some(())
            },
        )
        .await;
    }
    // The children the reconcile wrote are visible: a short quiet period.
    tokio::time::sleep(Duration::from_millis(500)).await;
}

async fn run(case: Case) {
    let started = Instant::now();
    let w = world(&case).await;
    let victim = (case.victim)(&w);
    for v in &victim {
        apply(&w.client, v, false).await.unwrap();
    }
    settled(&w, &victim).await;
    let before = victim_state(&w).await;
    let attacker = (case.attacker)(&w);
    let a_ns = attacker["metadata"]["namespace"]
        .as_str()
        .unwrap()
        .to_string();
    let a_name = attacker["metadata"]["name"].as_str().unwrap().to_string();
    let a_kind = attacker["kind"].as_str().unwrap().to_string();
    let result = apply(&w.client, &attacker, false).await;
    match case.expect {
        Expect::Rejected { field } => {
            let err = result.expect_err("the API server accepted the attacker");
            let msg = err.to_string();
            assert!(
                msg.contains(field),
                "{}: rejection names {field}: {msg}",
                case.name
            );
            assert!(
                gatehouse_api(&w.client, &a_kind, Some(&a_ns))
                    .get_opt(&a_name)
                    .await
                    .unwrap()
                    .is_none(),
                "{}: the rejected object exists",
                case.name
            );
        }
        Expect::Stalled { reason } => {
            result.unwrap();
            let obj = wait_condition(
                &gatehouse_api(&w.client, &a_kind, Some(&a_ns)),
                &a_name,
                "Stalled",
                "True",
                Some(reason),
                LONG,
            )
            .await;
            let (_, _, message) = condition(&obj, "Stalled").unwrap();
            let holder = (case.holder)(&w);
            assert!(
                message.contains(&holder),
                "{}: the message names the holder {holder:?}: {message}",
                case.name
            );
        }
        Expect::Contained => {
            result.unwrap();
            let api = gatehouse_api(&w.client, &a_kind, Some(&a_ns));
            eventually(LONG, "the attacker reconciled", || async {
                let o = api.get(&a_name).await.unwrap();
                (o.data["status"]["observedGeneration"].as_i64() == o.metadata.generation)
                    .then_some(())
            })
            .await;
        }
    }
    // Give the operator time for any (wrong) write it might make after the condition.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Objects the attacker made for itself in the victim's namespace (same-namespace cases)
    // are its own; what existed before must not have changed.
    let after: Vec<(String, String)> = victim_state(&w)
        .await
        .into_iter()
        .filter(|(k, _)| before.iter().any(|(b, _)| b == k))
        .collect();
    assert_eq!(before, after, "{}: the victim's objects changed", case.name);
    if a_ns != w.victim_ns {
        let gained = attacker_hosts(&w, &a_ns).await;
        assert!(
            gained.is_empty(),
            "{}: the attacker got routes or records: {gained:?}",
            case.name
        );
    }
    println!("tenancy case {}: ok in {:?}", case.name, started.elapsed());
}

fn no_network(_: &str, _: &str) -> Value {
    json!({})
}

fn victim_shop(w: &World) -> Vec<Value> {
    vec![app(
        &w.victim_ns,
        "shop",
        &w.net,
        routes(&[format!("shop.{}", w.zone)]),
    )]
}

fn holder_shop(w: &World) -> String {
    format!("{}/shop", w.victim_ns)
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "same_host",
            network: no_network,
            victim: victim_shop,
            attacker: |w| {
                app(
                    &w.attacker_ns,
                    "shop",
                    &w.net,
                    routes(&[format!("shop.{}", w.zone)]),
                )
            },
            expect: Expect::Stalled {
                reason: "HostConflict",
            },
            holder: holder_shop,
        },
        Case {
            name: "wildcard_covering_the_host",
            network: no_network,
            victim: victim_shop,
            attacker: |w| {
                app(
                    &w.attacker_ns,
                    "all",
                    &w.net,
                    routes(&[format!("*.{}", w.zone)]),
                )
            },
            expect: Expect::Stalled {
                reason: "HostConflict",
            },
            holder: holder_shop,
        },
        Case {
            name: "host_under_a_held_wildcard",
            network: no_network,
            victim: |w| {
                vec![app(
                    &w.victim_ns,
                    "all",
                    &w.net,
                    routes(&[format!("*.{}", w.zone)]),
                )]
            },
            attacker: |w| {
                app(
                    &w.attacker_ns,
                    "shop",
                    &w.net,
                    routes(&[format!("shop.{}", w.zone)]),
                )
            },
            expect: Expect::Stalled {
                reason: "HostConflict",
            },
            holder: |w| format!("{}/all", w.victim_ns),
        },
        Case {
            name: "case_variant",
            network: no_network,
            victim: victim_shop,
            attacker: |w| {
                app(
                    &w.attacker_ns,
                    "shop",
                    &w.net,
                    routes(&[format!("SHOP.{}", w.zone)]),
                )
            },
            expect: Expect::Rejected {
                field: "spec.routes[0].hosts[0]",
            },
            holder: holder_shop,
        },
        Case {
            name: "trailing_dot",
            network: no_network,
            victim: victim_shop,
            attacker: |w| {
                app(
                    &w.attacker_ns,
                    "shop",
                    &w.net,
                    routes(&[format!("shop.{}.", w.zone)]),
                )
            },
            expect: Expect::Rejected {
                field: "spec.routes[0].hosts[0]",
            },
            holder: holder_shop,
        },
        Case {
            name: "unicode_form_of_a_punycode_host",
            network: no_network,
            victim: |w| {
                vec![app(
                    &w.victim_ns,
                    "books",
                    &w.net,
                    routes(&[format!("xn--bcher-kva.{}", w.zone)]),
                )]
            },
            attacker: |w| {
                app(
                    &w.attacker_ns,
                    "books",
                    &w.net,
                    routes(&[format!("bücher.{}", w.zone)]),
                )
            },
            expect: Expect::Rejected {
                field: "spec.routes[0].hosts[0]",
            },
            holder: |w| format!("{}/books", w.victim_ns),
        },
        Case {
            name: "same_punycode_host",
            network: no_network,
            victim: |w| {
                vec![app(
                    &w.victim_ns,
                    "books",
                    &w.net,
                    routes(&[format!("xn--bcher-kva.{}", w.zone)]),
                )]
            },
            attacker: |w| {
                app(
                    &w.attacker_ns,
                    "books",
                    &w.net,
                    routes(&[format!("xn--bcher-kva.{}", w.zone)]),
                )
            },
            expect: Expect::Stalled {
                reason: "HostConflict",
            },
            holder: |w| format!("{}/books", w.victim_ns),
        },
        Case {
            name: "tcp_host_colliding_with_a_route_host",
            network: no_network,
            victim: victim_shop,
            attacker: |w| {
                app(
                    &w.attacker_ns,
                    "mail",
                    &w.net,
                    json!({"tcp": [{"port": "http", "exposure": "External", "hosts": [format!("shop.{}", w.zone)]}]}),
                )
            },
            expect: Expect::Stalled {
                reason: "HostConflict",
            },
            holder: holder_shop,
        },
        Case {
            // App `mail` exposes tcp on the external tier: its LoadBalancer Service is
            // `mail-external`. An app named `mail-external` wants a Service of that name.
            name: "child_name_colliding_with_another_apps_child",
            network: no_network,
            victim: |w| {
                vec![app(
                    &w.victim_ns,
                    "mail",
                    &w.net,
                    json!({"tcp": [{"port": "http", "exposure": "External"}]}),
                )]
            },
            attacker: |w| app(&w.victim_ns, "mail-external", &w.net, json!({})),
            expect: Expect::Stalled { reason: "Conflict" },
            holder: |w| format!("ExposedApp {}/mail", w.victim_ns),
        },
        Case {
            name: "child_name_colliding_with_an_unowned_object",
            network: no_network,
            victim: |w| {
                vec![json!({
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "web", "namespace": w.victim_ns, "labels": {"owner": "someone"}},
                    "spec": {"selector": {"app": "other"}, "ports": [{"port": 8080}]},
                })]
            },
            attacker: |w| {
                app(
                    &w.victim_ns,
                    "web",
                    &w.net,
                    routes(&[format!("web.{}", w.zone)]),
                )
            },
            expect: Expect::Stalled { reason: "Conflict" },
            holder: |w| {
                format!(
                    "Service {}/web already exists and it is not managed by Gatehouse",
                    w.victim_ns
                )
            },
        },
        Case {
            name: "attachment_static_ip_held_by_another_app",
            network: |_, _| {
                json!({"attachments": [{"name": "lan", "type": "macvlan", "master": "eth1",
                "ipam": {"type": "static", "ranges": [{"subnet": "192.168.31.0/24"}]}}]})
            },
            victim: |w| {
                vec![app(
                    &w.victim_ns,
                    "cam",
                    &w.net,
                    json!({"attachments": [{"network": "lan", "ips": ["192.168.31.13/24"]}]}),
                )]
            },
            attacker: |w| {
                app(
                    &w.attacker_ns,
                    "cam",
                    &w.net,
                    json!({"attachments": [{"network": "lan", "ips": ["192.168.31.13/24"]}]}),
                )
            },
            expect: Expect::Stalled {
                reason: "AddressInUse",
            },
            holder: |w| format!("{}/cam", w.victim_ns),
        },
        Case {
            name: "namespace_not_listed_in_domains",
            network: |zone, victim_ns| json!({"domains": [{"suffix": zone, "namespaces": [victim_ns]}]}),
            victim: victim_shop,
            attacker: |w| {
                app(
                    &w.attacker_ns,
                    "shop2",
                    &w.net,
                    routes(&[format!("shop2.{}", w.zone)]),
                )
            },
            expect: Expect::Stalled {
                reason: "HostNotAllowed",
            },
            holder: |w| format!("ClusterNetwork {}", w.net),
        },
        Case {
            // An EgressPolicy is the attacker's own namespace's business: it may let its pods
            // out towards the victim, but the victim's ingress policy (which admits only its
            // own allowFrom) must not widen, and nothing is written in the victim's namespace.
            name: "egress_policy_towards_another_namespace",
            network: no_network,
            victim: victim_shop,
            attacker: |w| {
                json!({"apiVersion": gatehouse_api::API_VERSION, "kind": "EgressPolicy",
                "metadata": {"name": "out", "namespace": w.attacker_ns},
                "spec": {"network": w.net, "podSelector": {}, "rules": [{"to": [{"app": {"namespace": w.victim_ns, "name": "shop"}}]}]}})
            },
            expect: Expect::Contained,
            holder: holder_shop,
        },
        Case {
            // allowFrom names who may reach the attacker's own app; naming the victim's app
            // must not touch the victim's policies.
            name: "allow_from_naming_another_namespace",
            network: no_network,
            victim: victim_shop,
            attacker: |w| {
                app(
                    &w.attacker_ns,
                    "api",
                    &w.net,
                    json!({"allowFrom": [{"app": {"namespace": w.victim_ns, "name": "shop"}}]}),
                )
            },
            expect: Expect::Contained,
            holder: holder_shop,
        },
    ]
}

async fn run_named(name: &str) {
    let case = cases()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no case {name}"));
    run(case).await;
}

macro_rules! attack {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                run_named(stringify!($name)).await;
            }
        )*

        /// Every case in the table has its test (and no test names a missing case).
        #[test]
        fn every_case_has_a_test() {
            let tested: Vec<&str> = vec![$(stringify!($name)),*];
            let table: Vec<&str> = cases().iter().map(|c| c.name).collect();
            assert_eq!(tested, table);
        }
    };
}

attack!(
    same_host,
    wildcard_covering_the_host,
    host_under_a_held_wildcard,
    case_variant,
    trailing_dot,
    unicode_form_of_a_punycode_host,
    same_punycode_host,
    tcp_host_colliding_with_a_route_host,
    child_name_colliding_with_another_apps_child,
    child_name_colliding_with_an_unowned_object,
    attachment_static_ip_held_by_another_app,
    namespace_not_listed_in_domains,
    egress_policy_towards_another_namespace,
    allow_from_naming_another_namespace,
);

/// A LabelSelector exactly at the schema's bounds (gatehouse_api::schema: 64 matchLabels,
/// 32 matchExpressions of 64 values, keys of 317 and values of 63 characters).
fn selector_at_limits() -> Value {
    use gatehouse_api::schema::*;
    // A DNS subdomain of 253 characters: three labels of 63 and one of 61.
    let prefix = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61)
    );
    assert_eq!(prefix.len(), 253);
    let value = "v".repeat(MAX_LABEL_VALUE as usize);
    let labels: serde_json::Map<String, Value> = (0..MAX_MATCH_LABELS)
        .map(|i| (format!("{prefix}/l{i:0>62}"), json!(value)))
        .collect();
    let expressions: Vec<Value> = (0..MAX_MATCH_EXPRESSIONS)
        .map(|i| {
            let values: Vec<String> = (0..MAX_EXPRESSION_VALUES)
                .map(|j| format!("{j:0>63}"))
                .collect();
            json!({"key": format!("{prefix}/e{i:0>62}"), "operator": "In", "values": values})
        })
        .collect();
    let s = json!({"matchLabels": labels, "matchExpressions": expressions});
    let key = s["matchExpressions"][0]["key"].as_str().unwrap().len();
    assert_eq!(key, MAX_LABEL_KEY as usize);
    s
}

/// Size limits: an EgressPolicy whose selectors are all at the bounds is accepted and
/// reconciled to Ready within a bounded time (its NetworkPolicy, accepted by the API server
/// too, carries them); one item over any bound is refused, naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_at_the_size_limits_work_and_one_over_is_refused() {
    OPERATOR.get_or_init(Operator::start);
    let client = client().await;
    let ns = namespace(&client, "limits", json!({})).await;
    let net = format!("limits-{}", std::process::id());
    apply(&client, &json!({"apiVersion": gatehouse_api::API_VERSION, "kind": "ClusterNetwork", "metadata": {"name": net}, "spec": {}}), false)
        .await
        .unwrap();
    let selector = selector_at_limits();
    let policy = |selector: &Value| {
        json!({"apiVersion": gatehouse_api::API_VERSION, "kind": "EgressPolicy",
               "metadata": {"name": "big", "namespace": ns},
               "spec": {"network": net, "podSelector": selector,
                        "rules": [{"to": [{"podSelector": selector, "namespaceSelector": selector}]}]}})
    };
    let started = Instant::now();
    apply(&client, &policy(&selector), false).await.unwrap();
    wait_condition(
        &gatehouse_api(&client, "EgressPolicy", Some(&ns)),
        "big",
        "Ready",
        "True",
        None,
        LONG,
    )
    .await;
    println!(
        "EgressPolicy with three selectors at the limits Ready in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let over: Vec<(&str, Value)> = vec![
        ("matchLabels", {
            let mut s = selector.clone();
            s["matchLabels"]["one-more"] = json!("x");
            s
        }),
        ("matchExpressions", {
            let mut s = selector.clone();
            let extra = s["matchExpressions"][0].clone();
            s["matchExpressions"].as_array_mut().unwrap().push(extra);
            s
        }),
        ("values", {
            let mut s = selector.clone();
            s["matchExpressions"][0]["values"]
                .as_array_mut()
                .unwrap()
                .push(json!("x"));
            s
        }),
        ("key", {
            let mut s = selector.clone();
            s["matchExpressions"][0]["key"] = json!(format!(
                "q{}",
                s["matchExpressions"][0]["key"].as_str().unwrap()
            ));
            s
        }),
        ("operator", {
            let mut s = selector.clone();
            s["matchExpressions"][0]["operator"] = json!("Like");
            s
        }),
    ];
    for (field, s) in over {
        match apply(&client, &policy(&s), true).await {
            Err(kube::Error::Api(e)) => {
                assert_eq!(e.code, 422, "{field}: {e:?}");
                assert!(
                    e.message.contains(&format!("spec.podSelector.{field}"))
                        || e.message
                            .contains(&format!("spec.podSelector.matchExpressions[0].{field}")),
                    "{field}: the message does not name the field: {}",
                    e.message
                );
            }
            other => panic!("{field} over its limit was not refused: {other:?}"),
        }
    }
}
