//! Ingress `A-external` / `A-internal` (and `A-<tier>-http` on Traefik tiers): the routes of
//! that tier, with TLS, redirect and auth expressed the way the program that reads them
//! (ingress-nginx, Traefik's NGINX provider, Traefik's own Ingress provider) understands them.

use std::collections::BTreeMap;

use gatehouse_api::{
    ClusterNetwork, ExposedApp, IngressController, IngressImplementation, Route, RouteAuth, Tier,
};
use kube::ResourceExt;
use serde_json::{Value, json};

use super::certificate::{self, secret_name};
use super::child::{Child, ChildKind, Owner};
use super::middleware;

pub const NGINX_SSL_REDIRECT: &str = "nginx.ingress.kubernetes.io/ssl-redirect";
pub const NGINX_FORCE_SSL_REDIRECT: &str = "nginx.ingress.kubernetes.io/force-ssl-redirect";
pub const NGINX_AUTH_URL: &str = "nginx.ingress.kubernetes.io/auth-url";
pub const NGINX_AUTH_SIGNIN: &str = "nginx.ingress.kubernetes.io/auth-signin";
pub const NGINX_AUTH_RESPONSE_HEADERS: &str = "nginx.ingress.kubernetes.io/auth-response-headers";
pub const TRAEFIK_MIDDLEWARES: &str = "traefik.ingress.kubernetes.io/router.middlewares";
pub const TRAEFIK_ROUTER_TLS: &str = "traefik.ingress.kubernetes.io/router.tls";
pub const TRAEFIK_ROUTER_ENTRYPOINTS: &str = "traefik.ingress.kubernetes.io/router.entrypoints";
/// The identity headers the OAuth2 Proxy answers with (`--set-xauthrequest`), passed on to
/// the app.
pub const AUTH_RESPONSE_HEADERS: [&str; 2] = ["X-Auth-Request-User", "X-Auth-Request-Email"];

/// The Service routes send to: the existing one the app names, else its own Service `A`.
pub fn backend_service(app: &ExposedApp) -> String {
    match &app.spec.service {
        Some(existing) => existing.name.clone(),
        None => app.name_any(),
    }
}

/// Routes served on a tier that the network defines.
pub fn routes_on<'a>(app: &'a ExposedApp, network: &ClusterNetwork, tier: Tier) -> Vec<&'a Route> {
    if network.spec.ingress.get(tier).is_none() {
        return vec![];
    }
    app.spec
        .routes
        .iter()
        .filter(|r| r.exposure.includes(tier))
        .collect()
}

/// How a tier's routes want redirect and auth (validation made all routes of a tier agree).
pub struct TierStyle {
    pub redirect: bool,
    pub auth: bool,
}

pub fn tier_style(routes: &[&Route]) -> TierStyle {
    let first = routes.first();
    TierStyle {
        redirect: first.is_some_and(|r| r.tls && r.redirect_to_https),
        auth: first.is_some_and(|r| r.auth == RouteAuth::OAuth2),
    }
}

/// Base URL of the OAuth2 Proxy, without a trailing slash.
pub fn oauth2_url(network: &ClusterNetwork) -> Option<String> {
    let url = &network.spec.auth.as_ref()?.oauth2_proxy.as_ref()?.url;
    Some(url.trim_end_matches('/').to_string())
}

/// The Ingresses of one tier. One Ingress `A-<tier>` for ingress-nginx and for Traefik's
/// NGINX provider, which make the http side (redirect or plain) themselves. Traefik's own
/// Ingress provider makes one router per Ingress, TLS or not: a TLS router
/// (`router.tls`) answers only https, so a tier with TLS routes gets `A-<tier>` for https
/// and `A-<tier>-http` for plain http (the redirect, or the plain answer where
/// `redirectToHttps` is false). The http side carries the auth middleware too, so an
/// entry point that terminates TLS by itself never serves a route without its auth.
pub fn ingresses(
    app: &ExposedApp,
    network: &ClusterNetwork,
    tier: Tier,
    owner: &Owner,
) -> Vec<Child> {
    let Some(tier_def) = network.spec.ingress.get(tier) else {
        return vec![];
    };
    // A Gateway tier's routes are HTTPRoutes (gateway.rs).
    let Some(class_name) = tier_def.class_name.as_deref() else {
        return vec![];
    };
    let routes = routes_on(app, network, tier);
    if routes.is_empty() {
        return vec![];
    }
    let style = tier_style(&routes);
    let name = format!("{}-{}", app.name_any(), tier);
    let rules = rules(app, &routes, |_| true);
    let tls_hosts = certificate::tls_hosts(app, network, tier);
    let auth_url = if style.auth {
        oauth2_url(network)
    } else {
        None
    };

    if tier_def.controller == IngressController::Nginx {
        let mut annotations = BTreeMap::new();
        let redirect = style.redirect.to_string();
        annotations.insert(NGINX_SSL_REDIRECT.to_string(), redirect.clone());
        annotations.insert(NGINX_FORCE_SSL_REDIRECT.to_string(), redirect);
        if let Some(url) = auth_url {
            match tier_def.implementation() {
                // ingress-nginx's auth_request takes 2xx as allowed, 401/403 as denied (then
                // auth-signin redirects) and any other answer as an error.
                IngressImplementation::IngressNginx => {
                    annotations.insert(NGINX_AUTH_URL.to_string(), format!("{url}/oauth2/auth"));
                    annotations.insert(
                        NGINX_AUTH_SIGNIN.to_string(),
                        format!("{url}/oauth2/start?rd=$scheme://$host$escaped_request_uri"),
                    );
                }
                // Traefik turns auth-url into a forwardAuth that passes any non-2xx answer
                // to the client and ignores auth-signin: the proxy's root answers 202 for a
                // session and redirects to sign-in without one.
                IngressImplementation::Traefik => {
                    annotations.insert(NGINX_AUTH_URL.to_string(), format!("{url}/"));
                }
            }
            annotations.insert(
                NGINX_AUTH_RESPONSE_HEADERS.to_string(),
                AUTH_RESPONSE_HEADERS.join(","),
            );
        }
        return vec![ingress(
            app,
            owner,
            class_name,
            name,
            annotations,
            rules,
            TlsOn {
                hosts: &tls_hosts,
                tier,
            },
        )];
    }

    let namespace = app.namespace().unwrap_or_default();
    let middleware = |n: String| format!("{namespace}-{n}@kubernetescrd");
    let mut http_middlewares = Vec::new();
    let mut https_middlewares = Vec::new();
    if style.redirect {
        http_middlewares.push(middleware(middleware::redirect_name(app)));
    }
    if auth_url.is_some() {
        http_middlewares.push(middleware(middleware::auth_name(app)));
        https_middlewares.push(middleware(middleware::auth_name(app)));
    }
    let entry_points = tier_def.entry_points.as_ref();
    let annotations = |tls: bool, refs: &[String]| {
        let mut a = BTreeMap::new();
        if tls {
            a.insert(TRAEFIK_ROUTER_TLS.to_string(), "true".to_string());
        }
        let entry_point = entry_points.and_then(|e| {
            if tls {
                e.https.as_ref()
            } else {
                e.http.as_ref()
            }
        });
        if let Some(ep) = entry_point {
            a.insert(TRAEFIK_ROUTER_ENTRYPOINTS.to_string(), ep.clone());
        }
        if !refs.is_empty() {
            a.insert(TRAEFIK_MIDDLEWARES.to_string(), refs.join(","));
        }
        a
    };
    if tls_hosts.is_empty() {
        return vec![ingress(
            app,
            owner,
            class_name,
            name,
            annotations(false, &http_middlewares),
            rules,
            TlsOn { hosts: &[], tier },
        )];
    }
    let https_rules = self::rules(app, &routes, |r| r.tls);
    vec![
        ingress(
            app,
            owner,
            class_name,
            name.clone(),
            annotations(true, &https_middlewares),
            https_rules,
            TlsOn {
                hosts: &tls_hosts,
                tier,
            },
        ),
        ingress(
            app,
            owner,
            class_name,
            format!("{name}-http"),
            annotations(false, &http_middlewares),
            rules,
            TlsOn { hosts: &[], tier },
        ),
    ]
}

/// The Ingress rules of the routes `keep` selects: one rule per host.
fn rules(app: &ExposedApp, routes: &[&Route], keep: impl Fn(&Route) -> bool) -> Vec<Value> {
    let default_port = app
        .spec
        .ports
        .first()
        .map(|p| p.name.clone())
        .unwrap_or_default();
    let mut rules = Vec::new();
    for route in routes.iter().filter(|r| keep(r)) {
        let paths: Vec<Value> = if route.paths.is_empty() {
            vec![path("/", "Prefix", &backend_service(app), &default_port)]
        } else {
            route
                .paths
                .iter()
                .map(|p| {
                    let port = p.port.clone().unwrap_or_else(|| default_port.clone());
                    let path_type = match p.path_type {
                        gatehouse_api::PathType::Prefix => "Prefix",
                        gatehouse_api::PathType::Exact => "Exact",
                    };
                    path(&p.path, path_type, &backend_service(app), &port)
                })
                .collect()
        };
        for host in &route.hosts {
            let mut rule = json!({"host": host, "http": {}});
            rule["http"]["paths"] = Value::Array(paths.clone());
            rules.push(rule);
        }
    }
    rules
}

/// The TLS hosts of an Ingress and the tier whose certificate Secret serves them.
struct TlsOn<'a> {
    hosts: &'a [String],
    tier: Tier,
}

fn ingress(
    app: &ExposedApp,
    owner: &Owner,
    class_name: &str,
    name: String,
    annotations: BTreeMap<String, String>,
    rules: Vec<Value>,
    tls: TlsOn<'_>,
) -> Child {
    let mut spec = json!({"ingressClassName": class_name});
    spec["rules"] = Value::Array(rules);
    if !tls.hosts.is_empty() {
        spec["tls"] = json!([{"hosts": tls.hosts, "secretName": secret_name(app, tls.tier)}]);
    }
    let mut meta = owner.meta(name, app.namespace().as_deref());
    if !annotations.is_empty() {
        meta.annotations = Some(annotations);
    }
    Child::with_spec(ChildKind::Ingress, meta, spec)
}

fn path(path: &str, path_type: &str, service: &str, port: &str) -> Value {
    json!({"path": path, "pathType": path_type, "backend": {"service": {"name": service, "port": {"name": port}}}})
}

/// The URLs the app is served at, e.g. `https://blog.example.com/`, one per host.
pub fn urls(app: &ExposedApp, network: &ClusterNetwork) -> Vec<String> {
    let mut urls = Vec::new();
    for route in &app.spec.routes {
        if !Tier::ALL
            .iter()
            .any(|t| route.exposure.includes(*t) && network.spec.ingress.get(*t).is_some())
        {
            continue;
        }
        let scheme = if route.tls { "https" } else { "http" };
        let path = route.paths.first().map(|p| p.path.as_str()).unwrap_or("/");
        for host in &route.hosts {
            let url = format!("{scheme}://{host}{path}");
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
    }
    urls
}
