//! The steps every driver (exposed_app.rs, egress_policy.rs, cluster_network.rs) calls, in
//! this order:
//!
//! 1. [`snapshot`]: validate and render under the index's read lock (pure, no await);
//! 2. [`servable`]: children of kinds the cluster does not serve become findings;
//! 3. [`plan`]: what the caches know of each child and what the owner has -> `plan::plan`;
//! 4. `apply::execute`: the plan's writes, reads and deletes;
//! 5. [`readiness`]: each written or unchanged child's typed readiness, from the caches;
//! 6. `status::conditions` (pure), then [`write_status`] only when the status changed.

use gatehouse_api::{
    ClusterNetworkStatus, Condition, EgressPolicyStatus, ExposedAppStatus, Reason,
};
use kube::api::Api;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};

use super::Shared;
use super::plan::{self, Known, Outcome, Plan};
use super::readiness::{self, ChildReadiness, Readiness, Seen};
use crate::error::Result;
use crate::render::child::leak_kind;
use crate::render::{self, Child, Finding, Owner};

/// Runs `f` (validate + render) on the render context the index keeps current. The lock is
/// held for the pure step only: nothing awaits under it.
pub fn snapshot<R>(ctx: &Shared, f: impl FnOnce(&render::Context) -> R) -> R {
    f(&ctx.index.read().unwrap_or_else(|e| e.into_inner()).ctx)
}

/// Children of kinds the cluster does not serve cannot be written: each becomes a stalling
/// finding naming the kind to install, and the rest go on.
pub fn servable(children: Vec<Child>, ctx: &Shared, findings: &mut Vec<Finding>) -> Vec<Child> {
    servable_by(children, |kind| ctx.stores.serves(kind), findings)
}

/// Pure [`servable`], for any record of the served kinds (the caches, or `gatehouse diff`'s
/// lists).
pub fn servable_by(
    children: Vec<Child>,
    serves: impl Fn(render::ChildKind) -> bool,
    findings: &mut Vec<Finding>,
) -> Vec<Child> {
    children
        .into_iter()
        .filter(|c| {
            let served = serves(c.kind);
            if !served {
                findings.push(Finding::stalling(
                    Reason::KindNotInstalled,
                    format!("{} {}", c.kind.kind(), c.name()),
                    format!(
                        "{} ({}) is not served by this cluster; install its CRD",
                        c.kind.kind(),
                        c.kind.api_version()
                    ),
                ));
            }
            served
        })
        .collect()
}

/// The plan for `owner`'s children, from the caches (each desired child as cached, where
/// it was last verified) and the index (every child the owner has).
pub fn plan<'a>(owner: &Owner, children: &'a [Child], ctx: &Shared) -> Plan<'a> {
    let owned = ctx
        .index
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .children_of(&owner.key());
    let verified = ctx.verified.lock().unwrap_or_else(|e| e.into_inner());
    plan::plan(
        owner,
        children,
        |child| Known {
            live: ctx
                .stores
                .child(child.kind, child.namespace(), child.name()),
            verified: verified.get(&child.key()).cloned(),
        },
        owned,
    )
}

/// Readiness of every written or unchanged child, from what the caches now hold of it.
pub fn readiness<'a>(outcomes: &[(&'a Child, Outcome)], ctx: &Shared) -> Vec<ChildReadiness<'a>> {
    readiness::children(outcomes, |child| -> Readiness {
        let live = ctx
            .stores
            .child(child.kind, child.namespace(), child.name());
        let seen = match &live {
            None => Seen::Absent,
            Some(l) => match &l.content {
                Some(content) => Seen::Content(content),
                None => Seen::Exists,
            },
        };
        readiness::of(child, seen)
    })
}

/// The conflicts of a plan's outcome: children that exist and are someone else's.
pub fn conflicts(outcomes: &[(&Child, Outcome)]) -> Vec<String> {
    outcomes
        .iter()
        .filter_map(|(_, o)| match o {
            Outcome::Conflict(message) => Some(message.clone()),
            _ => None,
        })
        .collect()
}

/// The status types, for the one status step.
pub trait WithConditions {
    fn conditions(&self) -> &[Condition];
}

impl WithConditions for ExposedAppStatus {
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
}

impl WithConditions for EgressPolicyStatus {
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
}

impl WithConditions for ClusterNetworkStatus {
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
}

/// Server-side applies `status` only when it differs from `previous` (an unchanged object
/// costs no write), and tells the user by an Event when the object becomes Stalled for a
/// reason they must act on.
pub async fn write_status<K, S>(
    ctx: &Shared,
    api: &Api<K>,
    obj: &K,
    previous: &S,
    status: &S,
) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: WithConditions + PartialEq + serde::Serialize,
{
    if previous == status {
        return Ok(());
    }
    let kind = K::kind(&());
    let written = super::apply_status(api, &kind, &obj.name_any(), status).await?;
    if let Some(rv) = written {
        ctx.status_echoes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((leak_kind(&kind), obj.namespace(), obj.name_any()), rv);
    }
    publish_stalled(obj, previous.conditions(), status.conditions(), ctx).await;
    Ok(())
}

/// An Event when Stalled turns True or changes reason; failures to publish are logged only.
pub async fn publish_stalled<K: Resource<DynamicType = ()>>(
    obj: &K,
    previous: &[Condition],
    current: &[Condition],
    ctx: &Shared,
) {
    let stalled = |c: &[Condition]| {
        c.iter()
            .find(|c| c.type_ == gatehouse_api::condition::STALLED && c.status == "True")
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
