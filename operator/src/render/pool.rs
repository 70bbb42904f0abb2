//! Load-balancer pools: MetalLB `IPAddressPool` + `L2Advertisement`/`BGPAdvertisement`, or a
//! Cilium `CiliumLoadBalancerIPPool` selecting Services by the `gatehouse.dev/pool` label.

use gatehouse_api::{Advertisement, ClusterNetwork, LbProvider, Pool, labels};
use serde_json::{Value, json};

use super::child::{Child, ChildKind, Owner};
use super::ip;

pub const METALLB_DEFAULT_NAMESPACE: &str = "metallb-system";

pub fn pools(network: &ClusterNetwork, owner: &Owner) -> Vec<Child> {
    let lb = &network.spec.load_balancer;
    let mut out = Vec::new();
    match lb.provider {
        LbProvider::MetalLB => {
            let ns = lb.namespace.as_deref().unwrap_or(METALLB_DEFAULT_NAMESPACE);
            for pool in &lb.pools {
                out.push(Child::new(
                    ChildKind::IpAddressPool,
                    owner.meta(&pool.name, Some(ns)),
                    // autoAssign off: only Services that name the pool get its addresses, so a
                    // stray LoadBalancer Service can never take the public address.
                    json!({"spec": {"addresses": pool.addresses, "autoAssign": false}}),
                ));
                let kind = match pool.advertisement {
                    Advertisement::L2 => ChildKind::L2Advertisement,
                    Advertisement::BGP => ChildKind::BgpAdvertisement,
                };
                out.push(Child::new(
                    kind,
                    owner.meta(&pool.name, Some(ns)),
                    json!({"spec": {"ipAddressPools": [pool.name]}}),
                ));
            }
        }
        LbProvider::Cilium => {
            for pool in &lb.pools {
                out.push(Child::new(
                    ChildKind::CiliumLoadBalancerIpPool,
                    owner.meta(&pool.name, None),
                    json!({"spec": {
                        "blocks": cilium_blocks(pool),
                        "serviceSelector": {"matchLabels": {labels::POOL: pool.name}},
                    }}),
                ));
            }
        }
        LbProvider::Hetzner | LbProvider::None => {}
    }
    out
}

/// Cilium blocks: `{cidr}` for CIDRs, `{start, stop}` for ranges.
fn cilium_blocks(pool: &Pool) -> Vec<Value> {
    pool.addresses
        .iter()
        .map(|a| match a.split_once('-') {
            Some((start, stop)) if !a.contains('/') => {
                json!({"start": start.trim(), "stop": stop.trim()})
            }
            _ => json!({"cidr": a}),
        })
        .collect()
}

/// Number of addresses in a pool (saturating for huge IPv6 pools).
pub fn pool_size(pool: &Pool) -> i64 {
    pool.addresses
        .iter()
        .filter_map(|a| ip::parse_pool_entry(a))
        .fold(0i64, |acc, r| acc.saturating_add(r.size()))
}
