//! `gatehouse render`: every child the operator would create, from files, with no cluster.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::input::{self, Origin};
use crate::render::{self, Child, Findings};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Yaml,
    Json,
}

/// Result of rendering all inputs: the children, the errors (each a full line) and notes.
pub struct Output {
    pub children: Vec<Child>,
    /// What apps add to the platform's Gateways (not children: see [`format_listeners`]).
    pub listeners: Vec<render::gateway::GatewayListeners>,
    pub errors: Vec<String>,
    pub notes: Vec<String>,
}

fn report(
    origin: &Origin,
    findings: &Findings,
    errors: &mut Vec<String>,
    notes: &mut Vec<String>,
    fatal: bool,
) {
    for f in findings.iter() {
        let line = format!("{origin}: {}: {} ({})", f.field, f.message, f.reason);
        if fatal || f.stalls {
            errors.push(line)
        } else {
            notes.push(line)
        }
    }
}

/// Renders everything in `paths`. Pure apart from reading the files.
pub fn render_paths(paths: &[PathBuf]) -> Output {
    let inputs = match input::load(paths) {
        Ok(i) => i,
        Err(errors) => {
            return Output {
                children: vec![],
                listeners: vec![],
                errors,
                notes: vec![],
            };
        }
    };
    let ctx = &inputs.ctx;
    let (mut children, mut errors, mut notes) = (Vec::new(), Vec::new(), Vec::new());
    let mut listeners = Vec::new();
    let mut take = |origin: &Origin, result: Result<render::Rendered, Findings>| match result {
        Ok(r) => {
            report(origin, &r.findings, &mut errors, &mut notes, false);
            children.extend(r.children);
            listeners.extend(r.listeners);
        }
        Err(f) => report(origin, &f, &mut errors, &mut notes, true),
    };
    for (origin, n) in &inputs.networks {
        take(origin, render::render_cluster_network(n, ctx));
    }
    for (origin, a) in &inputs.apps {
        take(origin, render::render_exposed_app(a, ctx));
    }
    for (origin, p) in &inputs.policies {
        take(origin, render::render_egress_policy(p, ctx));
    }
    children.sort_by(Child::order);
    Output {
        children,
        listeners,
        errors,
        notes,
    }
}

/// The apps' listeners in the platform's Gateways, as YAML comments after the children: the
/// operator applies each set under the app's own field manager, merging into the Gateway.
/// Commented out on purpose: applied as a plain manifest (`kubectl apply` without
/// server-side apply replaces the whole list) it would remove the Gateway's own listeners.
pub fn format_listeners(listeners: &[render::gateway::GatewayListeners]) -> String {
    let mut out = String::new();
    for l in listeners {
        out.push_str(&format!(
            "# --- listeners of field manager {} in Gateway {}/{} ({} tier), merged by server-side apply:\n",
            l.manager, l.namespace, l.gateway, l.tier
        ));
        for line in yaml_serde::to_string(&l.apply_body())
            .unwrap_or_default()
            .lines()
        {
            out.push_str(&format!("# {line}\n"));
        }
    }
    out
}

pub fn format(children: &[Child], format: Format) -> String {
    match format {
        Format::Yaml => {
            let mut out = String::new();
            for c in children {
                out.push_str("---\n");
                out.push_str(&yaml_serde::to_string(&c.object).unwrap_or_default());
            }
            out
        }
        Format::Json => {
            let items: Vec<&Value> = children.iter().map(|c| &c.object).collect();
            let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
            serde_json::to_string_pretty(&list).unwrap_or_default() + "\n"
        }
    }
}
