//! An app's listeners in the platform's Gateways (render::gateway::GatewayListeners).
//!
//! The Gateway is not ours, so its listeners are not a child: each app server-side-applies
//! only its own listeners under a field manager of its own (`gatehouse/<ns>/<app>`). A
//! Gateway's `spec.listeners` is a list map keyed by `name`, so every manager owns exactly
//! the entries it applied; the platform's listeners and other apps' are never touched. An
//! apply without a listener drops it (the manager no longer owns it), which is how a
//! removed host, a tier that moved to another Gateway, or a deleted app lets go.
//!
//! Pure parts ([`plan_gateway`], [`status_of`]) decide; [`execute`] only talks to the API
//! server, and only when the live Gateway (from the cache) does not already hold exactly
//! what the app wants.

use gatehouse_api::{Reason, ResourceStatus};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::Value;

use super::Shared;
use super::plan::contains;
use crate::error::{Error, Result};
use crate::render::Finding;
use crate::render::gateway::{GatewayListeners, listener_owner};

/// What to do with one Gateway for one app.
#[derive(Clone, Debug, PartialEq)]
pub enum GatewayStep {
    /// It holds exactly the app's listeners: no write.
    Holds,
    /// Apply this body (the app's whole set of listeners in it; none to let go).
    Apply(Value),
}

/// The listeners of `live` (a Gateway) that belong to app `namespace/app`.
fn ours<'a>(live: &'a Value, namespace: &str, app: &str) -> Vec<&'a Value> {
    live["spec"]["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| {
            l["name"]
                .as_str()
                .and_then(listener_owner)
                .is_some_and(|(n, a)| n == namespace && a == app)
        })
        .collect()
}

/// Pure: whether the live Gateway holds exactly `desired` (each listener as applied,
/// server defaults aside, and no other listener of the app), else the apply that makes it.
/// `desired` with no listeners lets go of whatever the app still has there.
pub fn plan_gateway(
    live: &Value,
    desired: &GatewayListeners,
    namespace: &str,
    app: &str,
) -> GatewayStep {
    let have = ours(live, namespace, app);
    let holds = have.len() == desired.listeners.len()
        && desired.listeners.iter().all(|want| {
            have.iter()
                .any(|l| l["name"] == want["name"] && contains(Some(l), want))
        });
    if holds {
        GatewayStep::Holds
    } else {
        GatewayStep::Apply(desired.apply_body())
    }
}

/// Pure: the app's entry for a Gateway in `status.resources`: ready when every listener of
/// the app is Accepted, has its references resolved (the certificate Secret, through the
/// ReferenceGrant) and is Programmed, as the Gateway's implementation reports it.
pub fn status_of(live: Option<&Value>, desired: &GatewayListeners) -> ResourceStatus {
    let mut entry = ResourceStatus {
        api_version: format!("{}/v1", crate::render::gateway::GROUP),
        kind: "Gateway".into(),
        name: desired.gateway.clone(),
        namespace: Some(desired.namespace.clone()),
        ready: false,
        message: None,
    };
    let Some(live) = live else {
        entry.message = Some("does not exist".into());
        return entry;
    };
    let generation = live["metadata"]["generation"].as_i64().unwrap_or(0);
    let statuses = live["status"]["listeners"].as_array();
    for want in &desired.listeners {
        let name = want["name"].as_str().unwrap_or_default();
        let Some(st) = statuses.and_then(|s| s.iter().find(|l| l["name"] == name)) else {
            entry.message = Some(format!(
                "listener {name}: not reported by the Gateway's implementation yet"
            ));
            return entry;
        };
        for t in ["Accepted", "ResolvedRefs", "Programmed"] {
            let c = st["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == t));
            let current = c.is_some_and(|c| {
                c["observedGeneration"]
                    .as_i64()
                    .is_none_or(|o| o >= generation)
            });
            match c {
                Some(c) if c["status"] == "True" && current => {}
                Some(c) if current => {
                    entry.message = Some(format!(
                        "listener {name}: {t} {}: {}",
                        c["reason"].as_str().unwrap_or_default(),
                        c["message"].as_str().unwrap_or_default()
                    ));
                    return entry;
                }
                _ => {
                    entry.message = Some(format!(
                        "listener {name}: {t} not reported for the current generation yet"
                    ));
                    return entry;
                }
            }
        }
    }
    entry.ready = true;
    entry
}

/// Applies the app's listeners to each Gateway its tiers name (where the cache shows a
/// difference), lets go of its listeners in Gateways it no longer uses, and returns each
/// Gateway's entry for `status.resources`. A Gateway that does not exist (yet) is a finding;
/// a listener name another manager holds is a stalling Conflict.
pub async fn execute(
    ctx: &Shared,
    namespace: &str,
    app: &str,
    desired: &[GatewayListeners],
    findings: &mut Vec<Finding>,
) -> Result<Vec<ResourceStatus>> {
    let mut out = Vec::new();
    let Some(gateways) = ctx.stores.gateways.as_ref() else {
        if let Some(d) = desired.first() {
            findings.push(Finding::stalling(
                Reason::KindNotInstalled,
                format!("spec.ingress.{}.gateway", d.tier),
                "the Gateway API (gateway.networking.k8s.io/v1) is not served by this cluster; install its CRDs",
            ));
        }
        return Ok(out);
    };
    let mut wanted = Vec::new();
    for d in desired {
        let live = ctx
            .stores
            .gateway(&d.namespace, &d.gateway)
            .and_then(|g| serde_json::to_value(g.as_ref()).ok());
        let Some(live) = live else {
            findings.push(Finding::new(
                Reason::ReferenceNotFound,
                format!("spec.ingress.{}.gateway", d.tier),
                format!(
                    "Gateway {}/{} does not exist (yet); the app's HTTPS listeners wait for it",
                    d.namespace, d.gateway
                ),
            ));
            out.push(status_of(None, d));
            continue;
        };
        wanted.push((d.namespace.clone(), d.gateway.clone()));
        if let GatewayStep::Apply(body) = plan_gateway(&live, d, namespace, app) {
            apply(ctx, d, &body, findings).await?;
        }
        out.push(status_of(Some(&live), d));
    }
    // Gateways that still hold listeners of the app but are no longer named by its tiers.
    // A scan of the Gateway cache: Gateways are few (a handful per cluster).
    for g in gateways.state() {
        let key = (
            g.metadata.namespace.clone().unwrap_or_default(),
            g.metadata.name.clone().unwrap_or_default(),
        );
        if wanted.contains(&key) {
            continue;
        }
        let live = serde_json::to_value(g.as_ref()).unwrap_or_default();
        if ours(&live, namespace, app).is_empty() {
            continue;
        }
        let none = GatewayListeners {
            tier: gatehouse_api::Tier::External,
            namespace: key.0.clone(),
            gateway: key.1.clone(),
            manager: crate::render::gateway::listener_manager(namespace, app),
            listeners: vec![],
        };
        apply(ctx, &none, &none.apply_body(), findings).await?;
    }
    Ok(out)
}

/// Lets go of every listener of the app in every Gateway (its deletion).
pub async fn release_all(ctx: &Shared, namespace: &str, app: &str) -> Result<()> {
    execute(ctx, namespace, app, &[], &mut Vec::new())
        .await
        .map(|_| ())
}

async fn apply(
    ctx: &Shared,
    d: &GatewayListeners,
    body: &Value,
    findings: &mut Vec<Finding>,
) -> Result<()> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        &d.namespace,
        &super::stores::gateway_resource(),
    );
    // Not forced: a listener name some other manager set differently is theirs, reported
    // as a conflict instead of taken over.
    let params = PatchParams::apply(&d.manager);
    let what = format!("listeners of Gateway {}/{}", d.namespace, d.gateway);
    match api.patch(&d.gateway, &params, &Patch::Apply(body)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            findings.push(Finding::stalling(
                Reason::Conflict,
                format!("spec.ingress.{}.gateway", d.tier),
                format!("{what}: {}", e.message),
            ));
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 422 || e.code == 400 => {
            // The Gateway refused them (64 listeners at most, a hostname clash...).
            findings.push(Finding::stalling(
                Reason::InvalidSpec,
                format!("spec.ingress.{}.gateway", d.tier),
                format!("{what} were refused: {}", e.message),
            ));
            Ok(())
        }
        Err(source) => Err(Error::Apply { what, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_api::Tier;
    use serde_json::json;

    fn desired(listeners: Vec<Value>) -> GatewayListeners {
        GatewayListeners {
            tier: Tier::External,
            namespace: "gw".into(),
            gateway: "public".into(),
            manager: "gatehouse/shop/web".into(),
            listeners,
        }
    }

    fn listener(name: &str, host: &str) -> Value {
        json!({"name": name, "hostname": host, "port": 443, "protocol": "HTTPS"})
    }

    #[test]
    fn a_gateway_holding_exactly_the_apps_listeners_needs_no_write() {
        let want = desired(vec![listener("shop.web.0", "a.example.com")]);
        let mut defaulted = listener("shop.web.0", "a.example.com");
        defaulted["allowedRoutes"] = json!({"namespaces": {"from": "Same"}});
        let live = json!({"spec": {"listeners": [
            {"name": "http", "port": 80, "protocol": "HTTP"},
            defaulted,
            listener("shop.web.v2.0", "b.example.com"),
        ]}});
        assert_eq!(
            plan_gateway(&live, &want, "shop", "web"),
            GatewayStep::Holds,
            "the platform's and another app's listeners are not the app's"
        );
    }

    #[test]
    fn a_changed_missing_or_extra_listener_is_applied_again() {
        let want = desired(vec![listener("shop.web.0", "a.example.com")]);
        let changed = json!({"spec": {"listeners": [listener("shop.web.0", "old.example.com")]}});
        let missing = json!({"spec": {"listeners": [{"name": "http"}]}});
        let extra = json!({"spec": {"listeners": [listener("shop.web.0", "a.example.com"), listener("shop.web.1", "b.example.com")]}});
        for live in [changed, missing, extra] {
            assert_eq!(
                plan_gateway(&live, &want, "shop", "web"),
                GatewayStep::Apply(json!({
                    "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                    "metadata": {"name": "public", "namespace": "gw"},
                    "spec": {"listeners": [listener("shop.web.0", "a.example.com")]},
                })),
                "{live}"
            );
        }
        let none = desired(vec![]);
        let gone = json!({"spec": {"listeners": [{"name": "http"}]}});
        assert_eq!(
            plan_gateway(&gone, &none, "shop", "web"),
            GatewayStep::Holds
        );
    }

    #[test]
    fn listener_status_needs_accepted_resolved_and_programmed_for_the_generation() {
        let want = desired(vec![listener("shop.web.0", "a.example.com")]);
        let cond = |t: &str, s: &str, reason: &str, g: i64| json!({"type": t, "status": s, "reason": reason, "message": "m", "observedGeneration": g});
        let live = |conditions: Value| json!({"metadata": {"generation": 2}, "status": {"listeners": [{"name": "shop.web.0", "conditions": conditions}]}});
        let ok = live(json!([
            cond("Accepted", "True", "Accepted", 2),
            cond("ResolvedRefs", "True", "ResolvedRefs", 2),
            cond("Programmed", "True", "Programmed", 2)
        ]));
        assert!(status_of(Some(&ok), &want).ready);
        let refused = live(json!([
            cond("Accepted", "True", "Accepted", 2),
            cond("ResolvedRefs", "False", "RefNotPermitted", 2)
        ]));
        let s = status_of(Some(&refused), &want);
        assert!(!s.ready);
        assert_eq!(
            s.message.as_deref(),
            Some("listener shop.web.0: ResolvedRefs RefNotPermitted: m")
        );
        let stale = live(json!([cond("Accepted", "True", "Accepted", 1)]));
        assert!(!status_of(Some(&stale), &want).ready);
        let unreported = json!({"metadata": {"generation": 1}, "status": {}});
        assert!(!status_of(Some(&unreported), &want).ready);
        assert_eq!(
            status_of(None, &want).message.as_deref(),
            Some("does not exist")
        );
    }
}
