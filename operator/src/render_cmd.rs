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
                errors,
                notes: vec![],
            };
        }
    };
    let ctx = &inputs.ctx;
    let (mut children, mut errors, mut notes) = (Vec::new(), Vec::new(), Vec::new());
    let mut take = |origin: &Origin, result: Result<render::Rendered, Findings>| match result {
        Ok(r) => {
            report(origin, &r.findings, &mut errors, &mut notes, false);
            children.extend(r.children);
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
        errors,
        notes,
    }
}

pub fn format(children: &[Child], format: Format) -> String {
    match format {
        Format::Yaml => {
            let mut out = String::new();
            for c in children {
                out.push_str("---\n");
                out.push_str(&serde_yaml::to_string(&c.object).unwrap_or_default());
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
