//! Load-balancer pools: MetalLB `IPAddressPool` + `L2Advertisement`/`BGPAdvertisement`, or a
//! Cilium `CiliumLoadBalancerIPPool` selecting Services by the `gatehouse.dev/pool` label.

use gatehouse_api::{
    Advertisement, ClusterNetwork, IpFamily, LbProvider, Pool, PoolStatus, labels,
};
use serde_json::{Value, json};

use super::child::{Child, ChildKind, Owner};
use super::context::Context;
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

/// How much of a pool is in use, per family (`[IPv4, IPv6]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolUsage {
    pub name: String,
    /// Addresses per family (saturating for huge IPv6 pools).
    pub size: [i64; 2],
    pub allocated: [i64; 2],
}

fn family_index(f: IpFamily) -> usize {
    match f {
        IpFamily::IPv4 => 0,
        IpFamily::IPv6 => 1,
    }
}

impl PoolUsage {
    pub fn size(&self) -> i64 {
        self.size[0].saturating_add(self.size[1])
    }
    pub fn allocated(&self) -> i64 {
        self.allocated[0] + self.allocated[1]
    }
    pub fn free(&self) -> i64 {
        (self.size() - self.allocated()).max(0)
    }
    /// Addresses of family `f` the pool has at all.
    pub fn size_of(&self, f: IpFamily) -> i64 {
        self.size[family_index(f)]
    }
    /// Free addresses of family `f`.
    pub fn free_of(&self, f: IpFamily) -> i64 {
        let i = family_index(f);
        (self.size[i] - self.allocated[i]).max(0)
    }
    /// Whether some family the pool has is used up.
    pub fn full(&self) -> [bool; 2] {
        [0, 1].map(|i| self.size[i] > 0 && self.allocated[i] >= self.size[i])
    }
    pub fn status(&self) -> PoolStatus {
        PoolStatus {
            name: self.name.clone(),
            size: self.size(),
            allocated: self.allocated(),
            free: self.free(),
        }
    }
}

/// A pool's usage from the live Services: the distinct addresses inside its ranges that
/// some LoadBalancer Service's status holds, whoever's Service it is. By range, not by the
/// pool annotation: MetalLB also assigns a requested address (`loadBalancerIPs`) from the
/// pool containing it when the Service names none, Cilium selects Services by label, and an
/// address held outside Gatehouse is just as gone; two Services sharing one address
/// (MetalLB's `allow-shared-ip`) use it up once. A range query per entry: time
/// proportional to the pool's allocated addresses.
pub fn usage(pool: &Pool, ctx: &Context) -> PoolUsage {
    let mut out = PoolUsage {
        name: pool.name.clone(),
        ..PoolUsage::default()
    };
    let mut held = std::collections::BTreeSet::new();
    for r in pool
        .addresses
        .iter()
        .filter_map(|a| ip::parse_pool_entry(a))
    {
        let i = family_index(r.family);
        out.size[i] = out.size[i].saturating_add(r.size());
        held.extend(ctx.assigned_in(&r));
    }
    for a in held {
        out.allocated[family_index(ip::family_of(a))] += 1;
    }
    out
}

/// The `PoolCapacity` warning for one pool, when its allocation is at or above
/// `warnAtPercent` of its size: the pool named, with its figures.
pub fn capacity_warning(pool: &Pool, u: &PoolUsage) -> Option<String> {
    let (size, allocated) = (u.size() as i128, u.allocated() as i128);
    let warn = pool.warn_at_percent() as i128;
    (size > 0 && allocated * 100 >= warn * size).then(|| {
        format!(
            "pool {:?}: {allocated} of {size} addresses allocated ({}%, warnAtPercent {warn}), {} free",
            pool.name,
            allocated * 100 / size,
            u.free()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::render_exposed_app;
    use serde_json::json;

    fn network(pools: Value) -> ClusterNetwork {
        serde_json::from_value(json!({
            "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ClusterNetwork", "metadata": {"name": "n"},
            "spec": {"loadBalancer": {"provider": "MetalLB", "pools": pools},
                     "ingress": {"external": {"className": "nginx", "addresses": ["192.0.2.1"]}}},
        }))
        .unwrap()
    }

    /// A Service of type `ty` holding `ips` in its status (labels optional).
    fn service(
        ns: &str,
        name: &str,
        ty: &str,
        ips: &[&str],
        meta: Value,
    ) -> k8s_openapi::api::core::v1::Service {
        let mut m = json!({"name": name, "namespace": ns});
        m.as_object_mut()
            .unwrap()
            .extend(meta.as_object().unwrap().clone());
        serde_json::from_value(json!({
            "metadata": m, "spec": {"type": ty},
            "status": {"loadBalancer": {"ingress": ips.iter().map(|i| json!({"ip": i})).collect::<Vec<_>>()}},
        }))
        .unwrap()
    }

    #[test]
    fn usage_counts_distinct_held_addresses_of_every_service_inside_the_ranges() {
        let n = network(
            json!([{"name": "p", "addresses": ["10.0.0.0/30", "10.0.1.5-10.0.1.6", "2001:db8::/126"]}]),
        );
        let mut ctx = Context::default();
        // Gatehouse's, someone else's, a shared address, one outside, one not a LoadBalancer.
        let ours = json!({"labels": {"app.kubernetes.io/managed-by": "gatehouse"}});
        ctx.add_service(service(
            "a",
            "ours",
            "LoadBalancer",
            &["10.0.0.1", "2001:db8::2"],
            ours,
        ));
        ctx.add_service(service(
            "b",
            "foreign",
            "LoadBalancer",
            &["10.0.1.6"],
            json!({}),
        ));
        ctx.add_service(service(
            "c",
            "shared",
            "LoadBalancer",
            &["10.0.0.1"],
            json!({}),
        ));
        ctx.add_service(service(
            "d",
            "elsewhere",
            "LoadBalancer",
            &["10.0.2.1"],
            json!({}),
        ));
        ctx.add_service(service(
            "e",
            "cluster-ip",
            "ClusterIP",
            &["10.0.0.2"],
            json!({}),
        ));
        let u = usage(&n.spec.load_balancer.pools[0], &ctx);
        assert_eq!(u.size, [6, 4]);
        assert_eq!(u.allocated, [2, 1], "10.0.0.1 once, 10.0.1.6, 2001:db8::2");
        assert_eq!(
            u.status(),
            PoolStatus {
                name: "p".into(),
                size: 10,
                allocated: 3,
                free: 7
            }
        );
        // A Service that goes releases its addresses; one that changes moves them.
        ctx.remove_service("b", "foreign");
        ctx.add_service(service(
            "c",
            "shared",
            "LoadBalancer",
            &["10.0.0.3"],
            json!({}),
        ));
        let u = usage(&n.spec.load_balancer.pools[0], &ctx);
        assert_eq!(u.allocated, [2, 1], "10.0.0.1 (ours) and 10.0.0.3");
        assert_eq!(u.full(), [false, false]);
    }

    #[test]
    fn the_warning_starts_at_the_threshold_and_names_the_pool_and_figures() {
        let n = network(json!([{"name": "p", "addresses": ["10.0.0.0/30"]},
                               {"name": "q", "addresses": ["10.0.1.0/30"], "warnAtPercent": 50}]));
        let at = |allocated: i64| PoolUsage {
            name: "p".into(),
            size: [4, 0],
            allocated: [allocated, 0],
        };
        let [p, q] = [
            &n.spec.load_balancer.pools[0],
            &n.spec.load_balancer.pools[1],
        ];
        assert_eq!(
            capacity_warning(p, &at(3)),
            None,
            "75% is below the default 80"
        );
        assert_eq!(
            capacity_warning(p, &at(4)).as_deref(),
            Some("pool \"p\": 4 of 4 addresses allocated (100%, warnAtPercent 80), 0 free")
        );
        assert_eq!(capacity_warning(q, &at(1)), None);
        assert!(
            capacity_warning(q, &at(2))
                .unwrap()
                .contains("(50%, warnAtPercent 50), 2 free")
        );
        let empty = PoolUsage::default();
        assert_eq!(
            capacity_warning(p, &empty),
            None,
            "a pool of no addresses never warns"
        );
    }

    fn mail(tcp: Value) -> gatehouse_api::ExposedApp {
        serde_json::from_value(json!({
            "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ExposedApp",
            "metadata": {"name": "mail", "namespace": "m"},
            "spec": {"network": "n", "selector": {"app": "mail"}, "ports": [{"name": "smtp", "port": 25}], "tcp": tcp},
        }))
        .unwrap()
    }

    #[test]
    fn a_pending_service_of_a_full_pool_stalls_the_app_and_one_with_its_address_does_not() {
        let mut ctx = Context::default();
        ctx.add_network(network(
            json!([{"name": "p", "addresses": ["10.0.0.1-10.0.0.2"]}]),
        ));
        ctx.add_service(service(
            "x",
            "one",
            "LoadBalancer",
            &["10.0.0.1"],
            json!({}),
        ));
        let app = mail(json!([{"port": "smtp", "pool": "p"}]));
        // One free: no finding.
        let r = render_exposed_app(&app, &ctx).unwrap();
        assert!(
            r.findings
                .iter()
                .all(|f| f.reason != gatehouse_api::Reason::PoolExhausted)
        );
        // Full, and the app's Service has no address yet (not even written): Stalled.
        ctx.add_service(service(
            "y",
            "two",
            "LoadBalancer",
            &["10.0.0.2"],
            json!({}),
        ));
        let r = render_exposed_app(&app, &ctx).unwrap();
        let f = r
            .findings
            .iter()
            .find(|f| f.reason == gatehouse_api::Reason::PoolExhausted)
            .unwrap();
        assert!(f.stalls);
        assert_eq!(f.field, "spec.tcp[0].pool");
        assert_eq!(
            f.message,
            "pool \"p\" of ClusterNetwork n has no free IPv4 address (2 of 2 allocated): Service m/mail-external waits for one; free an address or add addresses to the pool"
        );
        // The app's Service got the last address before the pool filled up: nothing to say.
        ctx.remove_service("y", "two");
        ctx.add_service(service(
            "m",
            "mail-external",
            "LoadBalancer",
            &["10.0.0.2"],
            json!({}),
        ));
        let r = render_exposed_app(&app, &ctx).unwrap();
        assert!(
            r.findings
                .iter()
                .all(|f| f.reason != gatehouse_api::Reason::PoolExhausted),
            "{:?}",
            r.findings
        );
    }

    #[test]
    fn a_requested_address_held_elsewhere_is_refused_naming_the_holder() {
        let mut ctx = Context::default();
        ctx.add_network(network(
            json!([{"name": "p", "addresses": ["10.0.0.0/29"]}]),
        ));
        let owned = json!({"labels": {"app.kubernetes.io/managed-by": "gatehouse", "gatehouse.dev/owner-kind": "ExposedApp",
                                      "gatehouse.dev/owner-name": "relay", "gatehouse.dev/owner-namespace": "r"}});
        ctx.add_service(service(
            "r",
            "relay-external",
            "LoadBalancer",
            &["10.0.0.3"],
            owned,
        ));
        let mut asking = service(
            "q",
            "asks",
            "LoadBalancer",
            &[],
            json!({"annotations": {"metallb.io/loadBalancerIPs": "10.0.0.4"}}),
        );
        asking.status = None;
        ctx.add_service(asking);
        let refused = |addr: &str, ctx: &Context| {
            let app = mail(json!([{"port": "smtp", "pool": "p", "addresses": [addr]}]));
            match render_exposed_app(&app, ctx) {
                Ok(_) => None,
                Err(f) => Some(f.to_string()),
            }
        };
        assert_eq!(
            refused("10.0.0.3", &ctx).as_deref(),
            Some(
                "spec.tcp[0].addresses[0]: 10.0.0.3 is already assigned to Service r/relay-external (of ExposedApp r/relay); this Service is not written with it until that one lets it go (AddressInUse)"
            )
        );
        assert_eq!(
            refused("10.0.0.4", &ctx).as_deref(),
            Some(
                "spec.tcp[0].addresses[0]: 10.0.0.4 is already requested by Service q/asks; this Service is not written with it until that one lets it go (AddressInUse)"
            )
        );
        assert_eq!(
            refused("10.0.1.9", &ctx).as_deref(),
            Some(
                "spec.tcp[0].addresses[0]: 10.0.1.9 is outside pool \"p\" (10.0.0.0/29) (InvalidSpec)"
            )
        );
        assert_eq!(refused("10.0.0.5", &ctx), None, "a free address is fine");
        // The app's own Service holding (or already asking for) the address is no conflict.
        ctx.add_service(service(
            "m",
            "mail-external",
            "LoadBalancer",
            &["10.0.0.5"],
            json!({}),
        ));
        assert_eq!(refused("10.0.0.5", &ctx), None);
        let mut own = service(
            "m",
            "mail-external",
            "LoadBalancer",
            &[],
            json!({"annotations": {"metallb.io/loadBalancerIPs": "10.0.0.4"}}),
        );
        own.status = None;
        ctx.add_service(own);
        assert_eq!(
            refused("10.0.0.4", &ctx),
            None,
            "both asked before either was assigned: MetalLB settles it"
        );
    }
}
