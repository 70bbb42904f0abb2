//! The ExposedApp controller.

use std::collections::HashSet;
use std::sync::Arc;

use gatehouse_api::{ExposedApp, ExposedAppStatus, ResourceStatus, reason};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};
use tracing::instrument;

use super::apply::{self, Applied};
use super::status::{self, Assessment, Detail};
use super::{RESYNC, Shared};
use crate::error::{Error, Result};
use crate::render::{self, ChildKind, Finding, Owner, Rendered};

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
    if !has_finalizer && !publishes_dns(&app) {
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

/// Children of kinds the cluster does not serve cannot be written: say so instead.
pub fn drop_unserved(rendered: &mut Rendered, ctx: &Shared, findings: &mut Vec<Finding>) {
    rendered.children.retain(|c| {
        let served = ctx.stores.serves(c.kind);
        if !served {
            findings.push(Finding::stalling(
                "KindNotInstalled",
                format!("{} {}", c.kind.kind(), c.name()),
                format!(
                    "{} ({}) is not served by this cluster; install its CRD",
                    c.kind.kind(),
                    c.kind.api_version()
                ),
            ));
        }
        served
    });
}

/// Applies every desired child, prunes the rest, and reads their readiness.
pub async fn converge(
    owner: &Owner,
    rendered: &Rendered,
    ctx: &Shared,
    a: &mut Assessment,
) -> Result<()> {
    let mut keep = HashSet::new();
    for child in &rendered.children {
        keep.insert(apply::key_of(child));
        match apply::ensure(ctx, owner, child).await? {
            Applied::Conflict(message) => a.conflicts.push(message),
            Applied::Written | Applied::Unchanged => {
                let live = ctx
                    .stores
                    .child(child.kind, child.namespace(), child.name());
                let content = live.as_ref().and_then(|l| l.content.as_ref());
                // Just written and not cached yet: content-based readiness waits for the
                // watch event that the write itself causes.
                let (ready, message) = match (live.is_some(), child.kind) {
                    (false, ChildKind::Certificate | ChildKind::DnsEndpoint) => {
                        (false, Some("just written".into()))
                    }
                    (false, ChildKind::Service)
                        if child.object["spec"]["type"] == "LoadBalancer" =>
                    {
                        (false, Some("waiting for a load-balancer address".into()))
                    }
                    _ => status::child_ready(child.kind, content),
                };
                a.resources.push(ResourceStatus {
                    api_version: child.kind.api_version(),
                    kind: child.kind.kind().to_string(),
                    name: child.name().to_string(),
                    namespace: (child.namespace() != owner.namespace.as_deref())
                        .then(|| child.namespace().map(str::to_string))
                        .flatten(),
                    ready,
                    message,
                });
            }
        }
    }
    apply::prune(ctx, owner, &keep).await?;
    apply::forget_gone(ctx);
    Ok(())
}

fn detail(a: &Assessment, kind: &str, waiting: &str, ok_message: &str) -> Option<Detail> {
    let of_kind: Vec<&ResourceStatus> = a.resources.iter().filter(|r| r.kind == kind).collect();
    if of_kind.is_empty() {
        return None;
    }
    match of_kind.iter().find(|r| !r.ready) {
        Some(r) => Some(Detail {
            ok: false,
            reason: waiting.into(),
            message: format!(
                "{} {}: {}",
                r.kind,
                r.name,
                r.message.clone().unwrap_or_default()
            ),
        }),
        None => Some(Detail {
            ok: true,
            reason: reason::READY.into(),
            message: ok_message.into(),
        }),
    }
}

async fn apply_app(app: &ExposedApp, ctx: &Shared) -> Result<Action> {
    let owner = Owner::of(app);
    let mut a = Assessment::default();
    let mut urls = Vec::new();
    let mut addresses = Vec::new();
    // Render reads the index under its lock: pure and synchronous, no await inside.
    let result = render::render_exposed_app(
        app,
        &ctx.index.read().unwrap_or_else(|e| e.into_inner()).ctx,
    );
    match result {
        Err(findings) => a.blocking = findings.0,
        Ok(mut rendered) => {
            let mut findings = rendered.findings.0.clone();
            drop_unserved(&mut rendered, ctx, &mut findings);
            a.findings = findings;
            converge(&owner, &rendered, ctx, &mut a).await?;
            a.certificate = detail(
                &a,
                "Certificate",
                reason::WAITING_FOR_CERTIFICATE,
                "certificate issued",
            );
            let lb: Vec<&ResourceStatus> = a
                .resources
                .iter()
                .filter(|r| {
                    r.kind == "Service"
                        && r.message.as_deref() == Some("waiting for a load-balancer address")
                })
                .collect();
            let has_lb = !app.spec.tcp.is_empty();
            if has_lb {
                a.address = Some(match lb.first() {
                    Some(r) => Detail {
                        ok: false,
                        reason: reason::WAITING_FOR_ADDRESS.into(),
                        message: format!("Service {} has no address yet", r.name),
                    },
                    None => Detail {
                        ok: true,
                        reason: reason::READY.into(),
                        message: "load-balancer addresses assigned".into(),
                    },
                });
            }
            let waiting_dns = a
                .findings
                .iter()
                .find(|f| f.reason == reason::WAITING_FOR_ADDRESS)
                .cloned();
            a.dns = match (
                detail(
                    &a,
                    "DNSEndpoint",
                    reason::WAITING_FOR_DNS,
                    "records published",
                ),
                waiting_dns,
            ) {
                (_, Some(f)) if app.spec.dns.enabled => Some(Detail {
                    ok: false,
                    reason: reason::WAITING_FOR_ADDRESS.into(),
                    message: f.message.clone(),
                }),
                (d, _) => d,
            };
            // Waiting for an address is reported once, by DNSPublished/AddressAssigned.
            a.findings
                .retain(|f| f.reason != reason::WAITING_FOR_ADDRESS);
            urls = rendered.urls.clone();
            addresses = rendered.addresses.clone();
        }
    }
    let previous = app.status.clone().unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = ExposedAppStatus {
        observed_generation: app.meta().generation,
        conditions: status::conditions(&a, app.meta().generation, &previous.conditions, &now),
        urls,
        addresses,
        resources: a.resources.clone(),
    };
    write_status(app, &previous, &status, ctx).await?;
    Ok(Action::requeue(RESYNC))
}

/// Patches status only when it changed, and tells the user by an Event when the app
/// becomes Stalled for a reason they must act on.
async fn write_status(
    app: &ExposedApp,
    previous: &ExposedAppStatus,
    status: &ExposedAppStatus,
    ctx: &Shared,
) -> Result<()> {
    if previous == status {
        return Ok(());
    }
    let api: Api<ExposedApp> =
        Api::namespaced(ctx.client.clone(), &app.namespace().unwrap_or_default());
    super::apply_status(&api, "ExposedApp", &app.name_any(), status).await?;
    publish_stalled(app, &previous.conditions, &status.conditions, ctx).await;
    Ok(())
}

/// An Event when Stalled turns True or changes reason; failures to publish are logged only.
pub async fn publish_stalled<K: Resource<DynamicType = ()>>(
    obj: &K,
    previous: &[gatehouse_api::Condition],
    current: &[gatehouse_api::Condition],
    ctx: &Shared,
) {
    let stalled = |c: &[gatehouse_api::Condition]| {
        c.iter()
            .find(|c| c.type_ == "Stalled" && c.status == "True")
            .map(|c| (c.reason.clone(), c.message.clone()))
    };
    let (before, now) = (stalled(previous), stalled(current));
    if let Some((reason, message)) = now
        && before.as_ref().map(|b| &b.0) != Some(&reason)
    {
        let event = Event {
            type_: EventType::Warning,
            reason,
            note: Some(message),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, "publishing event failed");
        }
    }
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
        reason: reason::DNS_TEARDOWN_UNCONFIRMED.into(),
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
