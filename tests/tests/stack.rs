//! Each real controller of the test stack (hack/stack-up.sh) does its part for Gatehouse's
//! children, checked where the result lands: cert-manager's certificate in the Secret (read
//! with openssl, chained to the stack's CA), MetalLB's address in the Service status and
//! the app's status, external-dns's records in each tier's BIND server (read with dig).
//! Every test has its own ClusterNetwork, namespace, zone and address range.

use std::sync::OnceLock;
use std::time::Duration;

use gatehouse_tests::*;
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject};
use serde_json::{Value, json};

static OPERATOR: OnceLock<Operator> = OnceLock::new();

const LONG: Duration = Duration::from_secs(60);

/// Starts the shared operator, makes a namespace and applies a ClusterNetwork named after
/// the test; returns (client, namespace, network name, zone).
async fn setup(prefix: &str, spec: impl FnOnce(&str) -> Value) -> (Client, String, String, String) {
    OPERATOR.get_or_init(Operator::start);
    let client = client().await;
    let ns = namespace(&client, prefix, json!({})).await;
    let net = format!("{prefix}-{}", std::process::id());
    let zone = format!("{net}.example.com");
    apply(&client, &json!({"apiVersion": gatehouse_api::API_VERSION, "kind": "ClusterNetwork", "metadata": {"name": net}, "spec": spec(&zone)}), false)
        .await
        .unwrap();
    (client, ns, net, zone)
}

fn app(ns: &str, name: &str, net: &str, spec: Value) -> Value {
    let mut s =
        json!({"network": net, "selector": {"app": name}, "ports": [{"name": "http", "port": 80}]});
    s.as_object_mut()
        .unwrap()
        .extend(spec.as_object().unwrap().clone());
    json!({"apiVersion": gatehouse_api::API_VERSION, "kind": "ExposedApp", "metadata": {"name": name, "namespace": ns}, "spec": s})
}

async fn ready(client: &Client, ns: &str, name: &str) -> DynamicObject {
    wait_condition(
        &gatehouse_api(client, "ExposedApp", Some(ns)),
        name,
        "Ready",
        "True",
        None,
        LONG,
    )
    .await
}

/// Applies app `web` with `spec` and waits until it is Ready with its DNS published.
async fn apply_published(client: &Client, ns: &str, net: &str, spec: Value) {
    apply(client, &app(ns, "web", net, spec), false)
        .await
        .unwrap();
    let obj = ready(client, ns, "web").await;
    assert_eq!(
        condition(&obj, "DNSPublished").map(|c| c.0),
        Some("True".into())
    );
}

async fn delete_network(client: &Client, net: &str) {
    let _ = gatehouse_api(client, "ClusterNetwork", None)
        .delete(net, &DeleteParams::default())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_manager_issues_for_exactly_the_tls_hosts_and_reissues_on_a_change() {
    let (client, ns, net, zone) = setup("certs", |zone| {
        json!({"ingress": {"external": {"className": "nginx", "addresses": ["192.0.2.1"]},
                           "internal": {"className": "nginx-internal", "addresses": ["10.1.2.4"]}},
               "tls": {"issuerRef": {"name": "letsencrypt"}},
               "dns": {"external": {"zone": zone}, "internal": {"zone": zone}}})
    })
    .await;
    // TLS on the external tier; a plain host on the internal one (routes of one tier share
    // an Ingress and so one TLS policy).
    let routes = |tls_hosts: &[&str]| {
        json!({"routes": [
            {"hosts": tls_hosts.iter().map(|h| format!("{h}.{zone}")).collect::<Vec<_>>(), "tls": true},
            {"hosts": [format!("plain.{zone}")], "exposure": "Internal", "tls": false, "redirectToHttps": false},
        ]})
    };
    apply(&client, &app(&ns, "web", &net, routes(&["a", "b"])), false)
        .await
        .unwrap();
    let obj = ready(&client, &ns, "web").await;
    assert_eq!(
        condition(&obj, "CertificateReady").map(|c| c.0),
        Some("True".into())
    );
    let cert = issued_certificate(&client, &ns, "web-external-tls")
        .await
        .unwrap();
    assert_eq!(
        cert.dns_names,
        [format!("a.{zone}"), format!("b.{zone}")],
        "exactly the TLS hosts, not the plain one"
    );
    assert!(
        cert.issuer.contains("Gatehouse test CA"),
        "issued by the stack's CA: {cert:?}"
    );

    // A changed host: Ready again only once cert-manager reissued for the new spec.
    apply(&client, &app(&ns, "web", &net, routes(&["a", "d"])), false)
        .await
        .unwrap();
    ready(&client, &ns, "web").await;
    let cert = issued_certificate(&client, &ns, "web-external-tls")
        .await
        .unwrap();
    assert_eq!(
        cert.dns_names,
        [format!("a.{zone}"), format!("d.{zone}")],
        "Ready for the new generation means reissued: {cert:?}"
    );
    delete_network(&client, &net).await;
}

/// Seed 003's split: internal names come from the company PKI (the internal tier's own
/// issuer) and never go into the order to the public issuer; a host on both tiers is in
/// both certificates, and each is issued by its tier's issuer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tier_gets_its_own_certificate_from_its_own_issuer() {
    let (client, ns, net, zone) = setup("tiercerts", |zone| {
        json!({"ingress": {"external": {"className": "nginx", "addresses": ["192.0.2.1"]},
                           "internal": {"className": "nginx-internal", "addresses": ["10.1.2.4"],
                                        "issuerRef": {"name": "corp-pki"}}},
               "tls": {"issuerRef": {"name": "letsencrypt"}},
               "dns": {"external": {"zone": zone}, "internal": {"zone": zone}}})
    })
    .await;
    let spec = json!({"routes": [
        {"hosts": [format!("shop.{zone}")]},
        {"hosts": [format!("admin.{zone}")], "exposure": "Internal"},
        {"hosts": [format!("status.{zone}")], "exposure": "Both"},
    ]});
    apply(&client, &app(&ns, "web", &net, spec), false)
        .await
        .unwrap();
    let obj = ready(&client, &ns, "web").await;
    assert_eq!(
        condition(&obj, "CertificateReady").map(|c| c.0),
        Some("True".into())
    );
    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns);
    for (tier, hosts, issuer) in [
        ("external", ["shop", "status"], "letsencrypt"),
        ("internal", ["admin", "status"], "corp-pki"),
    ] {
        let secret = format!("web-{tier}-tls");
        let cert = issued_certificate(&client, &ns, &secret).await.unwrap();
        let want: Vec<String> = hosts.iter().map(|h| format!("{h}.{zone}")).collect();
        assert_eq!(cert.dns_names, want, "{secret}: only the hosts of its tier");
        let annotations = secrets
            .get(&secret)
            .await
            .unwrap()
            .metadata
            .annotations
            .unwrap_or_default();
        assert_eq!(
            annotations
                .get("cert-manager.io/issuer-name")
                .map(String::as_str),
            Some(issuer),
            "{secret} issued by its tier's issuer"
        );
    }
    delete_network(&client, &net).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metallb_assigns_from_the_named_pool_and_honours_a_requested_address() {
    let pool = format!("stack-{}", std::process::id());
    let p = pool.clone();
    let (client, ns, net, zone) = setup("lb", move |zone| {
        json!({"loadBalancer": {"provider": "MetalLB", "namespace": "metallb-system",
                                "pools": [{"name": p, "addresses": ["192.0.2.64/28"]}]},
               "ingress": {"external": {"className": "nginx", "addresses": ["192.0.2.1"]}},
               "dns": {"external": {"zone": zone}}})
    })
    .await;
    let tcp = |port: &str, host: &str, addresses: Value| {
        json!({"ports": [{"name": port, "port": 25}],
               "tcp": [{"port": port, "pool": pool, "addresses": addresses, "hosts": [format!("{host}.{zone}")]}]})
    };
    apply(
        &client,
        &app(&ns, "mail", &net, tcp("smtp", "mx", json!([]))),
        false,
    )
    .await
    .unwrap();
    apply(
        &client,
        &app(
            &ns,
            "relay",
            &net,
            tcp("smtp", "relay", json!(["192.0.2.77"])),
        ),
        false,
    )
    .await
    .unwrap();
    let services = Api::<Service>::namespaced(client.clone(), &ns);
    let assigned = |s: &Service| -> Vec<String> {
        s.status
            .as_ref()
            .and_then(|st| st.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .map(|i| i.iter().filter_map(|x| x.ip.clone()).collect())
            .unwrap_or_default()
    };
    for (name, check) in [
        (
            "mail",
            Box::new(|ip: &str| {
                let last: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
                ip.starts_with("192.0.2.") && (64..80).contains(&last)
            }) as Box<dyn Fn(&str) -> bool>,
        ),
        ("relay", Box::new(|ip: &str| ip == "192.0.2.77")),
    ] {
        let obj = ready(&client, &ns, name).await;
        assert_eq!(
            condition(&obj, "AddressAssigned").map(|c| c.0),
            Some("True".into()),
            "{name}"
        );
        let svc = services.get(&format!("{name}-external")).await.unwrap();
        let ips = assigned(&svc);
        assert!(
            ips.len() == 1 && check(&ips[0]),
            "{name}: MetalLB assigned {ips:?}"
        );
        let status_ips: Vec<&str> = obj.data["status"]["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a["ip"].as_str())
            .collect();
        assert_eq!(status_ips, [ips[0].as_str()], "{name}: status.addresses");
        let host = if name == "mail" { "mx" } else { "relay" };
        wait_dns("external", &format!("{host}.{zone}"), "A", &ips, LONG).await;
        println!(
            "{name}: MetalLB assigned {ips:?} (annotations {:?})",
            svc.metadata.annotations
        );
    }
    delete_network(&client, &net).await;
}

/// Issue 12 item 4 on the real MetalLB: a two-address pool. Two apps fill it; the network
/// reports size 2, allocated 2, free 0 from MetalLB's assignments, warns with
/// `PoolCapacity=False` (`PoolNearlyFull`, and a Warning Event) and stays Ready. A third
/// app's Service stays pending: the app is Stalled with `PoolExhausted` naming the pool.
/// Deleting the first app frees its address: MetalLB gives it to the pending Service and
/// the third app goes Ready; deleting the second leaves 1 of 2 (50%) and the warning clears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_metallb_pool_stalls_the_next_app_until_an_address_is_freed() {
    let pool = format!("full-{}", std::process::id());
    let p = pool.clone();
    // 198.18.0.40-198.18.0.41: used by no other test (MetalLB rejects overlapping pools).
    let (client, ns, net, _zone) = setup("poolfull", move |_| {
        json!({"loadBalancer": {"provider": "MetalLB", "namespace": "metallb-system",
                                "pools": [{"name": p, "addresses": ["198.18.0.40-198.18.0.41"]}]}})
    })
    .await;
    let spec =
        json!({"ports": [{"name": "smtp", "port": 25}], "tcp": [{"port": "smtp", "pool": pool}]});
    let apps = gatehouse_api(&client, "ExposedApp", Some(&ns));
    let nets = gatehouse_api(&client, "ClusterNetwork", None);
    let services = Api::<Service>::namespaced(client.clone(), &ns);
    let address = |s: &Service| -> Option<String> {
        s.status
            .as_ref()?
            .load_balancer
            .as_ref()?
            .ingress
            .as_ref()?
            .first()?
            .ip
            .clone()
    };
    for name in ["one", "two"] {
        apply(&client, &app(&ns, name, &net, spec.clone()), false)
            .await
            .unwrap();
        ready(&client, &ns, name).await;
    }
    let mut held = Vec::new();
    for name in ["one", "two"] {
        let svc = services.get(&format!("{name}-external")).await.unwrap();
        held.push(address(&svc).expect("MetalLB assigned an address"));
    }
    held.sort();
    assert_eq!(
        held,
        ["198.18.0.40", "198.18.0.41"],
        "MetalLB filled the pool"
    );

    let pools = |obj: &DynamicObject| obj.data["status"]["pools"].clone();
    let obj = wait_condition(
        &nets,
        &net,
        "PoolCapacity",
        "False",
        Some("PoolNearlyFull"),
        LONG,
    )
    .await;
    assert_eq!(
        pools(&obj),
        json!([{"name": pool, "size": 2, "allocated": 2, "free": 0}]),
        "counted from MetalLB's assignments"
    );
    let (_, _, message) = condition(&obj, "PoolCapacity").unwrap();
    assert_eq!(
        message,
        format!("pool {pool:?}: 2 of 2 addresses allocated (100%, warnAtPercent 80), 0 free")
    );
    assert_eq!(
        condition(&obj, "Ready").map(|c| c.0),
        Some("True".into()),
        "a nearly full pool is a warning, not a failure"
    );
    let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), "default");
    let warned = events
        .list(
            &kube::api::ListParams::default()
                .fields(&format!("involvedObject.name={net},reason=PoolNearlyFull")),
        )
        .await
        .unwrap();
    assert!(
        !warned.items.is_empty(),
        "a Warning Event tells the platform team"
    );

    apply(&client, &app(&ns, "three", &net, spec.clone()), false)
        .await
        .unwrap();
    let obj = wait_condition(
        &apps,
        "three",
        "Stalled",
        "True",
        Some("PoolExhausted"),
        LONG,
    )
    .await;
    let (_, _, message) = condition(&obj, "Stalled").unwrap();
    assert_eq!(
        message,
        format!(
            "spec.tcp[0].pool: pool {pool:?} of ClusterNetwork {net} has no free IPv4 address (2 of 2 allocated): Service {ns}/three-external waits for one; free an address or add addresses to the pool"
        )
    );
    let pending = services.get("three-external").await.unwrap();
    assert_eq!(address(&pending), None, "MetalLB has no address for it");

    // Freeing one: the pending Service gets it, the app goes on by itself.
    let freed = address(&services.get("one-external").await.unwrap()).unwrap();
    apps.delete("one", &DeleteParams::default()).await.unwrap();
    ready(&client, &ns, "three").await;
    let got = address(&services.get("three-external").await.unwrap());
    assert_eq!(
        got.as_deref(),
        Some(freed.as_str()),
        "MetalLB gave it the freed address"
    );
    let obj = eventually(LONG, "pool status after the move", || async {
        let obj = nets.get(&net).await.unwrap();
        (pools(&obj) == json!([{"name": pool, "size": 2, "allocated": 2, "free": 0}]))
            .then_some(obj)
    })
    .await;
    assert_eq!(condition(&obj, "PoolCapacity").unwrap().1, "PoolNearlyFull");

    // Below the threshold again: the warning clears.
    apps.delete("two", &DeleteParams::default()).await.unwrap();
    let obj = wait_condition(&nets, &net, "PoolCapacity", "True", None, LONG).await;
    assert_eq!(
        pools(&obj),
        json!([{"name": pool, "size": 2, "allocated": 1, "free": 1}])
    );
    println!("pool {pool}: MetalLB held {held:?}; {freed} went from one to three");
    apps.delete("three", &DeleteParams::default())
        .await
        .unwrap();
    delete_network(&client, &net).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_dns_publishes_each_tier_into_its_own_bind_and_removes_on_delete() {
    // One zone on both tiers, different addresses: split horizon.
    let (client, ns, net, zone) = setup("splitdns", |zone| {
        json!({"ipFamilies": ["IPv4", "IPv6"],
               "ingress": {"external": {"className": "nginx", "addresses": ["192.0.2.1", "2001:db8::1"]},
                           "internal": {"className": "nginx-internal", "addresses": ["10.1.2.3", "fd00::3"]}},
               "dns": {"external": {"zone": zone}, "internal": {"zone": zone}}})
    })
    .await;
    let spec = json!({"routes": [
        {"hosts": [format!("www.{zone}")], "exposure": "Both", "tls": false, "redirectToHttps": false},
        {"hosts": [format!("admin.{zone}")], "exposure": "Internal", "tls": false, "redirectToHttps": false},
    ]});
    apply_published(&client, &ns, &net, spec).await;
    let www = format!("www.{zone}");
    let admin = format!("admin.{zone}");
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let expected: [(&str, &str, &str, Vec<String>); 8] = [
        ("external", &www, "A", s(&["192.0.2.1"])),
        ("external", &www, "AAAA", s(&["2001:db8::1"])),
        ("internal", &www, "A", s(&["10.1.2.3"])),
        ("internal", &www, "AAAA", s(&["fd00::3"])),
        ("internal", &admin, "A", s(&["10.1.2.3"])),
        ("internal", &admin, "AAAA", s(&["fd00::3"])),
        ("external", &admin, "A", vec![]),
        ("external", &admin, "AAAA", vec![]),
    ];
    for (tier, host, rtype, want) in &expected {
        wait_dns(tier, host, rtype, want, LONG).await;
    }
    println!(
        "split horizon: {}",
        expected
            .iter()
            .map(|(t, h, r, _)| format!("{t} {h} {r} -> {:?}", dig(t, h, r)))
            .collect::<Vec<_>>()
            .join("; ")
    );

    gatehouse_api(&client, "ExposedApp", Some(&ns))
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    for (tier, host, rtype, _) in &expected {
        wait_dns(tier, host, rtype, &[], LONG).await;
    }
    delete_network(&client, &net).await;
}

/// What public DNS points to, through the real external-dns into BIND: a tier published by
/// name (`publish.hostname`, a DynDNS name) gets CNAME records (with external-dns's TXT
/// registry beside them), and with split horizon (`dns.internal.publishExternalHosts`) LAN
/// clients resolve the same external host to the external tier's own LAN address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_published_by_name_gets_cnames_and_the_lan_its_own_address() {
    let (client, ns, net, zone) = setup("cname", |zone| {
        json!({"ingress": {"external": {"className": "nginx", "addresses": ["192.168.77.3"],
                                        "publish": {"hostname": format!("home.dyndns.{zone}")}},
                           "internal": {"className": "nginx-internal", "addresses": ["192.168.77.5"]}},
               "dns": {"external": {"zone": zone},
                       "internal": {"zone": zone, "publishExternalHosts": true}}})
    })
    .await;
    let spec = json!({"routes": [{"hosts": [format!("www.{zone}")], "tls": false, "redirectToHttps": false}]});
    apply_published(&client, &ns, &net, spec).await;
    let www = format!("www.{zone}");
    let target = format!("home.dyndns.{zone}");
    wait_dns(
        "external",
        &www,
        "CNAME",
        std::slice::from_ref(&target),
        LONG,
    )
    .await;
    wait_dns("internal", &www, "A", &["192.168.77.3".to_string()], LONG).await;
    // The LAN address never reaches public DNS (an A query finds only the CNAME).
    let a = dig("external", &www, "A");
    assert!(a.records.is_empty(), "external A records: {a:?}");
    println!(
        "publish by name: external {www} CNAME -> {:?}; internal {www} A -> {:?}",
        dig("external", &www, "CNAME"),
        dig("internal", &www, "A")
    );
    gatehouse_api(&client, "ExposedApp", Some(&ns))
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    wait_dns("external", &www, "CNAME", &[], LONG).await;
    wait_dns("internal", &www, "A", &[], LONG).await;
    delete_network(&client, &net).await;
}

/// Lines of a tests/stack list file, without comments and blank lines.
fn stack_list(file: &str) -> Vec<String> {
    std::fs::read_to_string(root().join("tests/stack").join(file))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_stack_serves_every_zone_and_issuer_the_sample_sets_name() {
    let zones: Vec<(String, String)> = stack_list("zones.txt")
        .iter()
        .map(|l| {
            let (tier, zone) = l.split_once(' ').unwrap();
            (tier.to_string(), zone.trim().to_string())
        })
        .collect();
    let issuers = stack_list("issuers.txt");
    let mut checked = 0;
    for set in sample_sets() {
        for net in sample_objects(&set)
            .into_iter()
            .filter(|o| o["kind"] == "ClusterNetwork")
        {
            for tier in ["external", "internal"] {
                let Some(zone) = net["spec"]["dns"][tier]["zone"].as_str() else {
                    continue;
                };
                assert!(
                    zones
                        .iter()
                        .any(|(t, z)| t == tier && (zone == z || zone.ends_with(&format!(".{z}")))),
                    "{}: the {tier} zone {zone} is not served by tests/stack/zones.txt",
                    set.display()
                );
                checked += 1;
            }
        }
        // The network's issuer and any app's own.
        for obj in sample_objects(&set)
            .into_iter()
            .filter(|o| o["kind"] == "ClusterNetwork" || o["kind"] == "ExposedApp")
        {
            let issuer_ref = &obj["spec"]["tls"]["issuerRef"];
            if let Some(issuer) = issuer_ref["name"].as_str() {
                assert!(
                    issuers.iter().any(|i| i == issuer),
                    "{}: issuer {issuer} is not in tests/stack/issuers.txt",
                    set.display()
                );
                assert_ne!(
                    issuer_ref["kind"], "Issuer",
                    "the stack makes ClusterIssuers only"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 14, "{checked} zones and issuers checked");
    // The zones of one tier must not nest (external-dns takes the first suffix match).
    for (t, a) in &zones {
        for (u, b) in &zones {
            assert!(
                t != u || a == b || !a.ends_with(&format!(".{b}")),
                "zones {a} and {b} of tier {t} nest"
            );
        }
    }
}

/// The BGP component of the stack (MetalLB's speaker and a GoBGP router) for as long as
/// this lives: its speaker also answers ARP for L2 pools, which no other test wants.
struct Bgp;

impl Bgp {
    fn start() -> Bgp {
        stack_component(true, "bgp");
        Bgp
    }
}

impl Drop for Bgp {
    fn drop(&mut self) {
        let _ = std::process::Command::new(root().join("hack/stack-down.sh"))
            .arg("bgp")
            .env("CLUSTER_DIR", cluster_dir())
            .output();
    }
}

/// The routes the stack's BGP router holds: (prefix, next hop).
fn bgp_routes() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(stack_env("BGP_RIB_FILE")).unwrap_or_default();
    let rib: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    rib["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["prefix"].as_str().unwrap_or_default().to_string(),
                r["nextHop"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// MetalLB's real speaker (native BGP, a host process for the node) and a real BGP router:
/// a pool marked BGP is not announced while the ClusterNetwork declares no peer (and the
/// network says so: BGPPeerMissing); once Gatehouse renders the BGPPeer, the router learns
/// the Service's address with the node as next hop (a real pod on the node: ETP Local),
/// and it is withdrawn when the app goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metallb_announces_a_bgp_pool_to_the_declared_peer_and_withdraws_it() {
    let node_ip = cluster_env("NODE_IP").expect("this test needs the node (make test runs one)");
    let _bgp = Bgp::start();
    let (router, router_asn, speaker_asn) = (
        stack_env("BGP_ROUTER_ADDR"),
        stack_env("BGP_ROUTER_ASN"),
        stack_env("BGP_SPEAKER_ASN"),
    );
    let pool = format!("bgp-{}", std::process::id());
    let p = pool.clone();
    // 198.18.0.16/28: used by no other test (MetalLB rejects overlapping pools).
    let network = move |zone: &str, bgp: Option<Value>| {
        let mut lb = json!({"provider": "MetalLB", "namespace": "metallb-system",
                            "pools": [{"name": p, "addresses": ["198.18.0.16/28"], "advertisement": "BGP"}]});
        if let Some(b) = bgp {
            lb["bgp"] = b;
        }
        json!({"loadBalancer": lb,
               "ingress": {"external": {"className": "nginx", "addresses": ["192.0.2.1"]}},
               "dns": {"external": {"zone": zone}}})
    };
    let n = network.clone();
    let (client, ns, net, zone) = setup("bgp", move |zone| n(zone, None)).await;
    let networks = gatehouse_api(&client, "ClusterNetwork", None);
    let obj = wait_condition(
        &networks,
        &net,
        "Stalled",
        "True",
        Some("BGPPeerMissing"),
        LONG,
    )
    .await;
    assert!(
        condition(&obj, "Stalled")
            .unwrap()
            .2
            .contains("spec.loadBalancer.pools[0].advertisement"),
        "names the field"
    );

    let web = app(
        &ns,
        "web",
        &net,
        json!({"tcp": [{"port": "http", "pool": pool}]}),
    );
    apply(&client, &web, false).await.unwrap();
    for w in workloads(std::slice::from_ref(&web)) {
        apply(&client, &w, false).await.unwrap();
    }
    let services = Api::<Service>::namespaced(client.clone(), &ns);
    let ip = eventually(LONG, "MetalLB's address for web-external", || async {
        let svc = services.get("web-external").await.ok()?;
        svc.status?.load_balancer?.ingress?.first()?.ip.clone()
    })
    .await;
    let deployments =
        Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), &ns);
    eventually(LONG, "the web pod ready on the node", || async {
        let d = deployments.get("web-backend").await.ok()?;
        (d.status?.ready_replicas? >= 1).then_some(())
    })
    .await;
    let prefix = format!("{ip}/32");
    // Address and endpoint are there; without a BGPPeer nothing may announce it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        !bgp_routes().iter().any(|(p, _)| *p == prefix),
        "announced without a peer: {:?}",
        bgp_routes()
    );

    // The platform declares the router: Gatehouse renders the BGPPeer, the speaker dials.
    let peer = json!({"localASN": speaker_asn.parse::<u32>().unwrap(),
                      "peers": [{"name": format!("router-{}", std::process::id()),
                                 "address": router, "asn": router_asn.parse::<u32>().unwrap()}]});
    apply(
        &client,
        &json!({"apiVersion": gatehouse_api::API_VERSION, "kind": "ClusterNetwork",
                           "metadata": {"name": net}, "spec": network(&zone, Some(peer))}),
        false,
    )
    .await
    .unwrap();
    wait_condition(&networks, &net, "Ready", "True", None, LONG).await;
    let announced = eventually(
        Duration::from_secs(90),
        "the router learning the address",
        || async { bgp_routes().into_iter().find(|(p, _)| *p == prefix) },
    )
    .await;
    assert_eq!(announced.1, node_ip, "next hop: the node");
    println!(
        "bgp: {prefix} announced to {router} with next hop {}",
        announced.1
    );

    gatehouse_api(&client, "ExposedApp", Some(&ns))
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    eventually(Duration::from_secs(90), "the route withdrawn", || async {
        (!bgp_routes().iter().any(|(p, _)| *p == prefix)).then_some(())
    })
    .await;
    delete_network(&client, &net).await;
}
