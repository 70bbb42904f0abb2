//! The Multus attachment webhook: a mutating admission webhook that adds
//! `k8s.v1.cni.cncf.io/networks` (with static ips and mac) to Pods that an ExposedApp with
//! `attachments` selects. No workload object is edited; Pods get the annotation at creation.
//!
//! TLS is self-managed: each replica makes a CA and a serving certificate at start and
//! keeps the CA in the MutatingWebhookConfiguration's caBundle. No Secret is needed (the
//! operator may not read Secrets); replicas append their CA to the bundle, newest first,
//! keeping the last few, so every running replica is trusted.
//!
//! Outage safety: failurePolicy Ignore, and system namespaces are excluded, so an operator
//! that is down never blocks a Pod. A Pod created during an outage starts without its
//! secondary network; deleting it (its controller recreates it) attaches it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use gatehouse_api::{ExposedApp, labels};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::reflector::Store;
use serde_json::{Value, json};

/// How many CAs the caBundle keeps (replicas and recent restarts).
const CA_BUNDLE_KEEP: usize = 4;
pub const WEBHOOK_PATH: &str = "/mutate-pods";

/// Where the API server reaches the webhook.
#[derive(Clone, Debug)]
pub enum Target {
    /// In-cluster: the operator's Service.
    Service {
        namespace: String,
        name: String,
        port: i32,
    },
    /// Out of cluster (tests, development): an https URL.
    Url(String),
}

#[derive(Clone, Debug)]
pub struct WebhookOptions {
    /// Address the TLS server listens on.
    pub addr: SocketAddr,
    /// Name of the MutatingWebhookConfiguration the operator keeps.
    pub configuration: String,
    pub target: Target,
    /// DNS names and IPs for the serving certificate.
    pub subject_alt_names: Vec<String>,
    /// Namespaces whose Pods are never sent to the webhook.
    pub excluded_namespaces: Vec<String>,
}

/// A CA and a serving certificate signed by it, PEM encoded.
pub struct Certs {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn generate_certs(subject_alt_names: &[String]) -> Result<Certs, rcgen::Error> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "gatehouse-webhook-ca");
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let mut params = CertificateParams::new(subject_alt_names.to_vec())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "gatehouse-webhook");
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Certs {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Whether every label of `selector` is on the pod.
fn selects(selector: &BTreeMap<String, String>, pod_labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v))
}

/// The JSON patch for a Pod (pure): the Multus networks of every ExposedApp in the Pod's
/// namespace that selects it and has attachments. Networks the Pod already lists are kept
/// as they are; none is added twice. None when there is nothing to add.
pub fn pod_patch(pod: &Value, namespace: &str, apps: &[Arc<ExposedApp>]) -> Option<Vec<Value>> {
    let pod_labels: BTreeMap<String, String> =
        serde_json::from_value(pod["metadata"]["labels"].clone()).unwrap_or_default();
    let existing_text = pod["metadata"]["annotations"][labels::MULTUS_NETWORKS].as_str();
    let mut networks: Vec<Value> = match existing_text {
        Some(t) if t.trim_start().starts_with('[') => serde_json::from_str(t).unwrap_or_default(),
        // The short form "a,b" or "ns/a@if": keep every entry by name.
        Some(t) => t
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| json!({"name": s.trim()}))
            .collect(),
        None => Vec::new(),
    };
    let before = networks.len();
    let mut sorted: Vec<&Arc<ExposedApp>> = apps
        .iter()
        .filter(|a| a.namespace().as_deref() == Some(namespace))
        .collect();
    sorted.sort_by_key(|a| a.name_any());
    for app in sorted {
        if app.spec.attachments.is_empty() || !selects(&app.spec.selector, &pod_labels) {
            continue;
        }
        for a in &app.spec.attachments {
            if networks.iter().any(|n| n["name"] == a.network.as_str()) {
                continue;
            }
            let mut entry = json!({"name": a.network, "namespace": namespace});
            if !a.ips.is_empty() {
                entry["ips"] = json!(a.ips);
            }
            if let Some(mac) = &a.mac {
                entry["mac"] = json!(mac);
            }
            networks.push(entry);
        }
    }
    if networks.len() == before {
        return None;
    }
    let value = serde_json::to_string(&networks).unwrap_or_default();
    let op = if pod["metadata"]["annotations"].is_object() {
        // JSON Pointer escapes '/' in the key as '~1'.
        let key = labels::MULTUS_NETWORKS
            .replace('~', "~0")
            .replace('/', "~1");
        let verb = if existing_text.is_some() {
            "replace"
        } else {
            "add"
        };
        json!({"op": verb, "path": format!("/metadata/annotations/{key}"), "value": value})
    } else {
        json!({"op": "add", "path": "/metadata/annotations", "value": {labels::MULTUS_NETWORKS: value}})
    };
    Some(vec![op])
}

/// The AdmissionReview response for a request (pure). Always allows: the webhook only adds.
pub fn review(request: &Value, apps: &[Arc<ExposedApp>]) -> Value {
    let req = &request["request"];
    let uid = req["uid"].clone();
    let namespace = req["namespace"].as_str().unwrap_or_default();
    let mut response = json!({"uid": uid, "allowed": true});
    if req["kind"]["kind"] == "Pod"
        && let Some(patch) = pod_patch(&req["object"], namespace, apps)
    {
        let encoded = base64::engine::general_purpose::STANDARD
            .encode(serde_json::to_vec(&patch).unwrap_or_default());
        response["patchType"] = json!("JSONPatch");
        response["patch"] = json!(encoded);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

/// Writes the MutatingWebhookConfiguration: this replica's CA first in the caBundle, the
/// previous CAs after it (bounded), so other running replicas stay trusted.
pub async fn register(
    client: &kube::Client,
    options: &WebhookOptions,
    ca_pem: &str,
) -> Result<(), kube::Error> {
    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
        ),
        "mutatingwebhookconfigurations",
    );
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let engine = base64::engine::general_purpose::STANDARD;
    let mut cas = vec![ca_pem.trim().to_string()];
    if let Some(existing) = api.get_opt(&options.configuration).await? {
        let bundle = existing.data["webhooks"][0]["clientConfig"]["caBundle"]
            .as_str()
            .unwrap_or_default();
        let pem = String::from_utf8(engine.decode(bundle).unwrap_or_default()).unwrap_or_default();
        for block in pem.split_inclusive("-----END CERTIFICATE-----") {
            let block = block.trim().to_string();
            if block.starts_with("-----BEGIN CERTIFICATE-----")
                && !cas.contains(&block)
                && cas.len() < CA_BUNDLE_KEEP
            {
                cas.push(block);
            }
        }
    }
    let bundle = engine.encode(cas.join("\n") + "\n");
    let client_config = match &options.target {
        Target::Service {
            namespace,
            name,
            port,
        } => json!({
            "service": {"namespace": namespace, "name": name, "port": port, "path": WEBHOOK_PATH},
            "caBundle": bundle,
        }),
        Target::Url(url) => json!({"url": url, "caBundle": bundle}),
    };
    let body = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": options.configuration, "labels": {labels::MANAGED_BY: labels::MANAGED_BY_VALUE}},
        "webhooks": [{
            "name": "multus-attachments.gatehouse.dev",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            // An operator outage must never block Pods: such a Pod starts without its
            // secondary network instead (see the module documentation).
            "failurePolicy": "Ignore",
            "timeoutSeconds": 5,
            "reinvocationPolicy": "Never",
            "clientConfig": client_config,
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"], "scope": "Namespaced"}],
            "namespaceSelector": {"matchExpressions": [{
                "key": labels::NAMESPACE_NAME, "operator": "NotIn", "values": options.excluded_namespaces,
            }]},
        }],
    });
    let params = PatchParams::apply(labels::FIELD_MANAGER).force();
    api.patch(&options.configuration, &params, &Patch::Apply(&body))
        .await?;
    Ok(())
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    apps: Store<ExposedApp>,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: Vec<u8>| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_default()
    };
    if req.uri().path() != WEBHOOK_PATH {
        return reply(StatusCode::NOT_FOUND, b"{}".to_vec());
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return reply(StatusCode::BAD_REQUEST, b"{}".to_vec()),
    };
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return reply(
            StatusCode::BAD_REQUEST,
            b"{\"error\":\"not an AdmissionReview\"}".to_vec(),
        );
    };
    let response = review(&request, &apps.state());
    reply(
        StatusCode::OK,
        serde_json::to_vec(&response).unwrap_or_default(),
    )
}

/// Serves the webhook over TLS until dropped.
pub async fn serve(addr: SocketAddr, certs: &Certs, apps: Store<ExposedApp>) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain =
        vec![CertificateDer::from_pem_slice(certs.cert_pem.as_bytes()).map_err(|e| e.to_string())?];
    let key = PrivateKeyDer::from_pem_slice(certs.key_pem.as_bytes()).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    tracing::info!(%addr, "serving the pod webhook");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let apps = apps.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let service = service_fn(move |req| {
                let apps = apps.clone();
                async move { Ok::<_, Infallible>(handle(req, apps).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(ns: &str, name: &str, selector: Value, attachments: Value) -> Arc<ExposedApp> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ExposedApp",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"selector": selector, "ports": [{"name": "http", "port": 80}], "attachments": attachments},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn adds_networks_with_ips_and_mac_for_selected_pods() {
        let apps = [app(
            "wordpress",
            "wp",
            json!({"app": "wordpress"}),
            json!([{"network": "dmz-out", "ips": ["192.168.31.13/24"], "mac": "02:42:ac:11:00:04"}]),
        )];
        let pod = json!({"metadata": {"labels": {"app": "wordpress", "pod-template-hash": "x"}}});
        let patch = pod_patch(&pod, "wordpress", &apps).unwrap();
        assert_eq!(patch[0]["op"], "add");
        assert_eq!(patch[0]["path"], "/metadata/annotations");
        let value = patch[0]["value"]["k8s.v1.cni.cncf.io/networks"]
            .as_str()
            .unwrap();
        let parsed: Value = serde_json::from_str(value).unwrap();
        assert_eq!(
            parsed,
            json!([{"name": "dmz-out", "namespace": "wordpress", "ips": ["192.168.31.13/24"], "mac": "02:42:ac:11:00:04"}])
        );
    }

    #[test]
    fn leaves_other_pods_namespaces_and_existing_networks_alone() {
        let apps = [app(
            "wordpress",
            "wp",
            json!({"app": "wordpress"}),
            json!([{"network": "dmz-out"}]),
        )];
        assert!(
            pod_patch(
                &json!({"metadata": {"labels": {"app": "mariadb"}}}),
                "wordpress",
                &apps
            )
            .is_none()
        );
        assert!(
            pod_patch(
                &json!({"metadata": {"labels": {"app": "wordpress"}}}),
                "other",
                &apps
            )
            .is_none()
        );
        // Already listed by the user: nothing to add, nothing overwritten.
        let pod = json!({"metadata": {"labels": {"app": "wordpress"}, "annotations": {"k8s.v1.cni.cncf.io/networks": "dmz-out"}}});
        assert!(pod_patch(&pod, "wordpress", &apps).is_none());
        // Another network listed: kept, ours appended, as a replace of the annotation.
        let pod = json!({"metadata": {"labels": {"app": "wordpress"}, "annotations": {"k8s.v1.cni.cncf.io/networks": "[{\"name\":\"mine\"}]"}}});
        let patch = pod_patch(&pod, "wordpress", &apps).unwrap();
        assert_eq!(patch[0]["op"], "replace");
        assert_eq!(
            patch[0]["path"],
            "/metadata/annotations/k8s.v1.cni.cncf.io~1networks"
        );
        let parsed: Value = serde_json::from_str(patch[0]["value"].as_str().unwrap()).unwrap();
        assert_eq!(
            parsed,
            json!([{"name": "mine"}, {"name": "dmz-out", "namespace": "wordpress"}])
        );
    }

    #[test]
    fn review_allows_and_carries_the_patch() {
        let apps = [app(
            "w",
            "wp",
            json!({"app": "wp"}),
            json!([{"network": "dmz"}]),
        )];
        let request = json!({"request": {"uid": "123", "namespace": "w", "kind": {"kind": "Pod"}, "object": {"metadata": {"labels": {"app": "wp"}}}}});
        let out = review(&request, &apps);
        assert_eq!(out["response"]["uid"], "123");
        assert_eq!(out["response"]["allowed"], true);
        assert_eq!(out["response"]["patchType"], "JSONPatch");
        let request = json!({"request": {"uid": "9", "namespace": "w", "kind": {"kind": "Pod"}, "object": {"metadata": {}}}});
        assert!(review(&request, &apps)["response"].get("patch").is_none());
    }

    #[test]
    fn certificates_chain_to_the_ca() {
        let certs = generate_certs(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        assert!(certs.ca_pem.contains("BEGIN CERTIFICATE"));
        assert!(certs.cert_pem.contains("BEGIN CERTIFICATE"));
        assert!(certs.key_pem.contains("PRIVATE KEY"));
    }
}
