//! The API server rejects invalid Gatehouse objects with a message naming the field: one
//! test per validation family (schema patterns, ranges, formats, enums, and each CEL rule).
//! Objects are sent with server-side dry run, so nothing is stored.

use gatehouse_tests::{apply, client};
use serde_json::{Value, json};

fn app(spec: Value) -> Value {
    json!({
        "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ExposedApp",
        "metadata": {"name": "v", "namespace": "default"},
        "spec": spec,
    })
}

fn base_spec() -> Value {
    json!({
        "selector": {"app": "v"},
        "ports": [{"name": "http", "port": 80}, {"name": "smtp", "port": 25}],
        "routes": [{"hosts": ["a.example.com"], "paths": [{"path": "/", "port": "http"}]}],
        "tcp": [{"port": "smtp", "addresses": ["192.0.2.1"], "hosts": ["mx.example.com"]}],
        "attachments": [{"network": "dmz", "ips": ["192.168.31.13/24"], "mac": "02:42:ac:11:00:04"}],
        "allowFrom": [{"app": {"name": "x"}}, {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}],
    })
}

fn network(spec: Value) -> Value {
    json!({
        "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ClusterNetwork",
        "metadata": {"name": "validation-test"}, "spec": spec,
    })
}

fn egress(spec: Value) -> Value {
    json!({
        "apiVersion": "gatehouse.dev/v1alpha1", "kind": "EgressPolicy",
        "metadata": {"name": "v", "namespace": "default"}, "spec": spec,
    })
}

/// Applies `obj` with dry run and asserts a 422 whose message contains every `needle`.
async fn rejected(obj: Value, needles: &[&str]) {
    let client = client().await;
    match apply(&client, &obj, true).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 422, "expected 422 Invalid, got {e:?}");
            for n in needles {
                assert!(
                    e.message.contains(n),
                    "message does not contain {n:?}:\n{}",
                    e.message
                );
            }
        }
        Err(e) => panic!("expected a validation error, got {e}"),
        Ok(_) => panic!("the API server accepted an invalid object: {obj}"),
    }
}

async fn accepted(obj: Value) {
    let client = client().await;
    if let Err(e) = apply(&client, &obj, true).await {
        panic!("valid object rejected: {e}\n{obj}");
    }
}

/// Sets the field at `pointer` (its parent must exist), adding it when absent.
fn with(mut v: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    match v
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("no {parent}"))
    {
        Value::Object(map) => {
            map.insert(key.to_string(), value);
        }
        Value::Array(items) => items[key.parse::<usize>().unwrap()] = value,
        other => panic!("{parent} is {other}"),
    }
    v
}

#[tokio::test]
async fn valid_base_objects_are_accepted() {
    // Guards every test below: each differs from these in exactly one place.
    accepted(app(base_spec())).await;
    accepted(network(json!({"ipFamilies": ["IPv4", "IPv6"]}))).await;
    accepted(egress(json!({"rules": [{"to": [{"fqdn": "*.example.com"}], "ports": [{"port": 443, "endPort": 444}]}]}))).await;
}

#[tokio::test]
async fn hosts_must_be_dns_names() {
    let spec = with(
        base_spec(),
        "/routes/0/hosts/0",
        json!("Bad_Host.example.com"),
    );
    rejected(app(spec), &["spec.routes[0].hosts[0]", "should match"]).await;
    let spec = with(base_spec(), "/tcp/0/hosts/0", json!("mx..example.com"));
    rejected(app(spec), &["spec.tcp[0].hosts[0]"]).await;
    // A leading wildcard is allowed; one in the middle is not.
    accepted(app(with(
        base_spec(),
        "/routes/0/hosts/0",
        json!("*.example.com"),
    )))
    .await;
    rejected(
        app(with(
            base_spec(),
            "/routes/0/hosts/0",
            json!("a.*.example.com"),
        )),
        &["spec.routes[0].hosts[0]"],
    )
    .await;
}

#[tokio::test]
async fn ports_must_be_in_range() {
    rejected(
        app(with(base_spec(), "/ports/0/port", json!(0))),
        &["spec.ports[0].port", "greater than or equal to 1"],
    )
    .await;
    rejected(
        app(with(base_spec(), "/ports/0/port", json!(65536))),
        &["spec.ports[0].port", "less than or equal to 65535"],
    )
    .await;
    rejected(
        egress(json!({"rules": [{"to": [{"cidr": "10.0.0.0/8"}], "ports": [{"port": 70000}]}]})),
        &["spec.rules[0].ports[0].port"],
    )
    .await;
    rejected(
        app(with(base_spec(), "/ports/0/name", json!("HTTP_PORT"))),
        &["spec.ports[0].name"],
    )
    .await;
}

#[tokio::test]
async fn ips_and_cidrs_must_parse_in_both_families() {
    rejected(
        app(with(
            base_spec(),
            "/tcp/0/addresses/0",
            json!("192.0.2.300"),
        )),
        &["spec.tcp[0].addresses[0]", "IPv4 or IPv6"],
    )
    .await;
    accepted(app(with(
        base_spec(),
        "/tcp/0/addresses/0",
        json!("2001:db8::25"),
    )))
    .await;
    rejected(
        app(with(base_spec(), "/allowFrom/1/cidr", json!("10.0.0.0/33"))),
        &["spec.allowFrom[1].cidr", "CIDR"],
    )
    .await;
    accepted(app(with(
        base_spec(),
        "/allowFrom/1/cidr",
        json!("2001:db8::/32"),
    )))
    .await;
    rejected(
        app(with(
            base_spec(),
            "/attachments/0/ips/0",
            json!("192.168.31.13"),
        )),
        &["spec.attachments[0].ips[0]"],
    )
    .await;
    rejected(
        network(json!({"loadBalancer": {"provider": "MetalLB", "pools": [{"name": "p", "addresses": ["10.0.0.1-2001:db8::1"]}]}})),
        &["spec.loadBalancer.pools[0].addresses[0]", "range"],
    )
    .await;
    accepted(network(json!({"loadBalancer": {"provider": "MetalLB", "pools": [{"name": "p", "addresses": ["10.0.0.1-10.0.0.9", "2001:db8::/120"]}]}})))
        .await;
    for percent in [0, 101] {
        rejected(
            network(json!({"loadBalancer": {"provider": "MetalLB", "pools": [{"name": "p", "addresses": ["10.0.0.0/30"], "warnAtPercent": percent}]}})),
            &["spec.loadBalancer.pools[0].warnAtPercent"],
        )
        .await;
    }
    accepted(network(json!({"loadBalancer": {"provider": "MetalLB", "pools": [{"name": "p", "addresses": ["10.0.0.0/30"], "warnAtPercent": 100}]}})))
        .await;
    rejected(
        network(json!({"ingress": {"external": {"className": "nginx", "addresses": ["nope"]}}})),
        &["spec.ingress.external.addresses[0]"],
    )
    .await;
}

#[tokio::test]
async fn mac_must_be_colon_hex() {
    rejected(
        app(with(
            base_spec(),
            "/attachments/0/mac",
            json!("02-42-ac-11-00-04"),
        )),
        &["spec.attachments[0].mac"],
    )
    .await;
    rejected(
        app(with(
            base_spec(),
            "/attachments/0/mac",
            json!("02:42:ac:11:00"),
        )),
        &["spec.attachments[0].mac"],
    )
    .await;
}

#[tokio::test]
async fn enums_are_closed() {
    rejected(
        app(with(base_spec(), "/routes/0/exposure", json!("Public"))),
        &["spec.routes[0].exposure", "Unsupported value"],
    )
    .await;
    rejected(
        app(with(base_spec(), "/ports/0/protocol", json!("ICMP"))),
        &["spec.ports[0].protocol"],
    )
    .await;
    rejected(
        network(json!({"loadBalancer": {"provider": "F5"}})),
        &["spec.loadBalancer.provider"],
    )
    .await;
    rejected(
        network(json!({"ipFamilies": ["IPv5"]})),
        &["spec.ipFamilies[0]"],
    )
    .await;
    rejected(
        network(json!({"policy": {"engine": "Calico"}})),
        &["spec.policy.engine"],
    )
    .await;
}

#[tokio::test]
async fn selector_must_not_be_empty() {
    rejected(
        app(with(base_spec(), "/selector", json!({}))),
        &["spec.selector", "at least 1"],
    )
    .await;
}

#[tokio::test]
async fn peers_need_exactly_one_kind() {
    let spec = with(
        base_spec(),
        "/allowFrom/0",
        json!({"app": {"name": "x"}, "cidr": "10.0.0.0/8"}),
    );
    rejected(app(spec), &["spec.allowFrom[0]", "exactly one of"]).await;
    rejected(
        app(with(base_spec(), "/allowFrom/0", json!({}))),
        &["spec.allowFrom[0]", "exactly one of"],
    )
    .await;
    rejected(
        app(with(
            base_spec(),
            "/allowFrom/0",
            json!({"app": {"name": "x"}, "except": ["10.0.0.0/8"]}),
        )),
        &["except is only allowed together with cidr"],
    )
    .await;
    // namespaceSelector and podSelector together are one kind of peer.
    accepted(app(with(
        base_spec(),
        "/allowFrom/0",
        json!({"namespaceSelector": {"matchLabels": {"a": "b"}}, "podSelector": {"matchLabels": {"c": "d"}}}),
    )))
    .await;
}

#[tokio::test]
async fn cel_unique_port_names() {
    let spec = with(base_spec(), "/ports/1/name", json!("http"));
    rejected(app(spec), &["spec.ports", "port names must be unique"]).await;
}

#[tokio::test]
async fn cel_route_ports_name_declared_ports() {
    rejected(
        app(with(base_spec(), "/routes/0/paths/0/port", json!("admin"))),
        &["spec.routes", "must name a port declared"],
    )
    .await;
}

#[tokio::test]
async fn cel_tcp_ports_name_declared_ports() {
    rejected(
        app(with(base_spec(), "/tcp/0/port", json!("imaps"))),
        &["spec.tcp", "must name a port declared"],
    )
    .await;
}

#[tokio::test]
async fn cel_unique_hosts() {
    let spec = with(
        base_spec(),
        "/routes",
        json!([{"hosts": ["a.example.com"]}, {"hosts": ["a.example.com"]}]),
    );
    rejected(
        app(spec),
        &["spec.routes", "a host may appear in only one route"],
    )
    .await;
    let spec = with(
        base_spec(),
        "/routes/0/hosts",
        json!(["a.example.com", "a.example.com"]),
    );
    rejected(app(spec), &["spec.routes[0].hosts", "hosts must be unique"]).await;
}

#[tokio::test]
async fn cel_fqdn_only_in_egress() {
    rejected(
        app(with(
            base_spec(),
            "/allowFrom/0",
            json!({"fqdn": "api.example.com"}),
        )),
        &["spec.allowFrom", "fqdn peers are only allowed"],
    )
    .await;
}

#[tokio::test]
async fn cel_distinct_ip_families() {
    rejected(
        network(json!({"ipFamilies": ["IPv6", "IPv6"]})),
        &["spec.ipFamilies", "must be distinct"],
    )
    .await;
    rejected(
        network(json!({"ipFamilies": ["IPv4", "IPv6", "IPv4"]})),
        &["spec.ipFamilies", "must have at most 2 items"],
    )
    .await;
}

#[tokio::test]
async fn cel_other_cross_field_rules() {
    rejected(
        egress(json!({"rules": [{"to": [{"cidr": "10.0.0.0/8"}], "ports": [{"port": 9000, "endPort": 8000}]}]})),
        &["spec.rules[0].ports[0].endPort", "endPort must be >= port"],
    )
    .await;
    rejected(
        network(json!({"ingress": {"external": {"className": "n", "addresses": ["192.0.2.1"], "service": {"namespace": "a", "name": "b"}}}})),
        &["spec.ingress.external", "either addresses or service"],
    )
    .await;
    rejected(
        network(json!({"ingress": {"external": {"className": "t", "controller": "Traefik", "implementation": "IngressNginx"}}})),
        &["spec.ingress.external", "implementation IngressNginx needs controller Nginx"],
    )
    .await;
    rejected(
        network(json!({"ingress": {"internal": {"className": "n", "implementation": "Haproxy"}}})),
        &["spec.ingress.internal.implementation", "Unsupported value"],
    )
    .await;
    accepted(network(json!({"ingress": {"external": {"className": "n", "implementation": "Traefik"}, "internal": {"className": "t", "controller": "Traefik", "implementation": "Traefik"}}}))).await;
    // Gateway tiers: exactly one of className and gateway; no Ingress-only fields.
    let gw = json!({"name": "public", "namespace": "gateways", "httpListener": "web"});
    rejected(
        network(json!({"ingress": {"external": {"className": "n", "gateway": gw}}})),
        &[
            "spec.ingress.external",
            "set exactly one of className (Ingress) or gateway (Gateway API)",
        ],
    )
    .await;
    rejected(
        network(json!({"ingress": {"external": {"controller": "Traefik"}}})),
        &["spec.ingress.external", "set exactly one of className"],
    )
    .await;
    rejected(
        network(json!({"ingress": {"external": {"gateway": gw, "controller": "Traefik", "entryPoints": {"https": "websecure"}}}})),
        &["spec.ingress.external.entryPoints", "entryPoints applies to Ingress tiers only"],
    )
    .await;
    rejected(
        network(json!({"ingress": {"external": {"gateway": gw, "implementation": "Traefik"}}})),
        &[
            "spec.ingress.external.implementation",
            "implementation applies to Ingress tiers only",
        ],
    )
    .await;
    rejected(
        network(json!({"ingress": {"external": {"gateway": {"name": "public", "namespace": "gateways"}}}})),
        &["spec.ingress.external.gateway.httpListener", "Required value"],
    )
    .await;
    accepted(network(json!({"ingress": {"external": {"gateway": gw, "controller": "Traefik"}, "internal": {"className": "n"}}}))).await;
    // BGP peering: unique peer names, ASNs 1-4294967295, an IP to dial, at least one peer.
    let bgp = |bgp: serde_json::Value| {
        network(json!({"loadBalancer": {"provider": "MetalLB", "bgp": bgp}}))
    };
    rejected(
        bgp(json!({"localASN": 64512, "peers": [{"name": "r", "address": "10.0.0.1", "asn": 1}, {"name": "r", "address": "10.0.0.2", "asn": 2}]})),
        &["spec.loadBalancer.bgp.peers", "peer names must be unique"],
    )
    .await;
    rejected(
        bgp(json!({"localASN": 0, "peers": [{"name": "r", "address": "10.0.0.1", "asn": 4294967296u64}]})),
        &["spec.loadBalancer.bgp.localASN", "spec.loadBalancer.bgp.peers[0].asn"],
    )
    .await;
    rejected(
        bgp(json!({"localASN": 64512, "peers": [{"name": "r", "address": "router.example.net", "asn": 64513}]})),
        &["spec.loadBalancer.bgp.peers[0].address", "must be an IPv4 or IPv6 address"],
    )
    .await;
    rejected(
        bgp(json!({"localASN": 64512, "peers": []})),
        &["spec.loadBalancer.bgp.peers"],
    )
    .await;
    accepted(bgp(json!({"localASN": 4294967295u32, "peers": [{"name": "r", "address": "2001:db8::1", "asn": 64512, "passwordSecretRef": {"name": "md5"}, "nodeSelector": {"matchLabels": {"rack": "r1"}}}]}))).await;
    // A tier's own load balancer: namespace and a matchLabels selector, instead of service
    // or addresses; Hetzner settings only with provider Hetzner, location or network zone.
    rejected(
        network(json!({"ingress": {"external": {"className": "n", "loadBalancer": {}}}})),
        &[
            "spec.ingress.external.loadBalancer",
            "loadBalancer needs namespace and a podSelector",
        ],
    )
    .await;
    rejected(
        network(json!({"ingress": {"external": {"className": "n", "namespace": "i", "podSelector": {"matchLabels": {"a": "b"}}, "addresses": ["192.0.2.1"], "loadBalancer": {}}}})),
        &["spec.ingress.external.loadBalancer", "loadBalancer replaces service and addresses"],
    )
    .await;
    accepted(network(json!({"ingress": {"external": {"className": "n", "namespace": "i", "podSelector": {"matchLabels": {"a": "b"}}, "loadBalancer": {"externalTrafficPolicy": "Cluster", "httpTargetPort": 8080}}}}))).await;
    rejected(
        network(json!({"loadBalancer": {"provider": "MetalLB", "hetzner": {"location": "fsn1"}}})),
        &[
            "spec.loadBalancer.hetzner",
            "hetzner needs provider Hetzner",
        ],
    )
    .await;
    rejected(
        network(json!({"loadBalancer": {"provider": "Hetzner", "hetzner": {"location": "fsn1", "networkZone": "eu-central"}}})),
        &["spec.loadBalancer.hetzner", "set location or networkZone, not both"],
    )
    .await;
    rejected(
        network(json!({"serviceIPFamilies": ["IPv4", "IPv4"]})),
        &["spec.serviceIPFamilies", "must be distinct"],
    )
    .await;
    // entryPoints only on Traefik tiers; allowEverywhere only from selectors and CIDRs.
    rejected(
        network(json!({"ingress": {"external": {"className": "n", "entryPoints": {"https": "websecure"}}}})),
        &["spec.ingress.external.entryPoints", "entryPoints needs controller Traefik"],
    )
    .await;
    accepted(network(json!({"ingress": {"external": {"className": "t", "controller": "Traefik", "entryPoints": {"http": "web", "https": "websecure"}}}}))).await;
    rejected(
        network(json!({"policy": {"allowEverywhere": [{"name": "p", "from": [{"fqdn": "x.example.com"}]}]}})),
        &["spec.policy.allowEverywhere[0].from", "only namespaceSelector/podSelector and cidr peers"],
    )
    .await;
    rejected(
        network(json!({"policy": {"allowEverywhere": [{"name": "p", "from": [{"cidr": "10.0.0.0/8"}]}, {"name": "p", "from": [{"cidr": "10.1.0.0/16"}]}]}})),
        &["spec.policy.allowEverywhere", "names must be unique"],
    )
    .await;
    accepted(network(json!({"policy": {"allowEverywhere": [{"name": "prometheus", "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}], "ports": [{"port": 9100}]}]}}))).await;
    // A tier publishes exactly one of addresses or a CNAME target.
    rejected(
        network(json!({"ingress": {"external": {"className": "n", "publish": {"addresses": ["203.0.113.7"], "hostname": "router.example.net"}}}})),
        &["spec.ingress.external.publish", "exactly one of addresses or hostname"],
    )
    .await;
    rejected(
        network(json!({"ingress": {"external": {"className": "n", "publish": {}}}})),
        &[
            "spec.ingress.external.publish",
            "exactly one of addresses or hostname",
        ],
    )
    .await;
    rejected(
        network(json!({"ingress": {"external": {"className": "n", "publish": {"addresses": ["192.168.0.300"]}}}})),
        &["spec.ingress.external.publish.addresses[0]", "must be an IPv4 or IPv6 address"],
    )
    .await;
    accepted(network(json!({"ingress": {"external": {"className": "n", "publish": {"hostname": "router.dyndns.example.net"}},
                                        "internal": {"className": "i", "issuerRef": {"name": "corp-pki"}}},
                            "dns": {"external": {"zone": "example.com", "publishPrivateAddresses": true}}}))).await;
    rejected(
        network(json!({"loadBalancer": {"provider": "MetalLB", "pools": [{"name": "p", "addresses": ["10.0.0.0/24"]}, {"name": "p", "addresses": ["10.0.1.0/24"]}]}})),
        &["spec.loadBalancer.pools", "pool names must be unique"],
    )
    .await;
    rejected(
        network(json!({"attachments": [{"name": "a", "master": "eth1"}, {"name": "a", "master": "eth2"}]})),
        &["spec.attachments", "attachment names must be unique"],
    )
    .await;
    rejected(
        network(json!({"attachments": [{"name": "a", "type": "ipvlan", "master": "eth1", "mode": "bridge"}]})),
        &["spec.attachments[0].mode", "ipvlan mode must be l2, l3 or l3s"],
    )
    .await;
}
