//! Offline validation of Gatehouse objects against the CRDs this binary generates, as the API
//! server validates them on create: structural defaults applied first, then the OpenAPI
//! schema (type, required, enum, pattern, min/max, lengths, item counts, list-type set/map
//! uniqueness, date-time format), then the CEL `x-kubernetes-validations` rules, evaluated
//! with cel-rust plus the Kubernetes extension functions our rules use (`isIP`, `isCIDR`,
//! `ip(..).family()`, `split`). So `gatehouse render` (a GitOps preview) refuses what the
//! cluster would refuse, with the field path and the rule's message.
//!
//! Transition rules (`oldSelf`) do not apply to a create, as on the server; none exist today.
//! The CRDs come from `gatehouse_api::crds()`, never from a copy, so the checker cannot drift
//! from what `make crds` installs. `tests/tests/fuzz.rs` compares its verdicts with a real
//! API server's over random inputs.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use cel::extractors::This;
use serde_json::{Map, Value};

/// One refusal: the field path (`spec.routes[0].hosts[1]`) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The `openAPIV3Schema` of every generated CRD, by kind.
fn schemas() -> &'static HashMap<String, Value> {
    static SCHEMAS: OnceLock<HashMap<String, Value>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        gatehouse_api::crds()
            .into_iter()
            .map(|crd| {
                let schema = crd.spec.versions[0]
                    .schema
                    .as_ref()
                    .and_then(|s| s.open_api_v3_schema.as_ref())
                    .map(|s| serde_json::to_value(s).expect("a schema serializes"))
                    .unwrap_or(Value::Null);
                (crd.spec.names.kind, schema)
            })
            .collect()
    })
}

/// Checks `object` (a whole ClusterNetwork, ExposedApp or EgressPolicy as JSON) as the API
/// server would on create. Empty: accepted. An unknown kind has no schema here: no violations.
pub fn check(kind: &str, object: &Value) -> Vec<Violation> {
    let Some(schema) = schemas().get(kind) else {
        return vec![];
    };
    // Only the user's part: metadata is the API server's own validation, status is ignored
    // on create (status subresource).
    let mut spec = object.get("spec").cloned().unwrap_or(Value::Null);
    let spec_schema = &schema["properties"]["spec"];
    let mut errors = Vec::new();
    if spec.is_null() {
        if required(schema).contains("spec") {
            errors.push(violation("spec", "Required value"));
        }
        return errors;
    }
    apply_defaults(spec_schema, &mut spec);
    structural(spec_schema, &spec, "spec", &mut errors);
    if errors.is_empty() {
        // Rules are evaluated on a structurally valid object only: their types hold there.
        rules(spec_schema, &spec, "spec", &mut errors);
    }
    errors
}

fn violation(path: &str, message: impl Into<String>) -> Violation {
    Violation {
        path: path.to_string(),
        message: message.into(),
    }
}

fn required(schema: &Value) -> BTreeSet<&str> {
    schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Structural defaulting as the API server does before validating: a missing property with
/// a `default` gets it, recursively into what is present.
fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema["properties"].as_object() {
                for (name, prop) in props {
                    if !map.contains_key(name)
                        && let Some(d) = prop.get("default")
                    {
                        map.insert(name.clone(), d.clone());
                    }
                    if let Some(v) = map.get_mut(name) {
                        apply_defaults(prop, v);
                    }
                }
            } else if let Some(extra) = schema.get("additionalProperties").filter(|s| s.is_object())
            {
                for v in map.values_mut() {
                    apply_defaults(extra, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for v in items {
                    apply_defaults(item, v);
                }
            }
        }
        _ => {}
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The OpenAPI part, with the API server's wording where it matters for reading.
fn structural(schema: &Value, value: &Value, path: &str, errors: &mut Vec<Violation>) {
    if value.is_null() {
        if schema["nullable"].as_bool() != Some(true) {
            errors.push(violation(path, "Invalid value: \"null\": must not be null"));
        }
        return;
    }
    let int_or_string = schema["x-kubernetes-int-or-string"].as_bool() == Some(true);
    let actual = type_name(value);
    if int_or_string {
        if actual != "integer" && actual != "string" {
            errors.push(violation(
                path,
                format!("Invalid value: {actual}: must be an integer or a string"),
            ));
            return;
        }
    } else if let Some(expected) = schema["type"].as_str() {
        let fits = expected == actual || (expected == "number" && actual == "integer");
        if !fits {
            errors.push(violation(
                path,
                format!("Invalid value: \"{actual}\": must be of type {expected}"),
            ));
            return;
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
        errors.push(violation(
            path,
            format!(
                "Unsupported value: {value}: supported values: {}",
                list.join(", ")
            ),
        ));
    }
    match value {
        Value::String(s) => string(schema, s, path, errors),
        Value::Number(n) => number(schema, n, path, errors),
        Value::Array(items) => array(schema, items, path, errors),
        Value::Object(map) => object(schema, map, path, errors),
        _ => {}
    }
}

fn string(schema: &Value, s: &str, path: &str, errors: &mut Vec<Violation>) {
    // Lengths count characters (Unicode code points), as Go's utf8.RuneCountInString.
    let len = s.chars().count() as u64;
    if let Some(max) = schema["maxLength"].as_u64()
        && len > max
    {
        errors.push(violation(
            path,
            format!("Too long: may not be more than {max} bytes"),
        ));
    }
    if let Some(min) = schema["minLength"].as_u64()
        && len < min
    {
        errors.push(violation(
            path,
            format!("Invalid value: {s:?}: should be at least {min} chars long"),
        ));
    }
    if let Some(pattern) = schema["pattern"].as_str() {
        // Go's regexp (RE2) and the regex crate share the syntax our patterns use; the
        // match is unanchored in both.
        match regex::Regex::new(pattern) {
            Ok(re) if re.is_match(s) => {}
            Ok(_) => errors.push(violation(
                path,
                format!("Invalid value: {s:?}: should match '{pattern}'"),
            )),
            Err(e) => errors.push(violation(path, format!("pattern {pattern:?}: {e}"))),
        }
    }
    if schema["format"].as_str() == Some("date-time") && !is_date_time(s) {
        errors.push(violation(
            path,
            format!("Invalid value: {s:?}: must be of format date-time"),
        ));
    }
}

/// RFC 3339 `date-time`, the shape strfmt accepts.
fn is_date_time(s: &str) -> bool {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(
            r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$",
        )
        .expect("a valid regex")
    })
    .is_match(s)
}

fn number(schema: &Value, n: &serde_json::Number, path: &str, errors: &mut Vec<Violation>) {
    let x = n.as_f64().unwrap_or(0.0);
    if let Some(max) = schema["maximum"].as_f64() {
        let exclusive = schema["exclusiveMaximum"].as_bool() == Some(true);
        if x > max || (exclusive && x == max) {
            errors.push(violation(
                path,
                format!("Invalid value: {n}: must be less than or equal to {max}"),
            ));
        }
    }
    if let Some(min) = schema["minimum"].as_f64() {
        let exclusive = schema["exclusiveMinimum"].as_bool() == Some(true);
        if x < min || (exclusive && x == min) {
            errors.push(violation(
                path,
                format!("Invalid value: {n}: must be greater than or equal to {min}"),
            ));
        }
    }
}

fn array(schema: &Value, items: &[Value], path: &str, errors: &mut Vec<Violation>) {
    let n = items.len() as u64;
    if let Some(max) = schema["maxItems"].as_u64()
        && n > max
    {
        errors.push(violation(
            path,
            format!("Too many: {n}: must have at most {max} items"),
        ));
    }
    if let Some(min) = schema["minItems"].as_u64()
        && n < min
    {
        errors.push(violation(
            path,
            format!("Invalid value: {n}: should have at least {min} items"),
        ));
    }
    match schema["x-kubernetes-list-type"].as_str() {
        Some("set") => {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    errors.push(violation(
                        &format!("{path}[{i}]"),
                        format!("Duplicate value: {item}"),
                    ));
                }
            }
        }
        Some("map") => {
            let keys: Vec<&str> = schema["x-kubernetes-list-map-keys"]
                .as_array()
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let key_of = |item: &Value| -> Vec<Value> {
                keys.iter()
                    .map(|k| item.get(*k).cloned().unwrap_or(Value::Null))
                    .collect()
            };
            for (i, item) in items.iter().enumerate() {
                let key = key_of(item);
                if items[..i].iter().any(|o| key_of(o) == key) {
                    errors.push(violation(
                        &format!("{path}[{i}]"),
                        format!("Duplicate value: {}", Value::Array(key)),
                    ));
                }
            }
        }
        _ => {}
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            structural(item_schema, item, &format!("{path}[{i}]"), errors);
        }
    }
}

fn object(schema: &Value, map: &Map<String, Value>, path: &str, errors: &mut Vec<Violation>) {
    let n = map.len() as u64;
    if let Some(max) = schema["maxProperties"].as_u64()
        && n > max
    {
        errors.push(violation(
            path,
            format!("Too many: {n}: must have at most {max} items"),
        ));
    }
    if let Some(min) = schema["minProperties"].as_u64()
        && n < min
    {
        errors.push(violation(
            path,
            format!("Invalid value: {n}: should have at least {min} properties"),
        ));
    }
    for name in required(schema) {
        if !map.contains_key(name) {
            errors.push(violation(&format!("{path}.{name}"), "Required value"));
        }
    }
    let props = schema["properties"].as_object();
    let extra = schema.get("additionalProperties").filter(|s| s.is_object());
    for (name, v) in map {
        let child = format!("{path}.{name}");
        match (props.and_then(|p| p.get(name)), extra) {
            (Some(prop), _) => structural(prop, v, &child, errors),
            (None, Some(extra)) => structural(extra, v, &child, errors),
            // Unknown fields are pruned by the API server (and refused by `render`'s typed
            // parse): not a schema violation.
            (None, None) => {}
        }
    }
}

/// The CEL rules, bottom-up like the API server: every node carrying
/// `x-kubernetes-validations`, with `self` bound to the node's (defaulted) value.
fn rules(schema: &Value, value: &Value, path: &str, errors: &mut Vec<Violation>) {
    match value {
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            let extra = schema.get("additionalProperties").filter(|s| s.is_object());
            for (name, v) in map {
                if let Some(s) = props.and_then(|p| p.get(name)).or(extra) {
                    rules(s, v, &format!("{path}.{name}"), errors);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    rules(s, v, &format!("{path}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
    let Some(validations) = schema["x-kubernetes-validations"].as_array() else {
        return;
    };
    for validation in validations {
        let Some(rule) = validation["rule"].as_str() else {
            continue;
        };
        if rule.contains("oldSelf") {
            continue; // a transition rule: not evaluated on create
        }
        let at = match validation["fieldPath"].as_str() {
            Some(fp) => format!("{path}{fp}"),
            None => path.to_string(),
        };
        // The server names the node's schema type in place of the value.
        let shown = schema["type"].as_str().unwrap_or("object");
        match evaluate(rule, value) {
            Ok(true) => {}
            Ok(false) => {
                let message = match validation["message"].as_str() {
                    Some(m) => m.to_string(),
                    None => format!("failed rule: {rule}"),
                };
                errors.push(violation(
                    &at,
                    format!("Invalid value: \"{shown}\": {message}"),
                ));
            }
            Err(e) => errors.push(violation(
                &at,
                format!("Invalid value: \"{shown}\": rule {rule:?} failed to evaluate: {e}"),
            )),
        }
    }
}

/// JSON to CEL: integers are CEL `int`, as the API server's schema-typed values are.
fn to_cel(v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => cel::Value::Int(i),
            None => cel::Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(a) => cel::Value::List(Arc::new(a.iter().map(to_cel).collect())),
        Value::Object(m) => {
            let map: HashMap<cel::objects::Key, cel::Value> = m
                .iter()
                .map(|(k, v)| (cel::objects::Key::from(k.as_str()), to_cel(v)))
                .collect();
            cel::Value::Map(cel::objects::Map { map: Arc::new(map) })
        }
    }
}

/// Kubernetes' `isIP`: an IPv4 or IPv6 address, no zone, no IPv4-mapped IPv6 form.
/// (Rust's parser, like Go's netip, refuses leading zeros in IPv4 and zones.)
fn parse_ip(s: &str) -> Option<IpAddr> {
    let ip: IpAddr = s.parse().ok()?;
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => None,
        _ => Some(ip),
    }
}

/// Kubernetes' `isCIDR` (netip.ParsePrefix): address, `/`, decimal prefix length within the
/// family's bits; host bits may be set.
fn is_cidr(s: &str) -> bool {
    let Some((addr, bits)) = s.rsplit_once('/') else {
        return false;
    };
    let Some(ip) = parse_ip(addr) else {
        return false;
    };
    if bits.is_empty()
        || !bits.bytes().all(|b| b.is_ascii_digit())
        || (bits.len() > 1 && bits.starts_with('0'))
    {
        return false;
    }
    let max = if ip.is_ipv4() { 32 } else { 128 };
    bits.parse::<u32>().is_ok_and(|b| b <= max)
}

fn env() -> &'static Arc<cel::Env> {
    static ENV: OnceLock<Arc<cel::Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = cel::Env::stdlib();
        env.add_extension(cel::extensions::strings)
            .expect("the strings extension registers");
        Arc::new(env)
    })
}

fn evaluate(rule: &str, value: &Value) -> Result<bool, String> {
    let program = env().compile(rule).map_err(|e| e.to_string())?;
    let mut ctx = cel::Context::with_env(env().clone());
    // Kubernetes' IP library, as far as our rules use it. `ip(s)` yields the checked address
    // as a string, so `.family()` can read it back.
    let registered = [
        ctx.add_function("isIP", |s: Arc<String>| parse_ip(&s).is_some()),
        ctx.add_function("isCIDR", |s: Arc<String>| is_cidr(&s)),
        ctx.add_function(
            "ip",
            |s: Arc<String>| -> Result<Arc<String>, cel::ExecutionError> {
                match parse_ip(&s) {
                    Some(_) => Ok(s),
                    None => Err(cel::ExecutionError::function_error(
                        "ip",
                        format!("IP Address {s:?} parse error"),
                    )),
                }
            },
        ),
        ctx.add_function("family", |This(s): This<Arc<String>>| -> i64 {
            match parse_ip(&s) {
                Some(IpAddr::V4(_)) => 4,
                _ => 6,
            }
        }),
    ];
    for r in registered {
        r.map_err(|e| format!("{e:?}"))?;
    }
    ctx.add_variable_from_value("self", to_cel(value));
    match program.execute(&ctx) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("rule gave {other:?}, not a bool")),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ip_and_cidr_follow_kubernetes() {
        assert!(parse_ip("10.0.0.1").is_some());
        assert!(parse_ip("2001:db8::1").is_some());
        assert!(parse_ip("010.0.0.1").is_none());
        assert!(parse_ip("::ffff:10.0.0.1").is_none());
        assert!(parse_ip("fe80::1%eth0").is_none());
        assert!(is_cidr("10.0.0.1/8"));
        assert!(is_cidr("2001:db8::/64"));
        assert!(!is_cidr("10.0.0.0/33"));
        assert!(!is_cidr("10.0.0.0/08"));
        assert!(!is_cidr("10.0.0.0"));
    }

    #[test]
    fn refuses_what_the_schema_and_rules_refuse() {
        let app = |spec: Value| json!({"apiVersion": "gatehouse.dev/v1alpha1", "kind": "ExposedApp", "metadata": {"name": "a"}, "spec": spec});
        let ok = app(json!({"selector": {"app": "a"}, "ports": [{"name": "http", "port": 80}]}));
        assert_eq!(check("ExposedApp", &ok), vec![]);
        // A CEL rule: two ports of one name.
        let dup = app(
            json!({"selector": {"app": "a"}, "ports": [{"name": "http", "port": 80}, {"name": "http", "port": 81}]}),
        );
        let v = check("ExposedApp", &dup);
        assert!(!v.is_empty(), "{v:?}");
        // The schema: a port out of range.
        let big =
            app(json!({"selector": {"app": "a"}, "ports": [{"name": "http", "port": 70000}]}));
        let v = check("ExposedApp", &big);
        assert_eq!(v[0].path, "spec.ports[0].port", "{v:?}");
        let net = json!({"apiVersion": "gatehouse.dev/v1alpha1", "kind": "ClusterNetwork", "metadata": {"name": "n"},
            "spec": {"loadBalancer": {"provider": "MetalLB", "pools": [{"name": "p", "addresses": ["10.0.0.1-10.0.0.9", "10.1.0.0/24"]}]}}});
        assert_eq!(check("ClusterNetwork", &net), vec![]);
        let mixed = json!({"apiVersion": "gatehouse.dev/v1alpha1", "kind": "ClusterNetwork", "metadata": {"name": "n"},
            "spec": {"loadBalancer": {"provider": "MetalLB", "pools": [{"name": "p", "addresses": ["10.0.0.1-2001:db8::1"]}]}}});
        let v = check("ClusterNetwork", &mixed);
        assert!(
            v[0].path
                .starts_with("spec.loadBalancer.pools[0].addresses[0]"),
            "{v:?}"
        );
    }
}
