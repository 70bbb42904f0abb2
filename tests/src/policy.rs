//! NetworkPolicy truth tables derived from the Gatehouse objects themselves.
//!
//! A sample set's ClusterNetwork, ExposedApps and EgressPolicies say, in the words of
//! shared/design/api.md, which connections should be possible. This module turns that into
//! expectations, independently of the renderer: [`probe_pods`] and [`probe_namespaces`] add
//! the pods a truth table needs beyond the apps' workloads (ingress controllers, the cluster
//! DNS, ACME solvers, a stranger per namespace, an outsider, and pods standing for peers that
//! nothing else matches), [`expected_probes`] derives the connections to try and their
//! verdicts from the objects' meaning, [`evaluate`] asks the `gatehouse-policy` helper
//! (tests/stack/policy) what the rendered NetworkPolicies actually allow, and [`compare`]
//! puts the two side by side.
//!
//! Semantics (a connection is allowed iff the destination admits it (ingress) and the
//! source may send it (egress)):
//! - Ingress at pod P in namespace N. P is isolated when an ExposedApp of N selects it, or
//!   N is default-deny with `ingress: true`. An isolated P admits: from the controller pods
//!   of a tier the app routes on, that tier's route target ports (any source when the tier
//!   names neither `namespace` nor `podSelector`); from any source of the network's address
//!   families, the app's `tcp[]` target ports; from the app's `allowFrom` peers, every port;
//!   and, for a cert-manager HTTP-01 solver pod in a default-deny-ingress namespace, 8089/TCP
//!   from the controller pods of any tier (any source when no tier says where they run).
//! - Egress at pod S in namespace M. S is isolated when M is default-deny with
//!   `egress: true` or an EgressPolicy of M selects it. An isolated S may reach: the cluster
//!   DNS pods on 53/UDP and 53/TCP (always under default deny; under an EgressPolicy with
//!   `allowDNS`), and every destination a `rules[].to` peer of a selecting EgressPolicy
//!   matches, on the rule's ports (all ports when none). fqdn peers cannot be said by a
//!   NetworkPolicy and are left out (see [`probe_notes`]). Addresses outside the cluster are
//!   never isolated.
//! - Default deny is judged over every namespace given: the set's Namespace objects, the
//!   namespaces holding its objects, and the namespaces passed to [`expected_probes`] (the
//!   probe namespaces, and in a live cluster every namespace there is).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use serde_json::{Value, json};

pub type Labels = BTreeMap<String, String>;

/// The namespace of the outsider pod, which no Gatehouse object selects.
pub const OUTSIDER_NAMESPACE: &str = "gatehouse-probe-outsider";
/// Where a tier's controller pod goes when the tier names a podSelector but no namespace
/// (then its pods may run in any namespace).
pub const INGRESS_NAMESPACE: &str = "gatehouse-probe-ingress";
/// Label every probe pod carries, with its role.
pub const PROBE_LABEL: &str = "gatehouse.dev/probe";
pub const ACME_SOLVER_LABEL: &str = "acme.cert-manager.io/http01-solver";
pub const ACME_SOLVER_PORT: i64 = 8089;
/// The port probe pods listen on besides the ones probes reach them on.
pub const PROBE_PORT: i64 = 8080;
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

const EXTERNAL_V4: &str = "203.0.113.250";
const EXTERNAL_V6: &str = "2001:db8:beef::250";

pub const STRANGER: &str = "probe-stranger";
pub const OUTSIDER: &str = "probe-outsider";
pub const DNS: &str = "probe-dns";
pub const ACME: &str = "probe-acme";

// ---------------------------------------------------------------------------------------
// The Gatehouse objects, with the contract's defaults applied.

struct Tier {
    name: String,
    namespace: Option<String>,
    pod_selector: Option<Value>,
}

impl Tier {
    /// Whether the tier says where its controller pods run.
    fn located(&self) -> bool {
        self.namespace.is_some() || self.pod_selector.is_some()
    }
    fn controller_pod(&self, network: &str) -> String {
        if network == "default" {
            format!("probe-ingress-{}", self.name)
        } else {
            format!("probe-ingress-{network}-{}", self.name)
        }
    }
    fn controller_namespace(&self) -> String {
        self.namespace
            .clone()
            .unwrap_or_else(|| INGRESS_NAMESPACE.to_string())
    }
    /// Whether `pod` is one of the tier's controller pods.
    fn matches(&self, pod: &Pod) -> bool {
        self.located()
            && self.namespace.as_ref().is_none_or(|n| *n == pod.ns)
            && self
                .pod_selector
                .as_ref()
                .is_none_or(|s| selector_matches(s, &pod.labels))
    }
}

struct DefaultDeny {
    selector: Value,
    ingress: bool,
    egress: bool,
}

struct Network {
    name: String,
    families: Vec<String>,
    tiers: Vec<Tier>,
    dns_namespace: String,
    dns_selector: Value,
    default_deny: Option<DefaultDeny>,
    /// `policy.allowEverywhere`: (name, sources, ports) every isolated pod admits.
    allow_everywhere: Vec<(String, Rule)>,
}

impl Network {
    fn is_dns(&self, pod: &Pod) -> bool {
        pod.ns == self.dns_namespace && selector_matches(&self.dns_selector, &pod.labels)
    }
    fn has_family(&self, ip: IpAddr) -> bool {
        let f = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
        self.families.iter().any(|x| x == f)
    }
}

#[derive(Clone)]
struct AppPort {
    name: String,
    target: i64,
    protocol: String,
}

struct App {
    ns: String,
    name: String,
    network: String,
    selector: Labels,
    ports: Vec<AppPort>,
    /// Per route: the tiers it is exposed on and the port names of its paths (None: the
    /// app's first port).
    routes: Vec<(Vec<String>, Vec<Option<String>>)>,
    tcp: Vec<String>,
    allow_from: Vec<Value>,
    /// `spec.isolation: Isolated` (else Auto).
    isolated: bool,
}

impl App {
    fn selects(&self, pod: &Pod) -> bool {
        pod.ns == self.ns
            && self
                .selector
                .iter()
                .all(|(k, v)| pod.labels.get(k) == Some(v))
    }
    fn port(&self, name: Option<&str>) -> Option<&AppPort> {
        match name {
            Some(n) => self.ports.iter().find(|p| p.name == n),
            None => self.ports.first(),
        }
    }
    /// (target port, protocol) of the routes on `tier`, if the network defines the tier.
    fn route_ports(&self, tier: &str) -> Vec<(i64, String)> {
        let mut out = Vec::new();
        for (tiers, names) in &self.routes {
            if !tiers.iter().any(|t| t == tier) {
                continue;
            }
            let names = if names.is_empty() {
                vec![None]
            } else {
                names.clone()
            };
            for n in names {
                if let Some(p) = self.port(n.as_deref()) {
                    push_unique(&mut out, (p.target, p.protocol.clone()));
                }
            }
        }
        out
    }
    fn tcp_ports(&self) -> Vec<(i64, String)> {
        let mut out = Vec::new();
        for t in &self.tcp {
            if let Some(p) = self.port(Some(t)) {
                push_unique(&mut out, (p.target, p.protocol.clone()));
            }
        }
        out
    }
}

struct PortRange {
    port: i64,
    end: i64,
    protocol: String,
}

struct Rule {
    to: Vec<Value>,
    ports: Vec<PortRange>,
}

impl Rule {
    fn allows_port(&self, port: i64, protocol: &str) -> bool {
        self.ports.is_empty()
            || self
                .ports
                .iter()
                .any(|p| p.protocol == protocol && p.port <= port && port <= p.end)
    }
}

struct Egp {
    ns: String,
    name: String,
    network: String,
    selector: Value,
    allow_dns: bool,
    rules: Vec<Rule>,
}

impl Egp {
    fn selects(&self, pod: &Pod) -> bool {
        pod.ns == self.ns && selector_matches(&self.selector, &pod.labels)
    }
}

struct Model {
    networks: Vec<Network>,
    apps: Vec<App>,
    policies: Vec<Egp>,
    /// Service selectors by (namespace, name); a Service without a selector resolves to
    /// nothing.
    services: BTreeMap<(String, String), Labels>,
    /// The namespaces the set knows, with their labels (default deny is judged on them).
    namespaces: BTreeMap<String, Labels>,
    /// Namespaces the set declares as objects.
    declared: BTreeSet<String>,
    /// Where the API server is reached (the `apiServer` peer): the `default/kubernetes`
    /// Service's cluster IPs and ports and its EndpointSlices' ready addresses and ports,
    /// when the objects include them (the live tests add the cluster's).
    api_addresses: Vec<IpAddr>,
    api_ports: Vec<i64>,
}

fn str_of(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn ns_of(o: &Value) -> String {
    o["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string()
}

/// A label map (`metadata.labels`, a selector's `matchLabels`) as Labels.
pub fn labels_of(v: &Value) -> Labels {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
        .collect()
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

impl Model {
    fn new(objects: &[Value]) -> Model {
        let mut m = Model {
            networks: vec![],
            apps: vec![],
            policies: vec![],
            services: BTreeMap::new(),
            namespaces: BTreeMap::new(),
            declared: BTreeSet::new(),
            api_addresses: vec![],
            api_ports: vec![],
        };
        for o in objects {
            let spec = &o["spec"];
            match o["kind"].as_str().unwrap_or_default() {
                "Namespace" => {
                    let name = o["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let mut labels = labels_of(&o["metadata"]["labels"]);
                    labels.insert(NAMESPACE_NAME_LABEL.into(), name.clone());
                    m.declared.insert(name.clone());
                    m.namespaces.insert(name, labels);
                }
                "Service" if ns_of(o) == "default" && o["metadata"]["name"] == "kubernetes" => {
                    let ips = spec["clusterIPs"].as_array().cloned().unwrap_or_default();
                    for ip in ips.iter().filter_map(|v| v.as_str()?.parse().ok()) {
                        push_unique(&mut m.api_addresses, ip);
                    }
                    for port in spec["ports"].as_array().into_iter().flatten() {
                        if let Some(n) = port["port"].as_i64() {
                            push_unique(&mut m.api_ports, n);
                        }
                    }
                }
                "EndpointSlice"
                    if ns_of(o) == "default"
                        && o["metadata"]["labels"]["kubernetes.io/service-name"]
                            == "kubernetes" =>
                {
                    for e in o["endpoints"].as_array().into_iter().flatten() {
                        if e["conditions"]["ready"] == json!(false) {
                            continue;
                        }
                        let addrs = e["addresses"].as_array().cloned().unwrap_or_default();
                        for ip in addrs.iter().filter_map(|v| v.as_str()?.parse().ok()) {
                            push_unique(&mut m.api_addresses, ip);
                        }
                    }
                    for port in o["ports"].as_array().into_iter().flatten() {
                        if let Some(n) = port["port"].as_i64() {
                            push_unique(&mut m.api_ports, n);
                        }
                    }
                }
                "Service" => {
                    let sel = labels_of(&spec["selector"]);
                    if !sel.is_empty() {
                        m.services.insert(
                            (
                                ns_of(o),
                                o["metadata"]["name"].as_str().unwrap().to_string(),
                            ),
                            sel,
                        );
                    }
                }
                "ClusterNetwork" => m.networks.push(parse_network(o)),
                "ExposedApp" => m.apps.push(parse_app(o)),
                "EgressPolicy" => m.policies.push(parse_egp(o)),
                _ => {}
            }
        }
        let held: Vec<String> = objects
            .iter()
            .filter(|o| matches!(o["kind"].as_str(), Some("ExposedApp" | "EgressPolicy")))
            .map(ns_of)
            .collect();
        for ns in held {
            m.namespaces
                .entry(ns.clone())
                .or_insert_with(|| Labels::from([(NAMESPACE_NAME_LABEL.to_string(), ns)]));
        }
        // An app or policy whose network is not in the set renders nothing.
        let names: Vec<String> = m.networks.iter().map(|n| n.name.clone()).collect();
        m.apps.retain(|a| names.contains(&a.network));
        m.policies.retain(|p| names.contains(&p.network));
        m
    }

    fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }

    fn app(&self, ns: &str, name: &str) -> Option<&App> {
        self.apps.iter().find(|a| a.ns == ns && a.name == name)
    }

    /// Networks whose default deny selects namespace `ns` (for ingress or egress).
    fn default_deny(&self, ns: &str, ingress: bool) -> Vec<&Network> {
        let Some(labels) = self.namespaces.get(ns) else {
            return vec![];
        };
        self.networks
            .iter()
            .filter(|n| {
                n.default_deny.as_ref().is_some_and(|d| {
                    (if ingress { d.ingress } else { d.egress })
                        && selector_matches(&d.selector, labels)
                })
            })
            .collect()
    }

    fn default_deny_any(&self, ns: &str) -> bool {
        !self.default_deny(ns, true).is_empty() || !self.default_deny(ns, false).is_empty()
    }
}

fn parse_network(o: &Value) -> Network {
    let spec = &o["spec"];
    let families: Vec<String> = spec["ipFamilies"]
        .as_array()
        .map(|a| a.iter().filter_map(str_of).collect())
        .unwrap_or_else(|| vec!["IPv4".into()]);
    let tiers = ["external", "internal"]
        .iter()
        .filter(|t| spec["ingress"][**t].is_object())
        .map(|t| {
            let tier = &spec["ingress"][*t];
            Tier {
                name: t.to_string(),
                namespace: str_of(&tier["namespace"]),
                pod_selector: tier["podSelector"]
                    .is_object()
                    .then(|| tier["podSelector"].clone()),
            }
        })
        .collect();
    let dns = &spec["policy"]["clusterDNS"];
    let dd = &spec["policy"]["defaultDeny"];
    Network {
        name: o["metadata"]["name"]
            .as_str()
            .unwrap_or("default")
            .to_string(),
        families,
        tiers,
        dns_namespace: str_of(&dns["namespace"]).unwrap_or_else(|| "kube-system".into()),
        dns_selector: if dns["podSelector"].is_object() {
            dns["podSelector"].clone()
        } else {
            json!({"matchLabels": {"k8s-app": "kube-dns"}})
        },
        default_deny: dd.is_object().then(|| DefaultDeny {
            selector: dd["namespaceSelector"].clone(),
            ingress: dd["ingress"].as_bool().unwrap_or(true),
            egress: dd["egress"].as_bool().unwrap_or(true),
        }),
        allow_everywhere: spec["policy"]["allowEverywhere"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| {
                (
                    h["name"].as_str().unwrap_or_default().to_string(),
                    Rule {
                        to: h["from"].as_array().cloned().unwrap_or_default(),
                        ports: port_ranges(&h["ports"]),
                    },
                )
            })
            .collect(),
    }
}

fn parse_app(o: &Value) -> App {
    let spec = &o["spec"];
    let ports = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let port = p["port"].as_i64().unwrap_or_default();
            AppPort {
                name: p["name"].as_str().unwrap_or_default().to_string(),
                // A named targetPort is the container port named so; the workloads
                // (lib.rs) declare it on the Service port's number.
                target: p["targetPort"].as_i64().unwrap_or(port),
                protocol: p["protocol"].as_str().unwrap_or("TCP").to_string(),
            }
        })
        .collect();
    let routes = spec["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let tiers = match r["exposure"].as_str().unwrap_or("External") {
                "Internal" => vec!["internal".to_string()],
                "Both" => vec!["external".to_string(), "internal".to_string()],
                _ => vec!["external".to_string()],
            };
            let names = r["paths"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| str_of(&p["port"]))
                .collect();
            (tiers, names)
        })
        .collect();
    App {
        ns: ns_of(o),
        name: o["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        network: str_of(&spec["network"]).unwrap_or_else(|| "default".into()),
        selector: labels_of(&spec["selector"]),
        ports,
        routes,
        tcp: spec["tcp"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| str_of(&t["port"]))
            .collect(),
        allow_from: spec["allowFrom"].as_array().cloned().unwrap_or_default(),
        isolated: spec["isolation"] == "Isolated",
    }
}

fn port_ranges(ports: &Value) -> Vec<PortRange> {
    ports
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let port = p["port"].as_i64().unwrap_or_default();
            PortRange {
                port,
                end: p["endPort"].as_i64().unwrap_or(port),
                protocol: p["protocol"].as_str().unwrap_or("TCP").to_string(),
            }
        })
        .collect()
}

fn parse_egp(o: &Value) -> Egp {
    let spec = &o["spec"];
    let rules = spec["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| Rule {
            to: r["to"].as_array().cloned().unwrap_or_default(),
            ports: port_ranges(&r["ports"]),
        })
        .collect();
    Egp {
        ns: ns_of(o),
        name: o["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        network: str_of(&spec["network"]).unwrap_or_else(|| "default".into()),
        selector: spec["podSelector"].clone(),
        allow_dns: spec["allowDNS"].as_bool().unwrap_or(true),
        rules,
    }
}

// ---------------------------------------------------------------------------------------
// Label selectors and CIDRs.

/// Whether `labels` satisfy a LabelSelector (`matchLabels`, `matchExpressions`); a missing
/// or empty selector selects everything.
pub fn selector_matches(selector: &Value, labels: &Labels) -> bool {
    let ml = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str());
    let me = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            let key = e["key"].as_str().unwrap_or_default();
            let values: Vec<&str> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let v = labels.get(key).map(String::as_str);
            match e["operator"].as_str().unwrap_or_default() {
                "In" => v.is_some_and(|v| values.contains(&v)),
                "NotIn" => v.is_none_or(|v| !values.contains(&v)),
                "Exists" => v.is_some(),
                "DoesNotExist" => v.is_none(),
                _ => false,
            }
        });
    ml && me
}

/// Labels that satisfy `selector`, starting from `base`; None if it cannot be satisfied.
fn satisfy(selector: &Value, base: &Labels) -> Option<Labels> {
    let mut l = base.clone();
    for (k, v) in selector["matchLabels"].as_object().into_iter().flatten() {
        l.insert(k.clone(), v.as_str()?.to_string());
    }
    for e in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = e["key"].as_str()?.to_string();
        match e["operator"].as_str()? {
            "In" if !l.contains_key(&key) => {
                l.insert(key, e["values"][0].as_str()?.to_string());
            }
            "Exists" if !l.contains_key(&key) => {
                l.insert(key, "probe".into());
            }
            _ => {}
        }
    }
    selector_matches(selector, &l).then_some(l)
}

#[derive(Clone, Copy)]
struct Cidr {
    v6: bool,
    base: u128,
    len: u32,
}

impl Cidr {
    fn parse(s: &str) -> Option<Cidr> {
        let (ip, len) = s.split_once('/')?;
        let ip: IpAddr = ip.parse().ok()?;
        let len: u32 = len.parse().ok()?;
        let (v6, bits) = match ip {
            IpAddr::V4(_) => (false, 32),
            IpAddr::V6(_) => (true, 128),
        };
        (len <= bits).then(|| {
            let c = Cidr { v6, base: 0, len };
            Cidr {
                base: to_u128(ip) & c.mask(),
                ..c
            }
        })
    }
    fn bits(&self) -> u32 {
        if self.v6 { 128 } else { 32 }
    }
    fn mask(&self) -> u128 {
        let full = if self.v6 { u128::MAX } else { u32::MAX as u128 };
        if self.len == 0 {
            0
        } else {
            (full << (self.bits() - self.len)) & full
        }
    }
    fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv6() == self.v6 && to_u128(ip) & self.mask() == self.base
    }
    /// The n-th address of the block, if it has one.
    fn nth(&self, n: u128) -> Option<IpAddr> {
        let size_bits = self.bits() - self.len;
        if size_bits < 127 && n >> size_bits != 0 {
            return None;
        }
        let a = self.base + n;
        Some(if self.v6 {
            IpAddr::V6(Ipv6Addr::from(a))
        } else {
            IpAddr::V4(Ipv4Addr::from(a as u32))
        })
    }
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

pub(crate) fn in_cidr_peer(peer: &Value, ip: IpAddr) -> bool {
    let Some(c) = peer["cidr"].as_str().and_then(Cidr::parse) else {
        return false;
    };
    c.contains(ip)
        && !peer["except"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str().and_then(Cidr::parse))
            .any(|e| e.contains(ip))
}

// ---------------------------------------------------------------------------------------
// Pods.

#[derive(Clone)]
struct Pod {
    ns: String,
    name: String,
    labels: Labels,
    ip: Option<IpAddr>,
    /// (container port, protocol)
    ports: Vec<(i64, String)>,
}

impl Pod {
    fn parse(v: &Value) -> Pod {
        let mut ports = Vec::new();
        for c in v["spec"]["containers"].as_array().into_iter().flatten() {
            for p in c["ports"].as_array().into_iter().flatten() {
                ports.push((
                    p["containerPort"].as_i64().unwrap_or_default(),
                    p["protocol"].as_str().unwrap_or("TCP").to_string(),
                ));
            }
        }
        Pod {
            ns: v["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string(),
            name: v["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            labels: labels_of(&v["metadata"]["labels"]),
            ip: v["status"]["podIP"].as_str().and_then(|s| s.parse().ok()),
            ports,
        }
    }
    fn is_probe(&self) -> bool {
        self.name.starts_with("probe-")
    }
    fn declares(&self, protocol: &str) -> bool {
        protocol == "TCP" || self.ports.iter().any(|(_, p)| p == protocol)
    }
    fn first_port(&self) -> i64 {
        self.ports
            .iter()
            .find(|(_, p)| p == "TCP")
            .map(|(n, _)| *n)
            .unwrap_or(PROBE_PORT)
    }
    fn key(&self) -> String {
        format!("{}/{}", self.ns, self.name)
    }
}

/// Pods of a set's workloads (`workloads()`), as bare Pod objects named like their
/// Deployment, without status.
pub fn workload_pods(objects: &[Value]) -> Vec<Value> {
    crate::workloads(objects)
        .into_iter()
        .map(|d| {
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "name": d["metadata"]["name"],
                    "namespace": d["metadata"]["namespace"],
                    "labels": d["spec"]["template"]["metadata"]["labels"],
                },
                "spec": d["spec"]["template"]["spec"],
            })
        })
        .collect()
}

/// A bare pod of the test backend, shaped exactly like a `workloads()` pod (it is made by
/// it), listening on `ports` ((number, protocol), TCP ones in PORTS).
fn backend_pod(ns: &str, name: &str, labels: &Labels, ports: &[(i64, String)]) -> Value {
    let mut tcp: Vec<i64> = ports
        .iter()
        .filter(|(_, p)| p == "TCP")
        .map(|(n, _)| *n)
        .collect();
    if tcp.is_empty() {
        tcp.push(PROBE_PORT);
    }
    let app = json!({
        "kind": "ExposedApp",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "selector": {PROBE_LABEL: "template"},
            "ports": tcp.iter().map(|n| json!({"name": format!("p{n}"), "port": n, "targetPort": n})).collect::<Vec<_>>(),
        },
    });
    let deployment = crate::workloads(&[app])
        .pop()
        .expect("workloads() makes a Deployment for a TCP app");
    let mut spec = deployment["spec"]["template"]["spec"].clone();
    let container_ports: Vec<Value> = ports
        .iter()
        .map(|(n, p)| {
            let name = if p == "TCP" {
                format!("tcp-{n}")
            } else {
                format!("{}-{n}", p.to_lowercase())
            };
            json!({"containerPort": n, "protocol": p, "name": name})
        })
        .collect();
    if !container_ports.is_empty() {
        spec["containers"][0]["ports"] = Value::Array(container_ports);
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": spec,
    })
}

fn short_name(s: String) -> String {
    let mut s: String = s
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.truncate(63);
    s.trim_end_matches('-').to_string()
}

struct ProbeWorld {
    /// The probe pods (without addresses).
    pods: Vec<Pod>,
    /// Namespaces the probe pods need that the set does not declare.
    namespaces: BTreeMap<String, Labels>,
}

impl ProbeWorld {
    fn add(&mut self, ns: &str, name: &str, labels: Labels, ports: Vec<(i64, String)>) {
        if self.pods.iter().any(|p| p.ns == ns && p.name == name) {
            return;
        }
        self.pods.push(Pod {
            ns: ns.into(),
            name: name.into(),
            labels,
            ip: None,
            ports,
        });
    }
}

/// Builds the probe pods and their extra namespaces.
fn build_probes(objects: &[Value]) -> ProbeWorld {
    let m = Model::new(objects);
    let mut w = ProbeWorld {
        pods: vec![],
        namespaces: BTreeMap::new(),
    };
    let role = |r: &str| Labels::from([(PROBE_LABEL.to_string(), r.to_string())]);
    let tcp = |n: i64| (n, "TCP".to_string());

    for n in &m.networks {
        for t in n.tiers.iter().filter(|t| t.located()) {
            let base = role(&format!("ingress-{}", t.name));
            let labels = match &t.pod_selector {
                Some(s) => satisfy(s, &base).unwrap_or(base),
                None => base,
            };
            w.add(
                &t.controller_namespace(),
                &t.controller_pod(&n.name),
                labels,
                vec![tcp(PROBE_PORT)],
            );
        }
    }
    for n in &m.networks {
        if let Some(labels) = satisfy(&n.dns_selector, &role("dns")) {
            w.add(
                &n.dns_namespace,
                DNS,
                labels,
                vec![(53, "TCP".into()), (53, "UDP".into())],
            );
        }
    }
    for ns in m.namespaces.keys() {
        if m.default_deny_any(ns) {
            let mut labels = role("acme");
            labels.insert(ACME_SOLVER_LABEL.into(), "true".into());
            w.add(ns, ACME, labels, vec![tcp(ACME_SOLVER_PORT)]);
        }
    }
    let holding: BTreeSet<String> = m
        .apps
        .iter()
        .map(|a| a.ns.clone())
        .chain(m.policies.iter().map(|p| p.ns.clone()))
        .collect();
    for ns in &holding {
        let labels = role("stranger");
        assert!(
            !m.apps
                .iter()
                .any(|a| a.ns == *ns && a.selector.iter().all(|(k, v)| labels.get(k) == Some(v))),
            "an ExposedApp in {ns} selects the stranger's labels {labels:?}"
        );
        w.add(ns, STRANGER, labels, vec![tcp(PROBE_PORT)]);
    }
    w.add(
        OUTSIDER_NAMESPACE,
        OUTSIDER,
        role("outsider"),
        vec![tcp(PROBE_PORT)],
    );

    // Pods the truth table needs for peers and policies nothing above stands for.
    let workloads: Vec<Pod> = workload_pods(objects).iter().map(Pod::parse).collect();
    let all_pods = |w: &ProbeWorld| -> Vec<Pod> {
        workloads
            .iter()
            .cloned()
            .chain(w.pods.iter().cloned())
            .collect()
    };
    for p in &m.policies {
        if !all_pods(&w).iter().any(|pod| p.selects(pod))
            && let Some(labels) = satisfy(&p.selector, &role("client"))
        {
            w.add(
                &p.ns,
                &short_name(format!("probe-client-{}", p.name)),
                labels,
                vec![tcp(PROBE_PORT)],
            );
        }
    }
    let mut peers: Vec<(String, String, &Value)> = Vec::new();
    for a in &m.apps {
        for (i, peer) in a.allow_from.iter().enumerate() {
            peers.push((
                a.ns.clone(),
                short_name(format!("probe-from-{}-{i}", a.name)),
                peer,
            ));
        }
    }
    for p in &m.policies {
        for (i, r) in p.rules.iter().enumerate() {
            for (j, peer) in r.to.iter().enumerate() {
                peers.push((
                    p.ns.clone(),
                    short_name(format!("probe-to-{}-{i}-{j}", p.name)),
                    peer,
                ));
            }
        }
    }
    // The platform's allowEverywhere sources (a podSelector alone means the isolated pod's
    // own namespace: the first app's stands for it).
    let own_ns = m
        .apps
        .first()
        .map(|a| a.ns.clone())
        .unwrap_or_else(|| OUTSIDER_NAMESPACE.to_string());
    for n in &m.networks {
        for (hname, h) in &n.allow_everywhere {
            for (j, peer) in h.to.iter().enumerate() {
                peers.push((
                    own_ns.clone(),
                    short_name(format!("probe-allow-{hname}-{j}")),
                    peer,
                ));
            }
        }
    }
    for (own, name, peer) in peers {
        let mut namespaces = m.namespaces.clone();
        namespaces.extend(w.namespaces.clone());
        let world = World {
            m: &m,
            pods: all_pods(&w),
            ns_labels: namespaces.clone(),
        };
        if world
            .pods
            .iter()
            .any(|pod| world.peer_matches(peer, &own, &End::Pod(pod)))
        {
            continue;
        }
        let Some((ns, labels)) = peer_pod(&m, peer, &own, &namespaces) else {
            continue;
        };
        if !namespaces.contains_key(&ns) {
            let mut nl = labels.1.clone();
            nl.insert(NAMESPACE_NAME_LABEL.into(), ns.clone());
            w.namespaces.insert(ns.clone(), nl);
        }
        w.add(&ns, &name, labels.0, vec![tcp(PROBE_PORT)]);
    }

    // Every probe pod listens on the ports egress rules reach it on.
    let pods = all_pods(&w);
    let mut namespaces = m.namespaces.clone();
    namespaces.extend(w.namespaces.clone());
    let world = World {
        m: &m,
        pods: pods.clone(),
        ns_labels: namespaces,
    };
    for pod in pods.iter().filter(|p| p.is_probe()) {
        let mut extra = Vec::new();
        for p in &m.policies {
            for r in &p.rules {
                if r.to
                    .iter()
                    .any(|peer| world.peer_matches(peer, &p.ns, &End::Pod(pod)))
                {
                    for pr in r.ports.iter().filter(|pr| pr.protocol == "TCP") {
                        extra.push(tcp(pr.port));
                        extra.push(tcp(pr.end));
                    }
                }
            }
        }
        if let Some(entry) = w
            .pods
            .iter_mut()
            .find(|e| e.ns == pod.ns && e.name == pod.name)
        {
            for x in extra {
                push_unique(&mut entry.ports, x);
            }
        }
    }

    // Namespaces of probe pods the set does not declare.
    for ns in w.pods.iter().map(|p| &p.ns) {
        if !m.declared.contains(ns) && !w.namespaces.contains_key(ns) {
            let labels =
                m.namespaces.get(ns).cloned().unwrap_or_else(|| {
                    Labels::from([(NAMESPACE_NAME_LABEL.to_string(), ns.clone())])
                });
            w.namespaces.insert(ns.clone(), labels);
        }
    }
    w
}

/// Where a pod matching `peer` can go and its labels: (namespace, (pod labels, namespace
/// labels if the namespace must be made)). None for peers no pod can stand for (cidr,
/// fqdn, references that do not resolve).
fn peer_pod(
    m: &Model,
    peer: &Value,
    own: &str,
    namespaces: &BTreeMap<String, Labels>,
) -> Option<(String, (Labels, Labels))> {
    let base = Labels::from([(PROBE_LABEL.to_string(), "peer".to_string())]);
    if peer["app"].is_object() {
        let ns = str_of(&peer["app"]["namespace"]).unwrap_or_else(|| own.to_string());
        let app = m.app(&ns, peer["app"]["name"].as_str()?)?;
        let mut l = base;
        l.extend(app.selector.clone());
        return Some((ns, (l, Labels::new())));
    }
    if peer["service"].is_object() {
        let ns = str_of(&peer["service"]["namespace"]).unwrap_or_else(|| own.to_string());
        let sel = m
            .services
            .get(&(ns.clone(), peer["service"]["name"].as_str()?.to_string()))?;
        let mut l = base;
        l.extend(sel.clone());
        return Some((ns, (l, Labels::new())));
    }
    if !peer["podSelector"].is_object() && !peer["namespaceSelector"].is_object() {
        return None;
    }
    let labels = if peer["podSelector"].is_object() {
        satisfy(&peer["podSelector"], &base)?
    } else {
        base
    };
    if !peer["namespaceSelector"].is_object() {
        return Some((own.to_string(), (labels, Labels::new())));
    }
    let sel = &peer["namespaceSelector"];
    if let Some((ns, _)) = namespaces.iter().find(|(_, l)| selector_matches(sel, l)) {
        return Some((ns.clone(), (labels, Labels::new())));
    }
    let nl = satisfy(sel, &Labels::new())?;
    let name = nl
        .get(NAMESPACE_NAME_LABEL)
        .cloned()
        .unwrap_or_else(|| format!("gatehouse-probe-peer-{}", namespaces.len()));
    let mut full = nl.clone();
    full.insert(NAMESPACE_NAME_LABEL.into(), name.clone());
    selector_matches(sel, &full).then_some((name, (labels, nl)))
}

/// The Pods a truth table of the set needs beyond the apps' workloads: one controller pod
/// per ingress tier that says where its controllers run (`probe-ingress-<tier>`), the
/// cluster DNS (`probe-dns`), an ACME HTTP-01 solver in each default-deny namespace
/// (`probe-acme`), a stranger in each namespace holding an ExposedApp or EgressPolicy
/// (`probe-stranger`, selected by no app), an outsider in [`OUTSIDER_NAMESPACE`]
/// (`probe-outsider`), a client for each EgressPolicy that selects none of those
/// (`probe-client-<policy>`), and a pod for each resolvable peer nothing else matches
/// (`probe-from-<app>-<i>`, `probe-to-<policy>-<rule>-<peer>`). Bare pods of the test
/// backend, shaped like `workloads()` pods, without status.
pub fn probe_pods(objects: &[Value]) -> Vec<Value> {
    build_probes(objects)
        .pods
        .iter()
        .map(|p| backend_pod(&p.ns, &p.name, &p.labels, &p.ports))
        .collect()
}

/// Namespaces the probe pods need that the set does not declare, each labeled with
/// `kubernetes.io/metadata.name` (and what a peer's namespaceSelector asks for).
pub fn probe_namespaces(objects: &[Value]) -> Vec<Value> {
    build_probes(objects)
        .namespaces
        .iter()
        .map(|(name, labels)| {
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
        })
        .collect()
}

/// Every pod of an offline truth table of the set: the workloads' pods and the probe pods,
/// Running, with distinct fake addresses (10.244.99.0/24; fd00:10:244:99::/64 for an
/// IPv6-only network).
pub fn offline_pods(objects: &[Value]) -> Vec<Value> {
    let v6_only = Model::new(objects)
        .networks
        .iter()
        .any(|n| !n.families.iter().any(|f| f == "IPv4"));
    let mut pods = workload_pods(objects);
    pods.extend(probe_pods(objects));
    assert!(pods.len() < 240, "too many pods for 10.244.99.0/24");
    for (i, p) in pods.iter_mut().enumerate() {
        let ip = if v6_only {
            format!("fd00:10:244:99::{:x}", i + 10)
        } else {
            format!("10.244.99.{}", i + 10)
        };
        p["status"] = json!({"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]});
    }
    pods
}

/// The Namespaces of an offline truth table: the set's and [`probe_namespaces`].
pub fn offline_namespaces(objects: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = objects
        .iter()
        .filter(|o| o["kind"] == "Namespace")
        .map(|o| {
            let name = o["metadata"]["name"].as_str().unwrap_or_default();
            let mut labels = labels_of(&o["metadata"]["labels"]);
            labels.insert(NAMESPACE_NAME_LABEL.into(), name.into());
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
        })
        .collect();
    out.extend(probe_namespaces(objects));
    out
}

/// What the truth table leaves out, and why: fqdn peers (NetworkPolicy cannot say them),
/// references that do not resolve, UDP/SCTP ports no pod declares.
pub fn probe_notes(objects: &[Value]) -> Vec<String> {
    let m = Model::new(objects);
    let mut out = Vec::new();
    for p in &m.policies {
        for (i, r) in p.rules.iter().enumerate() {
            for (j, peer) in r.to.iter().enumerate() {
                if let Some(f) = peer["fqdn"].as_str() {
                    out.push(format!(
                        "EgressPolicy {}/{} rules[{i}].to[{j}]: fqdn {f} not probed (NetworkPolicy cannot say it)",
                        p.ns, p.name
                    ));
                }
            }
        }
    }
    for a in &m.apps {
        for p in a.ports.iter().filter(|p| p.protocol != "TCP") {
            out.push(format!(
                "ExposedApp {}/{} port {} ({} {}): not probed, the workload pod declares only TCP",
                a.ns, a.name, p.name, p.target, p.protocol
            ));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Expectations.

enum End<'a> {
    Pod(&'a Pod),
    Ip(IpAddr),
}

impl End<'_> {
    fn ip(&self) -> Option<IpAddr> {
        match self {
            End::Pod(p) => p.ip,
            End::Ip(ip) => Some(*ip),
        }
    }
    fn json(&self) -> Value {
        match self {
            End::Pod(p) => json!({"namespace": p.ns, "pod": p.name}),
            End::Ip(ip) => json!({"ip": ip.to_string()}),
        }
    }
}

struct World<'a> {
    m: &'a Model,
    pods: Vec<Pod>,
    ns_labels: BTreeMap<String, Labels>,
}

impl World<'_> {
    fn ns_labels(&self, ns: &str) -> Labels {
        let mut l = self.ns_labels.get(ns).cloned().unwrap_or_default();
        l.insert(NAMESPACE_NAME_LABEL.into(), ns.into());
        l
    }

    /// Whether endpoint `e` is one of a peer's (api.md "Peers"); `own` is the namespace of
    /// the object naming the peer.
    fn peer_matches(&self, peer: &Value, own: &str, e: &End) -> bool {
        if peer["cidr"].is_string() {
            return e.ip().is_some_and(|ip| in_cidr_peer(peer, ip));
        }
        let End::Pod(pod) = e else {
            return false;
        };
        let target = |r: &Value| str_of(&r["namespace"]).unwrap_or_else(|| own.to_string());
        if peer["app"].is_object() {
            let ns = target(&peer["app"]);
            return self
                .m
                .app(&ns, peer["app"]["name"].as_str().unwrap_or_default())
                .is_some_and(|a| a.selects(pod));
        }
        if peer["service"].is_object() {
            let ns = target(&peer["service"]);
            let name = peer["service"]["name"].as_str().unwrap_or_default();
            return pod.ns == ns
                && self
                    .m
                    .services
                    .get(&(ns.clone(), name.to_string()))
                    .is_some_and(|s| s.iter().all(|(k, v)| pod.labels.get(k) == Some(v)));
        }
        let (nsel, psel) = (&peer["namespaceSelector"], &peer["podSelector"]);
        if !nsel.is_object() && !psel.is_object() {
            return false; // fqdn, or nothing
        }
        let ns_ok = if nsel.is_object() {
            selector_matches(nsel, &self.ns_labels(&pod.ns))
        } else {
            pod.ns == own
        };
        ns_ok && (!psel.is_object() || selector_matches(psel, &pod.labels))
    }

    fn controller_of_any_tier(&self, n: &Network, src: &End) -> Option<String> {
        if !n.tiers.iter().any(Tier::located) {
            return Some("no tier says where its controllers run".into());
        }
        let End::Pod(p) = src else { return None };
        n.tiers
            .iter()
            .find(|t| t.matches(p))
            .map(|t| format!("{} controller", t.name))
    }

    /// Ingress at the destination: (allowed, why).
    fn ingress(&self, src: &End, dst: &End, port: i64, proto: &str) -> (bool, String) {
        let End::Pod(p) = dst else {
            return (true, "outside the cluster".into());
        };
        let deny = self.m.default_deny(&p.ns, true);
        // An app isolates its pods only as docs/api.md says (`spec.isolation`): Isolated,
        // or Auto with its network's ingress default deny on the namespace or allowFrom.
        let apps: Vec<&App> = self
            .m
            .apps
            .iter()
            .filter(|a| a.selects(p))
            .filter(|a| {
                a.isolated || !a.allow_from.is_empty() || deny.iter().any(|n| n.name == a.network)
            })
            .collect();
        if apps.is_empty() && deny.is_empty() {
            return (true, "not isolated".into());
        }
        // What every isolated pod admits: the platform's allowEverywhere of the networks
        // isolating it.
        let isolating = apps
            .iter()
            .filter_map(|a| self.m.network(&a.network))
            .chain(deny.iter().copied());
        for n in isolating {
            for (name, h) in &n.allow_everywhere {
                if h.allows_port(port, proto)
                    && h.to.iter().any(|peer| self.peer_matches(peer, &p.ns, src))
                {
                    return (true, format!("allowEverywhere {name} of {}", n.name));
                }
            }
        }
        let pp = (port, proto.to_string());
        for a in &apps {
            let Some(n) = self.m.network(&a.network) else {
                continue;
            };
            for t in &n.tiers {
                if !a.route_ports(&t.name).contains(&pp) {
                    continue;
                }
                if !t.located() {
                    return (true, format!("{} route port, tier open to all", t.name));
                }
                if let End::Pod(s) = src
                    && t.matches(s)
                {
                    return (true, format!("{} route port from its controller", t.name));
                }
            }
            if a.tcp_ports().contains(&pp) && src.ip().is_some_and(|ip| n.has_family(ip)) {
                return (true, format!("tcp[] port of {}", a.name));
            }
            if let Some(i) = a
                .allow_from
                .iter()
                .position(|peer| self.peer_matches(peer, &a.ns, src))
            {
                return (true, format!("allowFrom[{i}] of {}", a.name));
            }
        }
        if p.labels.get(ACME_SOLVER_LABEL).map(String::as_str) == Some("true")
            && port == ACME_SOLVER_PORT
            && proto == "TCP"
        {
            for n in &deny {
                if let Some(why) = self.controller_of_any_tier(n, src) {
                    return (true, format!("ACME solver hole ({why})"));
                }
            }
        }
        let by: Vec<String> = apps
            .iter()
            .map(|a| format!("app {}", a.name))
            .chain((!deny.is_empty()).then(|| "default deny".to_string()))
            .collect();
        (false, format!("isolated by {}", by.join(", ")))
    }

    /// Egress at the source: (allowed, why).
    fn egress(&self, src: &End, dst: &End, port: i64, proto: &str) -> (bool, String) {
        let End::Pod(s) = src else {
            return (true, "outside the cluster".into());
        };
        let deny = self.m.default_deny(&s.ns, false);
        let policies: Vec<&Egp> = self.m.policies.iter().filter(|p| p.selects(s)).collect();
        if deny.is_empty() && policies.is_empty() {
            return (true, "not isolated".into());
        }
        let dns_port = port == 53 && (proto == "UDP" || proto == "TCP");
        if let End::Pod(d) = dst
            && dns_port
        {
            if deny.iter().any(|n| n.is_dns(d)) {
                return (true, "DNS under default deny".into());
            }
            if let Some(p) = policies
                .iter()
                .find(|p| p.allow_dns && self.m.network(&p.network).is_some_and(|n| n.is_dns(d)))
            {
                return (true, format!("allowDNS of {}", p.name));
            }
        }
        for p in &policies {
            for (i, r) in p.rules.iter().enumerate() {
                if r.allows_port(port, proto)
                    && r.to.iter().any(|peer| self.peer_matches(peer, &p.ns, dst))
                {
                    return (true, format!("{} rules[{i}]", p.name));
                }
                // The API server: its addresses, on the rule's ports or, with none, its own.
                let api_port = if r.ports.is_empty() {
                    proto == "TCP" && self.m.api_ports.contains(&port)
                } else {
                    r.allows_port(port, proto)
                };
                if api_port
                    && r.to.iter().any(|peer| peer["apiServer"].is_object())
                    && dst
                        .ip()
                        .is_some_and(|ip| self.m.api_addresses.contains(&ip))
                {
                    return (true, format!("{} rules[{i}] apiServer", p.name));
                }
            }
        }
        let by: Vec<String> = policies
            .iter()
            .map(|p| format!("egp {}", p.name))
            .chain((!deny.is_empty()).then(|| "default deny".to_string()))
            .collect();
        (false, format!("isolated by {}", by.join(", ")))
    }

    fn pod(&self, ns: &str, name: &str) -> Option<&Pod> {
        self.pods.iter().find(|p| p.ns == ns && p.name == name)
    }

    /// Pods matching `peer`, workloads first.
    fn peer_pods(&self, peer: &Value, own: &str) -> Vec<&Pod> {
        let mut v: Vec<&Pod> = self
            .pods
            .iter()
            .filter(|p| self.peer_matches(peer, own, &End::Pod(p)))
            .collect();
        v.sort_by_key(|p| (p.is_probe(), p.key()));
        v
    }
}

/// One connection to try, in the JSON shape gatehouse-policy takes, with the verdict the
/// Gatehouse objects call for and why.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpectedProbe {
    /// `{"from": PEER, "to": PEER, "port": N, "protocol": "TCP"}`
    pub probe: Value,
    /// ingress && egress
    pub allowed: bool,
    /// Whether the destination admits it (always, for an address outside the cluster).
    pub ingress: bool,
    /// Whether the source may send it (always, from an address outside the cluster).
    pub egress: bool,
    pub reason: String,
}

impl ExpectedProbe {
    pub fn from(&self) -> String {
        peer_text(&self.probe["from"])
    }
    pub fn to(&self) -> String {
        peer_text(&self.probe["to"])
    }
    pub fn port(&self) -> i64 {
        self.probe["port"].as_i64().unwrap_or_default()
    }
    pub fn protocol(&self) -> &str {
        self.probe["protocol"].as_str().unwrap_or("TCP")
    }
}

fn peer_text(p: &Value) -> String {
    match p["ip"].as_str() {
        Some(ip) => ip.to_string(),
        None => format!(
            "{}/{}",
            p["namespace"].as_str().unwrap_or_default(),
            p["pod"].as_str().unwrap_or_default()
        ),
    }
}

struct Builder<'a> {
    w: World<'a>,
    out: Vec<ExpectedProbe>,
}

impl Builder<'_> {
    fn add(&mut self, from: &End, to: &End, port: i64, proto: &str, what: &str) {
        if let End::Pod(d) = to
            && !d.declares(proto)
        {
            return;
        }
        let probe = json!({"from": from.json(), "to": to.json(), "port": port, "protocol": proto});
        if self.out.iter().any(|p| p.probe == probe) {
            return;
        }
        let (i, iw) = self.w.ingress(from, to, port, proto);
        let (e, ew) = self.w.egress(from, to, port, proto);
        self.out.push(ExpectedProbe {
            probe,
            allowed: i && e,
            ingress: i,
            egress: e,
            reason: format!("{what} [in: {iw}; out: {ew}]"),
        });
    }
}

fn undeclared(used: &[i64]) -> i64 {
    (9..).find(|p| !used.contains(p)).unwrap_or(9)
}

/// An address of a cidr peer outside its excepts, and one inside each except (up to 3).
fn cidr_probes(peer: &Value, pods: &[Pod]) -> Vec<(IpAddr, bool)> {
    let Some(c) = peer["cidr"].as_str().and_then(Cidr::parse) else {
        return vec![];
    };
    let taken = |ip: &IpAddr| pods.iter().any(|p| p.ip == Some(*ip));
    let doc: [IpAddr; 2] = [
        "198.51.100.7".parse().unwrap(),
        "2001:db8:7::7".parse().unwrap(),
    ];
    let excepts: Vec<Cidr> = peer["except"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str().and_then(Cidr::parse))
        .collect();
    // Candidates: documentation addresses, the first few of the block, the address just
    // past each except, the middle of the block.
    let past_excepts = excepts.iter().filter_map(|e| {
        let size_bits = e.bits() - e.len;
        (size_bits < 127)
            .then(|| e.base + (1u128 << size_bits))
            .and_then(|a| a.checked_sub(c.base))
            .and_then(|n| c.nth(n))
    });
    let middle = (c.bits() - c.len)
        .checked_sub(1)
        .filter(|b| *b < 127)
        .and_then(|b| c.nth(1u128 << b));
    let mut out = Vec::new();
    let inside = doc
        .iter()
        .copied()
        .chain([1u128, 0, 2, 5, 10].iter().filter_map(|n| c.nth(*n)))
        .chain(past_excepts)
        .chain(middle)
        .find(|ip| c.contains(*ip) && in_cidr_peer(peer, *ip) && !taken(ip));
    if let Some(ip) = inside {
        out.push((ip, true));
    }
    for e in excepts.iter().take(3) {
        if let Some(ip) = [1u128, 0]
            .iter()
            .filter_map(|n| e.nth(*n))
            .find(|ip| !taken(ip))
        {
            out.push((ip, false));
        }
    }
    out
}

/// The probes a truth table of the set tries, each with the verdict the Gatehouse objects
/// call for (see the module documentation), given every pod (`offline_pods`: workloads
/// and probe pods, with addresses) and namespace (`offline_namespaces`).
pub fn expected_probes(
    objects: &[Value],
    pods: &[Value],
    namespaces: &[Value],
) -> Vec<ExpectedProbe> {
    let mut m = Model::new(objects);
    // Default deny reaches every namespace its selector matches, not only the set's: in a
    // live cluster also the probe namespaces and the cluster's own.
    for n in namespaces {
        let Some(name) = n["metadata"]["name"].as_str() else {
            continue;
        };
        let mut l = labels_of(&n["metadata"]["labels"]);
        l.insert(NAMESPACE_NAME_LABEL.into(), name.to_string());
        m.namespaces.entry(name.to_string()).or_insert(l);
    }
    let pods: Vec<Pod> = pods.iter().map(Pod::parse).collect();
    let ns_labels: BTreeMap<String, Labels> = namespaces
        .iter()
        .map(|n| {
            let name = n["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let mut l = labels_of(&n["metadata"]["labels"]);
            l.insert(NAMESPACE_NAME_LABEL.into(), name.clone());
            (name, l)
        })
        .collect();
    let mut b = Builder {
        w: World {
            m: &m,
            pods,
            ns_labels,
        },
        out: vec![],
    };
    let pods = b.w.pods.clone();
    let controllers: Vec<(&Network, &Tier, &Pod)> = m
        .networks
        .iter()
        .flat_map(|n| {
            let pods = &pods;
            n.tiers.iter().filter_map(move |t| {
                pods.iter()
                    .find(|p| {
                        p.ns == t.controller_namespace() && p.name == t.controller_pod(&n.name)
                    })
                    .map(|p| (n, t, p))
            })
        })
        .collect();
    let outsider = b.w.pod(OUTSIDER_NAMESPACE, OUTSIDER).cloned();
    let dns_pods: Vec<Pod> = pods.iter().filter(|p| p.name == DNS).cloned().collect();
    let externals = |n: &Network| -> Vec<IpAddr> {
        n.families
            .iter()
            .map(|f| {
                if f == "IPv6" {
                    EXTERNAL_V6
                } else {
                    EXTERNAL_V4
                }
            })
            .map(|ip| ip.parse().unwrap())
            .collect()
    };

    // Into every ExposedApp's pods.
    for a in &m.apps {
        let Some(n) = m.network(&a.network) else {
            continue;
        };
        let targets: Vec<&Pod> = pods
            .iter()
            .filter(|p| !p.is_probe() && a.selects(p))
            .collect();
        let mut route_ports: Vec<(i64, String)> = Vec::new();
        for t in &n.tiers {
            for rp in a.route_ports(&t.name) {
                push_unique(&mut route_ports, rp);
            }
        }
        let tcp_ports = a.tcp_ports();
        let app_tcp: Vec<i64> = a
            .ports
            .iter()
            .filter(|p| p.protocol == "TCP")
            .map(|p| p.target)
            .collect();
        let other = undeclared(&[app_tcp.clone(), vec![ACME_SOLVER_PORT]].concat());
        for p in targets {
            let to = End::Pod(p);
            let label = format!("{}/{}", a.ns, a.name);
            for (_, t, c) in &controllers {
                for (port, proto) in &route_ports {
                    let own = a.route_ports(&t.name).contains(&(*port, proto.clone()));
                    let what = if own {
                        format!("{} controller -> {label} route port", t.name)
                    } else {
                        format!("{} controller -> {label} another tier's route port", t.name)
                    };
                    b.add(&End::Pod(c), &to, *port, proto, &what);
                }
                b.add(
                    &End::Pod(c),
                    &to,
                    other,
                    "TCP",
                    &format!("{} controller -> {label} undeclared port", t.name),
                );
            }
            for ip in externals(n) {
                for (port, proto) in &tcp_ports {
                    b.add(
                        &End::Ip(ip),
                        &to,
                        *port,
                        proto,
                        &format!("outside -> {label} tcp[] port"),
                    );
                }
                if let Some((port, proto)) = route_ports.first() {
                    b.add(
                        &End::Ip(ip),
                        &to,
                        *port,
                        proto,
                        &format!("outside -> {label} route port"),
                    );
                }
            }
            let stranger = b.w.pod(&a.ns, STRANGER).cloned();
            for port in &app_tcp {
                if let Some(s) = &stranger {
                    b.add(
                        &End::Pod(s),
                        &to,
                        *port,
                        "TCP",
                        &format!("stranger -> {label}"),
                    );
                }
                if let Some(o) = &outsider {
                    b.add(
                        &End::Pod(o),
                        &to,
                        *port,
                        "TCP",
                        &format!("outsider -> {label}"),
                    );
                }
            }
            let first = app_tcp.first().copied().unwrap_or(PROBE_PORT);
            for (i, peer) in a.allow_from.iter().enumerate() {
                let what = format!("allowFrom[{i}] -> {label}");
                if peer["cidr"].is_string() {
                    for (ip, inside) in cidr_probes(peer, &pods) {
                        let what = if inside {
                            what.clone()
                        } else {
                            format!("{what} except")
                        };
                        b.add(&End::Ip(ip), &to, first, "TCP", &what);
                        b.add(
                            &End::Ip(ip),
                            &to,
                            other,
                            "TCP",
                            &format!("{what} undeclared port"),
                        );
                    }
                    continue;
                }
                let srcs: Vec<Pod> =
                    b.w.peer_pods(peer, &a.ns)
                        .into_iter()
                        .take(2)
                        .cloned()
                        .collect();
                for s in &srcs {
                    b.add(&End::Pod(s), &to, first, "TCP", &what);
                    b.add(
                        &End::Pod(s),
                        &to,
                        other,
                        "TCP",
                        &format!("{what} undeclared port"),
                    );
                }
            }
            // The platform's allowEverywhere sources, on their ports and (where they name
            // ports) one they do not name.
            for (hname, h) in &n.allow_everywhere {
                let what = format!("allowEverywhere {hname} -> {label}");
                let (port, proto) = h
                    .ports
                    .first()
                    .map(|pr| (pr.port, pr.protocol.clone()))
                    .unwrap_or((first, "TCP".into()));
                let named: Vec<i64> = h.ports.iter().flat_map(|pr| pr.port..=pr.end).collect();
                let outside = (!h.ports.is_empty()).then(|| undeclared(&named));
                for peer in &h.to {
                    let ips: Vec<IpAddr> = cidr_probes(peer, &pods)
                        .into_iter()
                        .filter(|(_, inside)| *inside)
                        .map(|(ip, _)| ip)
                        .collect();
                    let from_pods: Vec<Pod> = if peer["cidr"].is_string() {
                        Vec::new()
                    } else {
                        b.w.peer_pods(peer, &a.ns)
                            .into_iter()
                            .take(1)
                            .cloned()
                            .collect()
                    };
                    let srcs: Vec<End> = ips
                        .into_iter()
                        .map(End::Ip)
                        .chain(from_pods.iter().map(End::Pod))
                        .collect();
                    for src in &srcs {
                        b.add(src, &to, port, &proto, &what);
                        if let Some(o) = outside {
                            b.add(src, &to, o, "TCP", &format!("{what} undeclared port"));
                        }
                    }
                }
            }
        }
    }

    // The default-deny baseline's holes.
    for ns in m.namespaces.keys() {
        if !m.default_deny_any(ns) {
            continue;
        }
        let src =
            b.w.pod(ns, STRANGER)
                .or_else(|| pods.iter().find(|p| p.ns == *ns && !p.is_probe()))
                .or_else(|| b.w.pod(ns, ACME))
                .cloned();
        if let Some(s) = &src {
            for d in &dns_pods {
                for proto in ["UDP", "TCP"] {
                    b.add(
                        &End::Pod(s),
                        &End::Pod(d),
                        53,
                        proto,
                        &format!("{ns} -> cluster DNS"),
                    );
                }
            }
        }
        if let Some(solver) = b.w.pod(ns, ACME).cloned() {
            for (_, t, c) in &controllers {
                b.add(
                    &End::Pod(c),
                    &End::Pod(&solver),
                    ACME_SOLVER_PORT,
                    "TCP",
                    &format!("{} controller -> {ns} ACME solver", t.name),
                );
            }
            if let Some(o) = &outsider {
                b.add(
                    &End::Pod(o),
                    &End::Pod(&solver),
                    ACME_SOLVER_PORT,
                    "TCP",
                    &format!("outsider -> {ns} ACME solver"),
                );
            }
        }
    }

    // Out of every EgressPolicy's pods.
    for p in &m.policies {
        let mut selected: Vec<&Pod> = pods.iter().filter(|x| p.selects(x)).collect();
        selected.sort_by_key(|x| (x.is_probe(), x.name != STRANGER, x.key()));
        let Some(src) = selected.first().copied().cloned() else {
            continue;
        };
        let from = End::Pod(&src);
        let label = format!("egp {}/{}", p.ns, p.name);
        let mut first_dst: Option<(Value, i64, String)> = None;
        for (i, r) in p.rules.iter().enumerate() {
            let mut ports: Vec<(i64, String)> = Vec::new();
            for pr in &r.ports {
                push_unique(&mut ports, (pr.port, pr.protocol.clone()));
                push_unique(&mut ports, (pr.end, pr.protocol.clone()));
            }
            let used: Vec<i64> = r.ports.iter().flat_map(|pr| pr.port..=pr.end).collect();
            let other = undeclared(&used);
            // Just past a range: endPort is inclusive, and no further.
            for pr in r.ports.iter().filter(|pr| pr.end > pr.port) {
                if !used.contains(&(pr.end + 1)) {
                    push_unique(&mut ports, (pr.end + 1, pr.protocol.clone()));
                }
            }
            for (j, peer) in r.to.iter().enumerate() {
                let what = format!("{label} rules[{i}].to[{j}]");
                if peer["fqdn"].is_string() {
                    continue;
                }
                if peer["apiServer"].is_object() {
                    let declared: Vec<(i64, String)> = if ports.is_empty() {
                        m.api_ports
                            .iter()
                            .map(|p| (*p, "TCP".to_string()))
                            .collect()
                    } else {
                        ports.clone()
                    };
                    let mut api_used = used.clone();
                    api_used.extend(m.api_ports.iter().copied());
                    let api_other = undeclared(&api_used);
                    for ip in m.api_addresses.clone() {
                        let to = End::Ip(ip);
                        for (port, proto) in &declared {
                            b.add(&from, &to, *port, proto, &format!("{what} apiServer"));
                        }
                        b.add(
                            &from,
                            &to,
                            api_other,
                            "TCP",
                            &format!("{what} apiServer undeclared port"),
                        );
                    }
                    continue;
                }
                if peer["cidr"].is_string() {
                    for (ip, inside) in cidr_probes(peer, &pods) {
                        let to = End::Ip(ip);
                        let what = if inside {
                            what.clone()
                        } else {
                            format!("{what} except")
                        };
                        let declared: Vec<(i64, String)> = if ports.is_empty() {
                            vec![(443, "TCP".into())]
                        } else {
                            ports.clone()
                        };
                        for (port, proto) in &declared {
                            b.add(&from, &to, *port, proto, &what);
                            if inside && first_dst.is_none() {
                                first_dst = Some((to.json(), *port, proto.clone()));
                            }
                        }
                        if inside {
                            b.add(&from, &to, other, "TCP", &format!("{what} undeclared port"));
                        }
                    }
                    continue;
                }
                let dsts: Vec<Pod> =
                    b.w.peer_pods(peer, &p.ns)
                        .into_iter()
                        .take(1)
                        .cloned()
                        .collect();
                for d in &dsts {
                    let to = End::Pod(d);
                    let declared: Vec<(i64, String)> = if ports.is_empty() {
                        vec![(d.first_port(), "TCP".into())]
                    } else {
                        ports.clone()
                    };
                    for (port, proto) in &declared {
                        b.add(&from, &to, *port, proto, &what);
                        if first_dst.is_none() && d.declares(proto) {
                            first_dst = Some((to.json(), *port, proto.clone()));
                        }
                    }
                    b.add(&from, &to, other, "TCP", &format!("{what} undeclared port"));
                }
            }
        }
        for d in &dns_pods {
            b.add(
                &from,
                &End::Pod(d),
                53,
                "UDP",
                &format!("{label} -> cluster DNS"),
            );
        }
        if let Some(o) = &outsider {
            b.add(
                &from,
                &End::Pod(o),
                PROBE_PORT,
                "TCP",
                &format!("{label} -> outsider"),
            );
        }
        // A pod of the namespace the policy does not select sends as before.
        if let (Some(s), Some((to, port, proto))) = (b.w.pod(&p.ns, STRANGER).cloned(), first_dst)
            && !p.selects(&s)
        {
            let to_pod = to["pod"].as_str().map(|name| {
                b.w.pod(to["namespace"].as_str().unwrap_or_default(), name)
                    .cloned()
            });
            match to_pod {
                Some(Some(d)) => b.add(
                    &End::Pod(&s),
                    &End::Pod(&d),
                    port,
                    &proto,
                    &format!("stranger (not selected by {label}) -> its destination"),
                ),
                Some(None) => {}
                None => {
                    let ip: IpAddr = to["ip"].as_str().unwrap_or_default().parse().unwrap();
                    b.add(
                        &End::Pod(&s),
                        &End::Ip(ip),
                        port,
                        &proto,
                        &format!("stranger (not selected by {label}) -> its destination"),
                    );
                }
            }
        }
    }
    b.out
}

// ---------------------------------------------------------------------------------------
// Running gatehouse-policy and comparing.

/// Runs gatehouse-policy on the policies, pods, namespaces and probes; returns its output
/// lines (one JSON object per probe, in order).
pub fn evaluate_verdicts(
    policy_bin: &Path,
    network_policies: &[Value],
    pods: &[Value],
    namespaces: &[Value],
    probes: &[ExpectedProbe],
) -> Result<Vec<Value>, String> {
    use std::io::Write;
    let input = json!({
        "networkPolicies": network_policies,
        "pods": pods,
        "namespaces": namespaces,
        "probes": probes.iter().map(|p| p.probe.clone()).collect::<Vec<_>>(),
    });
    let mut child = std::process::Command::new(policy_bin)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", policy_bin.display()))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let data = serde_json::to_vec(&input).map_err(|e| e.to_string())?;
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{}: {e}", policy_bin.display()))?;
    writer
        .join()
        .map_err(|_| "writer thread panicked".to_string())?
        .map_err(|e| format!("writing to {}: {e}", policy_bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} exited with {}: {}",
            policy_bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("output line {l:?}: {e}")))
        .collect::<Result<_, _>>()?;
    if lines.len() != probes.len() {
        return Err(format!(
            "{} answered {} lines for {} probes",
            policy_bin.display(),
            lines.len(),
            probes.len()
        ));
    }
    Ok(lines)
}

/// Whether gatehouse-policy allows each probe.
pub fn evaluate(
    policy_bin: &Path,
    network_policies: &[Value],
    pods: &[Value],
    namespaces: &[Value],
    probes: &[ExpectedProbe],
) -> Result<Vec<bool>, String> {
    evaluate_verdicts(policy_bin, network_policies, pods, namespaces, probes)?
        .iter()
        .map(|l| {
            l["allowed"]
                .as_bool()
                .ok_or_else(|| format!("output line without allowed: {l}"))
        })
        .collect()
}

/// Ok("N probes: A allowed, D denied") when every verdict is the expected one, else a
/// table of every probe (from, to, port/proto, expected, got, reason) with the mismatches
/// marked `MISMATCH`.
pub fn compare(set: &str, probes: &[ExpectedProbe], got: &[bool]) -> Result<String, String> {
    let cells: Vec<(String, bool)> = probes
        .iter()
        .enumerate()
        .map(|(i, p)| match got.get(i) {
            Some(g) => (verdict_text(*g, *g), *g == p.allowed),
            None => ("?".to_string(), false),
        })
        .collect();
    finish(set, probes, &cells)
}

/// As [`compare`], on gatehouse-policy's whole verdicts ([`evaluate_verdicts`]): each
/// direction must be the expected one, so that a wrong egress rule is caught even where
/// the destination denies anyway (and the other way round). `deny[in]`: the destination's
/// ingress denies, `deny[out]`: the source's egress denies.
pub fn compare_verdicts(
    set: &str,
    probes: &[ExpectedProbe],
    verdicts: &[Value],
) -> Result<String, String> {
    let cells: Vec<(String, bool)> = probes
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let v = verdicts.get(i);
            let dir = |d: &str| v.and_then(|v| v[d]["allowed"].as_bool());
            match (dir("ingress"), dir("egress")) {
                (Some(i), Some(e)) => (verdict_text(i, e), i == p.ingress && e == p.egress),
                _ => ("?".to_string(), false),
            }
        })
        .collect();
    finish(set, probes, &cells)
}

fn verdict_text(ingress: bool, egress: bool) -> String {
    match (ingress, egress) {
        (true, true) => "allow".into(),
        (false, true) => "deny[in]".into(),
        (true, false) => "deny[out]".into(),
        (false, false) => "deny[in,out]".into(),
    }
}

fn finish(set: &str, probes: &[ExpectedProbe], got: &[(String, bool)]) -> Result<String, String> {
    let allowed = probes.iter().filter(|p| p.allowed).count();
    let summary = format!(
        "{} probes: {allowed} allowed, {} denied",
        probes.len(),
        probes.len() - allowed
    );
    let mismatches = got.iter().filter(|(_, ok)| !ok).count();
    if mismatches == 0 && probes.len() == got.len() {
        return Ok(summary);
    }
    Err(format!(
        "{set}: {mismatches} of {} probes differ from what the Gatehouse objects declare ({summary} expected)\n{}",
        probes.len(),
        rows(probes, got)
    ))
}

/// Every probe with the verdicts gatehouse-policy gave ([`evaluate_verdicts`]), one line
/// each: from, to, port/proto, expected, got, reason; lines whose verdict is not the
/// expected one start with `MISMATCH`.
pub fn table(probes: &[ExpectedProbe], verdicts: &[Value]) -> String {
    match compare_verdicts("", probes, verdicts) {
        Ok(_) => {
            let cells: Vec<(String, bool)> = probes
                .iter()
                .map(|p| (verdict_text(p.ingress, p.egress), true))
                .collect();
            rows(probes, &cells)
        }
        Err(t) => t.split_once('\n').map(|(_, t)| t.to_string()).unwrap_or(t),
    }
}

fn rows(probes: &[ExpectedProbe], got: &[(String, bool)]) -> String {
    let rows: Vec<[String; 7]> = probes
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (g, ok) = got.get(i).cloned().unwrap_or(("?".into(), false));
            [
                if ok { "" } else { "MISMATCH" }.to_string(),
                p.from(),
                p.to(),
                format!("{}/{}", p.port(), p.protocol()),
                verdict_text(p.ingress, p.egress),
                g,
                p.reason.clone(),
            ]
        })
        .collect();
    let head = ["", "from", "to", "port", "expected", "got", "reason"].map(String::from);
    let mut widths = [0usize; 6];
    for r in std::iter::once(&head).chain(&rows) {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&head).chain(&rows) {
        let mut line = String::new();
        for (c, w) in r.iter().zip(widths) {
            line += &format!("{c:w$}  ");
        }
        line += &r[6];
        out += line.trim_end();
        out.push('\n');
    }
    out
}
