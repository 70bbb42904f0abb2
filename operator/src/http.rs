//! The operator's plain-HTTP endpoints: `/metrics` (Prometheus text format 0.0.4), `/healthz` (the
//! process serves requests) and `/readyz` (caches synced and the API server answering: the
//! operator can act).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// Counts managed children per kind at scrape time (from the watch caches).
pub type ChildCounter = Arc<dyn Fn() -> Vec<(&'static str, usize)> + Send + Sync>;

/// Asks the API server whether it can serve (its own /readyz), bounded in time; the error
/// says why not.
pub type ApiCheck = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

#[derive(Clone)]
pub struct Endpoints {
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
    pub children: ChildCounter,
    /// Checked on each /readyz once the caches are synced: with the API server gone (or
    /// its etcd) the operator cannot act, whatever its caches hold. Only on a probe, so an
    /// idle operator that nobody probes sends nothing.
    pub api: Option<ApiCheck>,
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

async fn route(endpoints: &Endpoints, path: &str) -> Response<Full<Bytes>> {
    match path {
        "/metrics" => reply(
            StatusCode::OK,
            crate::metrics::CONTENT_TYPE,
            endpoints.metrics.render(&(endpoints.children)()),
        ),
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" if endpoints.ready.load(Ordering::Relaxed) => match &endpoints.api {
            Some(check) => match check().await {
                Ok(()) => reply(StatusCode::OK, "text/plain", "ok\n".into()),
                Err(why) => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("the API server does not answer: {why}\n"),
                ),
            },
            None => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        },
        "/readyz" => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "caches not synced yet\n".into(),
        ),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// Serves until the task is dropped. Binding errors are returned at once.
pub async fn serve(addr: SocketAddr, endpoints: Endpoints) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let endpoints = endpoints.clone();
                async move { Ok::<_, Infallible>(route(&endpoints, req.uri().path()).await) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
}
