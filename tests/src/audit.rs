//! The API server's audit log (hack/cluster-up.sh writes every request at level Metadata):
//! what a client really sent, counted by the server, independent of the operator's own
//! request counter. Clients are told apart by their User-Agent: the operator sends
//! `gatehouse/<version> (<identity>)`, each test operator one of its own.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

/// One cluster's audit log. Positions are byte offsets, so a test reads only what was
/// logged after its mark (the shared cluster's log grows to hundreds of MB in a run).
#[derive(Clone, Debug)]
pub struct AuditLog(pub PathBuf);

/// Verbs that change something.
pub const MUTATING: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];

impl AuditLog {
    /// The shared test cluster's log.
    pub fn shared() -> AuditLog {
        AuditLog(crate::cluster_dir().join("logs/audit.log"))
    }

    /// Where the log ends now.
    pub fn mark(&self) -> u64 {
        std::fs::metadata(&self.0).map(|m| m.len()).unwrap_or(0)
    }

    /// Every request logged after `mark`, once each: a watch when its response starts (it
    /// completes only when it closes), everything else when it completes.
    pub fn requests_since(&self, mark: u64) -> Vec<Value> {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.0) {
            let _ = f.seek(SeekFrom::Start(mark));
            let _ = f.read_to_string(&mut text);
        }
        // A line still being written is cut: only complete lines count.
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| {
                (e["stage"] == "ResponseStarted" && e["verb"] == "watch")
                    || (e["stage"] == "ResponseComplete" && e["verb"] != "watch")
            })
            .collect()
    }

    /// The mutating requests of the client whose User-Agent is `agent` after `mark`. The
    /// log backend writes an event before the response is sent, so a request the client saw
    /// answered is in it; the short wait covers the client that has not been answered yet.
    pub fn writes_of(&self, agent: &str, mark: u64) -> Vec<Value> {
        std::thread::sleep(Duration::from_millis(300));
        self.requests_since(mark)
            .into_iter()
            .filter(|e| is_mutation(e) && e["userAgent"] == agent)
            .collect()
    }
}

pub fn is_mutation(e: &Value) -> bool {
    e["verb"].as_str().is_some_and(|v| MUTATING.contains(&v))
}

/// "VERB /request/uri (code)" of an event, for messages.
pub fn line(e: &Value) -> String {
    format!(
        "{} {} ({})",
        e["verb"].as_str().unwrap_or_default(),
        e["requestURI"].as_str().unwrap_or_default(),
        e["responseStatus"]["code"]
    )
}

/// The event's time (when the server completed it), microseconds since the epoch.
pub fn micros(e: &Value) -> i64 {
    let t = e["stageTimestamp"].as_str().unwrap_or_default();
    t.parse::<k8s_openapi::jiff::Timestamp>()
        .map(|t| t.as_microsecond())
        .unwrap_or(0)
}

/// When the server received the request (microseconds since the epoch): a request a client
/// sent before it died can complete after.
pub fn received_micros(e: &Value) -> i64 {
    let t = e["requestReceivedTimestamp"].as_str().unwrap_or_default();
    t.parse::<k8s_openapi::jiff::Timestamp>()
        .map(|t| t.as_microsecond())
        .unwrap_or(0)
}
