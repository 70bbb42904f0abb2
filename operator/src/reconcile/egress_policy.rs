//! The EgressPolicy controller.

use std::sync::Arc;

use gatehouse_api::{EgressPolicy, EgressPolicyStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::instrument;

use super::exposed_app::{converge, drop_unserved, publish_stalled};
use super::status::{self, Assessment};
use super::{RESYNC, Shared};
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

#[instrument(skip_all, fields(policy = %format!("{}/{}", policy.namespace().unwrap_or_default(), policy.name_any())))]
async fn reconcile_once(policy: Arc<EgressPolicy>, ctx: Shared) -> Result<Action> {
    let owner = Owner::of(policy.as_ref());
    let mut a = Assessment::default();
    let mut resolved_peers = Vec::new();
    let mut rule_count = 0;
    // Render reads the index under its lock: pure and synchronous, no await inside.
    let result = render::render_egress_policy(
        &policy,
        &ctx.index.read().unwrap_or_else(|e| e.into_inner()).ctx,
    );
    match result {
        Err(findings) => a.blocking = findings.0,
        Ok(mut rendered) => {
            let mut findings = rendered.findings.0.clone();
            drop_unserved(&mut rendered, &ctx, &mut findings);
            a.findings = findings;
            converge(&owner, &rendered, &ctx, &mut a).await?;
            resolved_peers = rendered.resolved_peers.clone();
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
        resources: a.resources.clone(),
    };
    if status != previous {
        let api: Api<EgressPolicy> =
            Api::namespaced(ctx.client.clone(), &policy.namespace().unwrap_or_default());
        super::apply_status(&api, "EgressPolicy", &policy.name_any(), &status).await?;
        publish_stalled(
            policy.as_ref(),
            &previous.conditions,
            &status.conditions,
            &ctx,
        )
        .await;
    }
    Ok(Action::requeue(RESYNC))
}

pub fn error_policy(policy: Arc<EgressPolicy>, error: &Error, ctx: Shared) -> Action {
    super::retry_after(&ctx, "EgressPolicy", policy.as_ref(), error)
}
