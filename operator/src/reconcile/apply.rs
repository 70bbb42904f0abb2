//! Writing children: forced server-side apply of the fully specified object, only when the
//! live child differs from what is desired, never to an object Gatehouse does not own; and
//! pruning children that are no longer desired.

use std::collections::HashSet;

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::Value;

use super::Shared;
use super::stores::owner_matches;
use crate::error::{Error, Result};
use crate::render::{Child, ChildKind, Owner};

/// Annotation holding a hash of the desired object: a changed spec (including a field we
/// stopped setting) shows up in the metadata-only caches without reading the content.
pub const HASH_ANNOTATION: &str = "gatehouse.dev/desired-hash";

/// What happened to one desired child.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    Unchanged,
    Written,
    /// An object with the child's name exists and is not ours: not touched.
    Conflict(String),
}

pub type ChildKey = (ChildKind, Option<String>, String);

/// child -> (resourceVersion, desired hash) at which it was last written or seen to hold
/// what we desire.
pub type Verified = std::collections::HashMap<ChildKey, (String, String)>;

pub fn key_of(child: &Child) -> ChildKey {
    (
        child.kind,
        child.namespace().map(str::to_string),
        child.name().to_string(),
    )
}

/// FNV-1a: stable across builds and Rust versions, unlike `DefaultHasher`, so an operator
/// upgrade does not rewrite every child.
pub fn stable_hash(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Whether every field of `desired` has the same value in `live`. Empty lists, maps and
/// nulls in `desired` also match an absent field, because the API server drops them.
pub fn contains(live: Option<&Value>, desired: &Value) -> bool {
    match (live, desired) {
        (None, Value::Null) => true,
        (None, Value::Array(a)) => a.is_empty(),
        (None, Value::Object(m)) => m.is_empty(),
        (None, _) => false,
        (Some(Value::Object(l)), Value::Object(d)) => d.iter().all(|(k, v)| contains(l.get(k), v)),
        (Some(Value::Array(l)), Value::Array(d)) => {
            l.len() == d.len() && l.iter().zip(d).all(|(lv, dv)| contains(Some(lv), dv))
        }
        (Some(l), d) => l == d,
    }
}

/// The first path at which `live` does not contain `desired` (for diagnostics).
pub fn first_difference(live: Option<&Value>, desired: &Value, path: &str) -> Option<String> {
    match (live, desired) {
        (Some(Value::Object(l)), Value::Object(d)) => d
            .iter()
            .find_map(|(k, v)| first_difference(l.get(k), v, &format!("{path}.{k}"))),
        (Some(Value::Array(l)), Value::Array(d)) if l.len() == d.len() => l
            .iter()
            .zip(d)
            .enumerate()
            .find_map(|(i, (lv, dv))| first_difference(Some(lv), dv, &format!("{path}[{i}]"))),
        _ if contains(live, desired) => None,
        _ => Some(format!(
            "{path}: live {} vs desired {desired}",
            live.map(ToString::to_string).unwrap_or("<absent>".into())
        )),
    }
}

pub fn api(shared: &Shared, kind: ChildKind, namespace: Option<&str>) -> Api<DynamicObject> {
    let ar = super::api_resource(kind);
    match namespace {
        Some(ns) => Api::namespaced_with(shared.client.clone(), ns, &ar),
        None => Api::all_with(shared.client.clone(), &ar),
    }
}

fn describe(kind: ChildKind, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{} {ns}/{name}", kind.kind()),
        None => format!("{} {name}", kind.kind()),
    }
}

/// Whether only Gatehouse (and controllers writing status) ever wrote this object, by its
/// managedFields: then its content is what we applied, and no GET is needed to know it.
pub fn written_only_by_us(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> bool {
    meta.managed_fields.as_ref().is_some_and(|fields| {
        !fields.is_empty()
            && fields.iter().all(|f| {
                f.manager.as_deref() == Some(gatehouse_api::labels::FIELD_MANAGER)
                    || f.subresource.as_deref() == Some("status")
            })
    })
}

/// Makes one child true. Reads come from the caches, which hold every object of the child
/// kinds (ours or not) once synced: a child they do not hold is absent, one of someone else
/// is a conflict, and one of ours carrying the desired hash is unchanged if only we wrote
/// it or its content (where cached) holds what we desire. A GET happens only for a child
/// of ours that someone else also wrote and whose content the caches do not hold.
pub async fn ensure(shared: &Shared, owner: &Owner, child: &Child) -> Result<Applied> {
    let (kind, namespace, name) = key_of(child);
    let what = describe(kind, namespace.as_deref(), &name);
    let hash = stable_hash(&child.object.to_string());
    let mut desired = child.object.clone();
    desired["metadata"]["annotations"][HASH_ANNOTATION] = Value::String(hash.clone());
    let api = api(shared, kind, namespace.as_deref());
    let key = (kind, namespace.clone(), name.clone());

    let live = shared.stores.child(kind, namespace.as_deref(), &name);
    if live.is_none() {
        // Written by us moments ago and not seen by the watch yet: what we wrote is what
        // we desire, no second write.
        let verified = shared.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.get(&key).is_some_and(|(_, h)| *h == hash) {
            return Ok(Applied::Unchanged);
        }
    }
    if let Some(live) = &live {
        if !owner_matches(&live.meta, owner) {
            let holder = match super::stores::owner_of(&live.meta) {
                Some((k, ns, n)) => format!(
                    "it belongs to {k} {}{n}",
                    ns.map(|ns| format!("{ns}/")).unwrap_or_default()
                ),
                None => "it is not managed by Gatehouse".to_string(),
            };
            return Ok(Applied::Conflict(format!(
                "{what} already exists and {holder}; it was not modified"
            )));
        }
        let live_hash = live
            .meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(HASH_ANNOTATION));
        if live_hash == Some(&hash) {
            let rv = live.meta.resource_version.clone().unwrap_or_default();
            let remember = |rv: String| {
                shared
                    .verified
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key.clone(), (rv, hash.clone()));
            };
            if shared
                .verified
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
                .is_some_and(|(v, h)| *v == rv && *h == hash)
            {
                return Ok(Applied::Unchanged);
            }
            let content = match &live.content {
                Some(c) => Some(c.clone()),
                None if written_only_by_us(&live.meta) => {
                    remember(rv);
                    return Ok(Applied::Unchanged);
                }
                None => api
                    .get_opt(&name)
                    .await
                    .map_err(|source| Error::Read {
                        what: what.clone(),
                        source,
                    })?
                    .and_then(|o| serde_json::to_value(&o).ok()),
            };
            if let Some(content) = content
                && contains(Some(&content), &desired)
            {
                if let Some(rv) = content["metadata"]["resourceVersion"].as_str() {
                    remember(rv.to_string());
                }
                return Ok(Applied::Unchanged);
            }
        }
    }
    let params = PatchParams::apply(gatehouse_api::labels::FIELD_MANAGER).force();
    let written = api
        .patch(&name, &params, &Patch::Apply(&desired))
        .await
        .map_err(|source| Error::Apply {
            what: what.clone(),
            source,
        })?;
    if let Some(rv) = written.metadata.resource_version {
        shared
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (rv, hash));
    }
    Ok(Applied::Written)
}

/// Keeps the verified-versions map bounded: when it holds more than twice the children the
/// caches know, entries of children that no longer exist (garbage-collected with a deleted
/// owner, deleted by hand) are dropped.
pub fn forget_gone(shared: &Shared) {
    // Store sizes only (no scan): an upper bound of the children that can exist.
    let s = &shared.stores;
    let known = s.services.len()
        + s.children.values().map(|c| c.len()).sum::<usize>()
        + s.full_children.values().map(|c| c.len()).sum::<usize>();
    let mut verified = shared.verified.lock().unwrap_or_else(|e| e.into_inner());
    if verified.len() > 2 * known + 64 {
        verified.retain(|(kind, ns, name), _| {
            shared.stores.child(*kind, ns.as_deref(), name).is_some()
        });
    }
}

/// Deletes every cached child of `owner` that is not in `keep`. Returns how many.
pub async fn prune(shared: &Shared, owner: &Owner, keep: &HashSet<ChildKey>) -> Result<usize> {
    let mut deleted = 0;
    let owned = shared
        .index
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .children_of(&owner.key());
    for (kind, namespace, name) in owned {
        let key = (kind, namespace.clone(), name.clone());
        if keep.contains(&key) {
            continue;
        }
        let what = describe(kind, namespace.as_deref(), &name);
        match api(shared, kind, namespace.as_deref())
            .delete(&name, &DeleteParams::background())
            .await
        {
            Ok(_) => deleted += 1,
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(source) => return Err(Error::Prune { what, source }),
        }
        shared
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn contains_ignores_server_defaults_and_dropped_empties() {
        let live = json!({"spec": {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}], "clusterIP": "10.96.0.5"}});
        let desired = json!({"spec": {"ports": [{"port": 80, "targetPort": 80}], "ingress": []}});
        assert!(contains(Some(&live), &desired));
    }

    #[test]
    fn contains_sees_changed_values_and_list_lengths() {
        let live = json!({"spec": {"ports": [{"port": 80}]}});
        assert!(!contains(
            Some(&live),
            &json!({"spec": {"ports": [{"port": 81}]}})
        ));
        assert!(!contains(
            Some(&live),
            &json!({"spec": {"ports": [{"port": 80}, {"port": 81}]}})
        ));
        assert!(!contains(
            Some(&live),
            &json!({"spec": {"type": "LoadBalancer"}})
        ));
    }

    #[test]
    fn hash_is_stable() {
        assert_eq!(stable_hash("gatehouse"), stable_hash("gatehouse"));
        assert_ne!(stable_hash("a"), stable_hash("b"));
        assert_eq!(stable_hash(""), "cbf29ce484222325");
    }
}
