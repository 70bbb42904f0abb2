//! `gatehouse diff`, the pure core: from the objects in the files and the live cluster, what
//! applying the files would change. Each Gatehouse object in the files goes through the
//! operator's own steps (validate, render, servable, plan: the code `reconcile` runs), with
//! the live cluster as the render context and as the caches, so the children it reports as
//! created, changed and deleted are exactly the operator's writes and prunes, and the
//! conditions are the ones its validation and plan give.
//!
//! No I/O here: [`Live`] is filled by `diff_cmd` from LIST calls, and the tests build it.

use std::collections::BTreeMap;
use std::sync::Arc;

use gatehouse_api::{ClusterNetwork, EgressPolicy, ExposedApp, ResourceStatus, condition};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde_json::Value;

use crate::input::{Inputs, Origin};
use crate::reconcile::plan::{self, HASH_ANNOTATION, Known, Step};
use crate::reconcile::status::{self, Assessment};
use crate::reconcile::steps::servable_by;
use crate::reconcile::stores::{LiveChild, owner_of};
use crate::render::{self, ChildKey, ChildKind, Context, Finding, Owner};

/// What the live cluster holds, as read by LIST calls.
#[derive(Clone, Debug, Default)]
pub struct Live {
    pub networks: Vec<ClusterNetwork>,
    pub apps: Vec<ExposedApp>,
    pub policies: Vec<EgressPolicy>,
    pub namespaces: Vec<Namespace>,
    /// Every Service (peers, tier addresses, address holders and Service children).
    pub services: Vec<Service>,
    /// The `default/kubernetes` Service's EndpointSlices.
    pub api_server_slices: Vec<EndpointSlice>,
    /// Every object of each child kind the cluster serves other than Service, with
    /// apiVersion and kind set; a kind absent here is not served.
    pub children: BTreeMap<ChildKind, Vec<Value>>,
}

/// One field the operator would write differently: `live` None is a field it adds,
/// `desired` None one it owns now and stops setting (server-side apply removes it).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldChange {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired: Option<Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChildRef {
    pub api_version: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ChildRef {
    fn of((kind, namespace, name): &ChildKey) -> ChildRef {
        ChildRef {
            api_version: kind.api_version(),
            kind: kind.kind().to_string(),
            namespace: namespace.clone(),
            name: name.clone(),
        }
    }

    /// "Kind ns/name", as the operator's messages name a child.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

/// A child the operator would create: its identity and the body it would apply.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Created {
    #[serde(flatten)]
    pub child: ChildRef,
    pub object: Value,
}

/// A child the operator would rewrite, with every field it would change.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Changed {
    #[serde(flatten)]
    pub child: ChildRef,
    pub fields: Vec<FieldChange>,
}

/// What happens to the Gatehouse object itself.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "action")]
pub enum ObjectAction {
    /// Not in the cluster yet.
    Create,
    /// In the cluster with another spec (the fields of `spec` that differ).
    Change { fields: Vec<FieldChange> },
    /// In the cluster with this spec.
    Unchanged,
}

/// A condition the object would get (type, status, reason, message).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Predicted {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

/// Everything the diff says about one Gatehouse object of the files.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectDiff {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    /// The file it came from.
    pub file: String,
    pub object: ObjectAction,
    pub created: Vec<Created>,
    pub changed: Vec<Changed>,
    pub deleted: Vec<ChildRef>,
    /// Desired children the cluster already holds as rendered.
    pub unchanged: usize,
    /// Ready and Stalled, as the operator would set them (children's own readiness, such
    /// as an issued certificate, assumed).
    pub conditions: Vec<Predicted>,
}

impl ObjectDiff {
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }

    pub fn has_changes(&self) -> bool {
        self.object != ObjectAction::Unchanged
            || !self.created.is_empty()
            || !self.changed.is_empty()
            || !self.deleted.is_empty()
    }

    /// The Stalled condition, when it would be True.
    pub fn stalled(&self) -> Option<&Predicted> {
        self.conditions
            .iter()
            .find(|c| c.type_ == condition::STALLED && c.status == "True")
    }
}

/// The whole diff, one entry per Gatehouse object in the files (networks, apps, policies,
/// each in file order).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Diff {
    pub objects: Vec<ObjectDiff>,
}

impl Diff {
    pub fn has_changes(&self) -> bool {
        self.objects.iter().any(ObjectDiff::has_changes)
    }
    pub fn stalled(&self) -> usize {
        self.objects
            .iter()
            .filter(|o| o.stalled().is_some())
            .count()
    }
}

type Key = (String, String);
/// (kind, namespace, name) of a Gatehouse owner, as its children's labels name it.
type OwnerKey = (String, Option<String>, String);

fn key_of<K: ResourceExt>(o: &K) -> Key {
    (o.namespace().unwrap_or_default(), o.name_any())
}

/// The file's object with the identity of the live one it replaces: its uid (the children's
/// ownerReference, so their hash is the one the operator computes) and creation time (the
/// order of host and address claims). An object not in the cluster yet is created after
/// every live one, so it claims after them: `now`.
fn with_identity<K: Resource + Clone>(file: &K, live: Option<&K>, now: Timestamp) -> K {
    let mut out = file.clone();
    let meta = out.meta_mut();
    match live {
        Some(l) => {
            meta.uid = l.meta().uid.clone();
            meta.creation_timestamp = l.meta().creation_timestamp.clone();
            meta.generation = l.meta().generation;
        }
        None => {
            meta.uid = None;
            meta.creation_timestamp = Some(Time(now));
        }
    }
    out
}

/// The render context of the world after the apply: the live cluster, each object of the
/// files replacing the live one of its kind, namespace and name.
fn context(
    inputs: &Inputs,
    live: &Live,
    networks: &[ClusterNetwork],
    apps: &[ExposedApp],
    policies: &[EgressPolicy],
) -> Context {
    let mut ctx = Context::default();
    for n in &live.networks {
        ctx.add_network(n.clone());
    }
    for a in &live.apps {
        ctx.add_app(a.clone());
    }
    for n in &live.namespaces {
        ctx.add_namespace(n.clone());
    }
    for s in &live.services {
        ctx.add_service(s.clone());
    }
    for s in &live.api_server_slices {
        ctx.add_endpoint_slice(s.clone());
    }
    for p in &live.policies {
        ctx.add_object_namespace(&p.namespace().unwrap_or_default());
    }
    // The files' Namespaces, Services and EndpointSlices replace the live ones (input.rs
    // put them in its own context).
    for n in inputs.ctx.namespaces.values() {
        ctx.insert_namespace(n.clone());
    }
    for s in inputs.ctx.services.values() {
        ctx.insert_service(s.clone());
    }
    for s in inputs.ctx.api_server_slices.values() {
        ctx.insert_api_server_slice(s.clone());
    }
    for n in networks {
        ctx.insert_network(Arc::new(n.clone()));
    }
    for a in apps {
        ctx.insert_app(Arc::new(a.clone()));
    }
    for p in policies {
        ctx.add_object_namespace(&p.namespace().unwrap_or_else(|| "default".into()));
    }
    ctx
}

/// Every live child, by key, as the caches would hold it (metadata and content).
fn live_children(live: &Live) -> BTreeMap<ChildKey, LiveChild> {
    let mut out = BTreeMap::new();
    let services = live
        .services
        .iter()
        .filter_map(|s| serde_json::to_value(s).ok())
        .map(|v| (ChildKind::Service, v));
    let others = live
        .children
        .iter()
        .flat_map(|(k, items)| items.iter().map(|v| (*k, v.clone())));
    for (kind, value) in services.chain(others) {
        let Ok(meta) = serde_json::from_value::<ObjectMeta>(value["metadata"].clone()) else {
            continue;
        };
        let namespace = if kind.gvk().4 {
            meta.namespace.clone()
        } else {
            None
        };
        let key = (kind, namespace, meta.name.clone().unwrap_or_default());
        out.insert(
            key,
            LiveChild {
                meta,
                content: Some(value),
            },
        );
    }
    out
}

/// Pure: what applying the files' objects (`inputs`) to the cluster (`live`) would change.
/// `now` is the creation time of objects not in the cluster yet.
pub fn diff(inputs: &Inputs, live: &Live, now: Timestamp) -> Diff {
    let live_networks: BTreeMap<String, &ClusterNetwork> =
        live.networks.iter().map(|n| (n.name_any(), n)).collect();
    let live_apps: BTreeMap<Key, &ExposedApp> = live.apps.iter().map(|a| (key_of(a), a)).collect();
    let live_policies: BTreeMap<Key, &EgressPolicy> =
        live.policies.iter().map(|p| (key_of(p), p)).collect();
    let networks: Vec<ClusterNetwork> = inputs
        .networks
        .iter()
        .map(|(_, n)| with_identity(n, live_networks.get(&n.name_any()).copied(), now))
        .collect();
    let apps: Vec<ExposedApp> = inputs
        .apps
        .iter()
        .map(|(_, a)| with_identity(a, live_apps.get(&key_of(a)).copied(), now))
        .collect();
    let policies: Vec<EgressPolicy> = inputs
        .policies
        .iter()
        .map(|(_, p)| with_identity(p, live_policies.get(&key_of(p)).copied(), now))
        .collect();
    let ctx = context(inputs, live, &networks, &apps, &policies);
    let children = live_children(live);
    // The children of each owner, by their owner labels (what the operator's index keeps).
    let mut owned: BTreeMap<OwnerKey, Vec<ChildKey>> = BTreeMap::new();
    for (k, c) in &children {
        if let Some(o) = owner_of(&c.meta) {
            owned.entry(o).or_default().push(k.clone());
        }
    }
    let world = World {
        children: &children,
        owned: &owned,
        served: &|kind: ChildKind| kind == ChildKind::Service || live.children.contains_key(&kind),
        now: &now,
    };
    let mut out = Diff::default();
    for ((origin, _), n) in inputs.networks.iter().zip(&networks) {
        let rendered = render::validate::cluster_network(n, &ctx)
            .map(|valid| render::cluster_network(&valid, &ctx));
        let before = live_networks.get(&n.name_any()).copied();
        out.objects
            .push(object_diff(origin, n, before, rendered, &world));
    }
    for ((origin, _), a) in inputs.apps.iter().zip(&apps) {
        let rendered =
            render::validate::exposed_app(a, &ctx).map(|valid| render::exposed_app(&valid, &ctx));
        let before = live_apps.get(&key_of(a)).copied();
        out.objects
            .push(object_diff(origin, a, before, rendered, &world));
    }
    for ((origin, _), p) in inputs.policies.iter().zip(&policies) {
        let rendered = render::validate::egress_policy(p, &ctx)
            .map(|valid| render::egress_policy(&valid, &ctx));
        let before = live_policies.get(&key_of(p)).copied();
        out.objects
            .push(object_diff(origin, p, before, rendered, &world));
    }
    out
}

/// An object's spec as JSON: typed on both sides, so the schema's defaults are the same in
/// the file's object and the live one.
fn spec_of<K: Serialize>(obj: &K) -> Value {
    let v = serde_json::to_value(obj).unwrap_or_default();
    serde_json::json!({"spec": v["spec"]})
}

/// What every object's diff reads: the live children, each owner's children, which kinds
/// the cluster serves, and the time conditions are stamped with.
struct World<'a> {
    children: &'a BTreeMap<ChildKey, LiveChild>,
    owned: &'a BTreeMap<OwnerKey, Vec<ChildKey>>,
    served: &'a dyn Fn(ChildKind) -> bool,
    now: &'a Timestamp,
}

/// One object of the files against its live version (`before`, None when it is new).
fn object_diff<K: Resource<DynamicType = ()> + Serialize>(
    origin: &Origin,
    obj: &K,
    before: Option<&K>,
    rendered: Result<render::Rendered, render::Findings>,
    world: &World<'_>,
) -> ObjectDiff {
    let World {
        children: live,
        owned,
        served,
        now,
    } = world;
    let owner = Owner::of(obj);
    let object = match before {
        None => ObjectAction::Create,
        Some(l) => {
            let fields = field_changes(&spec_of(l), &spec_of(obj), None);
            if fields.is_empty() {
                ObjectAction::Unchanged
            } else {
                ObjectAction::Change { fields }
            }
        }
    };
    let mut a = Assessment::default();
    let (mut created, mut changed, mut deleted, mut unchanged) = (vec![], vec![], vec![], 0);
    // A blocked object renders nothing, and the operator prunes nothing for it either (it
    // keeps what it had until the spec is fixed): only the conditions change.
    match rendered {
        Err(blocking) => a.blocking = blocking.0,
        Ok(rendered) => {
            let mut findings: Vec<Finding> = rendered.findings.0;
            let desired = servable_by(rendered.children, served, &mut findings);
            let owned = owned.get(&owner.key()).cloned().unwrap_or_default();
            let p = plan::plan(
                &owner,
                &desired,
                |c| Known {
                    live: live.get(&c.key()).cloned(),
                    verified: None,
                },
                owned,
            );
            for planned in &p.children {
                let key = planned.child.key();
                match &planned.step {
                    Step::Write(body) => match live.get(&key).and_then(|l| l.content.as_ref()) {
                        None => created.push(Created {
                            child: ChildRef::of(&key),
                            object: body.clone(),
                        }),
                        Some(content) => changed.push(Changed {
                            child: ChildRef::of(&key),
                            fields: child_changes(content, body),
                        }),
                    },
                    // Every live child comes with its content, so no step waits on a read.
                    Step::Unchanged { .. } | Step::Verify(_) => unchanged += 1,
                    Step::Conflict(message) => a.conflicts.push(message.clone()),
                }
            }
            deleted = p.delete.iter().map(ChildRef::of).collect();
            a.resources = p
                .children
                .iter()
                .filter(|c| !matches!(c.step, Step::Conflict(_)))
                .map(|c| ResourceStatus {
                    api_version: c.child.kind.api_version(),
                    kind: c.child.kind.kind().to_string(),
                    name: c.child.name.clone(),
                    namespace: c.child.namespace.clone(),
                    ready: true,
                    message: None,
                })
                .collect();
            a.findings = findings;
        }
    }
    let conditions = status::conditions(&a, obj.meta().generation, &[], &Time(**now))
        .into_iter()
        .filter(|c| c.type_ == condition::READY || c.type_ == condition::STALLED)
        .map(|c| Predicted {
            type_: c.type_,
            status: c.status,
            reason: c.reason,
            message: c.message,
        })
        .collect();
    ObjectDiff {
        kind: owner.kind.to_string(),
        namespace: owner.namespace.clone(),
        name: owner.name.clone(),
        file: origin.file.clone(),
        object,
        created,
        changed,
        deleted,
        unchanged,
        conditions,
    }
}

/// The fields of a live child the operator's apply of `body` would change: what it sends
/// that differs, and what it owns (managedFields of its field manager) and no longer sends.
/// The desired-hash annotation is left out unless it is the only change (then the content is
/// the same, but the operator still writes, e.g. after an upgrade that renders differently).
pub fn child_changes(live: &Value, body: &Value) -> Vec<FieldChange> {
    let owned = live["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| {
            f["manager"] == gatehouse_api::labels::FIELD_MANAGER
                && f["operation"] == "Apply"
                && f["subresource"].is_null()
        })
        .map(|f| &f["fieldsV1"]);
    let all = field_changes(live, body, owned);
    let hash = format!("metadata.annotations[{HASH_ANNOTATION:?}]");
    let (hashes, rest): (Vec<_>, Vec<_>) = all.into_iter().partition(|c| c.path == hash);
    if rest.is_empty() { hashes } else { rest }
}

/// Every field in which `live` does not hold `desired` (as `plan::contains` compares:
/// server-set fields beside the desired ones do not count), plus, with the field manager's
/// `owned` fields (managedFields fieldsV1), those it owns and `desired` no longer has.
pub fn field_changes(live: &Value, desired: &Value, owned: Option<&Value>) -> Vec<FieldChange> {
    let mut out = Vec::new();
    walk("", Some(live), desired, &mut out);
    if let Some(owned) = owned {
        removed("", owned, live, Some(desired), &mut out);
    }
    out
}

fn join(path: &str, key: &str) -> String {
    let plain = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match (path.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{key:?}]"),
    }
}

fn walk(path: &str, live: Option<&Value>, desired: &Value, out: &mut Vec<FieldChange>) {
    if plan::contains(live, desired) {
        return;
    }
    match (live, desired) {
        (Some(Value::Object(l)), Value::Object(d)) => {
            for (k, v) in d {
                walk(&join(path, k), l.get(k), v, out);
            }
        }
        // Entry by entry: what the apply makes of the list (the operator owns the lists it
        // writes), with entries past the shorter end added or removed.
        (Some(Value::Array(l)), Value::Array(d)) => {
            for i in 0..l.len().max(d.len()) {
                let here = format!("{path}[{i}]");
                match (l.get(i), d.get(i)) {
                    (lv, Some(dv)) => walk(&here, lv, dv, out),
                    (Some(lv), None) => out.push(FieldChange {
                        path: here,
                        live: Some(lv.clone()),
                        desired: None,
                    }),
                    (None, None) => {}
                }
            }
        }
        _ => out.push(FieldChange {
            path: path.to_string(),
            live: live.filter(|l| !l.is_null()).cloned(),
            desired: Some(desired.clone()),
        }),
    }
}

/// Fields in `owned` (a fieldsV1 set: `f:<name>` members, `k:`/`v:`/`i:` list entries) that
/// `live` has and `desired` does not. Lists are compared whole by [`walk`], so their entries
/// are not descended into.
fn removed(
    path: &str,
    owned: &Value,
    live: &Value,
    desired: Option<&Value>,
    out: &mut Vec<FieldChange>,
) {
    let Some(fields) = owned.as_object() else {
        return;
    };
    for (member, sub) in fields {
        let Some(name) = member.strip_prefix("f:") else {
            continue;
        };
        let Some(l) = live.get(name).filter(|l| !l.is_null()) else {
            continue;
        };
        let here = join(path, name);
        match desired.and_then(|d| d.get(name)).filter(|d| !d.is_null()) {
            None => out.push(FieldChange {
                path: here,
                live: Some(l.clone()),
                desired: None,
            }),
            Some(d) if d.is_object() && l.is_object() => removed(&here, sub, l, Some(d), out),
            Some(_) => {}
        }
    }
}

/// Text output: one block per object, then a summary line. `colour` adds ANSI colours
/// (only when stdout is a terminal).
pub fn format_text(diff: &Diff, colour: bool) -> String {
    let paint = |code: &str, s: String| {
        if colour {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s
        }
    };
    let value = |v: &Option<Value>| match v {
        Some(v) => v.to_string(),
        None => "<absent>".to_string(),
    };
    let fields = |out: &mut String, indent: &str, fs: &[FieldChange]| {
        for f in fs {
            let line = match (&f.live, &f.desired) {
                (None, Some(d)) => format!("{indent}+ {}: {d}", f.path),
                (Some(l), None) => format!("{indent}- {}: {l}", f.path),
                _ => format!(
                    "{indent}~ {}: {} -> {}",
                    f.path,
                    value(&f.live),
                    value(&f.desired)
                ),
            };
            out.push_str(&line);
            out.push('\n');
        }
    };
    let mut out = String::new();
    let (mut created, mut changed, mut deleted) = (0, 0, 0);
    for o in &diff.objects {
        let action = match &o.object {
            ObjectAction::Create => "created",
            ObjectAction::Change { .. } => "changed",
            ObjectAction::Unchanged => "unchanged",
        };
        out.push_str(&format!("{} ({}): {action}\n", o.describe(), o.file));
        if let ObjectAction::Change { fields: fs } = &o.object {
            fields(&mut out, "    ", fs);
        }
        for c in &o.created {
            out.push_str(&paint("32", format!("  + {}", c.child.describe())));
            out.push('\n');
        }
        for c in &o.changed {
            out.push_str(&paint("33", format!("  ~ {}", c.child.describe())));
            out.push('\n');
            fields(&mut out, "      ", &c.fields);
        }
        for c in &o.deleted {
            out.push_str(&paint("31", format!("  - {}", c.describe())));
            out.push('\n');
        }
        if o.unchanged > 0 {
            out.push_str(&format!("  = {} children unchanged\n", o.unchanged));
        }
        for c in &o.conditions {
            let line = format!("  {} {} ({}): {}", c.type_, c.status, c.reason, c.message);
            let stalled = c.type_ == condition::STALLED && c.status == "True";
            out.push_str(&if stalled { paint("31", line) } else { line });
            out.push('\n');
        }
        created += o.created.len();
        changed += o.changed.len();
        deleted += o.deleted.len();
    }
    let objects = diff
        .objects
        .iter()
        .filter(|o| o.object != ObjectAction::Unchanged)
        .count();
    let stalled = diff.stalled();
    if diff.has_changes() {
        out.push_str(&format!(
            "{objects} Gatehouse objects created or changed; children: {created} created, {changed} changed, {deleted} deleted; {stalled} Stalled\n"
        ));
    } else {
        out.push_str(&format!("no changes; {stalled} Stalled\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn typed<T: serde::de::DeserializeOwned>(v: Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    fn network() -> Value {
        json!({
            "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ClusterNetwork",
            "metadata": {"name": "net"},
            "spec": {"ingress": {"external": {"className": "nginx", "namespace": "ingress", "podSelector": {"matchLabels": {"app": "ingress"}}}},
                     "dns": {"external": {"zone": "example.com"}}},
        })
    }

    fn app(ns: &str, name: &str, host: &str, port: i64) -> Value {
        json!({
            "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ExposedApp",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"network": "net", "selector": {"app": name}, "dns": {"enabled": false},
                     "ports": [{"name": "http", "port": port}],
                     "routes": [{"hosts": [host], "paths": [{"path": "/", "port": "http"}], "exposure": "External", "tls": false}]},
        })
    }

    /// The live copy of a Gatehouse object: uid and creation time set by the API server.
    fn stored(mut v: Value, uid: &str, created: &str) -> Value {
        v["metadata"]["uid"] = json!(uid);
        v["metadata"]["creationTimestamp"] = json!(created);
        v["metadata"]["generation"] = json!(1);
        v
    }

    fn inputs(objects: &[Value]) -> Inputs {
        // One directory per call: the tests run in parallel.
        static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("gatehouse-diff-unit-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text: Vec<String> = objects
            .iter()
            .map(|o| yaml_serde::to_string(o).unwrap())
            .collect();
        let file = dir.join("in.yaml");
        std::fs::write(&file, text.join("---\n")).unwrap();
        let out = crate::input::load(&[file]);
        std::fs::remove_dir_all(&dir).unwrap();
        out.unwrap_or_else(|e| panic!("{e:?}"))
    }

    /// What the cluster holds after the operator applied `objects` (live copies with uids):
    /// each child as applied, with a server default and its managedFields.
    fn applied(objects: &[Value]) -> Live {
        let mut live = Live {
            children: ChildKind::ALL
                .iter()
                .filter(|k| **k != ChildKind::Service)
                .map(|k| (*k, vec![]))
                .collect(),
            ..Default::default()
        };
        let mut ctx = Context::default();
        for o in objects {
            match o["kind"].as_str().unwrap() {
                "ClusterNetwork" => {
                    live.networks.push(typed(o.clone()));
                    ctx.add_network(typed(o.clone()));
                }
                "ExposedApp" => {
                    live.apps.push(typed(o.clone()));
                    ctx.add_app(typed(o.clone()));
                }
                _ => unreachable!(),
            }
        }
        let mut children = Vec::new();
        for n in &live.networks {
            children.extend(render::render_cluster_network(n, &ctx).unwrap().children);
        }
        for a in &live.apps {
            children.extend(render::render_exposed_app(a, &ctx).unwrap().children);
        }
        for c in children {
            let hash = plan::stable_hash(&c.object.to_string());
            let mut body = plan::applied_body(&c, &hash);
            body["metadata"]["resourceVersion"] = json!("7");
            body["metadata"]["managedFields"] = json!([{
                "manager": "gatehouse", "operation": "Apply", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {}, "f:annotations": {}}, "f:spec": {}},
            }]);
            if c.kind == ChildKind::Service {
                body["spec"]["clusterIP"] = json!("10.96.0.10");
                live.services.push(typed(body));
            } else {
                live.children.get_mut(&c.kind).unwrap().push(body);
            }
        }
        live
    }

    fn now() -> Timestamp {
        "2026-12-02T12:00:00Z".parse().unwrap()
    }

    /// The files as applied: nothing to do, and every object Ready.
    #[test]
    fn the_applied_files_diff_to_no_changes() {
        let net = stored(network(), "u-net", "2026-01-01T00:00:00Z");
        let web = stored(
            app("shop", "web", "shop.example.com", 80),
            "u-web",
            "2026-01-02T00:00:00Z",
        );
        let live = applied(&[net, web]);
        let d = diff(
            &inputs(&[network(), app("shop", "web", "shop.example.com", 80)]),
            &live,
            now(),
        );
        assert!(!d.has_changes(), "{}", format_text(&d, false));
        assert_eq!(
            format_text(&d, false),
            "ClusterNetwork net (in.yaml): unchanged\n  \
             Ready True (Ready): all 0 children ready\n  \
             Stalled False (Ready): up to date\n\
             ExposedApp shop/web (in.yaml): unchanged\n  \
             = 2 children unchanged\n  \
             Ready True (Ready): all 2 children ready\n  \
             Stalled False (Ready): up to date\n\
             no changes; 0 Stalled\n"
                .replace("(in.yaml)", &format!("({})", d.objects[0].file))
        );
    }

    /// Whole diff in and out: a changed port (field-level: the Service changes, the Ingress
    /// routes by port name and does not), a stale child the operator would prune, a new app
    /// taking a host another namespace holds (HostConflict naming the holder) and a new app
    /// on a network that does not exist.
    #[test]
    fn changes_conflicts_missing_networks_and_prunes_come_out_as_the_operator_would_do_them() {
        let net = stored(network(), "u-net", "2026-01-01T00:00:00Z");
        let web = stored(
            app("shop", "web", "shop.example.com", 80),
            "u-web",
            "2026-01-02T00:00:00Z",
        );
        let holder = stored(
            app("other", "blog", "blog.example.com", 80),
            "u-blog",
            "2026-01-03T00:00:00Z",
        );
        let mut live = applied(&[net, web, holder]);
        // A child of web the render no longer produces (an older route's Ingress).
        let mut stale = live.children[&ChildKind::Ingress][0].clone();
        stale["metadata"]["name"] = json!("web-old");
        live.children
            .get_mut(&ChildKind::Ingress)
            .unwrap()
            .push(stale);
        let mut lost = app("shop", "orphan", "orphan.example.com", 80);
        lost["spec"]["network"] = json!("nope");
        let d = diff(
            &inputs(&[
                app("shop", "web", "shop.example.com", 8080),
                app("shop", "thief", "blog.example.com", 80),
                lost,
            ]),
            &live,
            now(),
        );
        let file = d.objects[0].file.clone();
        let text = format_text(&d, false).replace(&file, "in.yaml");
        assert_eq!(
            text,
            r#"ExposedApp shop/web (in.yaml): changed
    ~ spec.ports[0].port: 80 -> 8080
  ~ Service shop/web
      ~ spec.ports[0].port: 80 -> 8080
      ~ spec.ports[0].targetPort: 80 -> 8080
  - Ingress shop/web-old
  = 1 children unchanged
  Ready True (Ready): all 2 children ready
  Stalled False (Ready): up to date
ExposedApp shop/thief (in.yaml): created
  Ready False (HostConflict): spec.routes[0].hosts[0]: host "blog.example.com" is already claimed by ExposedApp other/blog
  Stalled True (HostConflict): spec.routes[0].hosts[0]: host "blog.example.com" is already claimed by ExposedApp other/blog
ExposedApp shop/orphan (in.yaml): created
  Ready False (NetworkNotFound): spec.network: ClusterNetwork "nope" does not exist
  Stalled True (NetworkNotFound): spec.network: ClusterNetwork "nope" does not exist
3 Gatehouse objects created or changed; children: 0 created, 1 changed, 1 deleted; 2 Stalled
"#
        );
        assert_eq!(d.stalled(), 2);
        // JSON carries the same, with the bodies of created children.
        let j = serde_json::to_value(&d).unwrap();
        assert_eq!(
            j["objects"][0]["changed"][0],
            json!({"apiVersion": "v1", "kind": "Service", "namespace": "shop", "name": "web",
                   "fields": [{"path": "spec.ports[0].port", "live": 80, "desired": 8080},
                              {"path": "spec.ports[0].targetPort", "live": 80, "desired": 8080}]})
        );
        assert_eq!(j["objects"][1]["object"], json!({"action": "create"}));
    }

    /// A new app's children are created with the bodies the operator applies, and a child of
    /// that name someone else holds is a Conflict, not a change.
    #[test]
    fn a_new_app_creates_its_children_and_a_foreign_one_is_a_conflict() {
        let net = stored(network(), "u-net", "2026-01-01T00:00:00Z");
        let mut live = applied(&[net]);
        live.services.push(typed(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "api", "namespace": "shop"},
            "spec": {"ports": [{"port": 80}]},
        })));
        let d = diff(
            &inputs(&[app("shop", "api", "api.example.com", 80)]),
            &live,
            now(),
        );
        let o = &d.objects[0];
        let created: Vec<String> = o.created.iter().map(|c| c.child.describe()).collect();
        assert_eq!(created, ["Ingress shop/api-external"]);
        assert_eq!(
            o.created[0].object["metadata"]["labels"]["gatehouse.dev/owner-name"],
            "api"
        );
        assert!(o.created[0].object["metadata"]["annotations"][HASH_ANNOTATION].is_string());
        let stalled = o.stalled().unwrap();
        assert_eq!(stalled.reason, "Conflict");
        assert_eq!(
            stalled.message,
            "Service shop/api already exists and it is not managed by Gatehouse; it was not modified"
        );
    }

    #[test]
    fn list_entries_and_fields_the_operator_owns_and_stops_setting_are_diffed_one_by_one() {
        let live =
            json!({"metadata": {"annotations": {"a": "1", "b": "2"}}, "spec": {"x": 1, "y": [1]}});
        let desired = json!({"metadata": {"annotations": {"a": "1"}}, "spec": {"x": 2}});
        let owned = json!({"f:metadata": {"f:annotations": {"f:a": {}, "f:b": {}}}, "f:spec": {"f:x": {}, "f:y": {}}});
        assert_eq!(
            field_changes(&live, &desired, Some(&owned)),
            vec![
                FieldChange {
                    path: "spec.x".into(),
                    live: Some(json!(1)),
                    desired: Some(json!(2))
                },
                FieldChange {
                    path: "metadata.annotations.b".into(),
                    live: Some(json!("2")),
                    desired: None
                },
                FieldChange {
                    path: "spec.y".into(),
                    live: Some(json!([1])),
                    desired: None
                },
            ]
        );
    }
}
