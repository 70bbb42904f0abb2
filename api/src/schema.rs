//! Schema fragments for validated strings and lists, shared by the three kinds.
//!
//! Formats the OpenAPI `format` keyword cannot express for both IP families are checked with
//! the API server's CEL IP/CIDR library (`isIP`, `isCIDR`), which is exact, instead of long
//! regular expressions. Every list and string has a bound so CEL cost estimates stay within
//! the API server's budget.

use schemars::{Schema, SchemaGenerator, json_schema};

/// DNS-1123 subdomain with an optional leading `*.` wildcard label, lowercase.
pub const HOST_PATTERN: &str =
    r"^(\*\.)?([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$";
/// DNS-1123 label (names of pools, attachments, ClusterNetworks references).
pub const LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$";
/// IANA service name, as Kubernetes requires for named ports.
pub const PORT_NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// Label value, as Kubernetes validates a Service selector's values (empty allowed).
pub const LABEL_VALUE_PATTERN: &str = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$";
/// IANA service name as a Service's `targetPort` or a NetworkPolicy port must be: tokens of
/// [a-z0-9] joined by single hyphens, at least one letter (RE2 has no lookahead).
pub const TARGET_PORT_NAME_PATTERN: &str = r"^([0-9]+-)*[0-9]*[a-z][a-z0-9]*(-[a-z0-9]+)*$";
/// A unicast MAC address, colon separated.
pub const MAC_PATTERN: &str = r"^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$";

pub const MAX_LIST: u32 = 64;
pub const MAX_HOSTS: u32 = 32;

pub fn host(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "maxLength": 253, "pattern": HOST_PATTERN})
}

/// A list of DNS names, each DNS-1123 with an optional `*.` wildcard, no duplicates.
pub fn host_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": MAX_HOSTS,
        "items": {"type": "string", "maxLength": 253, "pattern": HOST_PATTERN},
        "x-kubernetes-validations": [
            {"rule": "self.all(h, self.filter(x, x == h).size() == 1)", "message": "hosts must be unique"}
        ]
    })
}

/// Same as [`host_list`] but with at least one entry (a route must have a host).
pub fn host_list_required(g: &mut SchemaGenerator) -> Schema {
    let mut s = host_list(g);
    s.insert("minItems".into(), 1.into());
    s
}

pub fn label_name(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "minLength": 1, "maxLength": 63, "pattern": LABEL_PATTERN})
}

pub fn optional_label_name(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "minLength": 1, "maxLength": 63, "pattern": LABEL_PATTERN})
}

pub fn port_name(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "minLength": 1, "maxLength": 15, "pattern": PORT_NAME_PATTERN})
}

/// Up to 32 port names (each one of the object's own `ports[].name`).
pub fn port_name_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "array", "maxItems": 32, "items": {"type": "string", "minLength": 1, "maxLength": 15, "pattern": PORT_NAME_PATTERN}})
}

/// A BGP AS number (4-byte ASNs included; 0 is reserved).
pub fn asn(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "integer", "format": "int64", "minimum": 1, "maximum": 4294967295u32})
}

pub fn port_number(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "integer", "format": "int32", "minimum": 1, "maximum": 65535})
}

/// One IP address, v4 or v6, without a prefix.
pub fn ip(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string", "maxLength": 45,
        "x-kubernetes-validations": [{"rule": "isIP(self)", "message": "must be an IPv4 or IPv6 address"}]
    })
}

/// A list of IP addresses (v4 and/or v6), no prefix.
pub fn ip_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array", "maxItems": 16,
        "items": {
            "type": "string", "maxLength": 45,
            "x-kubernetes-validations": [{"rule": "isIP(self)", "message": "must be an IPv4 or IPv6 address"}]
        }
    })
}

/// One CIDR, v4 or v6.
pub fn cidr(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string", "maxLength": 49,
        "x-kubernetes-validations": [{"rule": "isCIDR(self)", "message": "must be a CIDR such as 10.0.0.0/8 or 2001:db8::/32"}]
    })
}

/// A list of CIDRs, v4 and/or v6.
pub fn cidr_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array", "maxItems": 16,
        "items": {
            "type": "string", "maxLength": 49,
            "x-kubernetes-validations": [{"rule": "isCIDR(self)", "message": "must be a CIDR such as 10.0.0.0/8 or 2001:db8::/32"}]
        }
    })
}

/// Addresses with a prefix length (`192.168.31.13/24`), as Multus static IPs are written.
pub fn ip_with_prefix_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array", "maxItems": 8,
        "items": {
            "type": "string", "maxLength": 49,
            "x-kubernetes-validations": [{"rule": "isCIDR(self)", "message": "must be an address with prefix length such as 192.168.31.13/24 or 2001:db8::13/64"}]
        }
    })
}

/// Pool address entries: a CIDR or an inclusive `first-last` range of one family.
pub fn pool_address_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array", "minItems": 1, "maxItems": 16,
        "items": {
            "type": "string", "maxLength": 100,
            "x-kubernetes-validations": [{
                "rule": "isCIDR(self) || (self.split('-').size() == 2 && isIP(self.split('-')[0]) && isIP(self.split('-')[1]) && ip(self.split('-')[0]).family() == ip(self.split('-')[1]).family())",
                "message": "must be a CIDR (192.168.0.0/24, 2001:db8::/120) or a range first-last of one family (192.168.0.10-192.168.0.20)"
            }]
        }
    })
}

pub fn mac(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "pattern": MAC_PATTERN, "maxLength": 17})
}

/// Namespace names (DNS-1123 labels).
pub fn namespace_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array", "minItems": 1, "maxItems": MAX_LIST,
        "items": {"type": "string", "maxLength": 63, "pattern": LABEL_PATTERN}
    })
}

/// A plain, non-empty label map (it becomes a Service selector).
pub fn selector_map(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object", "minProperties": 1, "maxProperties": 16,
        "additionalProperties": {"type": "string", "maxLength": 63, "pattern": LABEL_VALUE_PATTERN}
    })
}

/// A container port: number 1-65535 or IANA name (found by the fuzz test: the Service and
/// NetworkPolicy rendered from any other string are refused by the API server).
pub fn target_port(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-int-or-string": true,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "minimum": 1, "maximum": 65535,
        "maxLength": 15, "pattern": TARGET_PORT_NAME_PATTERN
    })
}

/// Bounds of every LabelSelector (the type comes from k8s-openapi without any): generous
/// for real selectors, small enough that one object cannot make the API server's CEL cost
/// estimate or the operator's policy rendering unbounded.
pub const MAX_MATCH_LABELS: u32 = 64;
pub const MAX_MATCH_EXPRESSIONS: u32 = 32;
pub const MAX_EXPRESSION_VALUES: u32 = 64;
/// A label key: a DNS subdomain prefix (253), `/` and a name (63).
pub const MAX_LABEL_KEY: u32 = 317;
/// A label value.
pub const MAX_LABEL_VALUE: u32 = 63;

/// Adds the LabelSelector bounds above to every LabelSelector in a CRD schema (an object
/// schema with `matchLabels` and `matchExpressions`), and the operators Kubernetes knows
/// as an enum: an unknown operator would only fail later, in the NetworkPolicy written.
pub fn bound_label_selectors(node: &mut serde_json::Value) {
    use serde_json::json;
    let Some(obj) = node.as_object_mut() else {
        return;
    };
    let is_selector = obj
        .get("properties")
        .and_then(|p| p.as_object())
        .is_some_and(|p| p.contains_key("matchLabels") && p.contains_key("matchExpressions"));
    if is_selector {
        let props = &mut obj["properties"];
        let labels = &mut props["matchLabels"];
        labels["maxProperties"] = json!(MAX_MATCH_LABELS);
        labels["additionalProperties"]["maxLength"] = json!(MAX_LABEL_VALUE);
        let exprs = &mut props["matchExpressions"];
        exprs["maxItems"] = json!(MAX_MATCH_EXPRESSIONS);
        let item = &mut exprs["items"]["properties"];
        item["key"]["maxLength"] = json!(MAX_LABEL_KEY);
        item["operator"]["enum"] = json!(["In", "NotIn", "Exists", "DoesNotExist"]);
        item["values"]["maxItems"] = json!(MAX_EXPRESSION_VALUES);
        item["values"]["items"]["maxLength"] = json!(MAX_LABEL_VALUE);
    }
    for child in obj.values_mut() {
        match child {
            serde_json::Value::Object(_) => bound_label_selectors(child),
            serde_json::Value::Array(items) => items.iter_mut().for_each(bound_label_selectors),
            _ => {}
        }
    }
}
