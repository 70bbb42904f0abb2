//! Events that tell `kubectl describe` what the operator did to an object's children: one
//! `Applied` Event per reconcile that created or changed children, one `Pruned` Event per
//! reconcile that deleted some, naming them. Stalled reasons have their own Events
//! (`steps::publish_stalled`).
//!
//! Rate-limited, because every Event is a write to the API server: a reconcile that writes
//! nothing (every resync of an unchanged object) publishes nothing, each object may publish
//! a burst of [`PER_OBJECT_BURST`] and then one per [`PER_OBJECT_REFILL`], and the whole
//! operator [`GLOBAL_BURST`] and then [`GLOBAL_PER_SECOND`] a second (a rollout of thousands
//! of apps must not double its writes). What a limit holds back is counted and reported in
//! the object's next Event.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use gatehouse_api::Reason;
use kube::Resource;
use kube::runtime::events::{Event, EventType};

use super::apply::Executed;
use super::plan::{Outcome, describe_key};
use super::{ObjectKey, Shared};
use crate::render::Owner;

pub const PER_OBJECT_BURST: f64 = 3.0;
pub const PER_OBJECT_REFILL: Duration = Duration::from_secs(60);
pub const GLOBAL_BURST: f64 = 100.0;
pub const GLOBAL_PER_SECOND: f64 = 10.0;

/// The API server refuses an Event whose note exceeds 1 kB.
const NOTE_LIMIT: usize = 1024;

/// What one reconcile changed, as Events would say it (pure).
pub fn notes(executed: &Executed<'_>) -> Vec<(Reason, String)> {
    let applied: Vec<String> = executed
        .outcomes
        .iter()
        .filter(|(_, o)| *o == Outcome::Written)
        .map(|(c, _)| describe_key(&c.key()))
        .collect();
    let pruned: Vec<String> = executed.pruned.iter().map(describe_key).collect();
    [
        (Reason::Applied, "applied", applied),
        (Reason::Pruned, "deleted", pruned),
    ]
    .into_iter()
    .filter(|(_, _, names)| !names.is_empty())
    .map(|(reason, verb, names)| (reason, note(verb, &names)))
    .collect()
}

/// "applied 2 children: Service shop/web, NetworkPolicy shop/web-ingress", cut to the
/// API server's limit with "and N more".
fn note(verb: &str, names: &[String]) -> String {
    let head = format!(
        "{verb} {} child{}: ",
        names.len(),
        if names.len() == 1 { "" } else { "ren" }
    );
    let mut out = head;
    for (i, name) in names.iter().enumerate() {
        let rest = names.len() - i;
        // Room for this name and, if more follow, the longest possible tail.
        let tail = format!(" and {} more", rest);
        let sep = if i == 0 { "" } else { ", " };
        if out.len() + sep.len() + name.len() + tail.len() > NOTE_LIMIT {
            out.push_str(&tail);
            return out;
        }
        out.push_str(sep);
        out.push_str(name);
    }
    out
}

/// A token bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, burst: f64, per_second: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_second).min(burst);
        self.at = now;
    }
}

#[derive(Debug)]
struct PerObject {
    bucket: Bucket,
    /// Events held back since the last one published.
    suppressed: u32,
}

/// The operator's Event budget: per object and overall. Memory is bounded by the objects
/// that published recently: an entry whose bucket has refilled and holds nothing back is
/// the same as no entry, and such entries are dropped when the map grows.
#[derive(Debug)]
pub struct Limiter {
    objects: HashMap<ObjectKey, PerObject>,
    global: Bucket,
    /// The map size at which the next sweep runs (doubles with what survives a sweep, so
    /// sweeping costs O(1) amortized per Event).
    sweep_at: usize,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new(Instant::now())
    }
}

/// What the limiter allows.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Publish, mentioning how many Events of this object were held back before.
    Publish {
        held_back: u32,
    },
    Hold,
}

impl Limiter {
    pub fn new(now: Instant) -> Limiter {
        Limiter {
            objects: HashMap::new(),
            global: Bucket::full(GLOBAL_BURST, now),
            sweep_at: 1024,
        }
    }

    pub fn admit(&mut self, key: &ObjectKey, now: Instant) -> Admit {
        let per_second = 1.0 / PER_OBJECT_REFILL.as_secs_f64();
        self.global.refill(GLOBAL_BURST, GLOBAL_PER_SECOND, now);
        let entry = self.objects.entry(key.clone()).or_insert(PerObject {
            bucket: Bucket::full(PER_OBJECT_BURST, now),
            suppressed: 0,
        });
        entry.bucket.refill(PER_OBJECT_BURST, per_second, now);
        let admit = if entry.bucket.tokens >= 1.0 && self.global.tokens >= 1.0 {
            entry.bucket.tokens -= 1.0;
            self.global.tokens -= 1.0;
            Admit::Publish {
                held_back: std::mem::take(&mut entry.suppressed),
            }
        } else {
            entry.suppressed += 1;
            Admit::Hold
        };
        if self.objects.len() >= self.sweep_at {
            self.objects.retain(|_, o| {
                o.bucket.refill(PER_OBJECT_BURST, per_second, now);
                o.suppressed > 0 || o.bucket.tokens < PER_OBJECT_BURST
            });
            self.sweep_at = (2 * self.objects.len()).max(1024);
        }
        admit
    }

    /// Entries held (for tests of the bound).
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

/// Publishes the Events of `notes(executed)` on `obj`, as the limiter allows. Failures to
/// publish are logged only: an Event is never worth failing a reconcile.
pub async fn announce<K: Resource<DynamicType = ()>>(
    ctx: &Shared,
    owner: &Owner,
    obj: &K,
    executed: &Executed<'_>,
) {
    let key: ObjectKey = (owner.kind, owner.namespace.clone(), owner.name.clone());
    for (reason, note) in notes(executed) {
        let admit = ctx
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(&key, Instant::now());
        let Admit::Publish { held_back } = admit else {
            continue;
        };
        let note = if held_back > 0 {
            let extra = format!(" ({held_back} earlier Events of this object held back)");
            let mut note = note;
            while note.len() + extra.len() > NOTE_LIMIT {
                note.pop();
            }
            note + &extra
        } else {
            note
        };
        let event = Event {
            type_: EventType::Normal,
            reason: reason.as_str().into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, "publishing event failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{Child, ChildKind};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn child(kind: ChildKind, name: &str) -> Child {
        Child::new(
            kind,
            ObjectMeta {
                name: Some(name.into()),
                namespace: Some("shop".into()),
                ..ObjectMeta::default()
            },
            serde_json::json!({}),
        )
    }

    #[test]
    fn a_reconcile_that_wrote_and_pruned_gets_one_note_each_and_one_that_did_nothing_none() {
        let (svc, np, cert) = (
            child(ChildKind::Service, "web"),
            child(ChildKind::NetworkPolicy, "web-ingress"),
            child(ChildKind::Certificate, "web-external"),
        );
        let executed = Executed {
            outcomes: vec![
                (&svc, Outcome::Written),
                (&np, Outcome::Unchanged),
                (&cert, Outcome::Written),
            ],
            pruned: vec![(
                ChildKind::Ingress,
                Some("shop".into()),
                "web-internal".into(),
            )],
        };
        assert_eq!(
            notes(&executed),
            vec![
                (
                    Reason::Applied,
                    "applied 2 children: Service shop/web, Certificate shop/web-external".into()
                ),
                (
                    Reason::Pruned,
                    "deleted 1 child: Ingress shop/web-internal".into()
                ),
            ]
        );
        let idle = Executed {
            outcomes: vec![
                (&svc, Outcome::Unchanged),
                (&np, Outcome::Conflict("x".into())),
            ],
            pruned: vec![],
        };
        assert_eq!(notes(&idle), vec![]);
    }

    #[test]
    fn a_long_list_is_cut_below_the_api_servers_limit_and_says_how_many_more() {
        let children: Vec<Child> = (0..100)
            .map(|i| {
                child(
                    ChildKind::Service,
                    &format!("a-rather-long-child-name-{i:03}"),
                )
            })
            .collect();
        let executed = Executed {
            outcomes: children.iter().map(|c| (c, Outcome::Written)).collect(),
            pruned: vec![],
        };
        let (_, note) = notes(&executed).remove(0);
        assert!(note.len() <= NOTE_LIMIT, "{}", note.len());
        assert!(
            note.starts_with("applied 100 children: Service shop/a-rather-long-child-name-000, ")
        );
        let shown = note.matches("Service shop/").count();
        assert!(
            note.ends_with(&format!(" and {} more", 100 - shown)),
            "{note}"
        );
    }

    fn key(name: &str) -> ObjectKey {
        ("ExposedApp", Some("shop".into()), name.into())
    }

    #[test]
    fn each_object_gets_a_burst_then_one_a_minute_and_learns_what_was_held_back() {
        let t0 = Instant::now();
        let mut l = Limiter::new(t0);
        for _ in 0..3 {
            assert_eq!(l.admit(&key("a"), t0), Admit::Publish { held_back: 0 });
        }
        assert_eq!(l.admit(&key("a"), t0), Admit::Hold);
        assert_eq!(
            l.admit(&key("a"), t0 + Duration::from_secs(30)),
            Admit::Hold
        );
        // Another object is not held back by the first.
        assert_eq!(l.admit(&key("b"), t0), Admit::Publish { held_back: 0 });
        assert_eq!(
            l.admit(&key("a"), t0 + Duration::from_secs(61)),
            Admit::Publish { held_back: 2 }
        );
        assert_eq!(
            l.admit(&key("a"), t0 + Duration::from_secs(62)),
            Admit::Hold
        );
    }

    #[test]
    fn the_operator_publishes_at_most_its_global_budget_in_a_rollout() {
        let t0 = Instant::now();
        let mut l = Limiter::new(t0);
        // 10,000 apps written within one second: the burst plus one second's refill.
        let published = (0..10_000)
            .filter(|i| {
                let at = t0 + Duration::from_micros(*i as u64 * 100);
                matches!(
                    l.admit(&key(&format!("app-{i}")), at),
                    Admit::Publish { .. }
                )
            })
            .count();
        assert!(
            (GLOBAL_BURST as usize..=(GLOBAL_BURST + GLOBAL_PER_SECOND) as usize + 1)
                .contains(&published),
            "{published}"
        );
    }

    #[test]
    fn entries_of_objects_whose_budget_refilled_are_dropped_so_memory_stays_bounded() {
        let t0 = Instant::now();
        let mut l = Limiter::new(t0);
        // 5,000 objects each publish once, a second apart (the global budget allows it).
        for i in 0..5_000u64 {
            l.admit(&key(&format!("app-{i}")), t0 + Duration::from_secs(i));
        }
        // Only objects within the last refill period (60 s; plus the sweep's slack) remain.
        assert!(l.len() < 1024 + 61, "{}", l.len());
    }
}
