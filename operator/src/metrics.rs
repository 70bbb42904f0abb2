//! Operator metrics: reconciles, failures and API requests by verb. Writes are counted in
//! the client's own request path (a tower layer), so tests and `/metrics` see every request
//! the operator really sends, not what the code meant to send. The exposition is the
//! prometheus org's client library (`prometheus-client`), in the Prometheus text format 0.0.4
//! that every Prometheus scrapes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Labels are `&'static str` from fixed sets (kinds, error reasons, verbs), so the number of
/// series, and the memory they take, is bounded whatever the operator sees.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerbLabels {
    verb: &'static str,
}

type Durations = Family<KindLabels, Histogram, fn() -> Histogram>;

#[derive(Debug)]
pub struct Metrics {
    /// Totals over every kind, for tests (the exposition has them per kind).
    pub reconciles: AtomicU64,
    pub reconcile_errors: AtomicU64,
    /// The series of `gatehouse_api_requests_total`, one per verb; the counting layer
    /// increments them (each is an atomic shared with the registry).
    pub requests_get: Counter,
    pub requests_list_watch: Counter,
    pub requests_post: Counter,
    pub requests_put: Counter,
    pub requests_patch: Counter,
    pub requests_delete: Counter,
    /// The last mutating requests as `VERB path`, newest last (bounded), for diagnosing
    /// where writes went.
    pub recent_writes: std::sync::Mutex<std::collections::VecDeque<String>>,
    reconciles_by_kind: Family<KindLabels, Counter>,
    errors_by_kind: Family<ErrorLabels, Counter>,
    durations: Durations,
    registry: Registry,
}

const RECENT_WRITES: usize = 256;

/// The kinds the controllers reconcile, as `observe_reconcile` is called with them.
pub const RECONCILED_KINDS: [&str; 3] = ["ClusterNetwork", "ExposedApp", "EgressPolicy"];

/// Upper bounds (seconds) of the reconcile-duration histogram buckets.
pub const DURATION_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

impl Default for Metrics {
    fn default() -> Self {
        let reconciles_by_kind = Family::<KindLabels, Counter>::default();
        let errors_by_kind = Family::<ErrorLabels, Counter>::default();
        let durations: Durations = Family::new_with_constructor(duration_histogram);
        // Every kind's reconcile series exists from the start (at 0), like the verbs': an
        // empty family is left out of the exposition altogether, and a dashboard's rate()
        // would have nothing to show before the first reconcile. (Error series need a
        // reason, so they appear with the first failure.)
        for kind in RECONCILED_KINDS {
            let _ = reconciles_by_kind.get_or_create(&KindLabels { kind });
            let _ = durations.get_or_create(&KindLabels { kind });
        }
        let requests = Family::<VerbLabels, Counter>::default();
        // Every verb's series exists from the start (at 0), as dashboards expect.
        let verb = |verb| requests.get_or_create(&VerbLabels { verb }).clone();
        let (get, list_watch, post, put, patch, delete) = (
            verb("get"),
            verb("list_watch"),
            verb("create"),
            verb("update"),
            verb("patch"),
            verb("delete"),
        );
        // Counter names without `_total`: the encoder appends it to the family and samples.
        let mut registry = Registry::default();
        registry.register(
            "gatehouse_reconciles",
            "Reconciles finished, by kind",
            reconciles_by_kind.clone(),
        );
        registry.register(
            "gatehouse_reconcile_errors",
            "Failed reconciles, by kind and reason",
            errors_by_kind.clone(),
        );
        registry.register(
            "gatehouse_reconcile_duration_seconds",
            "Time of one reconcile, by kind",
            durations.clone(),
        );
        registry.register(
            "gatehouse_api_requests",
            "Requests to the API server, by verb",
            requests,
        );
        Metrics {
            reconciles: AtomicU64::new(0),
            reconcile_errors: AtomicU64::new(0),
            requests_get: get,
            requests_list_watch: list_watch,
            requests_post: post,
            requests_put: put,
            requests_patch: patch,
            requests_delete: delete,
            recent_writes: Default::default(),
            reconciles_by_kind,
            errors_by_kind,
            durations,
            registry,
        }
    }
}

impl Metrics {
    /// Requests that change state: POST, PUT, PATCH, DELETE.
    pub fn mutating_requests(&self) -> u64 {
        self.requests_post.get()
            + self.requests_put.get()
            + self.requests_patch.get()
            + self.requests_delete.get()
    }

    /// Records one finished reconcile of `kind`: its duration and, on failure, the reason
    /// (the error's `metric_label`).
    pub fn observe_reconcile(
        &self,
        kind: &'static str,
        took: std::time::Duration,
        error: Option<&'static str>,
    ) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        self.reconciles_by_kind
            .get_or_create(&KindLabels { kind })
            .inc();
        if let Some(reason) = error {
            self.reconcile_errors.fetch_add(1, Ordering::Relaxed);
            self.errors_by_kind
                .get_or_create(&ErrorLabels { kind, reason })
                .inc();
        }
        self.durations
            .get_or_create(&KindLabels { kind })
            .observe(took.as_secs_f64());
    }

    /// The Prometheus text exposition (format 0.0.4, [`CONTENT_TYPE`]). `children` is the
    /// number of managed children per kind, counted from the caches at scrape time, so that
    /// gauge is built per scrape and shows exactly the kinds given.
    pub fn render(&self, children: &[(&'static str, usize)]) -> String {
        let managed = Family::<KindLabels, Gauge>::default();
        for (kind, n) in children {
            managed
                .get_or_create(&KindLabels { kind })
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        let mut scrape = Registry::default();
        scrape.register(
            "gatehouse_children_managed",
            "Children carrying Gatehouse's labels, by kind",
            managed,
        );
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        let _ = prometheus_text::encode(&mut out, &scrape);
        out
    }

    /// The last `n` mutating requests, oldest first.
    pub fn last_writes(&self, n: usize) -> Vec<String> {
        let recent = self.recent_writes.lock().unwrap_or_else(|e| e.into_inner());
        recent
            .iter()
            .skip(recent.len().saturating_sub(n))
            .cloned()
            .collect()
    }

    fn count(&self, method: &http::Method, watch_or_list: bool) {
        let counter = match *method {
            http::Method::GET if watch_or_list => &self.requests_list_watch,
            http::Method::GET => &self.requests_get,
            http::Method::POST => &self.requests_post,
            http::Method::PUT => &self.requests_put,
            http::Method::PATCH => &self.requests_patch,
            http::Method::DELETE => &self.requests_delete,
            _ => return,
        };
        counter.inc();
    }
}

/// A kube client whose every request is counted in `metrics`.
pub fn counting_client(
    config: kube::Config,
    metrics: Arc<Metrics>,
) -> Result<kube::Client, kube::Error> {
    let layer = tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
        // A GET without a name in the last path segment is a list or a watch; the
        // distinction is coarse but only GETs of single objects matter for cost.
        let query = req.uri().query().unwrap_or_default();
        let watch_or_list = query.contains("watch=")
            || query.contains("limit=")
            || query.contains("labelSelector=");
        metrics.count(req.method(), watch_or_list);
        if !matches!(
            *req.method(),
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
        ) {
            let line = format!("{} {}", req.method(), req.uri().path());
            tracing::debug!(request = %line, "write");
            let mut recent = metrics
                .recent_writes
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if recent.len() == RECENT_WRITES {
                recent.pop_front();
            }
            recent.push_back(line);
        }
        req
    });
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&layer)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole exposition for known observations. Series order within a family follows
    /// the library's hash map, so lines are compared sorted; the families' order is fixed.
    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        // Durations exact in binary, so the sum prints exactly.
        m.observe_reconcile("ExposedApp", std::time::Duration::from_millis(250), None);
        m.observe_reconcile(
            "ExposedApp",
            std::time::Duration::from_nanos(3_906_250),
            Some("apply"),
        );
        m.count(&http::Method::PATCH, false);
        m.count(&http::Method::PATCH, false);
        m.count(&http::Method::GET, true);
        let text = m.render(&[("Service", 2), ("NetworkPolicy", 0)]);
        let expected = r#"# HELP gatehouse_reconciles_total Reconciles finished, by kind.
# TYPE gatehouse_reconciles_total counter
gatehouse_reconciles_total{kind="ExposedApp"} 2
# HELP gatehouse_reconcile_errors_total Failed reconciles, by kind and reason.
# TYPE gatehouse_reconcile_errors_total counter
gatehouse_reconcile_errors_total{kind="ExposedApp",reason="apply"} 1
# HELP gatehouse_reconcile_duration_seconds Time of one reconcile, by kind.
# TYPE gatehouse_reconcile_duration_seconds histogram
gatehouse_reconcile_duration_seconds_sum{kind="ExposedApp"} 0.25390625
gatehouse_reconcile_duration_seconds_count{kind="ExposedApp"} 2
gatehouse_reconcile_duration_seconds_bucket{kind="ExposedApp",le="0.005"} 1
gatehouse_reconcile_duration_seconds_bucket{kind="ExposedApp",le="0.01"} 1
gatehouse_reconcile_duration_seconds_bucket{kind="ExposedApp",le="0.025"} 1
gatehouse_reconcile_duration_seconds_bucket{kind="ExposedApp",le="0.05"} 1
gatehouse_reconcile_duration_seconds_bucket{kind="ExposedApp",le="0.1"} 1
gatehouse_reconcile_duration_seconds_bucket{kind="ExposedApp",le="0.25"} 2
gatehouse_reconcile_duration_seconds_bucket{kind="ExposedApp",le="0.5"} 2
gatehouse_reconcile_duration_seconds_bucket{kind="ExposedApp",le="1"} 2
gatehouse_reconcile_duration_seconds_bucket{kind="ExposedApp",le="2.5"} 2
gatehouse_reconcile_duration_seconds_bucket{kind="ExposedApp",le="10"} 2
gatehouse_reconcile_duration_seconds_bucket{kind="ExposedApp",le="+Inf"} 2
# HELP gatehouse_api_requests_total Requests to the API server, by verb.
# TYPE gatehouse_api_requests_total counter
gatehouse_api_requests_total{verb="get"} 0
gatehouse_api_requests_total{verb="list_watch"} 1
gatehouse_api_requests_total{verb="create"} 0
gatehouse_api_requests_total{verb="update"} 0
gatehouse_api_requests_total{verb="patch"} 2
gatehouse_api_requests_total{verb="delete"} 0
# HELP gatehouse_children_managed Children carrying Gatehouse's labels, by kind.
# TYPE gatehouse_children_managed gauge
gatehouse_children_managed{kind="Service"} 2
gatehouse_children_managed{kind="NetworkPolicy"} 0
"#;
        // The kinds not observed have their series at 0 from the start; checked apart.
        let idle = |l: &&str| {
            l.contains(r#"kind="ClusterNetwork""#) || l.contains(r#"kind="EgressPolicy""#)
        };
        for kind in ["ClusterNetwork", "EgressPolicy"] {
            for zero in [
                format!("gatehouse_reconciles_total{{kind=\"{kind}\"}} 0"),
                format!("gatehouse_reconcile_duration_seconds_count{{kind=\"{kind}\"}} 0"),
                format!(
                    "gatehouse_reconcile_duration_seconds_bucket{{kind=\"{kind}\",le=\"+Inf\"}} 0"
                ),
            ] {
                assert!(text.lines().any(|l| l == zero), "{zero}: {text}");
            }
        }
        assert_eq!(
            text.lines().filter(idle).count(),
            2 * (1 + 2 + 11),
            "{text}"
        );
        let sorted = |t: &str| {
            let mut lines: Vec<String> =
                t.lines().filter(|l| !idle(l)).map(str::to_string).collect();
            lines.sort();
            lines
        };
        assert_eq!(sorted(&text), sorted(expected), "{text}");
        let families: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let expected_families: Vec<&str> = expected
            .lines()
            .filter(|l| l.starts_with("# TYPE"))
            .collect();
        assert_eq!(families, expected_families);
        assert_eq!(m.mutating_requests(), 2);
        assert_eq!(m.reconciles.load(Ordering::Relaxed), 2);
        assert_eq!(m.reconcile_errors.load(Ordering::Relaxed), 1);
        assert_eq!(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
    }
}
