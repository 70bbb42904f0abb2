//! Peers: who may talk to an app (`allowFrom`) or whom pods may reach (`rules[].to`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::LabelSelector;

/// Exactly one kind of peer: `app`, `service`, selectors (`namespaceSelector` and/or
/// `podSelector`), `cidr` (with optional `except`), or `fqdn` or `apiServer` (egress only).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "[has(self.app), has(self.service), has(self.namespaceSelector) || has(self.podSelector), has(self.cidr), has(self.fqdn), has(self.apiServer)].filter(x, x).size() == 1",
        "message": "a peer must set exactly one of app, service, namespaceSelector/podSelector, cidr, fqdn, apiServer"
    },
    {"rule": "!has(self.except) || has(self.cidr)", "message": "except is only allowed together with cidr"}
]))]
pub struct Peer {
    /// An ExposedApp; resolves to its pod selector in its namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<LocalRef>,
    /// A Service; resolves to its pod selector in its namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<LocalRef>,
    /// Namespaces whose pods are peers (with `podSelector`: only those pods). Standard LabelSelector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Pods that are peers; alone it means pods of the object's own namespace. Standard LabelSelector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// An IP block, v4 or v6, e.g. `10.0.0.0/8` or `2001:db8::/32`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::cidr")]
    pub cidr: Option<String>,
    /// CIDRs inside `cidr` that are not peers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::cidr_list")]
    pub except: Vec<String>,
    /// A DNS name (`api.example.com`) or wildcard (`*.example.com`). Egress only; needs
    /// `policy.engine: Cilium` on the network (otherwise Stalled with reason FQDNUnsupported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::host")]
    pub fqdn: Option<String>,
    /// The cluster's API server (`apiServer: {}`), egress only: its addresses and ports as
    /// the `default/kubernetes` Service and its EndpointSlice say them now, followed live,
    /// so the rule stays right when control-plane addresses change. A rule without `ports`
    /// gets the API server's ports. Under `policy.engine: Cilium` also Cilium's
    /// `kube-apiserver` entity (Cilium does not match the API server by ipBlock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_server: Option<ApiServerPeer>,
}

/// The API server peer; it has no settings (see `Peer::api_server`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ApiServerPeer {}

/// A reference by name, in the referrer's namespace unless `namespace` is given.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalRef {
    /// Name of the referenced object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the referenced object; default: the referrer's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

impl Peer {
    /// Short human form for status and messages, e.g. `app wordpress/wordpress`.
    pub fn describe(&self, own_namespace: &str) -> String {
        let r = |r: &LocalRef| {
            format!(
                "{}/{}",
                r.namespace.as_deref().unwrap_or(own_namespace),
                r.name
            )
        };
        if let Some(a) = &self.app {
            format!("app {}", r(a))
        } else if let Some(s) = &self.service {
            format!("service {}", r(s))
        } else if let Some(c) = &self.cidr {
            if self.except.is_empty() {
                format!("cidr {c}")
            } else {
                format!("cidr {c} except {}", self.except.join(","))
            }
        } else if let Some(f) = &self.fqdn {
            format!("fqdn {f}")
        } else if self.api_server.is_some() {
            "the API server".into()
        } else {
            "selector".into()
        }
    }
}
