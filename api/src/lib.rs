//! Gatehouse CRD types (gatehouse.dev/v1alpha1): ClusterNetwork, ExposedApp, EgressPolicy.
//!
//! Everything the API server can check lives here as schema: patterns, enums, ranges and
//! CEL rules (`x-kubernetes-validations`). Semantic checks that need more than one object
//! (a host outside its tier's zone, an unknown pool) live in the operator's `validate` step.
//! No client I/O in this crate.

pub mod cluster_network;
pub mod common;
pub mod egress_policy;
pub mod exposed_app;
pub mod labels;
pub mod peer;
pub mod schema;

pub use cluster_network::*;
pub use common::*;
pub use egress_policy::*;
pub use exposed_app::*;
pub use peer::*;

/// API group of every Gatehouse kind.
pub const GROUP: &str = "gatehouse.dev";
/// The one served and stored version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` string of every Gatehouse kind.
pub const API_VERSION: &str = "gatehouse.dev/v1alpha1";

/// The three CRDs, in a stable order (the order `gatehouse crd` prints them).
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    let mut crds = vec![
        ClusterNetwork::crd(),
        EgressPolicy::crd(),
        ExposedApp::crd(),
    ];
    for crd in &mut crds {
        for version in &mut crd.spec.versions {
            let Some(schema) = version
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
            else {
                continue;
            };
            let mut value = serde_json::to_value(&*schema).expect("a schema serializes");
            schema::bound_label_selectors(&mut value);
            *schema = serde_json::from_value(value).expect("a bounded schema deserializes");
        }
    }
    crds
}
