//! One error type for the reconcile pipeline, a variant per stage.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// Reading a child or a reference from the API server failed.
    #[error("reading {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// Applying a child failed.
    #[error("applying {what}: {source}")]
    Apply {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// Deleting a child that is no longer desired failed.
    #[error("pruning {what}: {source}")]
    Prune {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// Writing the owner's status failed.
    #[error("writing status of {what}: {source}")]
    Status {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// Adding or removing the DNS-first finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// DNS records of a deleted app are still present; routes wait for them.
    #[error("deleting: routes wait for DNS records to go: {0}")]
    DnsTeardownPending(String),
}

impl Error {
    /// Low-cardinality label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Read { .. } => "read",
            Error::Apply { .. } => "apply",
            Error::Prune { .. } => "prune",
            Error::Status { .. } => "status",
            Error::Finalizer(_) => "finalizer",
            Error::DnsTeardownPending(_) => "dns_teardown_pending",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
