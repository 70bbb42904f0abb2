//! The EgressPolicy controller.

use std::sync::Arc;

use gatehouse_api::{EgressPolicy, EgressPolicyStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::instrument;

use super::status::{self, Assessment};
use super::{RESYNC, Shared, apply, events, readiness, steps};
use crate::error::{Error, Result};
use crate::render::{self, Owner};

/// One reconcile, timed and counted in the metrics.
pub async fn reconcile(policy: Arc<EgressPolicy>, ctx: Shared) -> Result<Action> {
    let metrics = ctx.clone();
    let obj = policy.clone();
    super::observed(
        &metrics,
        "EgressPolicy",
        obj.as_ref(),
        reconcile_once(policy, ctx),
    )
    .await
}

/// The driver: snapshot -> validate -> render -> plan -> execute -> readiness ->
/// conditions -> status, each a named step (steps.rs).
#[instrument(skip_all, fields(policy = %format!("{}/{}", policy.namespace().unwrap_or_default(), policy.name_any())))]
async fn reconcile_once(policy: Arc<EgressPolicy>, ctx: Shared) -> Result<Action> {
    let owner = Owner::of(policy.as_ref());
    let rendered = steps::snapshot(&ctx, |snapshot| {
        render::validate::egress_policy(&policy, snapshot)
            .map(|valid| render::egress_policy(&valid, snapshot))
    });
    let mut a = Assessment::default();
    let mut resolved_peers = Vec::new();
    let mut rule_count = 0;
    match rendered {
        Err(blocking) => a.blocking = blocking.0,
        Ok(rendered) => {
            let mut findings = rendered.findings.0;
            let children = steps::servable(rendered.children, &ctx, &mut findings);
            let plan = steps::plan(&owner, &children, &ctx);
            let executed = apply::execute(&ctx, plan).await?;
            events::announce(&ctx, &owner, policy.as_ref(), &executed).await;
            let outcomes = executed.outcomes;
            let ready = steps::readiness(&outcomes, &ctx);
            a = Assessment {
                findings,
                conflicts: steps::conflicts(&outcomes),
                resources: readiness::resources(&owner, &ready),
                ..Assessment::default()
            };
            resolved_peers = rendered.resolved_peers;
            rule_count = policy.spec.rules.len() as i64;
        }
    }
    let previous = policy.status.clone().unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = EgressPolicyStatus {
        observed_generation: policy.meta().generation,
        conditions: status::conditions(&a, policy.meta().generation, &previous.conditions, &now),
        rule_count,
        resolved_peers,
        resources: a.resources,
    };
    let api: Api<EgressPolicy> =
        Api::namespaced(ctx.client.clone(), &policy.namespace().unwrap_or_default());
    steps::write_status(&ctx, &api, policy.as_ref(), &previous, &status).await?;
    Ok(Action::requeue(RESYNC))
}

pub fn error_policy(policy: Arc<EgressPolicy>, error: &Error, ctx: Shared) -> Action {
    super::retry_after(&ctx, "EgressPolicy", policy.as_ref(), error)
}
