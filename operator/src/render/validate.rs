//! Semantic checks the API server's schema cannot make, because they need the network or
//! other objects: zones, pools, attachments, issuers, host ownership. Also re-checks the
//! cross-field rules render relies on, so offline input that never met the schema still gets
//! a clear error instead of a wrong object.

use std::collections::BTreeMap;

use gatehouse_api::{
    ClusterNetwork, EgressPolicy, ExposedApp, IngressController, IpFamily, IpamType, LbProvider,
    Reason, RouteAuth, Tier,
};
use kube::ResourceExt;

use super::context::Context;
use super::ip;

/// One problem with an object: a reason (condition reason), the field and a message that
/// names the offending value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub reason: Reason,
    pub field: String,
    pub message: String,
    /// Needs a human (Stalled) even though rendering went on.
    pub stalls: bool,
}

impl Finding {
    /// A finding that does not need a human: it clears when the cluster catches up.
    pub fn new(reason: Reason, field: impl Into<String>, message: impl Into<String>) -> Self {
        Finding {
            reason,
            field: field.into(),
            message: message.into(),
            stalls: false,
        }
    }
    /// A finding that needs a human.
    pub fn stalling(reason: Reason, field: impl Into<String>, message: impl Into<String>) -> Self {
        Finding {
            reason,
            field: field.into(),
            message: message.into(),
            stalls: true,
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} ({})", self.field, self.message, self.reason)
    }
}

/// A list of findings, in the order they were found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findings(pub Vec<Finding>);

impl Findings {
    pub fn push(&mut self, f: Finding) {
        self.0.push(f);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Finding> {
        self.0.iter()
    }
    fn into_result<T>(self, ok: T) -> Result<T, Findings> {
        if self.0.is_empty() { Ok(ok) } else { Err(self) }
    }
}

impl std::fmt::Display for Findings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join("; "))
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Finding {
    Finding::stalling(Reason::InvalidSpec, field, message)
}

/// An ExposedApp that passed validation, with what it resolved to: the only input the
/// ExposedApp builders take, so none of them re-checks what validation established.
pub struct ValidApp<'a> {
    pub app: &'a ExposedApp,
    pub network: &'a ClusterNetwork,
}

/// An EgressPolicy that passed validation, with its network.
pub struct ValidPolicy<'a> {
    pub policy: &'a EgressPolicy,
    pub network: &'a ClusterNetwork,
}

/// A ClusterNetwork that passed validation.
pub struct ValidNetwork<'a> {
    pub network: &'a ClusterNetwork,
}

pub fn find_network<'a>(ctx: &'a Context, name: &str) -> Result<&'a ClusterNetwork, Findings> {
    ctx.network(name).ok_or_else(|| {
        Findings(vec![Finding::stalling(
            Reason::NetworkNotFound,
            "spec.network",
            format!("ClusterNetwork {name:?} does not exist"),
        )])
    })
}

pub fn exposed_app<'a>(app: &'a ExposedApp, ctx: &'a Context) -> Result<ValidApp<'a>, Findings> {
    let network = find_network(ctx, &app.spec.network)?;
    let spec = &app.spec;
    let net = &network.spec;
    let net_name = network.name_any();
    let namespace = app.namespace().unwrap_or_default();
    let mut out = Findings::default();

    if spec.selector.is_empty() {
        out.push(invalid(
            "spec.selector",
            "must not be empty: it selects the app's pods",
        ));
    }
    if spec.ports.is_empty() {
        out.push(invalid("spec.ports", "at least one port is required"));
    }
    let port_names: Vec<&str> = spec.ports.iter().map(|p| p.name.as_str()).collect();
    for (i, p) in spec.ports.iter().enumerate() {
        if port_names.iter().filter(|n| **n == p.name).count() > 1 {
            out.push(invalid(
                format!("spec.ports[{i}].name"),
                format!("port name {:?} is declared twice", p.name),
            ));
        }
    }

    // Routes: tiers, ports, zones, issuer, auth, and per-tier agreement.
    let mut tier_style: BTreeMap<Tier, (usize, bool, RouteAuth)> = BTreeMap::new();
    let mut seen_hosts: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, route) in spec.routes.iter().enumerate() {
        if route.hosts.is_empty() {
            out.push(invalid(
                format!("spec.routes[{i}].hosts"),
                "a route needs at least one host",
            ));
        }
        for (j, p) in route.paths.iter().enumerate() {
            if let Some(port) = &p.port
                && !port_names.contains(&port.as_str())
            {
                out.push(invalid(
                    format!("spec.routes[{i}].paths[{j}].port"),
                    format!("port {port:?} is not declared in spec.ports"),
                ));
            }
        }
        for (j, host) in route.hosts.iter().enumerate() {
            if let Some(first) = seen_hosts.insert(host, i)
                && first != i
            {
                out.push(invalid(
                    format!("spec.routes[{i}].hosts[{j}]"),
                    format!("host {host:?} already appears in spec.routes[{first}]"),
                ));
            }
        }
        for tier in Tier::ALL
            .into_iter()
            .filter(|t| route.exposure.includes(*t))
        {
            let tier_field = format!("spec.ingress.{tier}");
            if net.ingress.get(tier).is_none() {
                out.push(invalid(
                    format!("spec.routes[{i}].exposure"),
                    format!(
                        "tier {tier:?} is not defined in ClusterNetwork {net_name} ({tier_field})"
                    ),
                ));
                continue;
            }
            check_zone(
                &mut out,
                network,
                tier,
                &route.hosts,
                &format!("spec.routes[{i}].hosts"),
            );
            let redirect = route.tls && route.redirect_to_https;
            match tier_style.get(&tier) {
                Some((first, r, a)) if *r != redirect || *a != route.auth => out.push(invalid(
                    format!("spec.routes[{i}]"),
                    format!(
                        "routes on tier {tier:?} share one Ingress and must agree on tls+redirectToHttps and auth; spec.routes[{first}] differs (use a second ExposedApp for a different policy)"
                    ),
                )),
                Some(_) => {}
                None => {
                    tier_style.insert(tier, (i, redirect, route.auth));
                }
            }
        }
        for tier in Tier::ALL
            .into_iter()
            .filter(|t| route.exposure.includes(*t))
        {
            if super::gateway::auth_unsupported(network, tier, route) {
                out.push(Finding::stalling(
                    Reason::AuthUnsupported,
                    format!("spec.routes[{i}].auth"),
                    format!(
                        "OAuth2 on the {tier} tier, a Gateway tier of controller {:?}: Gatehouse signs users in on Gateway tiers only through Traefik's forwardAuth Middleware (controller Traefik); serve the route on an Ingress tier, or use the Gateway implementation's own auth policy outside Gatehouse",
                        net.ingress.get(tier).map(|t| t.controller).unwrap_or_default()
                    ),
                ));
            }
        }
        if route.auth == RouteAuth::OAuth2
            && net
                .auth
                .as_ref()
                .and_then(|a| a.oauth2_proxy.as_ref())
                .is_none()
        {
            out.push(invalid(
                format!("spec.routes[{i}].auth"),
                format!("OAuth2 needs auth.oauth2Proxy.url on ClusterNetwork {net_name}"),
            ));
        }
        // Each tier the route is served on needs an issuer for its certificate.
        let no_issuer = Tier::ALL.into_iter().find(|t| {
            route.exposure.includes(*t)
                && net
                    .ingress
                    .get(*t)
                    .is_some_and(|tier| tier.issuer_ref.is_none())
        });
        if let Some(tier) = no_issuer
            && route.tls
            && spec.tls.is_none()
            && net.tls.is_none()
        {
            out.push(invalid(
                format!("spec.routes[{i}].tls"),
                format!("no certificate issuer for the {tier} tier: set spec.tls.issuerRef, or ingress.{tier}.issuerRef or tls.issuerRef on ClusterNetwork {net_name}"),
            ));
        }
    }
    if spec
        .routes
        .iter()
        .any(|r| r.tls && r.exposure.includes(Tier::External))
        && net
            .ingress
            .external
            .as_ref()
            .is_some_and(|t| t.controller == IngressController::Traefik)
    {
        // Nothing extra to check: Traefik middlewares are rendered per app.
    }

    // Gateway tiers: the app's listener names must fit a listener name (a Gateway holds
    // at most 64 listeners, so the index has at most two digits).
    let on_gateway = spec.routes.iter().any(|r| {
        r.tls
            && Tier::ALL.into_iter().any(|t| {
                r.exposure.includes(t) && super::gateway::tier_gateway(network, t).is_some()
            })
    });
    if on_gateway {
        let longest = super::gateway::listener_name(&namespace, &app.name_any(), 63);
        if longest.len() > 253 {
            out.push(invalid(
                "metadata.name",
                format!("too long for a Gateway tier: the app's listener names ({longest}) must fit in 253 characters"),
            ));
        }
    }

    // TCP exposure: ports, pools, provider capabilities, per-tier agreement.
    let mut tcp_style: BTreeMap<Tier, usize> = BTreeMap::new();
    for (i, t) in spec.tcp.iter().enumerate() {
        let field = format!("spec.tcp[{i}]");
        if !port_names.contains(&t.port.as_str()) {
            out.push(invalid(
                format!("{field}.port"),
                format!("port {:?} is not declared in spec.ports", t.port),
            ));
        }
        check_zone(
            &mut out,
            network,
            t.exposure,
            &t.hosts,
            &format!("{field}.hosts"),
        );
        let own = (
            namespace.clone(),
            super::service::load_balancer_name(app, t.exposure),
        );
        check_lb_request(
            &mut out,
            network,
            ctx,
            Some(&own),
            &field,
            t.exposure,
            &t.pool,
            &t.addresses,
            t.proxy_protocol,
        );
        match tcp_style.get(&t.exposure) {
            Some(&first) => {
                let f = &spec.tcp[first];
                let differs = (f.pool != t.pool)
                    || (f.proxy_protocol != t.proxy_protocol)
                    || (!f.addresses.is_empty()
                        && !t.addresses.is_empty()
                        && f.addresses != t.addresses);
                if differs {
                    out.push(invalid(
                        field,
                        format!(
                            "tcp entries with exposure {:?} share Service {}-{} and must agree on pool, addresses and proxyProtocol; spec.tcp[{first}] differs",
                            t.exposure,
                            app.name_any(),
                            t.exposure
                        ),
                    ));
                }
            }
            None => {
                tcp_style.insert(t.exposure, i);
            }
        }
    }

    // Attachments: known, static IPs inside the ranges, not attached twice.
    for (i, a) in spec.attachments.iter().enumerate() {
        let field = format!("spec.attachments[{i}]");
        let Some(def) = net.attachments.iter().find(|d| d.name == a.network) else {
            out.push(invalid(
                format!("{field}.network"),
                format!("attachment {:?} is not defined in ClusterNetwork {net_name} (spec.attachments)", a.network),
            ));
            continue;
        };
        if spec.attachments[..i].iter().any(|o| o.network == a.network) {
            out.push(invalid(
                format!("{field}.network"),
                format!("attachment {:?} is listed twice", a.network),
            ));
        }
        // The attachment's ports name the app's own ports, as route paths do.
        for (j, name) in a.ports.iter().enumerate() {
            if !spec.ports.iter().any(|p| &p.name == name) {
                out.push(invalid(
                    format!("{field}.ports[{j}]"),
                    format!("port {name:?} is not one of the app's spec.ports"),
                ));
            }
        }
        if def.ipam.kind == IpamType::Static && a.ips.is_empty() {
            out.push(invalid(
                format!("{field}.ips"),
                format!(
                    "attachment {:?} uses static IPAM: give the app's addresses here",
                    a.network
                ),
            ));
        }
        for (j, addr) in a.ips.iter().enumerate() {
            let ifield = format!("{field}.ips[{j}]");
            let Some((ipaddr, _)) = ip::parse_cidr(addr) else {
                out.push(invalid(
                    ifield,
                    format!("{addr:?} is not an address with prefix length, e.g. 192.168.31.13/24"),
                ));
                continue;
            };
            let inside = def
                .ipam
                .ranges
                .iter()
                .filter_map(|r| ip::parse_cidr(&r.subnet))
                .any(|(_, r)| r.contains(ipaddr));
            // Another app pinning the same address on the same attachment holds it:
            // the first claim wins (a LAN has room for one owner of an address).
            let first = ctx.first_attachment_claim(&net_name, &a.network, ipaddr);
            if let Some(first) = first
                && *first < super::context::claim_order(app)
            {
                out.push(Finding::stalling(
                    Reason::AddressInUse,
                    ifield.clone(),
                    format!(
                        "{addr} on attachment {:?} is already held by ExposedApp {}/{}",
                        a.network, first.1, first.2
                    ),
                ));
            }
            if !inside {
                let subnets: Vec<&str> =
                    def.ipam.ranges.iter().map(|r| r.subnet.as_str()).collect();
                out.push(invalid(
                    ifield,
                    format!(
                        "{addr} is outside the ranges of attachment {:?} ({})",
                        a.network,
                        subnets.join(", ")
                    ),
                ));
            }
        }
    }

    // Host ownership: domains[] per namespace, and first claimant wins across apps.
    // (field path, host); the path is only formatted when a finding needs it.
    let all_hosts: Vec<(&str, usize, usize, &String)> = spec
        .routes
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            r.hosts
                .iter()
                .enumerate()
                .map(move |(j, h)| ("routes", i, j, h))
        })
        .chain(spec.tcp.iter().enumerate().flat_map(|(i, t)| {
            t.hosts
                .iter()
                .enumerate()
                .map(move |(j, h)| ("tcp", i, j, h))
        }))
        .collect();
    let field = |list: &str, i: usize, j: usize| format!("spec.{list}[{i}].hosts[{j}]");
    if !net.domains.is_empty() {
        for &(list, i, j, host) in &all_hosts {
            let allowed = net
                .domains
                .iter()
                .any(|d| ip::host_in_zone(host, &d.suffix) && d.namespaces.contains(&namespace));
            if !allowed {
                out.push(Finding::stalling(
                    Reason::HostNotAllowed,
                    field(list, i, j),
                    format!("host {host:?} is not under a domain that ClusterNetwork {net_name} grants to namespace {namespace:?} (spec.domains)"),
                ));
            }
        }
    }
    for (i, peer) in app.spec.allow_from.iter().enumerate() {
        let field = format!("spec.allowFrom[{i}]");
        check_peer(&mut out, peer, &field);
        // Only egress can name these (the schema says the same).
        if peer.fqdn.is_some() || peer.api_server.is_some() {
            out.push(invalid(
                field,
                "fqdn and apiServer peers are only allowed in EgressPolicy rules",
            ));
        }
    }
    for &(list, i, j, host) in &all_hosts {
        if let Some(holder) = earlier_claimant(app, host, ctx) {
            out.push(Finding::stalling(
                Reason::HostConflict,
                field(list, i, j),
                format!("host {host:?} is already claimed by ExposedApp {holder}"),
            ));
        }
    }

    out.into_result(ValidApp { app, network })
}

/// What a LoadBalancer Service asks of the provider (an app's `tcp[]` entry, a tier's own
/// `loadBalancer`): PROXY protocol only from Hetzner, a pool that exists (MetalLB, Cilium;
/// default the tier-named one), requested addresses of the network's families inside it
/// (without a pool: inside one of the network's pools), and not held by another Service
/// than `own` (the Service the request is for), so a refused request is never written.
#[allow(clippy::too_many_arguments)]
fn check_lb_request(
    out: &mut Findings,
    network: &ClusterNetwork,
    ctx: &Context,
    own: Option<&(String, String)>,
    field: &str,
    tier: Tier,
    pool: &Option<String>,
    addresses: &[String],
    proxy_protocol: bool,
) {
    let net = &network.spec;
    let net_name = network.name_any();
    let provider = net.load_balancer.provider;
    let names_pool = pool.is_some();
    if proxy_protocol && provider != LbProvider::Hetzner {
        out.push(Finding::stalling(
            Reason::ProxyProtocolUnsupported,
            format!("{field}.proxyProtocol"),
            format!("load-balancer provider {provider:?} of ClusterNetwork {net_name} cannot send PROXY protocol (only Hetzner can)"),
        ));
    }
    let pool = match (pool, provider) {
        (Some(p), LbProvider::MetalLB | LbProvider::Cilium) => {
            match net.load_balancer.pools.iter().find(|x| &x.name == p) {
                Some(pool) => Some(pool),
                None => {
                    out.push(invalid(
                        format!("{field}.pool"),
                        format!("pool {p:?} does not exist in ClusterNetwork {net_name} (spec.loadBalancer.pools)"),
                    ));
                    None
                }
            }
        }
        (Some(p), other) => {
            out.push(invalid(
                format!("{field}.pool"),
                format!("pool {p:?} needs load-balancer provider MetalLB or Cilium; ClusterNetwork {net_name} uses {other:?}"),
            ));
            None
        }
        (None, _) => net
            .load_balancer
            .pools
            .iter()
            .find(|x| x.name == tier.as_str()),
    };
    for (j, a) in addresses.iter().enumerate() {
        let afield = format!("{field}.addresses[{j}]");
        let Some(addr) = ip::parse_ip(a) else {
            out.push(invalid(afield, format!("{a:?} is not an IP address")));
            continue;
        };
        if !net.ip_families.contains(&ip::family_of(addr)) {
            out.push(invalid(
                afield.clone(),
                format!(
                    "{a} is not of the network's ipFamilies {:?}",
                    net.ip_families
                ),
            ));
        }
        if matches!(provider, LbProvider::Hetzner | LbProvider::None) {
            out.push(invalid(
                afield.clone(),
                format!("requested address {a} needs load-balancer provider MetalLB or Cilium; ClusterNetwork {net_name} uses {provider:?}"),
            ));
            continue;
        }
        let in_pool = |p: &gatehouse_api::Pool| {
            p.addresses
                .iter()
                .filter_map(|e| ip::parse_pool_entry(e))
                .any(|r| r.contains(addr))
        };
        match pool {
            Some(pool) if !in_pool(pool) => {
                out.push(invalid(
                    afield,
                    format!(
                        "{a} is outside pool {:?} ({})",
                        pool.name,
                        pool.addresses.join(", ")
                    ),
                ));
                continue;
            }
            None if names_pool => continue,
            None if !net.load_balancer.pools.iter().any(in_pool) => {
                out.push(invalid(
                    afield,
                    format!("{a} is in no pool of ClusterNetwork {net_name} (spec.loadBalancer.pools), so none can assign it"),
                ));
                continue;
            }
            _ => {}
        }
        if let Some(held) = own.and_then(|own| address_holder(ctx, addr, own)) {
            out.push(Finding::stalling(
                Reason::AddressInUse,
                afield,
                format!(
                    "{a} {held}; this Service is not written with it until that one lets it go"
                ),
            ));
        }
    }
}

/// Who else holds load-balancer address `addr`, as the rest of a sentence: another
/// Service's status (the provider assigned it there), or another Service's request while
/// `own` does not ask for it yet (the earlier request was written first and wins; two
/// written at once are the provider's to settle, and the loser's status then tells).
fn address_holder(ctx: &Context, addr: std::net::IpAddr, own: &(String, String)) -> Option<String> {
    if ctx.assigned_to(addr).any(|k| k == own) {
        return None;
    }
    if let Some(k) = ctx.assigned_to(addr).next() {
        return Some(format!(
            "is already assigned to {}",
            super::context::describe_holder(ctx, k)
        ));
    }
    if ctx.requested_by(addr).any(|k| k == own) {
        return None;
    }
    ctx.requested_by(addr).next().map(|k| {
        format!(
            "is already requested by {}",
            super::context::describe_holder(ctx, k)
        )
    })
}

fn check_zone(
    out: &mut Findings,
    network: &ClusterNetwork,
    tier: Tier,
    hosts: &[String],
    field: &str,
) {
    let Some(zone) = network.spec.dns.zone(tier) else {
        return;
    };
    for (j, host) in hosts.iter().enumerate() {
        if !ip::host_in_zone(host, zone) {
            out.push(invalid(
                format!("{field}[{j}]"),
                format!(
                    "host {host:?} is outside zone {zone:?} of tier {tier:?} (ClusterNetwork {} spec.dns.{tier}.zone)",
                    network.name_any()
                ),
            ));
        }
    }
}

/// The app (as `namespace/name`) that claimed `host` before `app`, if any.
fn earlier_claimant(app: &ExposedApp, host: &str, ctx: &Context) -> Option<String> {
    let first = ctx.first_claim(host)?;
    (*first < super::context::claim_order(app)).then(|| format!("{}/{}", first.1, first.2))
}

pub fn egress_policy<'a>(
    policy: &'a EgressPolicy,
    ctx: &'a Context,
) -> Result<ValidPolicy<'a>, Findings> {
    let network = find_network(ctx, &policy.spec.network)?;
    let mut out = Findings::default();
    for (i, rule) in policy.spec.rules.iter().enumerate() {
        if rule.to.is_empty() {
            out.push(invalid(
                format!("spec.rules[{i}].to"),
                "a rule needs at least one peer",
            ));
        }
        for (j, p) in rule.ports.iter().enumerate() {
            if let Some(end) = p.end_port
                && end < p.port
            {
                out.push(invalid(
                    format!("spec.rules[{i}].ports[{j}].endPort"),
                    format!("{end} is below port {}", p.port),
                ));
            }
        }
        for (j, peer) in rule.to.iter().enumerate() {
            check_peer(&mut out, peer, &format!("spec.rules[{i}].to[{j}]"));
        }
    }
    out.into_result(ValidPolicy { policy, network })
}

/// Exactly one kind of peer, `except` only with `cidr`, and parseable CIDRs.
pub fn check_peer(out: &mut Findings, peer: &gatehouse_api::Peer, field: &str) {
    let kinds = [
        peer.app.is_some(),
        peer.service.is_some(),
        peer.namespace_selector.is_some() || peer.pod_selector.is_some(),
        peer.cidr.is_some(),
        peer.fqdn.is_some(),
        peer.api_server.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if kinds != 1 {
        out.push(invalid(
            field,
            "a peer must set exactly one of app, service, namespaceSelector/podSelector, cidr, fqdn, apiServer",
        ));
    }
    if !peer.except.is_empty() && peer.cidr.is_none() {
        out.push(invalid(
            format!("{field}.except"),
            "except is only allowed together with cidr",
        ));
    }
    for (k, c) in peer.cidr.iter().chain(peer.except.iter()).enumerate() {
        if ip::parse_cidr(c).is_none() {
            let f = if k == 0 && peer.cidr.is_some() {
                format!("{field}.cidr")
            } else {
                format!("{field}.except")
            };
            out.push(invalid(f, format!("{c:?} is not a CIDR")));
        }
    }
}

pub fn cluster_network<'a>(
    network: &'a ClusterNetwork,
    ctx: &Context,
) -> Result<ValidNetwork<'a>, Findings> {
    let spec = &network.spec;
    let mut out = Findings::default();
    if spec.ip_families.len() == 2 && spec.ip_families[0] == spec.ip_families[1] {
        out.push(invalid(
            "spec.ipFamilies",
            "the two families must be distinct",
        ));
    }
    if spec.ip_families.is_empty() {
        out.push(invalid(
            "spec.ipFamilies",
            "at least one family is required",
        ));
    }
    let provider = spec.load_balancer.provider;
    for (i, pool) in spec.load_balancer.pools.iter().enumerate() {
        let field = format!("spec.loadBalancer.pools[{i}]");
        if matches!(provider, LbProvider::Hetzner | LbProvider::None) {
            out.push(invalid(
                field.clone(),
                format!(
                    "pool {:?} needs provider MetalLB or Cilium (provider is {provider:?})",
                    pool.name
                ),
            ));
        }
        if spec.load_balancer.pools[..i]
            .iter()
            .any(|p| p.name == pool.name)
        {
            out.push(invalid(
                format!("{field}.name"),
                format!("pool {:?} is declared twice", pool.name),
            ));
        }
        for (j, a) in pool.addresses.iter().enumerate() {
            match ip::parse_pool_entry(a) {
                None => out.push(invalid(
                    format!("{field}.addresses[{j}]"),
                    format!("{a:?} is neither a CIDR nor a first-last range of one family"),
                )),
                Some(r) if !spec.ip_families.contains(&r.family) => out.push(invalid(
                    format!("{field}.addresses[{j}]"),
                    format!(
                        "{a} is {} but spec.ipFamilies is {:?}",
                        r.family.as_str(),
                        spec.ip_families
                    ),
                )),
                Some(_) => {}
            }
        }
    }
    if let Some(bgp) = &spec.load_balancer.bgp {
        if matches!(provider, LbProvider::Hetzner | LbProvider::None) {
            out.push(invalid(
                "spec.loadBalancer.bgp",
                format!("BGP peering needs provider MetalLB or Cilium (provider is {provider:?})"),
            ));
        }
        for (i, p) in bgp.peers.iter().enumerate() {
            let field = format!("spec.loadBalancer.bgp.peers[{i}]");
            if bgp.peers[..i].iter().any(|q| q.name == p.name) {
                out.push(invalid(
                    format!("{field}.name"),
                    format!("peer {:?} is declared twice", p.name),
                ));
            }
            if ip::parse_ip(&p.address).is_none() {
                out.push(invalid(
                    format!("{field}.address"),
                    format!("{:?} is not an IP address", p.address),
                ));
            }
            // Cilium runs one BGP instance per node, chosen by the cluster config's one
            // node selector: peers on different node sets cannot be said in one config,
            // and two configs selecting the same node conflict.
            if provider == LbProvider::Cilium && p.node_selector != bgp.peers[0].node_selector {
                out.push(invalid(
                    format!("{field}.nodeSelector"),
                    format!(
                        "with provider Cilium every peer needs the same nodeSelector (peer {:?} differs from {:?})",
                        p.name, bgp.peers[0].name
                    ),
                ));
            }
        }
    }
    for tier in Tier::ALL {
        let Some(def) = spec.ingress.get(tier) else {
            continue;
        };
        if def.class_name.is_some() == def.gateway.is_some() {
            out.push(invalid(
                format!("spec.ingress.{tier}"),
                "set exactly one of className (Ingress) or gateway (Gateway API)",
            ));
        }
    }
    if let (Some(a), Some(b)) = (
        spec.ingress
            .external
            .as_ref()
            .and_then(|t| t.gateway.as_ref()),
        spec.ingress
            .internal
            .as_ref()
            .and_then(|t| t.gateway.as_ref()),
    ) && a.namespace == b.namespace
        && a.name == b.name
    {
        out.push(invalid(
            "spec.ingress.internal.gateway",
            format!(
                "Gateway {}/{} already serves the external tier: each tier needs a Gateway of its own (an app's listeners for both tiers would carry the same hosts in one Gateway)",
                b.namespace, b.name
            ),
        ));
    }
    for tier in Tier::ALL {
        if let Some(lb) = spec
            .ingress
            .get(tier)
            .and_then(|t| t.load_balancer.as_ref())
        {
            let field = format!("spec.ingress.{tier}.loadBalancer");
            let own = network.tier_address_service(tier);
            check_lb_request(
                &mut out,
                network,
                ctx,
                own.as_ref(),
                &field,
                tier,
                &lb.pool,
                &lb.addresses,
                lb.proxy_protocol,
            );
            if lb.hostname.is_some() && provider != LbProvider::Hetzner {
                out.push(invalid(
                    format!("{field}.hostname"),
                    format!(
                        "hostname is Hetzner's load-balancer annotation; provider is {provider:?}"
                    ),
                ));
            }
        }
    }
    for tier in Tier::ALL {
        if let Some(t) = spec.ingress.get(tier) {
            if !t.addresses.is_empty() && t.service.is_some() {
                out.push(invalid(
                    format!("spec.ingress.{tier}"),
                    "set either addresses or service, not both",
                ));
            }
            for (j, a) in t.addresses.iter().enumerate() {
                if ip::parse_ip(a).is_none() {
                    out.push(invalid(
                        format!("spec.ingress.{tier}.addresses[{j}]"),
                        format!("{a:?} is not an IP address"),
                    ));
                }
            }
        }
    }
    if spec
        .dns
        .external
        .as_ref()
        .is_some_and(|z| z.publish_external_hosts)
    {
        out.push(invalid(
            "spec.dns.external.publishExternalHosts",
            "split horizon is set on the internal zone (spec.dns.internal.publishExternalHosts)",
        ));
    }
    for (i, a) in spec.attachments.iter().enumerate() {
        if spec.attachments[..i].iter().any(|o| o.name == a.name) {
            out.push(invalid(
                format!("spec.attachments[{i}].name"),
                format!("attachment {:?} is declared twice", a.name),
            ));
        }
        for (j, r) in a.routes.iter().enumerate() {
            let field = format!("spec.attachments[{i}].routes[{j}]");
            let Some(dst) = ip::Block::parse(&r.destination) else {
                out.push(invalid(
                    format!("{field}.destination"),
                    format!("{:?} is not a CIDR", r.destination),
                ));
                continue;
            };
            for (k, e) in r.except.iter().enumerate() {
                if ip::Block::parse(e).is_none_or(|b| b.v6 != dst.v6) {
                    out.push(invalid(
                        format!("{field}.except[{k}]"),
                        format!("{e:?} is not a CIDR of the destination's family"),
                    ));
                }
            }
            // The next hop must be on the attachment, or the plugin's ADD fails and the
            // pod never starts.
            match super::attachment::route_gateway(a, r).and_then(|g| ip::parse_ip(&g)) {
                None => out.push(invalid(
                    format!("{field}.gateway"),
                    format!(
                        "route to {} has no gateway: set one, or give the attachment a range of that family with a gateway",
                        r.destination
                    ),
                )),
                Some(gw) => {
                    let on_link = a
                        .ipam
                        .ranges
                        .iter()
                        .filter_map(|x| ip::parse_cidr(&x.subnet))
                        .filter(|(_, sub)| sub.family == ip::family_of(gw))
                        .collect::<Vec<_>>();
                    if (gw.is_ipv6() != dst.v6)
                        || (!on_link.is_empty() && !on_link.iter().any(|(_, sub)| sub.contains(gw)))
                    {
                        out.push(invalid(
                            format!("{field}.gateway"),
                            format!(
                                "{gw} is not an address of the attachment's {} ranges",
                                if dst.v6 { "IPv6" } else { "IPv4" }
                            ),
                        ));
                    }
                }
            }
        }
        for (j, r) in a.ipam.ranges.iter().enumerate() {
            let field = format!("spec.attachments[{i}].ipam.ranges[{j}]");
            let Some((_, subnet)) = ip::parse_cidr(&r.subnet) else {
                out.push(invalid(
                    format!("{field}.subnet"),
                    format!("{:?} is not a CIDR", r.subnet),
                ));
                continue;
            };
            for (name, value) in [
                ("rangeStart", &r.range_start),
                ("rangeEnd", &r.range_end),
                ("gateway", &r.gateway),
            ] {
                if let Some(v) = value {
                    match ip::parse_ip(v) {
                        Some(addr) if subnet.contains(addr) => {}
                        _ => out.push(invalid(
                            format!("{field}.{name}"),
                            format!("{v} is not an address inside {}", r.subnet),
                        )),
                    }
                }
            }
        }
    }
    let _ = IpFamily::IPv4;
    out.into_result(ValidNetwork { network })
}
