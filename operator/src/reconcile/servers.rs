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

/// Serves metrics and health: ready once `synced` (every cache has its initial list); the
/// child count comes from the index.
pub fn health_and_metrics(
    addr: std::net::SocketAddr,
    metrics: Arc<Metrics>,
    synced: Arc<AtomicBool>,
    index: Arc<RwLock<index::Index>>,
) -> BoxFuture<'static, ()> {
    let endpoints = crate::http::Endpoints {
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
