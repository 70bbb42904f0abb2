//! `gatehouse crd`: the three CRDs as YAML (config/crd is generated from this).

/// All CRDs as one multi-document YAML stream, in a stable order.
pub fn crds_yaml() -> String {
    let mut out = String::new();
    for crd in gatehouse_api::crds() {
        out.push_str("---\n");
        out.push_str(&yaml_serde::to_string(&crd).expect("a CRD always serializes"));
    }
    out
}
