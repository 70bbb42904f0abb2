//! What the node runs for a sample set, so the demo and the tests run the same data path:
//!
//! - `sample-workloads DIR`: a JSON List for `kubectl apply -f -` of the set's IngressClasses
//!   and the Deployments of its workloads (one backend pod per ExposedApp, see
//!   `gatehouse_tests::workloads`; with the test stack's mock issuer up, the set's OAuth2
//!   Proxy app runs a real OAuth2 Proxy).
//! - `sample-workloads --traefik DIR`: (re)starts each tier's Traefik for the set's classes
//!   (hack/stack-up.sh traefik).
//! - `sample-workloads --requests DIR`: one tab-separated line per request worth showing,
//!   `tier host url what`: per tier, the https answer of a route, its http redirect, and the
//!   sign-in redirect of a protected route.

use std::io::Write;

use gatehouse_tests::datapath::{self, SignIn};
use serde_json::Value;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, dir) = match args.as_slice() {
        [dir] => ("", dir),
        [mode, dir] if mode == "--traefik" || mode == "--requests" => (mode.as_str(), dir),
        _ => {
            eprintln!("usage: sample-workloads [--traefik|--requests] <sample set directory>");
            std::process::exit(2);
        }
    };
    let dir = std::path::PathBuf::from(dir);
    if !dir.is_dir() {
        eprintln!("sample-workloads: {} is not a directory", dir.display());
        std::process::exit(2);
    }
    let objects = gatehouse_tests::sample_objects(&dir);
    let mut out = std::io::stdout().lock();
    match mode {
        "--traefik" => datapath::start_traefik(&objects),
        "--requests" => {
            for line in requests(&objects) {
                // A closed pipe (`| head`) is not an error worth a panic.
                let _ = writeln!(out, "{line}");
            }
        }
        _ => {
            let sign_in = stack_has_issuer().then(SignIn::from_stack);
            let mut items = datapath::ingress_classes(&objects);
            items.extend(gatehouse_tests::workloads_with(&objects, sign_in.as_ref()));
            let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
            let _ = writeln!(out, "{}", serde_json::to_string_pretty(&list).unwrap());
        }
    }
}

fn stack_has_issuer() -> bool {
    std::fs::read_to_string(gatehouse_tests::cluster_dir().join("stack.env"))
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("OIDC_ISSUER=")))
}

/// Per tier: the first https route of a plain app (its answer and, with redirectToHttps, its
/// redirect) and the first protected route (the sign-in redirect).
fn requests(objects: &[Value]) -> Vec<String> {
    let oauth2 = datapath::oauth2_app(objects);
    let mut out = Vec::new();
    for (tier, _, _) in datapath::tiers(objects) {
        let mut plain = false;
        let mut protected = false;
        for app in objects.iter().filter(|o| o["kind"] == "ExposedApp") {
            if Some(app) == oauth2 {
                continue;
            }
            for route in app["spec"]["routes"].as_array().into_iter().flatten() {
                if !datapath::route_tiers(objects, route).contains(&tier) {
                    continue;
                }
                let Some(host) = route["hosts"][0].as_str() else {
                    continue;
                };
                let tls = route["tls"].as_bool().unwrap_or(true);
                let path = route["paths"][0]["path"].as_str().unwrap_or("/");
                let scheme = if tls { "https" } else { "http" };
                let auth = route["auth"].as_str() == Some("OAuth2");
                if auth && !protected {
                    protected = true;
                    out.push(format!(
                        "{tier}\t{host}\t{scheme}://{host}{path}\tsign-in redirect (no session)"
                    ));
                } else if !auth && !plain {
                    plain = true;
                    out.push(format!(
                        "{tier}\t{host}\t{scheme}://{host}{path}\tthe answer of a pod"
                    ));
                    if tls && route["redirectToHttps"].as_bool().unwrap_or(true) {
                        out.push(format!(
                            "{tier}\t{host}\thttp://{host}{path}\tredirect to https"
                        ));
                    }
                }
            }
        }
    }
    out
}
