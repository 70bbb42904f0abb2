//! Traefik Middlewares `A-redirect` (redirectScheme https, permanent) and `A-auth`
//! (forwardAuth to the OAuth2 Proxy), for tiers served by Traefik (the auth one also for
//! Traefik Gateway tiers, whose HTTPRoutes name it in an ExtensionRef filter).

use gatehouse_api::{ClusterNetwork, ExposedApp, IngressController, Tier};
use kube::ResourceExt;
use serde_json::json;

use super::child::{Child, ChildKind, Owner};
use super::ingress::{AUTH_RESPONSE_HEADERS, oauth2_url, routes_on, tier_style};

pub fn redirect_name(app: &ExposedApp) -> String {
    format!("{}-redirect", app.name_any())
}

pub fn auth_name(app: &ExposedApp) -> String {
    format!("{}-auth", app.name_any())
}

pub fn middlewares(app: &ExposedApp, network: &ClusterNetwork, owner: &Owner) -> Vec<Child> {
    let mut redirect = false;
    let mut auth = false;
    for tier in Tier::ALL {
        let Some(def) = network.spec.ingress.get(tier) else {
            continue;
        };
        if def.controller != IngressController::Traefik {
            continue;
        }
        let routes = routes_on(app, network, tier);
        if routes.is_empty() {
            continue;
        }
        let style = tier_style(&routes);
        // A Gateway tier redirects with an HTTPRoute filter of its own (gateway.rs).
        redirect |= style.redirect && def.gateway.is_none();
        auth |= style.auth;
    }
    let namespace = app.namespace();
    let mut out = Vec::new();
    if redirect {
        out.push(Child::new(
            ChildKind::Middleware,
            owner.meta(redirect_name(app), namespace.as_deref()),
            json!({"spec": {"redirectScheme": {"scheme": "https", "permanent": true}}}),
        ));
    }
    if auth && let Some(url) = oauth2_url(network) {
        out.push(Child::new(
            ChildKind::Middleware,
            owner.meta(auth_name(app), namespace.as_deref()),
            json!({"spec": {"forwardAuth": {
                // The proxy's root, not /oauth2/auth: forwardAuth hands any non-2xx answer
                // to the client, and only the root answers a missing session with the
                // sign-in redirect (/oauth2/auth gives a bare 401).
                "address": format!("{url}/"),
                // Traefik sets X-Forwarded-* from the request itself; trusting a client's
                // own headers would let it choose where the proxy sends it after sign-in.
                "trustForwardHeader": false,
                "authResponseHeaders": AUTH_RESPONSE_HEADERS,
            }}}),
        ));
    }
    out
}
