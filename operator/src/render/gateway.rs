//! Gateway API output for tiers that name a Gateway (`ingress.<tier>.gateway`) instead of an
//! IngressClass:
//!
//! - HTTPRoutes `A-<tier>` (the first route served on the tier) and `A-<tier>-<k>` (the
//!   k-th, k >= 1): one per route, since an HTTPRoute's hostnames hold for all its rules.
//!   TLS routes attach to the app's own listeners of the Gateway; routes without TLS, and
//!   TLS routes with `redirectToHttps: false`, also to the Gateway's http listener.
//! - HTTPRoute `A-<tier>-redirect`: the http->https redirect (RequestRedirect, 301) of the
//!   tier's TLS hosts, on the http listener.
//! - The app's listeners ([`listeners`]): one HTTPS listener per TLS host, carrying the
//!   app's certificate Secret, applied into the platform's Gateway under a field manager of
//!   the app's own (the Gateway is not ours: see `reconcile::listeners`).
//! - ReferenceGrant `A-<tier>-gateway` in the app's namespace, when the Gateway lives in
//!   another one: it lets exactly that Gateway read exactly the app's certificate Secret.
//!
//! `auth: OAuth2` on a Traefik Gateway tier is an ExtensionRef filter to the app's
//! forwardAuth Middleware (`A-auth`); validation refuses it on other implementations.

use gatehouse_api::{
    ClusterNetwork, ExposedApp, IngressController, PathType, Route, RouteAuth, Tier, TierGateway,
};
use kube::ResourceExt;
use serde_json::{Value, json};

use super::certificate::{secret_name, tls_hosts};
use super::child::{Child, ChildKind, Owner};
use super::context::Context;
use super::ingress::{backend_service, routes_on, tier_style};
use super::middleware;

pub const GROUP: &str = "gateway.networking.k8s.io";
/// The label every namespace carries with its own name (Kubernetes sets it): how a
/// listener admits the routes of exactly one namespace.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The Gateway a tier names, if it is a Gateway tier.
pub fn tier_gateway(network: &ClusterNetwork, tier: Tier) -> Option<&TierGateway> {
    network.spec.ingress.get(tier)?.gateway.as_ref()
}

/// The name of the app's listener for its `n`-th TLS host on a tier (declaration order):
/// `<namespace>.<app>.<n>`. Namespaces hold no dots, so the prefix names one app; the
/// triggers read it back ([`listener_owner`]).
pub fn listener_name(namespace: &str, app: &str, n: usize) -> String {
    format!("{namespace}.{app}.{n}")
}

/// The app (namespace, name) a listener name of ours stands for.
pub fn listener_owner(listener: &str) -> Option<(String, String)> {
    let (namespace, rest) = listener.split_once('.')?;
    let (app, n) = rest.rsplit_once('.')?;
    n.parse::<usize>().ok()?;
    Some((namespace.to_string(), app.to_string()))
}

/// The field manager under which an app's listeners are applied to a Gateway. At most 128
/// bytes (the API server's limit): long names fall back to a hash.
pub fn listener_manager(namespace: &str, app: &str) -> String {
    let plain = format!("gatehouse/{namespace}/{app}");
    if plain.len() <= 128 {
        plain
    } else {
        format!(
            "gatehouse/{}",
            super::child::stable_hash(&format!("{namespace}/{app}"))
        )
    }
}

/// What an app adds to one Gateway: its listeners, by name.
#[derive(Clone, Debug, PartialEq)]
pub struct GatewayListeners {
    pub tier: Tier,
    pub namespace: String,
    pub gateway: String,
    /// The field manager the listeners are applied under.
    pub manager: String,
    /// Listener objects (`name`, `hostname`, `port`, `protocol`, `tls`, `allowedRoutes`).
    pub listeners: Vec<Value>,
}

impl GatewayListeners {
    /// The server-side apply body: only the listeners (the rest of the Gateway belongs to
    /// its owners; an apply names only what this manager owns).
    pub fn apply_body(&self) -> Value {
        json!({
            "apiVersion": format!("{GROUP}/v1"),
            "kind": "Gateway",
            "metadata": {"name": self.gateway, "namespace": self.namespace},
            "spec": {"listeners": self.listeners},
        })
    }
}

/// The listeners an app needs in the Gateway of `tier`: one HTTPS listener per TLS host,
/// with the app's certificate, admitting HTTPRoutes of the app's namespace only.
pub fn listeners(
    app: &ExposedApp,
    network: &ClusterNetwork,
    tier: Tier,
) -> Option<GatewayListeners> {
    let gw = tier_gateway(network, tier)?;
    let namespace = app.namespace().unwrap_or_default();
    let hosts = tls_hosts(app, network, tier);
    if hosts.is_empty() {
        return None;
    }
    let same_namespace = gw.namespace == namespace;
    let mut secret = json!({"group": "", "kind": "Secret", "name": secret_name(app, tier)});
    let from = if same_namespace {
        json!({"from": "Same"})
    } else {
        secret["namespace"] = json!(namespace);
        json!({"from": "Selector", "selector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}})
    };
    let listeners = hosts
        .iter()
        .enumerate()
        .map(|(n, host)| {
            json!({
                "name": listener_name(&namespace, &app.name_any(), n),
                "hostname": host,
                "port": gw.https_port(),
                "protocol": "HTTPS",
                "tls": {"mode": "Terminate", "certificateRefs": [secret]},
                "allowedRoutes": {"namespaces": from, "kinds": [{"group": GROUP, "kind": "HTTPRoute"}]},
            })
        })
        .collect();
    Some(GatewayListeners {
        tier,
        namespace: gw.namespace.clone(),
        gateway: gw.name.clone(),
        manager: listener_manager(&namespace, &app.name_any()),
        listeners,
    })
}

/// The HTTPRoutes of one Gateway tier (see the module doc).
pub fn http_routes(
    app: &ExposedApp,
    network: &ClusterNetwork,
    tier: Tier,
    ctx: &Context,
    owner: &Owner,
) -> Vec<Child> {
    let Some(gw) = tier_gateway(network, tier) else {
        return vec![];
    };
    let routes = routes_on(app, network, tier);
    if routes.is_empty() {
        return vec![];
    }
    let namespace = app.namespace().unwrap_or_default();
    let style = tier_style(&routes);
    let hosts = tls_hosts(app, network, tier);
    let auth = style.auth
        && network
            .spec
            .ingress
            .get(tier)
            .is_some_and(|t| t.controller == IngressController::Traefik);
    let parent = |section: &str| {
        let mut p =
            json!({"group": GROUP, "kind": "Gateway", "name": gw.name, "sectionName": section});
        if gw.namespace != namespace {
            p["namespace"] = json!(gw.namespace);
        }
        p
    };
    let mut out = Vec::new();
    for (k, route) in routes.iter().enumerate() {
        let mut parents: Vec<Value> = Vec::new();
        if route.tls {
            for h in &route.hosts {
                if let Some(n) = hosts.iter().position(|x| x == h) {
                    parents.push(parent(&listener_name(&namespace, &app.name_any(), n)));
                }
            }
        }
        // Plain http serves the route itself unless the redirect takes it.
        if !(route.tls && route.redirect_to_https) {
            parents.push(parent(&gw.http_listener));
        }
        let name = if k == 0 {
            format!("{}-{tier}", app.name_any())
        } else {
            format!("{}-{tier}-{k}", app.name_any())
        };
        let spec = json!({
            "parentRefs": parents,
            "hostnames": route.hosts,
            "rules": rules(app, route, ctx, auth),
        });
        out.push(Child::with_spec(
            ChildKind::HttpRoute,
            owner.meta(name, Some(&namespace)),
            spec,
        ));
    }
    if style.redirect && !hosts.is_empty() {
        let spec = json!({
            "parentRefs": [parent(&gw.http_listener)],
            "hostnames": hosts,
            "rules": [{"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]}],
        });
        out.push(Child::with_spec(
            ChildKind::HttpRoute,
            owner.meta(
                format!("{}-{tier}-redirect", app.name_any()),
                Some(&namespace),
            ),
            spec,
        ));
    }
    out
}

/// One rule per path (each path may go to another port), or one rule for `/`.
fn rules(app: &ExposedApp, route: &Route, ctx: &Context, auth: bool) -> Vec<Value> {
    let default_port = app.spec.ports.first().map(|p| p.name.as_str());
    let rule = |path: &str, kind: &str, port: Option<&str>| {
        let number = port.and_then(|p| backend_port(app, ctx, p));
        let mut backend = json!({"group": "", "kind": "Service", "name": backend_service(app)});
        if let Some(n) = number {
            backend["port"] = json!(n);
        }
        let mut r = json!({
            "matches": [{"path": {"type": kind, "value": path}}],
            "backendRefs": [backend],
        });
        if auth {
            r["filters"] = json!([{"type": "ExtensionRef", "extensionRef": {
                "group": "traefik.io", "kind": "Middleware", "name": middleware::auth_name(app)}}]);
        }
        r
    };
    if route.paths.is_empty() {
        return vec![rule("/", "PathPrefix", default_port)];
    }
    route
        .paths
        .iter()
        .map(|p| {
            let kind = match p.path_type {
                PathType::Prefix => "PathPrefix",
                PathType::Exact => "Exact",
            };
            rule(&p.path, kind, p.port.as_deref().or(default_port))
        })
        .collect()
}

/// The number of the backend Service's port named `name` (HTTPRoute backends name ports by
/// number): the existing Service's, as the cache holds it, else the app's own declaration.
pub fn backend_port(app: &ExposedApp, ctx: &Context, name: &str) -> Option<i32> {
    if let Some(existing) = &app.spec.service {
        let namespace = app.namespace().unwrap_or_default();
        let live = ctx
            .service(&namespace, &existing.name)
            .and_then(|s| s.spec.as_ref())
            .and_then(|s| s.ports.as_ref())
            .and_then(|ports| ports.iter().find(|p| p.name.as_deref() == Some(name)))
            .map(|p| p.port);
        if live.is_some() {
            return live;
        }
    }
    app.spec
        .ports
        .iter()
        .find(|p| p.name == name)
        .map(|p| p.port)
}

/// ReferenceGrant `A-<tier>-gateway`: the tier's Gateway, in another namespace, may read
/// the app's certificate Secret of that tier, and nothing else.
pub fn reference_grant(
    app: &ExposedApp,
    network: &ClusterNetwork,
    tier: Tier,
    owner: &Owner,
) -> Option<Child> {
    let gw = tier_gateway(network, tier)?;
    let namespace = app.namespace().unwrap_or_default();
    if gw.namespace == namespace || tls_hosts(app, network, tier).is_empty() {
        return None;
    }
    let spec = json!({
        "from": [{"group": GROUP, "kind": "Gateway", "namespace": gw.namespace}],
        "to": [{"group": "", "kind": "Secret", "name": secret_name(app, tier)}],
    });
    Some(Child::with_spec(
        ChildKind::ReferenceGrant,
        owner.meta(
            format!("{}-{tier}-gateway", app.name_any()),
            Some(&namespace),
        ),
        spec,
    ))
}

/// Whether a route asks for what a Gateway tier of this implementation cannot give:
/// `auth: OAuth2` needs Traefik's Middleware filter.
pub fn auth_unsupported(network: &ClusterNetwork, tier: Tier, route: &Route) -> bool {
    route.auth == RouteAuth::OAuth2
        && network
            .spec
            .ingress
            .get(tier)
            .is_some_and(|t| t.gateway.is_some() && t.controller != IngressController::Traefik)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_names_lead_back_to_their_app() {
        let name = listener_name("shop", "web.v2", 3);
        assert_eq!(name, "shop.web.v2.3");
        assert_eq!(
            listener_owner(&name),
            Some(("shop".into(), "web.v2".into()))
        );
        assert_eq!(
            listener_owner("https"),
            None,
            "the platform's own listeners"
        );
        assert_eq!(listener_owner("a.b"), None);
        assert_eq!(listener_owner("a.b.c"), None, "no index: not ours");
    }

    #[test]
    fn field_managers_stay_within_the_api_server_limit() {
        assert_eq!(listener_manager("shop", "web"), "gatehouse/shop/web");
        let long = listener_manager(&"n".repeat(63), &"a".repeat(120));
        assert!(
            long.len() <= 128 && long.starts_with("gatehouse/"),
            "{long}"
        );
    }
}
