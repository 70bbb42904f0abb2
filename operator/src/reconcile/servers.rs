//! The side servers next to the controllers: the Multus attachment webhook (with its
//! configuration kept registered) and /metrics, /healthz, /readyz.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use gatehouse_api::ExposedApp;
use kube::Client;
use kube::runtime::reflector::Store;

use super::{StartError, index};
use crate::metrics::Metrics;

/// Serves the pod webhook and registers its configuration (with retries) while serving:
/// the API server only calls it once the configuration carries its CA.
pub fn webhook(
    client: &Client,
    webhook: crate::webhook::WebhookOptions,
    apps: Store<ExposedApp>,
) -> Result<BoxFuture<'static, ()>, StartError> {
    let certs = crate::webhook::generate_certs(&webhook.subject_alt_names)
        .map_err(|e| StartError::Webhook(format!("certificates: {e}")))?;
    let client = client.clone();
    Ok(async move {
        let register = async {
            let mut delay = Duration::from_secs(1);
            while let Err(e) = crate::webhook::register(&client, &webhook, &certs.ca_pem).await {
                tracing::warn!(error = %e, "cannot write the webhook configuration; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(60));
            }
        };
        let serve = crate::webhook::serve(webhook.addr, &certs, apps);
        let (_, served) = futures::join!(register, serve);
        if let Err(e) = served {
            tracing::error!(error = %e, "cannot serve the pod webhook");
        }
    }
    .boxed())
}

/// How long /readyz waits for the API server's own /readyz: below the kubelet's default
/// probe timeout (1 s would be too tight for a loaded API server; the chart sets 3 s).
const API_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves metrics and health: ready once `synced` (every cache has its initial list) and
/// while the API server answers its /readyz; the child count comes from the index.
pub fn health_and_metrics(
    client: &Client,
    addr: std::net::SocketAddr,
    metrics: Arc<Metrics>,
    synced: Arc<AtomicBool>,
    index: Arc<RwLock<index::Index>>,
) -> BoxFuture<'static, ()> {
    let client = client.clone();
    let api: crate::http::ApiCheck = Arc::new(move || {
        let client = client.clone();
        async move {
            let request = http::Request::get("/readyz")
                .body(Vec::new())
                .map_err(|e| e.to_string())?;
            match tokio::time::timeout(API_CHECK_TIMEOUT, client.request_text(request)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {API_CHECK_TIMEOUT:?}")),
            }
        }
        .boxed()
    });
    let endpoints = crate::http::Endpoints {
        api: Some(api),
        metrics,
        ready: synced,
        children: Arc::new(move || {
            index
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .count_children()
        }),
    };
    async move {
        if let Err(e) = crate::http::serve(addr, endpoints).await {
            tracing::error!(%addr, error = %e, "cannot serve metrics and health");
        }
    }
    .boxed()
}
