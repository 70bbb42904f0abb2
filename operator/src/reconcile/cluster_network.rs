//! The ClusterNetwork controller: pools, default deny in matching namespaces, attachment
//! definitions where apps use them; status with pool usage and the app count.

use std::sync::Arc;

use gatehouse_api::{ClusterNetwork, ClusterNetworkStatus, Condition, Reason, condition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use tracing::instrument;

use super::status::{self, Assessment, Detail};
use super::{RESYNC, Shared, apply, events, readiness, steps};
use crate::error::{Error, Result};
use crate::render::{self, Owner, pool};

/// One reconcile, timed and counted in the metrics.
pub async fn reconcile(network: Arc<ClusterNetwork>, ctx: Shared) -> Result<Action> {
    let metrics = ctx.clone();
    let obj = network.clone();
    super::observed(
        &metrics,
        "ClusterNetwork",
        obj.as_ref(),
        reconcile_once(network, ctx),
    )
    .await
}

/// The driver: snapshot -> validate -> render -> plan -> execute -> readiness ->
/// conditions -> status, each a named step (steps.rs).
#[instrument(skip_all, fields(network = %network.name_any()))]
async fn reconcile_once(network: Arc<ClusterNetwork>, ctx: Shared) -> Result<Action> {
    let owner = Owner::of(network.as_ref());
    let rendered = steps::snapshot(&ctx, |snapshot| {
        render::validate::cluster_network(&network, snapshot)
            .map(|valid| render::cluster_network(&valid, snapshot))
    });
    let mut a = Assessment::default();
    match rendered {
        Err(blocking) => a.blocking = blocking.0,
        Ok(rendered) => {
            let mut findings = rendered.findings.0;
            let children = steps::servable(rendered.children, &ctx, &mut findings);
            let plan = steps::plan(&owner, &children, &ctx);
            let executed = apply::execute(&ctx, plan).await?;
            events::announce(&ctx, &owner, network.as_ref(), &executed).await;
            let outcomes = executed.outcomes;
            let ready = steps::readiness(&outcomes, &ctx);
            a = Assessment {
                findings,
                conflicts: steps::conflicts(&outcomes),
                resources: readiness::resources(&owner, &ready),
                ..Assessment::default()
            };
        }
    }
    let name = network.name_any();
    let previous = network.status.clone().unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let usage = steps::snapshot(&ctx, |snapshot| pool_usage(&network, snapshot));
    a.capacity = capacity(&network, &usage);
    let status = ClusterNetworkStatus {
        observed_generation: network.meta().generation,
        conditions: status::conditions(&a, network.meta().generation, &previous.conditions, &now),
        pools: usage.iter().map(pool::PoolUsage::status).collect(),
        exposed_apps: ctx
            .index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .app_count(&name) as i64,
    };
    let api: Api<ClusterNetwork> = Api::all(ctx.client.clone());
    steps::write_status(&ctx, &api, network.as_ref(), &previous, &status).await?;
    publish_nearly_full(&network, &previous.conditions, &status.conditions, &ctx).await;
    Ok(Action::requeue(RESYNC))
}

/// Each pool's size and the addresses Services hold in it (pool::usage: a range query on
/// the context's address index per pool entry, no scan of the Services).
fn pool_usage(network: &ClusterNetwork, snapshot: &render::Context) -> Vec<pool::PoolUsage> {
    network
        .spec
        .load_balancer
        .pools
        .iter()
        .map(|p| pool::usage(p, snapshot))
        .collect()
}

/// `PoolCapacity`, when the network has pools: False with reason `PoolNearlyFull` naming
/// every pool at or above its `warnAtPercent`, with its figures.
fn capacity(network: &ClusterNetwork, usage: &[pool::PoolUsage]) -> Option<Detail> {
    let pools = &network.spec.load_balancer.pools;
    if pools.is_empty() {
        return None;
    }
    let warnings: Vec<String> = pools
        .iter()
        .zip(usage)
        .filter_map(|(p, u)| pool::capacity_warning(p, u))
        .collect();
    Some(if warnings.is_empty() {
        Detail {
            ok: true,
            reason: Reason::Ready,
            message: "every pool is below its warnAtPercent".into(),
        }
    } else {
        Detail {
            ok: false,
            reason: Reason::PoolNearlyFull,
            message: warnings.join("; "),
        }
    })
}

/// A Warning Event when `PoolCapacity` turns False, so the platform team hears of a filling
/// pool before a Service stays pending (once per transition: the figures in the message
/// change with every allocation, and an Event each time would be noise).
async fn publish_nearly_full(
    network: &ClusterNetwork,
    previous: &[Condition],
    current: &[Condition],
    ctx: &Shared,
) {
    let warning = |c: &[Condition]| {
        c.iter()
            .find(|c| c.type_ == condition::POOL_CAPACITY && c.status == "False")
            .map(|c| c.message.clone())
    };
    let Some(message) = warning(current) else {
        return;
    };
    if warning(previous).is_some() {
        return;
    }
    let event = Event {
        type_: EventType::Warning,
        reason: Reason::PoolNearlyFull.as_str().into(),
        note: Some(message),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &network.object_ref(&())).await {
        tracing::warn!(error = %e, "publishing event failed");
    }
}

pub fn error_policy(network: Arc<ClusterNetwork>, error: &Error, ctx: Shared) -> Action {
    super::retry_after(&ctx, "ClusterNetwork", network.as_ref(), error)
}
