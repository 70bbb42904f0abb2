//! BGP peering (`loadBalancer.bgp`): what makes the addresses of `advertisement: BGP` pools
//! reachable from outside. MetalLB: one `BGPPeer` per peer (its speakers then announce every
//! pool a `BGPAdvertisement` names, pool.rs). Cilium: the BGP control plane v2 trio, one
//! `CiliumBGPClusterConfig` (the instance and its peers), one `CiliumBGPPeerConfig` per
//! peer (families, password) and one `CiliumBGPAdvertisement` (the LoadBalancer IPs of
//! Services in BGP pools), tied together by the owner labels.

use gatehouse_api::{Advertisement, ClusterNetwork, IpFamily, LbProvider, Reason, labels};
use serde_json::{Value, json};

use super::child::{Child, ChildKind, Owner};
use super::pool::METALLB_DEFAULT_NAMESPACE;
use super::validate::{Finding, Findings};

/// Name of the one BGP instance in Gatehouse's CiliumBGPClusterConfig.
pub const CILIUM_INSTANCE: &str = "gatehouse";

/// The peering children, and a Stalled finding for each BGP pool nothing announces.
pub fn bgp(network: &ClusterNetwork, owner: &Owner, findings: &mut Findings) -> Vec<Child> {
    let lb = &network.spec.load_balancer;
    let peers = lb.bgp.as_ref().map(|b| b.peers.as_slice()).unwrap_or(&[]);
    let bgp_pools: Vec<&str> = lb
        .pools
        .iter()
        .filter(|p| p.advertisement == Advertisement::BGP)
        .map(|p| p.name.as_str())
        .collect();
    if peers.is_empty() {
        for (i, pool) in lb.pools.iter().enumerate() {
            if pool.advertisement == Advertisement::BGP {
                findings.push(Finding::stalling(
                    Reason::BgpPeerMissing,
                    format!("spec.loadBalancer.pools[{i}].advertisement"),
                    format!(
                        "pool {:?} is announced by BGP but spec.loadBalancer.bgp declares no peer: nothing announces its addresses",
                        pool.name
                    ),
                ));
            }
        }
    }
    let Some(bgp) = &lb.bgp else {
        return Vec::new();
    };
    match lb.provider {
        LbProvider::MetalLB => {
            let ns = lb.namespace.as_deref().unwrap_or(METALLB_DEFAULT_NAMESPACE);
            bgp.peers
                .iter()
                .map(|p| {
                    let mut spec = json!({
                        "myASN": bgp.local_asn,
                        "peerASN": p.asn,
                        "peerAddress": p.address,
                    });
                    if let Some(sel) = &p.node_selector {
                        spec["nodeSelectors"] = json!([sel]);
                    }
                    if let Some(secret) = &p.password_secret_ref {
                        // MetalLB reads the Secret from its own namespace, where the peer is.
                        spec["passwordSecret"] = json!({"name": secret.name, "namespace": ns});
                    }
                    Child::with_spec(ChildKind::BgpPeer, owner.meta(&p.name, Some(ns)), spec)
                })
                .collect()
        }
        LbProvider::Cilium => {
            // The peer configs' advertisement selector: this network's advertisement only.
            let ours = json!({"matchLabels": {
                labels::OWNER_KIND: owner.kind,
                labels::OWNER_NAME: owner.name,
            }});
            let mut spec = json!({"bgpInstances": [{
                "name": CILIUM_INSTANCE,
                "localASN": bgp.local_asn,
                "peers": bgp.peers.iter().map(|p| json!({
                    "name": p.name,
                    "peerAddress": p.address,
                    "peerASN": p.asn,
                    "peerConfigRef": {"name": p.name},
                })).collect::<Vec<Value>>(),
            }]});
            // Validation made every peer's selector the same; Cilium has one per instance.
            if let Some(sel) = bgp.peers.first().and_then(|p| p.node_selector.as_ref()) {
                spec["nodeSelector"] = json!(sel);
            }
            let mut out = vec![Child::with_spec(
                ChildKind::CiliumBgpClusterConfig,
                owner.meta(&owner.name, None),
                spec,
            )];
            for p in &bgp.peers {
                let families: Vec<Value> = network
                    .spec
                    .ip_families
                    .iter()
                    .map(|f| {
                        let afi = match f {
                            IpFamily::IPv4 => "ipv4",
                            IpFamily::IPv6 => "ipv6",
                        };
                        json!({"afi": afi, "safi": "unicast", "advertisements": ours})
                    })
                    .collect();
                let mut spec = json!({"families": families});
                if let Some(secret) = &p.password_secret_ref {
                    spec["authSecretRef"] = json!(secret.name);
                }
                out.push(Child::with_spec(
                    ChildKind::CiliumBgpPeerConfig,
                    owner.meta(&p.name, None),
                    spec,
                ));
            }
            // Without a BGP pool there is nothing to advertise (and `In []` is invalid).
            if !bgp_pools.is_empty() {
                out.push(Child::with_spec(
                    ChildKind::CiliumBgpAdvertisement,
                    owner.meta(&owner.name, None),
                    json!({"advertisements": [{
                        "advertisementType": "Service",
                        "service": {"addresses": ["LoadBalancerIP"]},
                        "selector": {"matchExpressions": [{
                            "key": labels::POOL,
                            "operator": "In",
                            "values": bgp_pools,
                        }]},
                    }]}),
                ));
            }
            out
        }
        // Validation refuses bgp with these providers.
        LbProvider::Hetzner | LbProvider::None => Vec::new(),
    }
}
