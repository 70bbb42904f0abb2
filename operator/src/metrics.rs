//! Operator metrics: reconciles, failures and API requests by verb. Writes are counted in
//! the client's own request path (a tower layer), so tests and `/metrics` see every request
//! the operator really sends, not what the code meant to send.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub reconciles: AtomicU64,
    pub reconcile_errors: AtomicU64,
    pub requests_get: AtomicU64,
    pub requests_list_watch: AtomicU64,
    pub requests_post: AtomicU64,
    pub requests_put: AtomicU64,
    pub requests_patch: AtomicU64,
    pub requests_delete: AtomicU64,
    /// The last mutating requests as `VERB path`, newest last (bounded), for diagnosing
    /// where writes went.
    pub recent_writes: std::sync::Mutex<std::collections::VecDeque<String>>,
    /// Per-kind reconcile counts, failures by reason and durations.
    per_kind: std::sync::Mutex<std::collections::BTreeMap<&'static str, KindStats>>,
}

const RECENT_WRITES: usize = 256;

/// Upper bounds (seconds) of the reconcile-duration histogram buckets.
pub const DURATION_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Debug, Default, Clone)]
struct KindStats {
    reconciles: u64,
    errors: std::collections::BTreeMap<&'static str, u64>,
    buckets: [u64; DURATION_BUCKETS.len()],
    sum: f64,
}

impl Metrics {
    /// Requests that change state: POST, PUT, PATCH, DELETE.
    pub fn mutating_requests(&self) -> u64 {
        self.requests_post.load(Ordering::Relaxed)
            + self.requests_put.load(Ordering::Relaxed)
            + self.requests_patch.load(Ordering::Relaxed)
            + self.requests_delete.load(Ordering::Relaxed)
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
        if error.is_some() {
            self.reconcile_errors.fetch_add(1, Ordering::Relaxed);
        }
        let mut per_kind = self.per_kind.lock().unwrap_or_else(|e| e.into_inner());
        let stats = per_kind.entry(kind).or_default();
        stats.reconciles += 1;
        if let Some(reason) = error {
            *stats.errors.entry(reason).or_default() += 1;
        }
        let secs = took.as_secs_f64();
        stats.sum += secs;
        for (i, upper) in DURATION_BUCKETS.iter().enumerate() {
            if secs <= *upper {
                stats.buckets[i] += 1;
            }
        }
    }

    /// Prometheus text exposition (format 0.0.4). `children` is the number of managed
    /// children per kind, counted from the caches at scrape time.
    pub fn render(&self, children: &[(&'static str, usize)]) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let per_kind = self
            .per_kind
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let _ = writeln!(
            out,
            "# HELP gatehouse_reconciles_total Reconciles finished, by kind."
        );
        let _ = writeln!(out, "# TYPE gatehouse_reconciles_total counter");
        for (kind, s) in &per_kind {
            let _ = writeln!(
                out,
                "gatehouse_reconciles_total{{kind=\"{kind}\"}} {}",
                s.reconciles
            );
        }
        let _ = writeln!(
            out,
            "# HELP gatehouse_reconcile_errors_total Failed reconciles, by kind and reason."
        );
        let _ = writeln!(out, "# TYPE gatehouse_reconcile_errors_total counter");
        for (kind, s) in &per_kind {
            for (reason, n) in &s.errors {
                let _ = writeln!(
                    out,
                    "gatehouse_reconcile_errors_total{{kind=\"{kind}\",reason=\"{reason}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP gatehouse_reconcile_duration_seconds Time of one reconcile, by kind."
        );
        let _ = writeln!(out, "# TYPE gatehouse_reconcile_duration_seconds histogram");
        for (kind, s) in &per_kind {
            for (i, upper) in DURATION_BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "gatehouse_reconcile_duration_seconds_bucket{{kind=\"{kind}\",le=\"{upper}\"}} {}",
                    s.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "gatehouse_reconcile_duration_seconds_bucket{{kind=\"{kind}\",le=\"+Inf\"}} {}",
                s.reconciles
            );
            let _ = writeln!(
                out,
                "gatehouse_reconcile_duration_seconds_sum{{kind=\"{kind}\"}} {}",
                s.sum
            );
            let _ = writeln!(
                out,
                "gatehouse_reconcile_duration_seconds_count{{kind=\"{kind}\"}} {}",
                s.reconciles
            );
        }
        let _ = writeln!(
            out,
            "# HELP gatehouse_children_managed Children carrying Gatehouse's labels, by kind."
        );
        let _ = writeln!(out, "# TYPE gatehouse_children_managed gauge");
        for (kind, n) in children {
            let _ = writeln!(out, "gatehouse_children_managed{{kind=\"{kind}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP gatehouse_api_requests_total Requests to the API server, by verb."
        );
        let _ = writeln!(out, "# TYPE gatehouse_api_requests_total counter");
        for (verb, counter) in [
            ("get", &self.requests_get),
            ("list_watch", &self.requests_list_watch),
            ("create", &self.requests_post),
            ("update", &self.requests_put),
            ("patch", &self.requests_patch),
            ("delete", &self.requests_delete),
        ] {
            let _ = writeln!(
                out,
                "gatehouse_api_requests_total{{verb=\"{verb}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
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
        counter.fetch_add(1, Ordering::Relaxed);
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

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.observe_reconcile("ExposedApp", std::time::Duration::from_millis(30), None);
        m.observe_reconcile(
            "ExposedApp",
            std::time::Duration::from_millis(3),
            Some("apply"),
        );
        let text = m.render(&[("Service", 2)]);
        assert!(
            text.contains("gatehouse_reconciles_total{kind=\"ExposedApp\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "gatehouse_reconcile_errors_total{kind=\"ExposedApp\",reason=\"apply\"} 1"
            )
        );
        assert!(text.contains(
            "gatehouse_reconcile_duration_seconds_bucket{kind=\"ExposedApp\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "gatehouse_reconcile_duration_seconds_bucket{kind=\"ExposedApp\",le=\"0.05\"} 2"
        ));
        assert!(text.contains("gatehouse_reconcile_duration_seconds_count{kind=\"ExposedApp\"} 2"));
        assert!(text.contains("gatehouse_children_managed{kind=\"Service\"} 2"));
        assert!(text.contains("# TYPE gatehouse_api_requests_total counter"));
    }
}
