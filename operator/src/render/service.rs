//! Services: `A` (ClusterIP, every port) and `A-external` / `A-internal` (LoadBalancer, the
//! `tcp[]` ports of that tier, with the provider's pool and address annotations). An app
//! naming an existing Service (`spec.service`) gets no Service `A`; that one is checked.

use std::collections::BTreeMap;

use gatehouse_api::{
    AppPort, ClusterNetwork, ExposedApp, LbProvider, Reason, TcpExposure, Tier, labels,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use serde_json::{Value, json};

use super::child::{Child, ChildKind, Owner};
use super::context::Context;
use super::validate::{Finding, Findings};

pub const METALLB_POOL: &str = "metallb.io/address-pool";
pub const METALLB_IPS: &str = "metallb.io/loadBalancerIPs";
pub const CILIUM_IPS: &str = "lbipam.cilium.io/ips";
pub const HETZNER_PROXY_PROTOCOL: &str = "load-balancer.hetzner.cloud/uses-proxyprotocol";
pub const HETZNER_LOCATION: &str = "load-balancer.hetzner.cloud/location";
pub const HETZNER_NETWORK_ZONE: &str = "load-balancer.hetzner.cloud/network-zone";
pub const HETZNER_USE_PRIVATE_IP: &str = "load-balancer.hetzner.cloud/use-private-ip";
pub const HETZNER_DISABLE_PRIVATE_INGRESS: &str =
    "load-balancer.hetzner.cloud/disable-private-ingress";
pub const HETZNER_HOSTNAME: &str = "load-balancer.hetzner.cloud/hostname";

/// Name of the LoadBalancer Service of a tier.
pub fn load_balancer_name(app: &ExposedApp, tier: Tier) -> String {
    format!("{}-{}", app.name_any(), tier)
}

/// The effective target port: `targetPort`, else `port`.
pub fn target_port(p: &AppPort) -> IntOrString {
    p.target_port.clone().unwrap_or(IntOrString::Int(p.port))
}

// Specs are built as JSON directly rather than as k8s-openapi structs serialized
// afterwards: half the allocations, and render throughput is allocation-bound.
fn service_port(p: &AppPort) -> Value {
    json!({"name": p.name, "port": p.port, "targetPort": target_port(p), "protocol": p.protocol.as_str()})
}

/// The Services' families: `serviceIPFamilies`, else `ipFamilies` (DNS may publish more
/// families than the cluster runs, e.g. behind a dual-stack cloud load balancer).
fn families(network: &ClusterNetwork) -> (Vec<&'static str>, &'static str) {
    let fams: Vec<&'static str> = network
        .service_families()
        .iter()
        .map(|f| f.as_str())
        .collect();
    let policy = if fams.len() > 1 {
        "RequireDualStack"
    } else {
        "SingleStack"
    };
    (fams, policy)
}

pub fn cluster_ip(app: &ExposedApp, network: &ClusterNetwork, owner: &Owner) -> Child {
    let (ip_families, ip_family_policy) = families(network);
    let ports: Vec<Value> = app.spec.ports.iter().map(service_port).collect();
    let mut spec = json!({
        "type": "ClusterIP",
        "selector": app.spec.selector,
        "ipFamilies": ip_families,
        "ipFamilyPolicy": ip_family_policy,
    });
    let meta = owner.meta(app.name_any(), app.namespace().as_deref());
    spec["ports"] = Value::Array(ports);
    Child::with_spec(ChildKind::Service, meta, spec)
}

/// The tier's LoadBalancer Service, when the app has `tcp[]` entries for it.
pub fn load_balancer(
    app: &ExposedApp,
    network: &ClusterNetwork,
    tier: Tier,
    owner: &Owner,
) -> Option<Child> {
    let entries: Vec<&TcpExposure> = app.spec.tcp.iter().filter(|t| t.exposure == tier).collect();
    let first = entries.first()?;
    let mut ports: Vec<Value> = Vec::new();
    for t in &entries {
        if let Some(p) = app.spec.ports.iter().find(|p| p.name == t.port)
            && !ports.iter().any(|x| x["name"] == p.name.as_str())
        {
            ports.push(service_port(p));
        }
    }
    let addresses: Vec<String> = entries
        .iter()
        .find(|t| !t.addresses.is_empty())
        .map(|t| t.addresses.clone())
        .unwrap_or_default();
    let pool = pool_of(network, tier, &first.pool);

    let mut meta = owner.meta(load_balancer_name(app, tier), app.namespace().as_deref());
    provider_settings(
        network,
        &mut meta,
        pool.as_deref(),
        &addresses,
        first.proxy_protocol,
    );
    let (ip_families, ip_family_policy) = families(network);
    let mut spec = json!({
        "type": "LoadBalancer",
        "selector": app.spec.selector,
        "externalTrafficPolicy": "Local",
        "ipFamilies": ip_families,
        "ipFamilyPolicy": ip_family_policy,
    });
    spec["ports"] = Value::Array(ports);
    Some(Child::with_spec(ChildKind::Service, meta, spec))
}

/// The pool a LoadBalancer Service of `tier` takes: the one it names (validation made sure
/// it exists), else the pool named like the tier, if there is one.
fn pool_of(network: &ClusterNetwork, tier: Tier, named: &Option<String>) -> Option<String> {
    named.clone().or_else(|| {
        network
            .spec
            .load_balancer
            .pools
            .iter()
            .find(|p| p.name == tier.as_str())
            .map(|p| p.name.clone())
    })
}

/// What the load-balancer provider reads from a LoadBalancer Service: MetalLB's pool and
/// address annotations, Cilium's pool label and address annotation, Hetzner's PROXY
/// protocol and `loadBalancer.hetzner` annotations.
fn provider_settings(
    network: &ClusterNetwork,
    meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    pool: Option<&str>,
    addresses: &[String],
    proxy_protocol: bool,
) {
    let mut annotations = BTreeMap::new();
    match network.spec.load_balancer.provider {
        LbProvider::MetalLB => {
            if let Some(pool) = pool {
                annotations.insert(METALLB_POOL.to_string(), pool.to_string());
            }
            if !addresses.is_empty() {
                annotations.insert(METALLB_IPS.to_string(), addresses.join(","));
            }
        }
        LbProvider::Cilium => {
            if let Some(pool) = pool {
                meta.labels
                    .get_or_insert_default()
                    .insert(labels::POOL.to_string(), pool.to_string());
            }
            if !addresses.is_empty() {
                annotations.insert(CILIUM_IPS.to_string(), addresses.join(","));
            }
        }
        LbProvider::Hetzner => {
            annotations.insert(
                HETZNER_PROXY_PROTOCOL.to_string(),
                proxy_protocol.to_string(),
            );
            if let Some(h) = &network.spec.load_balancer.hetzner {
                if let Some(l) = &h.location {
                    annotations.insert(HETZNER_LOCATION.to_string(), l.clone());
                }
                if let Some(z) = &h.network_zone {
                    annotations.insert(HETZNER_NETWORK_ZONE.to_string(), z.clone());
                }
                if h.use_private_ip {
                    annotations.insert(HETZNER_USE_PRIVATE_IP.to_string(), "true".into());
                }
                if h.disable_private_ingress {
                    annotations.insert(HETZNER_DISABLE_PRIVATE_INGRESS.to_string(), "true".into());
                }
            }
        }
        LbProvider::None => {}
    }
    if !annotations.is_empty() {
        meta.annotations.get_or_insert_default().extend(annotations);
    }
}

/// A tier's own LoadBalancer Service `<network>-<tier>` (`ingress.<tier>.loadBalancer`),
/// owned by the ClusterNetwork, in the tier's namespace, selecting its controller pods.
pub fn tier_load_balancer(network: &ClusterNetwork, tier: Tier, owner: &Owner) -> Option<Child> {
    let t = network.spec.ingress.get(tier)?;
    let lb = t.load_balancer.as_ref()?;
    let (namespace, name) = network.tier_address_service(tier)?;
    let selector = t
        .pod_selector
        .as_ref()?
        .match_labels
        .clone()
        .unwrap_or_default();
    let pool = pool_of(network, tier, &lb.pool);
    let mut meta = owner.meta(name, Some(&namespace));
    provider_settings(
        network,
        &mut meta,
        pool.as_deref(),
        &lb.addresses,
        lb.proxy_protocol,
    );
    if let Some(h) = &lb.hostname {
        meta.annotations
            .get_or_insert_default()
            .insert(HETZNER_HOSTNAME.to_string(), h.clone());
    }
    let (ip_families, ip_family_policy) = families(network);
    let spec = json!({
        "type": "LoadBalancer",
        "selector": selector,
        "externalTrafficPolicy": lb.external_traffic_policy.as_str(),
        "ipFamilies": ip_families,
        "ipFamilyPolicy": ip_family_policy,
        "ports": [
            {"name": "http", "port": 80, "targetPort": lb.http_target_port.unwrap_or(80), "protocol": "TCP"},
            {"name": "https", "port": 443, "targetPort": lb.https_target_port.unwrap_or(443), "protocol": "TCP"},
        ],
    });
    Some(Child::with_spec(ChildKind::Service, meta, spec))
}

/// The app's LoadBalancer Services that wait for an address from a pool with none free
/// (see [`check_capacity`]), each named at its tier's first `tcp[]` entry.
pub fn app_capacity(
    app: &ExposedApp,
    network: &ClusterNetwork,
    ctx: &Context,
    findings: &mut Findings,
) {
    let namespace = app.namespace().unwrap_or_default();
    for tier in Tier::ALL {
        let Some((i, first)) = app
            .spec
            .tcp
            .iter()
            .enumerate()
            .find(|(_, t)| t.exposure == tier)
        else {
            continue;
        };
        let requested: Vec<&String> = app
            .spec
            .tcp
            .iter()
            .filter(|t| t.exposure == tier)
            .flat_map(|t| &t.addresses)
            .collect();
        check_capacity(
            network,
            ctx,
            pool_of(network, tier, &first.pool).as_deref(),
            &requested,
            (&namespace, &load_balancer_name(app, tier)),
            format!("spec.tcp[{i}].pool"),
            findings,
        );
    }
}

/// The same for the tiers' own LoadBalancer Services (`ingress.<tier>.loadBalancer`).
pub fn tier_capacity(network: &ClusterNetwork, ctx: &Context, findings: &mut Findings) {
    for tier in Tier::ALL {
        let Some(lb) = network
            .spec
            .ingress
            .get(tier)
            .and_then(|t| t.load_balancer.as_ref())
        else {
            continue;
        };
        let Some((ns, name)) = network.tier_address_service(tier) else {
            continue;
        };
        let requested: Vec<&String> = lb.addresses.iter().collect();
        check_capacity(
            network,
            ctx,
            pool_of(network, tier, &lb.pool).as_deref(),
            &requested,
            (&ns, &name),
            format!("spec.ingress.{tier}.loadBalancer.pool"),
            findings,
        );
    }
}

/// A LoadBalancer Service waiting for an address from a pool that has none free: Stalled
/// with reason `PoolExhausted`, naming the pool and its figures (it goes on once an address
/// is freed or the pool grows). Judged only while the Service has no address of a family
/// it needs and requests none of that family (a requested address that is free can be
/// had, one that is held was refused by validation), so a Service that has its address is
/// fine when the pool fills up afterwards: the verdict does not flap.
fn check_capacity(
    network: &ClusterNetwork,
    ctx: &Context,
    pool: Option<&str>,
    requested: &[&String],
    (namespace, name): (&str, &str),
    field: String,
    findings: &mut Findings,
) {
    if !matches!(
        network.spec.load_balancer.provider,
        LbProvider::MetalLB | LbProvider::Cilium
    ) {
        return;
    }
    let Some(pool) = pool.and_then(|p| {
        network
            .spec
            .load_balancer
            .pools
            .iter()
            .find(|x| x.name == p)
    }) else {
        return;
    };
    let held: Vec<std::net::IpAddr> = ctx
        .service(namespace, name)
        .map(super::context::assigned_addresses)
        .unwrap_or_default();
    let requested: Vec<std::net::IpAddr> = requested
        .iter()
        .filter_map(|a| super::ip::parse_ip(a))
        .collect();
    let mut usage = None;
    for &family in network.service_families() {
        let has =
            |list: &[std::net::IpAddr]| list.iter().any(|a| super::ip::family_of(*a) == family);
        if has(&held) || has(&requested) {
            continue;
        }
        let u = usage.get_or_insert_with(|| super::pool::usage(pool, ctx));
        if u.size_of(family) > 0 && u.free_of(family) == 0 {
            findings.push(Finding::stalling(
                Reason::PoolExhausted,
                field,
                format!(
                    "pool {:?} of ClusterNetwork {} has no free {} address ({} of {} allocated): Service {namespace}/{name} waits for one; free an address or add addresses to the pool",
                    pool.name,
                    network.name_any(),
                    family.as_str(),
                    u.allocated(),
                    u.size(),
                ),
            ));
            return;
        }
    }
}

/// An app routing to an existing Service: it must exist (until it does, the routes wait,
/// as for a peer that does not resolve yet) and have every port the routes name.
pub fn check_existing(app: &ExposedApp, name: &str, ctx: &Context, findings: &mut Findings) {
    let namespace = app.namespace().unwrap_or_default();
    let Some(svc) = ctx.services.get(&(namespace.clone(), name.to_string())) else {
        findings.push(Finding::new(
            Reason::ReferenceNotFound,
            "spec.service.name",
            format!("Service {namespace}/{name} does not exist (yet); its routes wait for it"),
        ));
        return;
    };
    let have: Vec<&str> = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|p| p.name.as_deref())
        .collect();
    let default_port = app.spec.ports.first().map(|p| p.name.as_str());
    for (i, route) in app.spec.routes.iter().enumerate() {
        let named: Vec<(String, &str)> = if route.paths.is_empty() {
            default_port
                .map(|p| (format!("spec.routes[{i}]"), p))
                .into_iter()
                .collect()
        } else {
            route
                .paths
                .iter()
                .enumerate()
                .filter_map(|(j, p)| {
                    let port = p.port.as_deref().or(default_port)?;
                    Some((format!("spec.routes[{i}].paths[{j}].port"), port))
                })
                .collect()
        };
        for (field, port) in named {
            if !have.contains(&port) {
                findings.push(Finding::stalling(
                    Reason::InvalidSpec,
                    field,
                    format!(
                        "Service {namespace}/{name} has no port named {port:?} (it has {}); routes to an existing Service name its ports",
                        if have.is_empty() { "no named ports".to_string() } else { have.join(", ") }
                    ),
                ));
            }
        }
    }
}
