//! Pure planning: from the desired children and what the caches hold, what to do with each
//! child (write, leave unchanged, refuse as a conflict, read first) and which owned
//! children to delete. No I/O: `apply::execute` carries the plan out.

use std::collections::HashSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use super::stores::{LiveChild, owner_matches, owner_of};
use crate::render::{Child, ChildKey, Owner};

/// Annotation holding a hash of the desired object: a changed spec (including a field we
/// stopped setting) shows up in the metadata-only caches without reading the content.
pub const HASH_ANNOTATION: &str = "gatehouse.dev/desired-hash";

/// (resourceVersion, desired hash) at which a child was last written or seen to hold what
/// we desire: a child still at that version needs no second look.
pub type VerifiedAt = (String, String);

/// What the caches know of one desired child.
#[derive(Clone, Debug, Default)]
pub struct Known {
    /// The live object, as cached (None: absent from the cluster, or written moments ago
    /// and not seen by the watch yet).
    pub live: Option<LiveChild>,
    /// Where it was last verified, if anywhere.
    pub verified: Option<VerifiedAt>,
}

/// The step for one desired child.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Absent, or ours and not what we desire: forced server-side apply of this body (the
    /// child with its hash annotation).
    Write(Value),
    /// Ours and holding what we desire; `remember` is a resourceVersion to record as
    /// verified (so the next reconcile needs no comparison).
    Unchanged { remember: Option<String> },
    /// Ours with the desired hash, but someone else also wrote it and its content is not
    /// cached: read it, then [`after_read`] decides (this body is what to compare and write).
    Verify(Value),
    /// An object with the child's name exists and is not ours: never touched.
    Conflict(String),
}

/// What a reconcile does to its children.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan<'a> {
    /// Every desired child, in render order, with its step and desired hash.
    pub children: Vec<Planned<'a>>,
    /// Children the owner has in the cluster that are no longer desired.
    pub delete: Vec<ChildKey>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Planned<'a> {
    pub child: &'a Child,
    pub hash: String,
    pub step: Step,
}

/// What executing a child's step came to (after a `Verify`'s read, Written or Unchanged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Written,
    Conflict(String),
}

pub use crate::render::child::stable_hash;

/// The object as applied: the child with its desired-hash annotation.
pub fn applied_body(child: &Child, hash: &str) -> Value {
    let mut body = child.object.clone();
    body["metadata"]["annotations"][HASH_ANNOTATION] = Value::String(hash.to_string());
    body
}

/// Pure: the plan for `owner`'s `desired` children. `known` says what the caches hold of a
/// desired child; `owned` lists every child the owner has in the cluster (by its labels).
pub fn plan<'a>(
    owner: &Owner,
    desired: &'a [Child],
    known: impl Fn(&Child) -> Known,
    owned: impl IntoIterator<Item = ChildKey>,
) -> Plan<'a> {
    let children: Vec<Planned<'a>> = desired
        .iter()
        .map(|child| {
            let hash = stable_hash(&child.object.to_string());
            let step = step(owner, child, &hash, known(child));
            Planned { child, hash, step }
        })
        .collect();
    let keep: HashSet<ChildKey> = desired.iter().map(Child::key).collect();
    let mut delete: Vec<ChildKey> = owned.into_iter().filter(|k| !keep.contains(k)).collect();
    delete.sort();
    Plan { children, delete }
}

/// The step for one child. The caches hold every object of the child kinds (ours or not)
/// once synced, so a child they do not hold is absent; one of someone else is a conflict;
/// one of ours carrying the desired hash is unchanged if only we wrote it or its cached
/// content holds what we desire.
fn step(owner: &Owner, child: &Child, hash: &str, known: Known) -> Step {
    let verified_at = |rv: Option<&str>| {
        known
            .verified
            .as_ref()
            .is_some_and(|(v, h)| h == hash && rv.is_none_or(|rv| rv == v))
    };
    let Some(live) = known.live.as_ref() else {
        // Written by us moments ago and not seen by the watch yet: what we wrote is what we
        // desire, no second write.
        return if verified_at(None) {
            Step::Unchanged { remember: None }
        } else {
            Step::Write(applied_body(child, hash))
        };
    };
    if !owner_matches(&live.meta, owner) {
        return Step::Conflict(conflict_message(child, &live.meta));
    }
    let live_hash = live
        .meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(HASH_ANNOTATION));
    if live_hash.map(String::as_str) != Some(hash) {
        return Step::Write(applied_body(child, hash));
    }
    let rv = live.meta.resource_version.clone().unwrap_or_default();
    if verified_at(Some(&rv)) {
        return Step::Unchanged { remember: None };
    }
    match &live.content {
        Some(content) => after_read(applied_body(child, hash), Some(content)),
        None if written_only_by_us(&live.meta) => Step::Unchanged { remember: Some(rv) },
        None => Step::Verify(applied_body(child, hash)),
    }
}

/// Pure: the step once the live content of a child is known (from the cache, or read for
/// a `Verify`): unchanged when it holds everything desired, else a write.
pub fn after_read(body: Value, content: Option<&Value>) -> Step {
    match content {
        Some(content) if contains(Some(content), &body) => Step::Unchanged {
            remember: content["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_string),
        },
        _ => Step::Write(body),
    }
}

fn conflict_message(child: &Child, live: &ObjectMeta) -> String {
    let what = describe(child);
    let holder = match owner_of(live) {
        Some((k, ns, n)) => format!(
            "it belongs to {k} {}{n}",
            ns.map(|ns| format!("{ns}/")).unwrap_or_default()
        ),
        None => "it is not managed by Gatehouse".to_string(),
    };
    format!("{what} already exists and {holder}; it was not modified")
}

/// "Kind ns/name" (or "Kind name" for cluster-scoped children), for messages.
pub fn describe(child: &Child) -> String {
    describe_key(&child.key())
}

pub fn describe_key((kind, namespace, name): &ChildKey) -> String {
    match namespace {
        Some(ns) => format!("{} {ns}/{name}", kind.kind()),
        None => format!("{} {name}", kind.kind()),
    }
}

/// Whether only Gatehouse (and controllers writing status) ever wrote this object, by its
/// managedFields: then its content is what we applied, and no GET is needed to know it.
pub fn written_only_by_us(meta: &ObjectMeta) -> bool {
    meta.managed_fields.as_ref().is_some_and(|fields| {
        !fields.is_empty()
            && fields.iter().all(|f| {
                f.manager.as_deref() == Some(gatehouse_api::labels::FIELD_MANAGER)
                    || f.subresource.as_deref() == Some("status")
            })
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::ChildKind;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn owner() -> Owner {
        Owner {
            kind: "ExposedApp",
            name: "web".into(),
            namespace: Some("shop".into()),
            uid: Some("uid-1".into()),
        }
    }

    fn child(kind: ChildKind, name: &str, spec: Value) -> Child {
        Child::with_spec(kind, owner().meta(name, Some("shop")), spec)
    }

    /// The live object as the caches would hold it after our apply of `child` (content
    /// when `with_content`), written by `managers`.
    fn live(child: &Child, rv: &str, managers: &[&str], with_content: bool) -> LiveChild {
        let hash = stable_hash(&child.object.to_string());
        let mut body = applied_body(child, &hash);
        body["metadata"]["resourceVersion"] = json!(rv);
        let mut meta: ObjectMeta = serde_json::from_value(body["metadata"].clone()).unwrap();
        meta.managed_fields = Some(
            managers
                .iter()
                .map(|m| ManagedFieldsEntry {
                    manager: Some(m.to_string()),
                    ..Default::default()
                })
                .collect(),
        );
        LiveChild {
            meta,
            content: with_content.then_some(body),
        }
    }

    fn kinds(plan: &Plan<'_>) -> Vec<(String, &'static str)> {
        plan.children
            .iter()
            .map(|p| {
                let step = match &p.step {
                    Step::Write(_) => "write",
                    Step::Unchanged { .. } => "unchanged",
                    Step::Verify(_) => "verify",
                    Step::Conflict(_) => "conflict",
                };
                (describe(p.child), step)
            })
            .collect()
    }

    /// Whole plan in and out: every case the caches can present, one child each.
    #[test]
    fn plan_writes_what_differs_skips_what_holds_and_never_touches_others() {
        let svc = child(ChildKind::Service, "web", json!({"ports": [{"port": 80}]}));
        let ing = child(ChildKind::Ingress, "web-external", json!({"rules": []}));
        let changed = child(ChildKind::Ingress, "web-internal", json!({"rules": [1]}));
        let theirs = child(ChildKind::Certificate, "web", json!({"dnsNames": ["a"]}));
        let shared = child(
            ChildKind::Service,
            "web-lb",
            json!({"type": "LoadBalancer"}),
        );
        let fresh = child(ChildKind::DnsEndpoint, "web-external", json!({}));
        let just_written = child(ChildKind::NetworkPolicy, "web", json!({}));
        let desired = vec![
            svc.clone(),
            ing.clone(),
            changed.clone(),
            theirs.clone(),
            shared.clone(),
            fresh.clone(),
            just_written.clone(),
        ];
        let mut known: BTreeMap<ChildKey, Known> = BTreeMap::new();
        // Cached with content that holds the desired (plus server defaults).
        let mut svc_live = live(&svc, "10", &["gatehouse", "kube-controller-manager"], true);
        svc_live.content.as_mut().unwrap()["spec"]["clusterIP"] = json!("10.96.0.7");
        known.insert(
            svc.key(),
            Known {
                live: Some(svc_live),
                verified: None,
            },
        );
        // Metadata only, written only by us.
        known.insert(
            ing.key(),
            Known {
                live: Some(live(&ing, "11", &["gatehouse"], false)),
                verified: None,
            },
        );
        // Metadata only, an older hash: the spec changed.
        let mut old = live(&changed, "12", &["gatehouse"], false);
        old.meta
            .annotations
            .as_mut()
            .unwrap()
            .insert(HASH_ANNOTATION.into(), "0000000000000000".into());
        known.insert(
            changed.key(),
            Known {
                live: Some(old),
                verified: None,
            },
        );
        // Someone else's object with the child's name.
        let mut foreign = live(&theirs, "13", &["kubectl"], true);
        foreign.meta.labels = None;
        known.insert(
            theirs.key(),
            Known {
                live: Some(foreign),
                verified: None,
            },
        );
        // Ours, also written by someone else, content not cached: read first.
        let mut shared_live = live(&shared, "14", &["gatehouse", "kubectl-edit"], false);
        shared_live.content = None;
        known.insert(
            shared.key(),
            Known {
                live: Some(shared_live),
                verified: None,
            },
        );
        // Written by us moments ago, not cached yet.
        let jw_hash = stable_hash(&just_written.object.to_string());
        known.insert(
            just_written.key(),
            Known {
                live: None,
                verified: Some(("20".into(), jw_hash)),
            },
        );
        let owned = vec![
            svc.key(),
            ing.key(),
            (ChildKind::Ingress, Some("shop".into()), "web-old".into()),
            (
                ChildKind::DnsEndpoint,
                Some("shop".into()),
                "web-internal".into(),
            ),
        ];
        let plan = plan(
            &owner(),
            &desired,
            |c| known.get(&c.key()).cloned().unwrap_or_default(),
            owned,
        );
        assert_eq!(
            kinds(&plan),
            [
                ("Service shop/web".to_string(), "unchanged"),
                ("Ingress shop/web-external".to_string(), "unchanged"),
                ("Ingress shop/web-internal".to_string(), "write"),
                ("Certificate shop/web".to_string(), "conflict"),
                ("Service shop/web-lb".to_string(), "verify"),
                ("DNSEndpoint shop/web-external".to_string(), "write"),
                ("NetworkPolicy shop/web".to_string(), "unchanged"),
            ]
        );
        assert_eq!(
            plan.delete,
            [
                (ChildKind::Ingress, Some("shop".into()), "web-old".into()),
                (
                    ChildKind::DnsEndpoint,
                    Some("shop".into()),
                    "web-internal".into()
                ),
            ],
            "owned and no longer desired; desired ones are kept"
        );
        // What is recorded as verified, and what is written.
        assert_eq!(
            plan.children[0].step,
            Step::Unchanged {
                remember: Some("10".into())
            }
        );
        assert_eq!(
            plan.children[1].step,
            Step::Unchanged {
                remember: Some("11".into())
            }
        );
        let Step::Write(body) = &plan.children[2].step else {
            unreachable!()
        };
        assert_eq!(
            body["metadata"]["annotations"][HASH_ANNOTATION],
            json!(plan.children[2].hash)
        );
        assert_eq!(body["spec"], changed.object["spec"]);
        let Step::Conflict(message) = &plan.children[3].step else {
            unreachable!()
        };
        assert_eq!(
            message,
            "Certificate shop/web already exists and it is not managed by Gatehouse; it was not modified"
        );
    }

    #[test]
    fn a_child_verified_at_its_live_version_needs_no_look_at_all() {
        let svc = child(ChildKind::Service, "web", json!({"ports": [{"port": 80}]}));
        let hash = stable_hash(&svc.object.to_string());
        // Content that would not match: the verified version short-cuts the comparison.
        let mut cached = live(&svc, "10", &["gatehouse", "someone"], true);
        cached.content = Some(json!({}));
        let known = Known {
            live: Some(cached),
            verified: Some(("10".into(), hash.clone())),
        };
        let desired = [svc.clone()];
        let p = plan(&owner(), &desired, |_| known.clone(), []);
        assert_eq!(p.children[0].step, Step::Unchanged { remember: None });
        // A newer version than verified: compared again, and written as it differs.
        let known = Known {
            verified: Some(("9".into(), hash)),
            ..known
        };
        let p = plan(&owner(), &desired, |_| known.clone(), []);
        assert!(matches!(p.children[0].step, Step::Write(_)));
    }

    #[test]
    fn after_a_read_the_content_decides() {
        let svc = child(ChildKind::Service, "web", json!({"ports": [{"port": 80}]}));
        let body = applied_body(&svc, "h");
        let mut same = body.clone();
        same["metadata"]["resourceVersion"] = json!("7");
        same["spec"]["clusterIP"] = json!("10.96.0.9");
        assert_eq!(
            after_read(body.clone(), Some(&same)),
            Step::Unchanged {
                remember: Some("7".into())
            }
        );
        let mut edited = same.clone();
        edited["spec"]["ports"][0]["port"] = json!(81);
        assert_eq!(
            after_read(body.clone(), Some(&edited)),
            Step::Write(body.clone())
        );
        assert_eq!(
            after_read(body.clone(), None),
            Step::Write(body),
            "gone meanwhile"
        );
    }

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
