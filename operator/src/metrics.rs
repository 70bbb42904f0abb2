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
}

const RECENT_WRITES: usize = 256;

impl Metrics {
    /// Requests that change state: POST, PUT, PATCH, DELETE.
    pub fn mutating_requests(&self) -> u64 {
        self.requests_post.load(Ordering::Relaxed)
            + self.requests_put.load(Ordering::Relaxed)
            + self.requests_patch.load(Ordering::Relaxed)
            + self.requests_delete.load(Ordering::Relaxed)
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
