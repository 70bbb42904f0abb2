//! The ExposedApp controller: its driver ([`apply_app`]), the finalizer that exists only
//! for apps publishing DNS, and the DNS-first teardown.

use std::sync::Arc;

use gatehouse_api::{ExposedApp, ExposedAppStatus, Reason};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};
use tracing::instrument;

use super::status::{self, Assessment};
use super::{RESYNC, Shared, apply, events, listeners, readiness, steps};
use crate::error::{Error, Result};
use crate::render::{self, ChildKind, Owner};

/// One reconcile, timed and counted in the metrics.
pub async fn reconcile(app: Arc<ExposedApp>, ctx: Shared) -> Result<Action> {
    let metrics = ctx.clone();
    let obj = app.clone();
    super::observed(
        &metrics,
        "ExposedApp",
        obj.as_ref(),
        reconcile_once(app, ctx),
    )
    .await
}

#[instrument(skip_all, fields(app = %format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any())))]
async fn reconcile_once(app: Arc<ExposedApp>, ctx: Shared) -> Result<Action> {
    // The finalizer exists only to remove DNS records before routes: an app that publishes
    // none needs no ordered teardown (its children go with it by garbage collection), so it
    // costs no finalizer write. One that has the finalizer keeps the flow until it is gone.
    let has_finalizer = app
        .finalizers()
        .iter()
        .any(|f| f == gatehouse_api::labels::FINALIZER);
    if !has_finalizer && !needs_teardown(&app, &ctx) {
        if app.metadata.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        return apply_app(&app, &ctx).await;
    }
    let api: Api<ExposedApp> =
        Api::namespaced(ctx.client.clone(), &app.namespace().unwrap_or_default());
    finalizer(&api, gatehouse_api::labels::FINALIZER, app, |event| async {
        match event {
            Finalizer::Apply(app) => apply_app(&app, &ctx).await,
            Finalizer::Cleanup(app) => teardown_dns_first(&app, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(Box::new(other)),
    })
}

/// Whether the app's deletion needs steps of its own: DNS records that must go first, or
/// listeners in a Gateway (not ours, so garbage collection does not remove them): a TLS
/// route while the network has a Gateway tier. Once added, the finalizer stays until the
/// deletion (an app whose network stops using Gateways may still have listeners in one).
pub fn needs_teardown(app: &ExposedApp, ctx: &Shared) -> bool {
    publishes_dns(app)
        || (app.spec.routes.iter().any(|r| r.tls)
            && steps::snapshot(ctx, |c| {
                c.network(&app.spec.network).is_some_and(|n| {
                    gatehouse_api::Tier::ALL
                        .iter()
                        .any(|t| crate::render::gateway::tier_gateway(n, *t).is_some())
                })
            }))
}

/// Whether the app may have DNS records (the only children that must go first): DNS on,
/// and some route or tcp host.
pub fn publishes_dns(app: &ExposedApp) -> bool {
    app.spec.dns.enabled
        && (app.spec.routes.iter().any(|r| !r.hosts.is_empty())
            || app.spec.tcp.iter().any(|t| !t.hosts.is_empty()))
}

pub fn error_policy(app: Arc<ExposedApp>, error: &Error, ctx: Shared) -> Action {
    super::retry_after(&ctx, "ExposedApp", app.as_ref(), error)
}

/// The driver: snapshot -> validate -> render -> plan -> execute -> readiness ->
/// conditions -> status, each a named step (steps.rs).
async fn apply_app(app: &ExposedApp, ctx: &Shared) -> Result<Action> {
    let owner = Owner::of(app);
    let rendered = steps::snapshot(ctx, |snapshot| {
        render::validate::exposed_app(app, snapshot)
            .map(|valid| render::exposed_app(&valid, snapshot))
    });
    let mut a = Assessment::default();
    let (mut urls, mut addresses) = (Vec::new(), Vec::new());
    match rendered {
        Err(blocking) => a.blocking = blocking.0,
        Ok(rendered) => {
            let mut findings = rendered.findings.0;
            let children = steps::servable(rendered.children, ctx, &mut findings);
            let plan = steps::plan(&owner, &children, ctx);
            let executed = apply::execute(ctx, plan).await?;
            events::announce(ctx, &owner, app, &executed).await;
            let outcomes = executed.outcomes;
            let namespace = app.namespace().unwrap_or_default();
            let gateways = listeners::execute(
                ctx,
                &namespace,
                &app.name_any(),
                &rendered.listeners,
                &mut findings,
            )
            .await?;
            let ready = steps::readiness(&outcomes, ctx);
            let details = readiness::app_details(
                !app.spec.tcp.is_empty(),
                app.spec.dns.enabled,
                &ready,
                &mut findings,
            );
            a = Assessment {
                findings,
                conflicts: steps::conflicts(&outcomes),
                resources: readiness::resources(&owner, &ready)
                    .into_iter()
                    .chain(gateways)
                    .collect(),
                certificate: details.certificate,
                address: details.address,
                dns: details.dns,
                ..Assessment::default()
            };
            urls = rendered.urls;
            addresses = rendered.addresses;
        }
    }
    let previous = app.status.clone().unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let wide = gatehouse_api::WideColumns::of(&app.spec, &urls);
    let status = ExposedAppStatus {
        observed_generation: app.meta().generation,
        conditions: status::conditions(&a, app.meta().generation, &previous.conditions, &now),
        urls,
        addresses,
        wide,
        children: a.resources.len() as i64,
        ready_children: a.resources.iter().filter(|r| r.ready).count() as i64,
        resources: a.resources,
    };
    let api: Api<ExposedApp> =
        Api::namespaced(ctx.client.clone(), &app.namespace().unwrap_or_default());
    steps::write_status(ctx, &api, app, &previous, &status).await?;
    Ok(Action::requeue(RESYNC))
}

/// How long a deleted app's routes wait for external-dns to acknowledge the removal of its
/// records. Past it (external-dns not running, or not watching this tier) the routes go
/// anyway, with a Warning event: deleting must not hang forever on another controller.
pub const DNS_TEARDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// What the teardown does next with one DNSEndpoint of a deleted app.
#[derive(Debug, PartialEq, Eq)]
pub enum DnsTeardown {
    /// It still lists records: empty it, so external-dns removes them from the zone.
    Empty,
    /// Emptied, not yet acknowledged by external-dns (status.observedGeneration behind).
    AwaitAcknowledgement,
    /// external-dns has read the empty generation (it writes observedGeneration as it reads,
    /// then sends the deletions to the DNS server in the same pass), or waiting timed out.
    Delete,
}

/// Pure: the next teardown step for a live DNSEndpoint, given how long the app has been
/// deleting.
pub fn dns_teardown_step(
    live: &serde_json::Value,
    deleting_for: std::time::Duration,
) -> DnsTeardown {
    let listed = live["spec"]["endpoints"]
        .as_array()
        .is_some_and(|e| !e.is_empty());
    let generation = live["metadata"]["generation"].as_i64().unwrap_or(0);
    let observed = live["status"]["observedGeneration"].as_i64();
    if deleting_for >= DNS_TEARDOWN_TIMEOUT {
        DnsTeardown::Delete
    } else if observed.is_none() {
        // external-dns never read any generation of it, so nothing of it is in the zone.
        DnsTeardown::Delete
    } else if listed {
        DnsTeardown::Empty
    } else if observed.is_some_and(|o| o >= generation) {
        DnsTeardown::Delete
    } else {
        DnsTeardown::AwaitAcknowledgement
    }
}

/// Deletion: DNS records go first, so no name points at routes that are about to vanish.
/// Each DNSEndpoint is emptied and kept until external-dns acknowledges the empty
/// generation (deleting it outright would leave the records in the zone until external-dns's
/// next sync, after the routes are gone); then it is deleted and the rest of the children
/// follow through garbage collection once the finalizer is gone. Reads come from the
/// caches; the error return keeps the finalizer while something is pending.
async fn teardown_dns_first(app: &ExposedApp, ctx: &Shared) -> Result<Action> {
    let owner = Owner::of(app);
    let ns = app.namespace().unwrap_or_default();
    let api = apply::api(ctx, ChildKind::DnsEndpoint, Some(&ns));
    let deleting_for = app
        .metadata
        .deletion_timestamp
        .as_ref()
        .and_then(|t| {
            let since = k8s_openapi::jiff::Timestamp::now().duration_since(t.0);
            std::time::Duration::try_from(since).ok()
        })
        .unwrap_or_default();
    let mut pending = Vec::new();
    let owned = ctx
        .index
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .children_of(&owner.key());
    for (kind, _, name) in owned
        .into_iter()
        .filter(|(k, ..)| *k == ChildKind::DnsEndpoint)
    {
        let what = format!("{} {ns}/{name}", kind.kind());
        let live = ctx
            .stores
            .child(kind, Some(&ns), &name)
            .and_then(|l| l.content)
            .unwrap_or_default();
        match dns_teardown_step(&live, deleting_for) {
            DnsTeardown::Empty => {
                // A merge patch, not an apply: an apply of only this field would drop our
                // ownership of the labels the caches select children by.
                let empty = serde_json::json!({"spec": {"endpoints": []}});
                let pp = kube::api::PatchParams::default();
                api.patch(&name, &pp, &kube::api::Patch::Merge(&empty))
                    .await
                    .map_err(|source| Error::Apply { what, source })?;
                pending.push(format!("{name} (emptied)"));
            }
            DnsTeardown::AwaitAcknowledgement => {
                pending.push(format!("{name} (waiting for external-dns)"))
            }
            DnsTeardown::Delete => {
                if deleting_for >= DNS_TEARDOWN_TIMEOUT {
                    warn_unacknowledged(app, ctx, &name).await;
                }
                match api.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => pending.push(format!("{name} (deleted)")),
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(source) => return Err(Error::Prune { what, source }),
                }
            }
        }
    }
    if pending.is_empty() {
        // Routes go with garbage collection; the listeners they attached to go now.
        listeners::release_all(ctx, &ns, &app.name_any()).await?;
    }
    if !pending.is_empty() {
        return Err(Error::DnsTeardownPending(format!(
            "{ns}/{}: {}",
            app.name_any(),
            pending.join(", ")
        )));
    }
    Ok(Action::await_change())
}

async fn warn_unacknowledged(app: &ExposedApp, ctx: &Shared, name: &str) {
    let event = Event {
        type_: EventType::Warning,
        reason: Reason::DnsTeardownUnconfirmed.as_str().into(),
        note: Some(format!(
            "external-dns did not acknowledge the removal of DNSEndpoint {name} within {}s; deleting it and the routes anyway: check that external-dns watches this tier",
            DNS_TEARDOWN_TIMEOUT.as_secs()
        )),
        action: "Delete".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &app.object_ref(&())).await {
        tracing::warn!(error = %e, "publishing event failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn dns_teardown_empties_then_waits_for_external_dns_then_deletes() {
        let listed = json!({"metadata": {"generation": 1}, "spec": {"endpoints": [{"dnsName": "a.example.com"}]}, "status": {"observedGeneration": 1}});
        assert_eq!(
            dns_teardown_step(&listed, Duration::ZERO),
            DnsTeardown::Empty
        );
        let emptied = json!({"metadata": {"generation": 2}, "spec": {"endpoints": []}, "status": {"observedGeneration": 1}});
        assert_eq!(
            dns_teardown_step(&emptied, Duration::from_secs(1)),
            DnsTeardown::AwaitAcknowledgement
        );
        let acknowledged = json!({"metadata": {"generation": 2}, "spec": {"endpoints": []}, "status": {"observedGeneration": 2}});
        assert_eq!(
            dns_teardown_step(&acknowledged, Duration::from_secs(1)),
            DnsTeardown::Delete
        );
        assert_eq!(
            dns_teardown_step(&emptied, DNS_TEARDOWN_TIMEOUT),
            DnsTeardown::Delete,
            "no external-dns: the deletion goes on after the timeout"
        );
        let never_read = json!({"metadata": {"generation": 1}, "spec": {"endpoints": [{"dnsName": "a.example.com"}]}});
        assert_eq!(
            dns_teardown_step(&never_read, Duration::ZERO),
            DnsTeardown::Delete,
            "external-dns never read it: nothing of it is in the zone"
        );
    }
}
