//! Reading Gatehouse inputs from YAML/JSON files, directories or stdin for `gatehouse render`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use gatehouse_api::{ClusterNetwork, EgressPolicy, ExposedApp};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::render::Context;

/// Where an object came from, for error messages: `file: Kind namespace/name`.
#[derive(Clone, Debug)]
pub struct Origin {
    pub file: String,
    pub kind: String,
    pub name: String,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} {}", self.file, self.kind, self.name)
    }
}

/// Everything read from the inputs.
#[derive(Default)]
pub struct Inputs {
    pub ctx: Context,
    pub networks: Vec<(Origin, ClusterNetwork)>,
    pub apps: Vec<(Origin, ExposedApp)>,
    pub policies: Vec<(Origin, EgressPolicy)>,
}

/// Expands `-f` arguments: files as given, directories recursively (`.yaml`, `.yml`,
/// `.json`, sorted), `-` for stdin.
fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            out.push(p.clone());
        } else if p.is_dir() {
            let mut stack = vec![p.clone()];
            let mut found = Vec::new();
            while let Some(dir) = stack.pop() {
                let entries =
                    std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                for entry in entries {
                    let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
                    if path.is_dir() {
                        stack.push(path);
                    } else if matches!(
                        path.extension().and_then(|e| e.to_str()),
                        Some("yaml" | "yml" | "json")
                    ) {
                        found.push(path);
                    }
                }
            }
            found.sort();
            out.extend(found);
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(format!("{}: no such file or directory", p.display()));
        }
    }
    Ok(out)
}

fn read(path: &Path) -> Result<String, String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("-: {e}"))?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
    }
}

fn parse<T: DeserializeOwned>(value: Value, what: &str) -> Result<T, String> {
    // Unknown fields are errors, as they are for the API server's server-side apply: a
    // misspelt field must not vanish silently.
    let mut unknown = Vec::new();
    let parsed: Result<T, _> = serde_ignored::deserialize(&value, |path| {
        // The derived custom-resource types read apiVersion/kind through TypeMeta checks
        // elsewhere; they are not unknown.
        let path = path.to_string();
        if path != "apiVersion" && path != "kind" {
            unknown.push(path);
        }
    });
    if let Some(field) = unknown.first() {
        return Err(format!("{what}: {field}: field not declared in the schema"));
    }
    if parsed.is_ok() {
        return parsed.map_err(|e| e.to_string());
    }
    // The path names the offending field, e.g. `spec.ipFamilies: invalid type ...`.
    serde_path_to_error::deserialize(value)
        .map_err(|e| format!("{what}: {}: {}", e.path(), e.inner()))
}

/// Reads every document; errors name the file, the document and what is wrong.
pub fn load(paths: &[PathBuf]) -> Result<Inputs, Vec<String>> {
    let files = expand(paths).map_err(|e| vec![e])?;
    let mut inputs = Inputs::default();
    let mut errors = Vec::new();
    let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
    for path in files {
        let file = if path.as_os_str() == "-" {
            "<stdin>".to_string()
        } else {
            path.display().to_string()
        };
        let text = match read(&path) {
            Ok(t) => t,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        for (index, doc) in yaml_serde::Deserializer::from_str(&text).enumerate() {
            let value = match Value::deserialize_from(doc) {
                Ok(Value::Null) => continue,
                Ok(v) => v,
                Err(e) => {
                    errors.push(format!(
                        "{file}: document {}: not valid YAML: {e}",
                        index + 1
                    ));
                    break; // the YAML stream cannot be resynchronised after a syntax error
                }
            };
            if let Err(e) = add(&mut inputs, &mut seen, &file, index + 1, value) {
                // One line per problem (a schema refusal can name several fields).
                errors.extend(e.lines().map(str::to_string));
            }
        }
    }
    if errors.is_empty() {
        Ok(inputs)
    } else {
        Err(errors)
    }
}

trait DeserializeFrom: Sized {
    fn deserialize_from(doc: yaml_serde::Deserializer) -> Result<Self, yaml_serde::Error>;
}
impl DeserializeFrom for Value {
    fn deserialize_from(doc: yaml_serde::Deserializer) -> Result<Self, yaml_serde::Error> {
        serde::Deserialize::deserialize(doc)
    }
}

fn add(
    inputs: &mut Inputs,
    seen: &mut BTreeMap<(String, String), String>,
    file: &str,
    index: usize,
    mut value: Value,
) -> Result<(), String> {
    let api_version = value["apiVersion"].as_str().unwrap_or_default().to_string();
    let kind = value["kind"].as_str().unwrap_or_default().to_string();
    let name = value["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let at = format!("{file}: document {index}");
    if name.is_empty() {
        return Err(format!("{at}: {kind} has no metadata.name"));
    }
    let namespaced = matches!(
        kind.as_str(),
        "ExposedApp" | "EgressPolicy" | "Service" | "EndpointSlice" | "Gateway"
    );
    if namespaced && value["metadata"]["namespace"].as_str().is_none() {
        // As kubectl does without -n.
        value["metadata"]["namespace"] = Value::String("default".into());
    }
    let display = match value["metadata"]["namespace"].as_str() {
        Some(ns) if namespaced => format!("{ns}/{name}"),
        _ => name.clone(),
    };
    let origin = Origin {
        file: file.to_string(),
        kind: kind.clone(),
        name: display.clone(),
    };
    let expected = match kind.as_str() {
        "ClusterNetwork" | "ExposedApp" | "EgressPolicy" => gatehouse_api::API_VERSION,
        "Namespace" | "Service" => "v1",
        "EndpointSlice" => "discovery.k8s.io/v1",
        "Gateway" => "gateway.networking.k8s.io/v1",
        other => {
            return Err(format!(
                "{at}: kind {other:?} ({api_version}) is not an input of gatehouse render (ClusterNetwork, ExposedApp, EgressPolicy, Namespace, Service, EndpointSlice, Gateway)"
            ));
        }
    };
    if api_version != expected {
        return Err(format!(
            "{at}: {kind} {display}: apiVersion {api_version:?} is not {expected:?}"
        ));
    }
    if let Some(previous) = seen.insert((kind.clone(), display.clone()), file.to_string()) {
        return Err(format!(
            "{at}: {kind} {display} is also defined in {previous}"
        ));
    }
    let what = format!("{origin}");
    // What the API server's schema and CEL rules would refuse, refused here too (so a
    // GitOps preview catches it), with the field path and the rule's message.
    let refused = crate::schema_check::check(&kind, &value);
    if !refused.is_empty() {
        let lines: Vec<String> = refused.iter().map(|v| format!("{what}: {v}")).collect();
        return Err(lines.join("\n"));
    }
    match kind.as_str() {
        "ClusterNetwork" => {
            let n: ClusterNetwork = parse(value, &what)?;
            inputs.ctx.add_network(n.clone());
            inputs.networks.push((origin, n));
        }
        "ExposedApp" => {
            let a: ExposedApp = parse(value, &what)?;
            inputs.ctx.add_app(a.clone());
            inputs.apps.push((origin, a));
        }
        "EgressPolicy" => {
            let p: EgressPolicy = parse(value, &what)?;
            // Its namespace exists even without a Namespace document, and default deny
            // reaches it as it would in a cluster.
            inputs
                .ctx
                .add_object_namespace(&p.namespace().unwrap_or_else(|| "default".into()));
            inputs.policies.push((origin, p));
        }
        "Namespace" => inputs.ctx.add_namespace(parse::<Namespace>(value, &what)?),
        "Service" => inputs.ctx.add_service(parse::<Service>(value, &what)?),
        // Only the API server's (default/kubernetes) are read; others are ignored.
        "EndpointSlice" => inputs
            .ctx
            .add_endpoint_slice(parse::<EndpointSlice>(value, &what)?),
        // The platform's Gateways, where a set declares them beside its ClusterNetwork: they
        // render nothing (the apps' listeners in them come from the apps).
        "Gateway" => {}
        _ => unreachable!("kinds filtered above"),
    }
    Ok(())
}
