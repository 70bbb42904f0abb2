//! Ingress `A-external` / `A-internal`: the routes of that tier, with redirect and auth
//! expressed the way the tier's controller understands them.

use std::collections::BTreeMap;

use gatehouse_api::{ClusterNetwork, ExposedApp, IngressController, Route, RouteAuth, Tier};
use kube::ResourceExt;
use serde_json::{Value, json};

use super::certificate::secret_name;
use super::child::{Child, ChildKind, Owner};
use super::middleware;

pub const NGINX_SSL_REDIRECT: &str = "nginx.ingress.kubernetes.io/ssl-redirect";
pub const NGINX_FORCE_SSL_REDIRECT: &str = "nginx.ingress.kubernetes.io/force-ssl-redirect";
pub const NGINX_AUTH_URL: &str = "nginx.ingress.kubernetes.io/auth-url";
pub const NGINX_AUTH_SIGNIN: &str = "nginx.ingress.kubernetes.io/auth-signin";
pub const TRAEFIK_MIDDLEWARES: &str = "traefik.ingress.kubernetes.io/router.middlewares";

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

pub fn ingress(
    app: &ExposedApp,
    network: &ClusterNetwork,
    tier: Tier,
    owner: &Owner,
) -> Option<Child> {
    let tier_def = network.spec.ingress.get(tier)?;
    let routes = routes_on(app, network, tier);
    if routes.is_empty() {
        return None;
    }
    let style = tier_style(&routes);
    let default_port = app
        .spec
        .ports
        .first()
        .map(|p| p.name.clone())
        .unwrap_or_default();

    let mut rules = Vec::new();
    let mut tls_hosts = Vec::new();
    for route in &routes {
        let paths: Vec<Value> = if route.paths.is_empty() {
            vec![path("/", "Prefix", &app.name_any(), &default_port)]
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
                    path(&p.path, path_type, &app.name_any(), &port)
                })
                .collect()
        };
        for host in &route.hosts {
            let mut rule = json!({"host": host, "http": {}});
            rule["http"]["paths"] = Value::Array(paths.clone());
            rules.push(rule);
            if route.tls {
                tls_hosts.push(host.clone());
            }
        }
    }

    let mut annotations = BTreeMap::new();
    match tier_def.controller {
        IngressController::Nginx => {
            let redirect = style.redirect.to_string();
            annotations.insert(NGINX_SSL_REDIRECT.to_string(), redirect.clone());
            annotations.insert(NGINX_FORCE_SSL_REDIRECT.to_string(), redirect);
            if style.auth
                && let Some(url) = oauth2_url(network)
            {
                annotations.insert(NGINX_AUTH_URL.to_string(), format!("{url}/oauth2/auth"));
                annotations.insert(
                    NGINX_AUTH_SIGNIN.to_string(),
                    format!("{url}/oauth2/start?rd=$scheme://$host$escaped_request_uri"),
                );
            }
        }
        IngressController::Traefik => {
            let namespace = app.namespace().unwrap_or_default();
            let mut refs = Vec::new();
            if style.redirect {
                refs.push(format!(
                    "{namespace}-{}@kubernetescrd",
                    middleware::redirect_name(app)
                ));
            }
            if style.auth {
                refs.push(format!(
                    "{namespace}-{}@kubernetescrd",
                    middleware::auth_name(app)
                ));
            }
            if !refs.is_empty() {
                annotations.insert(TRAEFIK_MIDDLEWARES.to_string(), refs.join(","));
            }
        }
    }

    let mut spec = json!({"ingressClassName": tier_def.class_name});
    spec["rules"] = Value::Array(rules);
    if !tls_hosts.is_empty() {
        spec["tls"] = json!([{"hosts": tls_hosts, "secretName": secret_name(app)}]);
    }
    let mut meta = owner.meta(
        format!("{}-{}", app.name_any(), tier),
        app.namespace().as_deref(),
    );
    if !annotations.is_empty() {
        meta.annotations = Some(annotations);
    }
    Some(Child::with_spec(ChildKind::Ingress, meta, spec))
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
