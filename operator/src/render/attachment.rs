//! NetworkAttachmentDefinitions (k8s.cni.cncf.io/v1): one per attachment per namespace whose
//! ExposedApps use it, owned by the ClusterNetwork. The CNI config is a JSON string.

use std::collections::BTreeSet;

use gatehouse_api::{
    Attachment, AttachmentMode, AttachmentRoute, AttachmentType, ClusterNetwork, IpamType,
};
use kube::ResourceExt;
use serde_json::{Value, json};

use super::child::{Child, ChildKind, Owner};
use super::context::Context;
use super::ip;

/// The CNI configuration of an attachment, as Multus reads it.
pub fn cni_config(a: &Attachment) -> Value {
    // The name libcni requires (Multus would fill in the NetworkAttachmentDefinition's).
    let mut config = json!({"cniVersion": "0.4.0", "name": a.name, "type": a.kind.as_str()});
    match a.kind {
        AttachmentType::Macvlan | AttachmentType::Ipvlan => {
            config["master"] = json!(a.master);
            let mode = a.mode.unwrap_or(match a.kind {
                AttachmentType::Ipvlan => AttachmentMode::L2,
                _ => AttachmentMode::Bridge,
            });
            config["mode"] = json!(mode.as_str());
        }
        AttachmentType::Bridge => {
            config["bridge"] = json!(a.master);
        }
    }
    let ranges = &a.ipam.ranges;
    config["ipam"] = match a.ipam.kind {
        IpamType::HostLocal => {
            // One range set per range, so a v4 and a v6 range give a dual-stack interface.
            let sets: Vec<Value> = ranges
                .iter()
                .map(|r| json!([range_json(r, "rangeStart", "rangeEnd")]))
                .collect();
            json!({"type": "host-local", "ranges": sets})
        }
        IpamType::Static => json!({"type": "static"}),
        IpamType::Whereabouts => {
            let ip_ranges: Vec<Value> = ranges
                .iter()
                .map(|r| {
                    let mut v = json!({"range": r.subnet});
                    if let Some(s) = &r.range_start {
                        v["range_start"] = json!(s);
                    }
                    if let Some(e) = &r.range_end {
                        v["range_end"] = json!(e);
                    }
                    v
                })
                .collect();
            json!({"type": "whereabouts", "ipRanges": ip_ranges})
        }
    };
    let routes = routes(a);
    if !routes.is_empty() {
        config["ipam"]["routes"] = json!(routes);
    }
    // Capabilities let the pod annotation's `ips` and `mac` reach the plugins: libcni
    // passes a runtimeConfig key only for a capability the config declares, and without
    // `ips` host-local would silently hand out another address than the pinned one.
    let mut caps = serde_json::Map::new();
    if matches!(a.ipam.kind, IpamType::Static | IpamType::HostLocal) {
        caps.insert("ips".into(), json!(true));
    }
    if matches!(a.kind, AttachmentType::Macvlan | AttachmentType::Bridge) {
        caps.insert("mac".into(), json!(true));
    }
    if !caps.is_empty() {
        config["capabilities"] = Value::Object(caps);
    }
    config
}

/// The IPAM routes: each declared route's destination minus its excepts (ip::subtract),
/// via its gateway or the gateway of the attachment's range of that family. Validation
/// made sure every route has one.
pub fn routes(a: &Attachment) -> Vec<Value> {
    let mut out = Vec::new();
    for r in &a.routes {
        let Some(dst) = ip::Block::parse(&r.destination) else {
            continue;
        };
        let Some(gw) = route_gateway(a, r) else {
            continue;
        };
        let except: Vec<ip::Block> = r
            .except
            .iter()
            .filter_map(|e| ip::Block::parse(e))
            .collect();
        for b in ip::subtract(dst, &except) {
            out.push(json!({"dst": b.to_string(), "gw": gw}));
        }
    }
    out
}

/// A route's next hop: its own, else the gateway of a range of the destination's family.
pub fn route_gateway(a: &Attachment, r: &AttachmentRoute) -> Option<String> {
    if let Some(g) = &r.gateway {
        return Some(g.clone());
    }
    let v6 = ip::Block::parse(&r.destination)?.v6;
    a.ipam
        .ranges
        .iter()
        .filter(|x| ip::Block::parse(&x.subnet).is_some_and(|b| b.v6 == v6))
        .find_map(|x| x.gateway.clone())
}

fn range_json(r: &gatehouse_api::IpRange, start: &str, end: &str) -> Value {
    let mut v = json!({"subnet": r.subnet});
    if let Some(s) = &r.range_start {
        v[start] = json!(s);
    }
    if let Some(e) = &r.range_end {
        v[end] = json!(e);
    }
    if let Some(g) = &r.gateway {
        v["gateway"] = json!(g);
    }
    v
}

/// The (namespace, attachment) pairs in use by apps of this network: where its
/// NetworkAttachmentDefinitions are rendered.
pub fn used(network: &ClusterNetwork, ctx: &Context) -> BTreeSet<(String, String)> {
    let name = network.name_any();
    ctx.apps
        .iter()
        .filter(|(_, app)| app.spec.network == name)
        .flat_map(|((ns, _), app)| {
            app.spec
                .attachments
                .iter()
                .map(move |a| (ns.clone(), a.network.clone()))
        })
        .collect()
}

/// The attachments of `network` used by its apps in one namespace (the apps of that
/// namespace only, not every app).
pub fn used_in(network: &ClusterNetwork, namespace: &str, ctx: &Context) -> BTreeSet<String> {
    let name = network.name_any();
    ctx.apps_in(namespace)
        .filter(|app| app.spec.network == name)
        .flat_map(|app| app.spec.attachments.iter().map(|a| a.network.clone()))
        .filter(|a| network.spec.attachments.iter().any(|d| &d.name == a))
        .collect()
}

pub fn attachments(network: &ClusterNetwork, ctx: &Context, owner: &Owner) -> Vec<Child> {
    let used = used(network, ctx);
    let mut out = Vec::new();
    for (ns, attachment) in used {
        let Some(def) = network
            .spec
            .attachments
            .iter()
            .find(|a| a.name == attachment)
        else {
            continue;
        };
        let config = serde_json::to_string(&cni_config(def)).unwrap_or_default();
        out.push(Child::new(
            ChildKind::NetworkAttachmentDefinition,
            owner.meta(attachment, Some(&ns)),
            json!({"spec": {"config": config}}),
        ));
    }
    out
}
