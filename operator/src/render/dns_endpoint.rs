//! DNSEndpoint `A-external` / `A-internal` (externaldns.k8s.io/v1alpha1): route hosts to what
//! the tier publishes (`publish`: addresses, or a CNAME target; else the tier's addresses),
//! tcp hosts to the LoadBalancer Service's assigned addresses, A and AAAA by the network's
//! families. External records never publish a private address unless the platform says so.

use std::collections::BTreeMap;
use std::net::IpAddr;

use gatehouse_api::{ClusterNetwork, ExposedApp, IpFamily, Reason, Tier, TierAddress, labels};
use kube::ResourceExt;
use serde_json::{Value, json};

use super::child::{Child, ChildKind, Owner};
use super::context::Context;
use super::ingress::routes_on;
use super::ip;
use super::service::load_balancer_name;
use super::validate::{Finding, Findings};

/// Assigned addresses of the app's LoadBalancer Service for a tier (empty until assigned).
fn lb_addresses(app: &ExposedApp, tier: Tier, ctx: &Context) -> Vec<IpAddr> {
    ctx.load_balancer_ips(
        &app.namespace().unwrap_or_default(),
        &load_balancer_name(app, tier),
    )
}

fn records(hosts: &[String], addrs: &[IpAddr], network: &ClusterNetwork, ttl: i64) -> Vec<Value> {
    let mut out = Vec::new();
    for host in hosts {
        for family in &network.spec.ip_families {
            let (record_type, targets): (&str, Vec<String>) = match family {
                IpFamily::IPv4 => (
                    "A",
                    addrs
                        .iter()
                        .filter(|a| a.is_ipv4())
                        .map(ToString::to_string)
                        .collect(),
                ),
                IpFamily::IPv6 => (
                    "AAAA",
                    addrs
                        .iter()
                        .filter(|a| a.is_ipv6())
                        .map(ToString::to_string)
                        .collect(),
                ),
            };
            if !targets.is_empty() {
                out.push(json!({"dnsName": host, "recordType": record_type, "recordTTL": ttl, "targets": targets}));
            }
        }
    }
    out
}

/// What a tier's route records point to.
enum Targets {
    Addresses(Vec<IpAddr>),
    /// A CNAME target (the tier's `publish.hostname`).
    Name(String),
}

fn route_targets(network: &ClusterNetwork, tier: Tier, ctx: &Context) -> Targets {
    let publish = network
        .spec
        .ingress
        .get(tier)
        .and_then(|t| t.publish.as_ref());
    match publish {
        Some(p) => match &p.hostname {
            Some(name) => Targets::Name(name.clone()),
            None => {
                Targets::Addresses(p.addresses.iter().filter_map(|a| ip::parse_ip(a)).collect())
            }
        },
        None => {
            let addrs = ctx.tier_addresses(network, tier);
            match ctx.tier_hostname(network, tier) {
                // A load balancer known by name only: its name, not a wait for addresses.
                Some(name) if addrs.is_empty() => Targets::Name(name),
                _ => Targets::Addresses(addrs),
            }
        }
    }
}

/// The addresses a tier's zone may publish, and the private ones it must leave out (the
/// external tier, unless `dns.external.publishPrivateAddresses`).
fn publishable(
    network: &ClusterNetwork,
    tier: Tier,
    addrs: Vec<IpAddr>,
) -> (Vec<IpAddr>, Vec<IpAddr>) {
    let allowed = tier == Tier::Internal
        || network
            .spec
            .dns
            .external
            .as_ref()
            .is_some_and(|z| z.publish_private_addresses);
    if allowed {
        (addrs, Vec::new())
    } else {
        addrs.into_iter().partition(|a| !ip::is_private(*a))
    }
}

fn private_finding(
    field: &str,
    private: &[IpAddr],
    hosts: &[String],
    network: &ClusterNetwork,
) -> Finding {
    let list: Vec<String> = private.iter().map(ToString::to_string).collect();
    Finding::stalling(
        Reason::PrivateAddressNotPublished,
        field,
        format!(
            "{} private: the external records of {} leave it out (a public name pointing at a LAN address fails outside that LAN); set spec.ingress.external.publish (the router's public address or DynDNS name) or spec.dns.external.publishPrivateAddresses on ClusterNetwork {}",
            if list.len() == 1 {
                format!("{} is", list[0])
            } else {
                format!("{} are", list.join(", "))
            },
            hosts.join(", "),
            network.name_any()
        ),
    )
}

/// One CNAME record per host.
fn cname_records(hosts: &[String], target: &str, ttl: i64) -> Vec<Value> {
    hosts
        .iter()
        .map(|host| json!({"dnsName": host, "recordType": "CNAME", "recordTTL": ttl, "targets": [target]}))
        .collect()
}

pub fn dns_endpoint(
    app: &ExposedApp,
    network: &ClusterNetwork,
    tier: Tier,
    ctx: &Context,
    owner: &Owner,
    findings: &mut Findings,
) -> Option<Child> {
    if !app.spec.dns.enabled {
        return None;
    }
    let ttl = app.spec.dns.ttl.unwrap_or(network.spec.dns.ttl);
    let mut endpoints = Vec::new();

    let route_hosts: Vec<String> = routes_on(app, network, tier)
        .iter()
        .flat_map(|r| r.hosts.clone())
        .collect();
    if !route_hosts.is_empty() {
        match route_targets(network, tier, ctx) {
            Targets::Name(target) => endpoints.extend(cname_records(&route_hosts, &target, ttl)),
            Targets::Addresses(addrs) => {
                if addrs.is_empty() {
                    findings.push(Finding::new(
                        Reason::WaitingForAddress,
                        format!("spec.routes (tier {tier:?})"),
                        format!(
                            "the {tier} ingress tier's address is not known yet (ClusterNetwork {} spec.ingress.{tier}); DNS records for {} wait for it",
                            network.name_any(),
                            route_hosts.join(", ")
                        ),
                    ));
                }
                let (addrs, private) = publishable(network, tier, addrs);
                if !private.is_empty() {
                    let field = format!("spec.routes (tier {tier:?})");
                    findings.push(private_finding(&field, &private, &route_hosts, network));
                }
                endpoints.extend(records(&route_hosts, &addrs, network, ttl));
            }
        }
    }

    // Split horizon: the external tier's hosts in the internal zone, to the external
    // tier's own (LAN) addresses. Internal records publish any address.
    let split = tier == Tier::Internal
        && network
            .spec
            .dns
            .internal
            .as_ref()
            .is_some_and(|z| z.publish_external_hosts);
    if split {
        let zone = network.spec.dns.zone(Tier::Internal).unwrap_or_default();
        let internal_hosts: Vec<&String> = routes_on(app, network, Tier::Internal)
            .iter()
            .flat_map(|r| r.hosts.iter())
            .collect();
        let hosts: Vec<String> = routes_on(app, network, Tier::External)
            .iter()
            .flat_map(|r| r.hosts.clone())
            .filter(|h| ip::host_in_zone(h, zone) && !internal_hosts.contains(&h))
            .collect();
        if !hosts.is_empty() {
            let addrs = ctx.tier_addresses(network, Tier::External);
            if addrs.is_empty() {
                findings.push(Finding::new(
                    Reason::WaitingForAddress,
                    "spec.routes (tier External, split horizon)",
                    format!(
                        "the external ingress tier's address is not known yet (ClusterNetwork {} spec.ingress.external); internal records for {} wait for it",
                        network.name_any(),
                        hosts.join(", ")
                    ),
                ));
            }
            endpoints.extend(records(&hosts, &addrs, network, ttl));
        }
    }

    let tcp_hosts: Vec<String> = app
        .spec
        .tcp
        .iter()
        .filter(|t| t.exposure == tier)
        .flat_map(|t| t.hosts.clone())
        .collect();
    // Looked up only for apps with tcp hosts on this tier (every render passes here).
    let lb_name = (!tcp_hosts.is_empty())
        .then(|| {
            ctx.load_balancer_hostname(
                &app.namespace().unwrap_or_default(),
                &load_balancer_name(app, tier),
            )
        })
        .flatten();
    if let Some(name) = &lb_name {
        endpoints.extend(cname_records(&tcp_hosts, name, ttl));
    } else if !tcp_hosts.is_empty() {
        let addrs = lb_addresses(app, tier, ctx);
        if addrs.is_empty() {
            findings.push(Finding::new(
                Reason::WaitingForAddress,
                "spec.tcp[].hosts",
                format!(
                    "Service {} has no load-balancer address yet; DNS records for {} wait for it",
                    load_balancer_name(app, tier),
                    tcp_hosts.join(", ")
                ),
            ));
        }
        let (addrs, private) = publishable(network, tier, addrs);
        if !private.is_empty() {
            findings.push(private_finding(
                "spec.tcp[].hosts",
                &private,
                &tcp_hosts,
                network,
            ));
        }
        endpoints.extend(records(&tcp_hosts, &addrs, network, ttl));
    }

    if endpoints.is_empty() {
        return None;
    }
    let mut meta = owner.meta(
        format!("{}-{}", app.name_any(), tier),
        app.namespace().as_deref(),
    );
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(labels::DNS_TIER.to_string(), tier.as_str().to_string());
    Some(Child::new(ChildKind::DnsEndpoint, meta, {
        let mut spec = serde_json::Map::new();
        spec.insert("endpoints".into(), Value::Array(endpoints));
        let mut body = serde_json::Map::new();
        body.insert("spec".into(), Value::Object(spec));
        Value::Object(body)
    }))
}

/// Known addresses per tier: ingress addresses for tiers with routes, assigned load-balancer
/// addresses for tiers with tcp exposure.
pub fn addresses(app: &ExposedApp, network: &ClusterNetwork, ctx: &Context) -> Vec<TierAddress> {
    let mut out = Vec::new();
    for tier in Tier::ALL {
        if !routes_on(app, network, tier).is_empty() {
            out.extend(
                ctx.tier_addresses(network, tier)
                    .into_iter()
                    .map(|ip| TierAddress {
                        tier,
                        ip: ip.to_string(),
                    }),
            );
        }
        if app.spec.tcp.iter().any(|t| t.exposure == tier) {
            out.extend(
                lb_addresses(app, tier, ctx)
                    .into_iter()
                    .map(|ip| TierAddress {
                        tier,
                        ip: ip.to_string(),
                    }),
            );
        }
    }
    out
}
