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
    let snapshot = ctx.stores.render_context();
    let owner = Owner::of(app);
    let mut a = Assessment::default();
    let mut urls = Vec::new();
    let mut addresses = Vec::new();
    match render::render_exposed_app(app, &snapshot) {
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

/// Deletion: DNS records go first, so no name points at routes that are about to vanish;
/// the rest of the children follow through garbage collection once the finalizer is gone.
async fn teardown_dns_first(app: &ExposedApp, ctx: &Shared) -> Result<Action> {
    let owner = Owner::of(app);
    let ns = app.namespace().unwrap_or_default();
    let api = apply::api(ctx, ChildKind::DnsEndpoint, Some(&ns));
    let mut remaining = Vec::new();
    for (kind, _, name) in ctx
        .stores
        .owned_by(&owner)
        .into_iter()
        .filter(|(k, ..)| *k == ChildKind::DnsEndpoint)
    {
        let what = format!("{} {ns}/{name}", kind.kind());
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => remaining.push(name),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(source) => return Err(Error::Prune { what, source }),
        }
    }
    for name in remaining {
        let gone = api
            .get_opt(&name)
            .await
            .map_err(|source| Error::Read {
                what: name.clone(),
                source,
            })?
            .is_none();
        if !gone {
            return Err(Error::DnsTeardownPending(format!(
                "{ns}/{}",
                app.name_any()
            )));
        }
    }
    Ok(Action::await_change())
}
