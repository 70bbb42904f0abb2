//! The ClusterNetwork controller: pools, default deny in matching namespaces, attachment
//! definitions where apps use them; status with pool usage and the app count.

use std::sync::Arc;

use gatehouse_api::{ClusterNetwork, ClusterNetworkStatus, PoolStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::instrument;

use super::status::{self, Assessment};
use super::{RESYNC, Shared, apply, readiness, steps};
use crate::error::{Error, Result};
use crate::render::{self, Owner, ip, pool};

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
        render::validate::cluster_network(&network)
            .map(|valid| render::cluster_network(&valid, snapshot))
    });
    let mut a = Assessment::default();
    match rendered {
        Err(blocking) => a.blocking = blocking.0,
        Ok(rendered) => {
            let mut findings = rendered.findings.0;
            let children = steps::servable(rendered.children, &ctx, &mut findings);
            let plan = steps::plan(&owner, &children, &ctx);
            let outcomes = apply::execute(&ctx, plan).await?;
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
    let status = ClusterNetworkStatus {
        observed_generation: network.meta().generation,
        conditions: status::conditions(&a, network.meta().generation, &previous.conditions, &now),
        pools: pool_usage(&network, &ctx),
        exposed_apps: ctx
            .index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .app_count(&name) as i64,
    };
    let api: Api<ClusterNetwork> = Api::all(ctx.client.clone());
    steps::write_status(&ctx, &api, network.as_ref(), &previous, &status).await?;
    Ok(Action::requeue(RESYNC))
}

/// Size of each pool and how many of its addresses our LoadBalancer Services hold.
fn pool_usage(network: &ClusterNetwork, ctx: &Shared) -> Vec<PoolStatus> {
    let ours: Vec<std::net::IpAddr> = ctx
        .index
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .load_balancers()
        .flat_map(|s| {
            s.status
                .as_ref()
                .and_then(|st| st.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.clone())
                .unwrap_or_default()
                .into_iter()
                .filter_map(|i| i.ip.as_deref().and_then(ip::parse_ip))
        })
        .collect();
    network
        .spec
        .load_balancer
        .pools
        .iter()
        .map(|p| {
            let ranges: Vec<ip::Range> = p
                .addresses
                .iter()
                .filter_map(|a| ip::parse_pool_entry(a))
                .collect();
            let allocated = ours
                .iter()
                .filter(|addr| ranges.iter().any(|r| r.contains(**addr)))
                .count() as i64;
            PoolStatus {
                name: p.name.clone(),
                size: pool::pool_size(p),
                allocated,
            }
        })
        .collect()
}

pub fn error_policy(network: Arc<ClusterNetwork>, error: &Error, ctx: Shared) -> Action {
    super::retry_after(&ctx, "ClusterNetwork", network.as_ref(), error)
}
