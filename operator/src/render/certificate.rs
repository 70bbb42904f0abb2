//! Certificate `A` (cert-manager.io/v1): one certificate for every TLS host of the app.

use gatehouse_api::{ClusterNetwork, ExposedApp, IssuerKind, IssuerRef};
use kube::ResourceExt;
use serde_json::json;

use super::child::{Child, ChildKind, Owner};

/// Secret holding the app's certificate, referenced by its Ingresses.
pub fn secret_name(app: &ExposedApp) -> String {
    format!("{}-tls", app.name_any())
}

/// Every TLS host, in declaration order, without duplicates.
pub fn tls_hosts(app: &ExposedApp) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    for r in app.spec.routes.iter().filter(|r| r.tls) {
        for h in &r.hosts {
            if !hosts.contains(h) {
                hosts.push(h.clone());
            }
        }
    }
    hosts
}

/// The app's issuer override, else the network's default.
pub fn issuer<'a>(app: &'a ExposedApp, network: &'a ClusterNetwork) -> Option<&'a IssuerRef> {
    app.spec.tls.as_ref().map(|t| &t.issuer_ref).or(network
        .spec
        .tls
        .as_ref()
        .map(|t| &t.issuer_ref))
}

pub fn certificate(app: &ExposedApp, network: &ClusterNetwork, owner: &Owner) -> Option<Child> {
    let hosts = tls_hosts(app);
    if hosts.is_empty() {
        return None;
    }
    // Validation guarantees an issuer when a route has TLS.
    let issuer = issuer(app, network)?;
    let kind = match issuer.kind {
        IssuerKind::ClusterIssuer => "ClusterIssuer",
        IssuerKind::Issuer => "Issuer",
    };
    let meta = owner.meta(app.name_any(), app.namespace().as_deref());
    Some(Child::new(
        ChildKind::Certificate,
        meta,
        json!({
            "spec": {
                "secretName": secret_name(app),
                "dnsNames": hosts,
                "issuerRef": {"name": issuer.name, "kind": kind, "group": issuer.group},
            }
        }),
    ))
}
