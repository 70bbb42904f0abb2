//! Certificates `A-<tier>` (cert-manager.io/v1): one per tier with TLS routes, holding only
//! the TLS hosts served on that tier and requested from that tier's issuer, so internal
//! names never go into an order to a public issuer (where they would fail validation for
//! the whole order, and leak into CT logs).

use gatehouse_api::{ClusterNetwork, ExposedApp, IssuerKind, IssuerRef, Tier};
use kube::ResourceExt;
use serde_json::json;

use super::child::{Child, ChildKind, Owner};
use super::ingress::routes_on;

/// Secret holding the app's certificate for `tier`, referenced by that tier's Ingress.
pub fn secret_name(app: &ExposedApp, tier: Tier) -> String {
    format!("{}-{tier}-tls", app.name_any())
}

/// The TLS hosts served on `tier`, in declaration order, without duplicates.
pub fn tls_hosts(app: &ExposedApp, network: &ClusterNetwork, tier: Tier) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    for r in routes_on(app, network, tier).into_iter().filter(|r| r.tls) {
        for h in &r.hosts {
            if !hosts.contains(h) {
                hosts.push(h.clone());
            }
        }
    }
    hosts
}

/// The issuer of the app's `tier` certificate: the app's override, else the tier's, else
/// the network's default.
pub fn issuer<'a>(
    app: &'a ExposedApp,
    network: &'a ClusterNetwork,
    tier: Tier,
) -> Option<&'a IssuerRef> {
    app.spec
        .tls
        .as_ref()
        .map(|t| &t.issuer_ref)
        .or_else(|| {
            network
                .spec
                .ingress
                .get(tier)
                .and_then(|t| t.issuer_ref.as_ref())
        })
        .or(network.spec.tls.as_ref().map(|t| &t.issuer_ref))
}

/// One Certificate per tier that has TLS hosts.
pub fn certificates(app: &ExposedApp, network: &ClusterNetwork, owner: &Owner) -> Vec<Child> {
    Tier::ALL
        .into_iter()
        .filter_map(|tier| certificate(app, network, tier, owner))
        .collect()
}

fn certificate(
    app: &ExposedApp,
    network: &ClusterNetwork,
    tier: Tier,
    owner: &Owner,
) -> Option<Child> {
    let hosts = tls_hosts(app, network, tier);
    if hosts.is_empty() {
        return None;
    }
    // Validation guarantees an issuer for every tier a TLS route is served on.
    let issuer = issuer(app, network, tier)?;
    let kind = match issuer.kind {
        IssuerKind::ClusterIssuer => "ClusterIssuer",
        IssuerKind::Issuer => "Issuer",
    };
    let meta = owner.meta(
        format!("{}-{tier}", app.name_any()),
        app.namespace().as_deref(),
    );
    Some(Child::new(
        ChildKind::Certificate,
        meta,
        json!({
            "spec": {
                "secretName": secret_name(app, tier),
                "dnsNames": hosts,
                "issuerRef": {"name": issuer.name, "kind": kind, "group": issuer.group},
            }
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn network(internal_issuer: Option<Value>) -> ClusterNetwork {
        let mut internal = json!({"className": "nginx-internal", "addresses": ["10.0.0.10"]});
        if let Some(i) = internal_issuer {
            internal["issuerRef"] = i;
        }
        serde_json::from_value(json!({
            "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ClusterNetwork",
            "metadata": {"name": "default"},
            "spec": {
                "ingress": {"external": {"className": "nginx-external", "addresses": ["192.0.2.10"]}, "internal": internal},
                "tls": {"issuerRef": {"name": "letsencrypt-prod", "kind": "ClusterIssuer"}},
            }
        }))
        .unwrap()
    }

    fn app() -> ExposedApp {
        serde_json::from_value(json!({
            "apiVersion": "gatehouse.dev/v1alpha1", "kind": "ExposedApp",
            "metadata": {"name": "shop", "namespace": "team-a"},
            "spec": {
                "selector": {"app": "shop"},
                "ports": [{"name": "http", "port": 80}],
                "routes": [
                    {"hosts": ["shop.example.com"]},
                    {"hosts": ["shop-admin.intern.example.com"], "exposure": "Internal"},
                    {"hosts": ["status.example.com"], "exposure": "Both"},
                    {"hosts": ["plain.example.com"], "tls": false},
                ],
            }
        }))
        .unwrap()
    }

    fn summary(children: &[Child]) -> Vec<(String, String, Value, Value)> {
        children
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    c.object["spec"]["secretName"].as_str().unwrap().to_string(),
                    c.object["spec"]["dnsNames"].clone(),
                    c.object["spec"]["issuerRef"]["name"].clone(),
                )
            })
            .collect()
    }

    #[test]
    fn one_certificate_per_tier_with_only_its_hosts_and_its_issuer() {
        let owner = Owner::of(&app());
        let certs = certificates(
            &app(),
            &network(Some(json!({"name": "corp-pki", "kind": "ClusterIssuer"}))),
            &owner,
        );
        assert_eq!(
            summary(&certs),
            [
                (
                    "shop-external".to_string(),
                    "shop-external-tls".to_string(),
                    json!(["shop.example.com", "status.example.com"]),
                    json!("letsencrypt-prod")
                ),
                (
                    "shop-internal".to_string(),
                    "shop-internal-tls".to_string(),
                    json!(["shop-admin.intern.example.com", "status.example.com"]),
                    json!("corp-pki")
                ),
            ],
            "the internal-only host never goes to the public issuer; plain http hosts in none"
        );
        // Without a tier issuer both use the network's; an app's own issuer overrides all.
        let certs = certificates(&app(), &network(None), &owner);
        assert!(
            certs
                .iter()
                .all(|c| c.object["spec"]["issuerRef"]["name"] == "letsencrypt-prod")
        );
        let mut own = app();
        own.spec.tls =
            serde_json::from_value(json!({"issuerRef": {"name": "team-ca", "kind": "Issuer"}}))
                .unwrap();
        let certs = certificates(&own, &network(Some(json!({"name": "corp-pki"}))), &owner);
        assert!(
            certs.iter().all(|c| c.object["spec"]["issuerRef"]
                == json!({"name": "team-ca", "kind": "Issuer", "group": "cert-manager.io"})),
            "{:?}",
            summary(&certs)
        );
    }
}
