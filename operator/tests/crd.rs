//! config/crd is generated (`make crds`) from the Rust types; it must equal `gatehouse crd`.

use std::path::Path;

#[test]
fn config_crd_equals_gatehouse_crd() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/crd");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["gatehouse.dev_crds.yaml", "kustomization.yaml"],
        "config/crd holds the generated CRDs and their kustomization"
    );
    let checked_in = std::fs::read_to_string(dir.join("gatehouse.dev_crds.yaml")).unwrap();
    assert!(
        checked_in == gatehouse_operator::crd::crds_yaml(),
        "config/crd/gatehouse.dev_crds.yaml is stale: run `make crds` and commit the result"
    );
}

#[test]
fn the_chart_ships_the_same_crds() {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../charts/gatehouse/crds/gatehouse.dev_crds.yaml");
    let text = std::fs::read_to_string(chart).unwrap();
    assert!(
        text == gatehouse_operator::crd::crds_yaml(),
        "charts/gatehouse/crds is stale: run `make crds`"
    );
}

#[test]
fn crds_have_names_categories_and_status() {
    for crd in gatehouse_api::crds() {
        let names = &crd.spec.names;
        assert_eq!(
            names.categories.as_deref(),
            Some(&["gatehouse".to_string()][..]),
            "{}",
            names.kind
        );
        let short = names.short_names.clone().unwrap_or_default();
        let expected = match names.kind.as_str() {
            "ClusterNetwork" => "cnet",
            "ExposedApp" => "xapp",
            "EgressPolicy" => "egp",
            other => panic!("unexpected kind {other}"),
        };
        assert_eq!(short, [expected]);
        let version = &crd.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{} has status",
            names.kind
        );
        let scope = if names.kind == "ClusterNetwork" {
            "Cluster"
        } else {
            "Namespaced"
        };
        assert_eq!(crd.spec.scope, scope);
    }
}

/// Every property in every schema has a description (that is what `kubectl explain` shows).
#[test]
fn every_field_is_described() {
    fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, sub) in props {
                let p = format!("{path}.{name}");
                // metadata, apiVersion and kind are the API server's own.
                let standard =
                    path.is_empty() && matches!(name.as_str(), "metadata" | "apiVersion" | "kind");
                // LabelSelector and Condition internals come described from k8s-openapi.
                if !standard && sub.get("description").is_none() {
                    missing.push(p.clone());
                }
                walk(&p, sub, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    let mut missing = Vec::new();
    for crd in gatehouse_api::crds() {
        let schema = serde_json::to_value(
            &crd.spec.versions[0]
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema,
        )
        .unwrap();
        walk(&crd.spec.names.kind, &schema, &mut missing);
    }
    assert!(
        missing.is_empty(),
        "fields without description:\n{}",
        missing.join("\n")
    );
}
