//! Executing a plan (plan.rs): forced server-side apply of each child the plan writes, a
//! read for each it must verify, a delete for each owned child no longer desired. Every
//! decision was made by the pure plan; this module only talks to the API server and keeps
//! the verified-versions map current.

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};

use super::Shared;
use super::plan::{Outcome, Plan, Step, after_read, describe, describe_key};
use crate::error::{Error, Result};
use crate::render::{Child, ChildKind};

pub use crate::render::ChildKey;

/// child -> (resourceVersion, desired hash) at which it was last written or seen to hold
/// what we desire.
pub type Verified = std::collections::HashMap<ChildKey, super::plan::VerifiedAt>;

pub fn api(shared: &Shared, kind: ChildKind, namespace: Option<&str>) -> Api<DynamicObject> {
    let ar = super::api_resource(kind);
    match namespace {
        Some(ns) => Api::namespaced_with(shared.client.clone(), ns, &ar),
        None => Api::all_with(shared.client.clone(), &ar),
    }
}

fn remember(shared: &Shared, key: ChildKey, rv: String, hash: String) {
    shared
        .verified
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, (rv, hash));
}

/// What executing a plan came to.
#[derive(Debug, Default)]
pub struct Executed<'a> {
    /// What came of each desired child, in plan order.
    pub outcomes: Vec<(&'a Child, Outcome)>,
    /// Children this run deleted (not those already gone).
    pub pruned: Vec<ChildKey>,
}

/// Carries out `plan`. Deletes run after the writes, so a renamed child exists before its
/// predecessor goes.
pub async fn execute<'a>(shared: &Shared, plan: Plan<'a>) -> Result<Executed<'a>> {
    let mut outcomes = Vec::with_capacity(plan.children.len());
    for planned in plan.children {
        let child = planned.child;
        let step = match planned.step {
            Step::Verify(body) => {
                let what = describe(child);
                let live = api(shared, child.kind, child.namespace())
                    .get_opt(child.name())
                    .await
                    .map_err(|source| Error::Read { what, source })?
                    .and_then(|o| serde_json::to_value(&o).ok());
                after_read(body, live.as_ref())
            }
            other => other,
        };
        let outcome = match step {
            Step::Conflict(message) => Outcome::Conflict(message),
            Step::Unchanged { remember: rv } => {
                if let Some(rv) = rv {
                    remember(shared, child.key(), rv, planned.hash);
                }
                Outcome::Unchanged
            }
            Step::Write(body) => {
                write(shared, child, &body, planned.hash).await?;
                Outcome::Written
            }
            Step::Verify(_) => unreachable!("after_read never asks for another read"),
        };
        outcomes.push((child, outcome));
    }
    let mut pruned = Vec::new();
    for key in plan.delete {
        if delete(shared, &key).await? {
            pruned.push(key);
        }
    }
    forget_gone(shared);
    Ok(Executed { outcomes, pruned })
}

async fn write(
    shared: &Shared,
    child: &Child,
    body: &serde_json::Value,
    hash: String,
) -> Result<()> {
    let params = PatchParams::apply(gatehouse_api::labels::FIELD_MANAGER).force();
    let written = api(shared, child.kind, child.namespace())
        .patch(child.name(), &params, &Patch::Apply(body))
        .await
        .map_err(|source| Error::Apply {
            what: describe(child),
            source,
        })?;
    if let Some(rv) = written.metadata.resource_version {
        remember(shared, child.key(), rv, hash);
    }
    Ok(())
}

/// Deletes one child; false when it was gone already.
async fn delete(shared: &Shared, key: &ChildKey) -> Result<bool> {
    let (kind, namespace, name) = key;
    let deleted = match api(shared, *kind, namespace.as_deref())
        .delete(name, &DeleteParams::background())
        .await
    {
        Ok(_) => true,
        Err(kube::Error::Api(e)) if e.code == 404 => false,
        Err(source) => {
            return Err(Error::Prune {
                what: describe_key(key),
                source,
            });
        }
    };
    shared
        .verified
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(key);
    Ok(deleted)
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
