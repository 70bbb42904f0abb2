//! Traffic really flows: every sample set (and a Traefik-flavoured sign-in set) served end
//! to end on the test node. Its workloads run as pods of the test backend (and its OAuth2
//! Proxy app as a real OAuth2 Proxy against a mock OIDC issuer); each tier's real Traefik
//! reads the set's Ingresses (Traefik's own provider, or its NGINX provider for the
//! ingress-nginx tiers) and Middlewares; a real HTTP client (curl) resolves every route host
//! through the tier's BIND server and connects to that tier's Traefik:
//!
//! - https answers from a pod of the right app, with exactly the certificate cert-manager
//!   issued for the app (verified against the stack's CA by curl, never skipped);
//! - http is a permanent redirect to https where `redirectToHttps`, else the app's answer;
//! - `auth: OAuth2` sends a browser without a session to sign in (a redirect to the issuer,
//!   not a bare 401), and the whole OIDC flow ends at the app with a session cookie;
//! - a host not served on a tier gets that tier's 404, never a backend.
//!
//! The tier addresses DNS publishes (load-balancer or router addresses) do not exist on this
//! machine: the client maps them to the tier's Traefik on loopback, as the router's port
//! forward or the load balancer does in the seeds. The request table is printed per set.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gatehouse_tests::datapath::{self, Answer, Browser, SignIn};
use gatehouse_tests::policy;
use gatehouse_tests::sets::{
    apply_set, converge, delete_set, namespaces_of, owners, played_load_balancer,
};
use gatehouse_tests::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::Value;

/// One request of the table: what was asked, what was expected, what came back.
struct Row {
    host: String,
    tier: String,
    scheme: &'static str,
    expected: String,
    got: String,
    ok: bool,
}

/// What a request should give.
#[derive(Clone, Debug)]
enum Expect {
    /// 200 from a pod of `app`, for `host path`; over https with exactly `cert`.
    Backend { app: String, cert: Option<String> },
    /// 200 with this body (the OAuth2 Proxy's own /ping).
    Body(String),
    /// A permanent redirect (301 or 308) to exactly this URL.
    Redirect(String),
    /// A redirect into the sign-in flow: to the issuer's authorize endpoint; over https with
    /// exactly `cert`.
    SignIn { cert: Option<String> },
    /// The tier's 404: no router for the host.
    NotFound,
}

impl Expect {
    fn describe(&self) -> String {
        match self {
            Expect::Backend { app, cert } => format!(
                "200 from {app}{}",
                if cert.is_some() { " + issued cert" } else { "" }
            ),
            Expect::Body(b) => format!("200 {b:?}"),
            Expect::Redirect(to) => format!("301/308 -> {to}"),
            Expect::SignIn { cert } => format!(
                "302 -> issuer /authorize{}",
                if cert.is_some() { " + issued cert" } else { "" }
            ),
            Expect::NotFound => "404".into(),
        }
    }

    fn check(&self, a: &Answer, issuer: &str) -> Result<String, String> {
        let got = if a.status == 0 {
            format!("no answer: {}", a.error)
        } else if a.location.is_empty() {
            format!("{} {}", a.status, a.pod())
        } else {
            format!("{} -> {}", a.status, a.location)
        };
        let ok = match self {
            Expect::Backend { app, cert } => {
                a.status == 200
                    && a.pod().starts_with(&format!("{app}-backend-"))
                    && cert.as_ref().is_none_or(|c| *c == a.leaf_pem)
            }
            Expect::Body(b) => a.status == 200 && a.body.trim() == b,
            Expect::Redirect(to) => (a.status == 301 || a.status == 308) && a.location == *to,
            Expect::SignIn { cert } => {
                a.status == 302
                    && a.location.starts_with(&format!("{issuer}/authorize"))
                    && cert.as_ref().is_none_or(|c| *c == a.leaf_pem)
            }
            Expect::NotFound => a.status == 404 && !a.body.contains("-backend-"),
        };
        let cert_note = match self {
            Expect::Backend { cert: Some(c), .. } | Expect::SignIn { cert: Some(c) }
                if a.status != 0 && *c != a.leaf_pem =>
            {
                " (served certificate is not the issued one)"
            }
            _ => "",
        };
        if ok {
            Ok(got)
        } else {
            Err(format!("{got}{cert_note}"))
        }
    }
}

/// Retries a request until it gives what is expected or 30 s pass (Traefik picks up
/// Ingresses, Secrets and EndpointSlices from its watches within seconds).
async fn request(
    browser: &Browser,
    url: &str,
    expect: &Expect,
    issuer: &str,
) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = browser.get(url, false);
        match expect.check(&a, issuer) {
            Ok(got) => return Ok(got),
            Err(got) if Instant::now() > deadline => return Err(got),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// The addresses a tier's BIND server answers for a host (A, else AAAA), waiting up to 30 s
/// for them: external-dns records the DNSEndpoint's observedGeneration (which `DNSPublished`
/// reads) when it reads the object, before its RFC 2136 update reaches BIND, so the name can
/// resolve one sync later than the app turns Ready.
async fn resolve(tier: &str, host: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for kind in ["A", "AAAA"] {
            let answer = dig(tier, host, kind);
            if !answer.records.is_empty() {
                return answer.records;
            }
        }
        if Instant::now() > deadline {
            return Vec::new();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The leaf certificate (PEM, whitespace-normalized) of Secret `ns/name`.
async fn issued_leaf(client: &Client, ns: &str, name: &str) -> String {
    let secret = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("Secret {ns}/{name}: {e}"));
    let pem = &secret.data.as_ref().unwrap()["tls.crt"].0;
    datapath::first_pem(&String::from_utf8_lossy(pem))
}

/// Waits until every Deployment of the set's workloads has all replicas available.
async fn workloads_available(client: &Client, workloads: &[Value]) {
    for w in workloads {
        let ns = w["metadata"]["namespace"].as_str().unwrap().to_string();
        let name = w["metadata"]["name"].as_str().unwrap().to_string();
        let api = Api::<Deployment>::namespaced(client.clone(), &ns);
        eventually(
            Duration::from_secs(120),
            &format!("Deployment {ns}/{name} to be available"),
            || {
                let api = api.clone();
                let name = name.clone();
                async move {
                    let d = api.get(&name).await.ok()?;
                    (d.status?.available_replicas? >= 1).then_some(())
                }
            },
        )
        .await;
    }
}

/// Every request of a set's table, checked.
async fn requests(client: &Client, set: &str, objects: &[Value], issuer: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let oauth2_app = datapath::oauth2_app(objects).map(|a| a["metadata"]["name"].clone());
    let all_tiers: Vec<String> = datapath::tiers(objects).into_iter().map(|t| t.0).collect();
    for app in objects.iter().filter(|o| o["kind"] == "ExposedApp") {
        let name = app["metadata"]["name"].as_str().unwrap().to_string();
        let ns = app["metadata"]["namespace"].as_str().unwrap_or("default");
        let dns_enabled = app["spec"]["dns"]["enabled"].as_bool().unwrap_or(true);
        let is_oauth2 = oauth2_app.as_ref() == Some(&app["metadata"]["name"]);
        for route in app["spec"]["routes"].as_array().into_iter().flatten() {
            let tls = route["tls"].as_bool().unwrap_or(true);
            let redirect = tls && route["redirectToHttps"].as_bool().unwrap_or(true);
            let auth = route["auth"].as_str() == Some("OAuth2");
            let path = route["paths"][0]["path"]
                .as_str()
                .unwrap_or("/")
                .to_string();
            // The OAuth2 Proxy answers its own health path; every other app is the backend.
            let (path, answer) = if is_oauth2 {
                ("/ping".to_string(), Expect::Body("OK".into()))
            } else {
                (
                    path,
                    Expect::Backend {
                        app: name.clone(),
                        cert: None,
                    },
                )
            };
            let served = datapath::route_tiers(objects, route);
            for host in route["hosts"].as_array().into_iter().flatten() {
                let host = host.as_str().unwrap().to_string();
                for tier in &all_tiers {
                    // Each tier serves the certificate of its own tier.
                    let cert = if tls && served.contains(tier) {
                        Some(issued_leaf(client, ns, &format!("{name}-{tier}-tls")).await)
                    } else {
                        None
                    };
                    let traefik = datapath::traefik_addr(tier);
                    let mut row =
                        |scheme: &'static str, expect: &Expect, got: Result<String, String>| {
                            rows.push(Row {
                                host: host.clone(),
                                tier: tier.clone(),
                                scheme,
                                expected: expect.describe(),
                                ok: got.is_ok(),
                                got: got.unwrap_or_else(|e| e),
                            })
                        };
                    let browser = Browser::new(&[(host.clone(), traefik.clone())]);
                    if !served.contains(tier) {
                        let got = request(
                            &browser,
                            &format!("http://{host}{path}"),
                            &Expect::NotFound,
                            issuer,
                        )
                        .await;
                        row("http", &Expect::NotFound, got);
                        continue;
                    }
                    // The name resolves through the tier's BIND server to the tier's addresses.
                    if dns_enabled && resolve(tier, &host).await.is_empty() {
                        row(
                            "dns",
                            &Expect::Body("an address".into()),
                            Err(format!(
                                "{host} does not resolve on the {tier} tier within 30 s"
                            )),
                        );
                        continue;
                    }
                    let main = if auth {
                        Expect::SignIn {
                            cert: if tls { cert.clone() } else { None },
                        }
                    } else if let Expect::Backend { app, .. } = &answer {
                        Expect::Backend {
                            app: app.clone(),
                            cert: if tls { cert.clone() } else { None },
                        }
                    } else {
                        answer.clone()
                    };
                    let scheme = if tls { "https" } else { "http" };
                    let url = format!("{scheme}://{host}{path}");
                    let got = request(&browser, &url, &main, issuer).await;
                    row(scheme, &main, got);
                    if tls {
                        // Plain http carries no certificate: the same answer, without one.
                        let http = match &main {
                            _ if redirect => Expect::Redirect(format!("https://{host}{path}")),
                            Expect::Backend { app, .. } => Expect::Backend {
                                app: app.clone(),
                                cert: None,
                            },
                            Expect::SignIn { .. } => Expect::SignIn { cert: None },
                            other => other.clone(),
                        };
                        let got =
                            request(&browser, &format!("http://{host}{path}"), &http, issuer).await;
                        row("http", &http, got);
                    }
                    // A tier pinned to entry points (seed 001's web and websecure) is not
                    // served on another one: Traefik's own ping entry point here.
                    let pinned = datapath::network(objects)
                        .map(|n| n["spec"]["ingress"][tier.as_str()]["entryPoints"].is_object())
                        .unwrap_or(false);
                    if pinned {
                        let port = stack_env(&format!("TRAEFIK_{}_PING_PORT", tier.to_uppercase()));
                        let got = other_entry_point(&host, &port, &path);
                        row("entrypoint", &Expect::NotFound, got);
                    }
                    if auth {
                        let got = sign_in(objects, tier, &host, &url, &name, cert.as_deref());
                        row(
                            "oidc",
                            &Expect::Backend {
                                app: name.clone(),
                                cert: cert.clone(),
                            },
                            got,
                        );
                    }
                }
            }
        }
    }
    println!("{set}: {} requests", rows.len());
    rows
}

/// The status code of plain http to `host` on another entry point of the tier's Traefik
/// (its ping entry point on 127.0.0.1).
fn other_entry_point(host: &str, port: &str, path: &str) -> Result<String, String> {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("http://{host}:{port}{path}"))
        .output()
        .map_err(|e| e.to_string())?;
    match String::from_utf8_lossy(&out.stdout).trim() {
        "404" => Ok(format!("404 on entry point traefik (127.0.0.1:{port})")),
        code => Err(format!(
            "{code} on entry point traefik (127.0.0.1:{port}): served outside the tier's entry points"
        )),
    }
}

/// The whole sign-in: a browser with an empty cookie jar follows every redirect (the app ->
/// the issuer's authorize endpoint -> the OAuth2 Proxy's callback -> the app) and lands on
/// the app's pod; the session cookie then lets it straight in.
fn sign_in(
    objects: &[Value],
    tier: &str,
    host: &str,
    url: &str,
    app: &str,
    cert: Option<&str>,
) -> Result<String, String> {
    let auth_host = datapath::url_host(&datapath::oauth2_url(objects).unwrap());
    let traefik = datapath::traefik_addr(tier);
    let browser =
        Browser::new(&[(host.to_string(), traefik.clone()), (auth_host, traefik)]).with_cookies();
    let first = browser.get(url, true);
    // After redirects curl reports the certificates of the last handshake, which may belong
    // to a reused connection: the certificate is checked on the direct request below.
    let landed = Expect::Backend {
        app: app.to_string(),
        cert: None,
    };
    let expect = Expect::Backend {
        app: app.to_string(),
        cert: cert.map(str::to_string),
    };
    let issuer = stack_env("OIDC_ISSUER");
    let got = landed.check(&first, &issuer)?;
    if first.redirects < 3 || first.effective_url != url {
        return Err(format!(
            "{got} after {} redirects, at {} (want >= 3, back at {url})",
            first.redirects, first.effective_url
        ));
    }
    let again = browser.get(url, false);
    let session = expect.check(&again, &issuer)?;
    Ok(format!(
        "{got} after {} redirects; with the session cookie: {session}",
        first.redirects
    ))
}

/// The set's NetworkPolicy truth table on the live cluster: the live NetworkPolicies, Pods
/// (running, with their addresses) and Namespaces, judged by the independent engine
/// (gatehouse-policy over cyclonus), against what the Gatehouse objects declare.
async fn truth_table(client: &Client, set: &str, objects: &[Value]) -> Result<String, String> {
    let policies: Vec<Value> = Api::<NetworkPolicy>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| serde_json::to_value(p).unwrap())
        .collect();
    let pods: Vec<Value> = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status
                    .as_ref()
                    .is_some_and(|s| s.phase.as_deref() == Some("Running") && s.pod_ip.is_some())
        })
        .map(|p| serde_json::to_value(p).unwrap())
        .collect();
    let namespaces: Vec<Value> = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|n| serde_json::to_value(n).unwrap())
        .collect();
    // The API server's Service and EndpointSlices: where `apiServer` peers must reach.
    let mut objects = objects.to_vec();
    let kubernetes = Api::<Service>::namespaced(client.clone(), "default")
        .get("kubernetes")
        .await
        .unwrap();
    objects.push(serde_json::to_value(&kubernetes).unwrap());
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels("kubernetes.io/service-name=kubernetes"))
        .await
        .unwrap();
    objects.extend(
        slices
            .items
            .iter()
            .map(|s| serde_json::to_value(s).unwrap()),
    );
    let probes = policy::expected_probes(&objects, &pods, &namespaces);
    if probes.is_empty() {
        return Err(format!("{set}: no probes derived"));
    }
    let bin = std::path::PathBuf::from(
        std::env::var("POLICY_BIN").expect("POLICY_BIN (make exports it: run through make test)"),
    );
    let verdicts = policy::evaluate_verdicts(&bin, &policies, &pods, &namespaces, &probes)?;
    policy::compare_verdicts(set, &probes, &verdicts)
}

/// Waits until the probe pods run and have their addresses (ipBlock rules need them).
async fn probe_pods_running(client: &Client, pods: &[Value]) {
    for p in pods {
        let ns = p["metadata"]["namespace"].as_str().unwrap().to_string();
        let name = p["metadata"]["name"].as_str().unwrap().to_string();
        let api = Api::<Pod>::namespaced(client.clone(), &ns);
        eventually(
            Duration::from_secs(120),
            &format!("probe pod {ns}/{name} to run"),
            || {
                let api = api.clone();
                let name = name.clone();
                async move {
                    let s = api.get(&name).await.ok()?.status?;
                    (s.phase.as_deref() == Some("Running") && s.pod_ip.is_some()).then_some(())
                }
            },
        )
        .await;
    }
}

fn table(set: &str, rows: &[Row]) -> String {
    let mut out = format!(
        "{set}:\n  {:<40} {:<9} {:<6} {:<34} got\n",
        "host", "tier", "scheme", "expected"
    );
    for r in rows {
        out += &format!(
            "{} {:<40} {:<9} {:<6} {:<34} {}\n",
            if r.ok { " " } else { "X" },
            r.host,
            r.tier,
            r.scheme,
            r.expected,
            r.got
        );
    }
    out
}

/// The sets the data path runs: every sample set, the Traefik-flavoured sign-in set (no
/// seed has sign-in on a Traefik tier), and plain http on an Nginx tier (no seed turns the
/// redirect off or serves a route without TLS).
/// `DATAPATH_SETS=a,b` runs only those (a developer's shortcut; `make test` runs all).
fn datapath_sets() -> Vec<std::path::PathBuf> {
    let mut sets = sample_sets();
    sets.push(root().join("tests/fixtures/datapath/traefik-signin"));
    sets.push(root().join("tests/fixtures/datapath/nginx-http"));
    if let Ok(only) = std::env::var("DATAPATH_SETS") {
        let only: Vec<&str> = only.split(',').collect();
        sets.retain(|s| only.iter().any(|o| s.ends_with(o)));
        assert!(!sets.is_empty(), "DATAPATH_SETS={only:?} names no set");
    }
    sets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_set_serves_https_from_its_pods_through_real_traefik() {
    let client = client().await;
    let sign_in = SignIn::from_stack();
    let issuer = sign_in.issuer.clone();
    let op = Operator::start();
    let mut summary = Vec::new();
    let mut failures = Vec::new();
    for set in datapath_sets() {
        let name = set.file_name().unwrap().to_string_lossy().to_string();
        let started = Instant::now();
        let objects = sample_objects(&set);
        let owners = owners(&objects);
        let played = played_load_balancer(&objects);
        let _metallb_paused = played.as_ref().map(|_| pause("metallb"));
        apply_set(&client, &name, &objects).await;
        let classes = datapath::ingress_classes(&objects);
        let gateway_classes = datapath::gateway_classes(&objects);
        for c in classes.iter().chain(&gateway_classes) {
            apply(&client, c, false).await.unwrap();
        }
        let workloads = workloads_with(&objects, Some(&sign_in));
        for w in &workloads {
            apply(&client, w, false).await.unwrap();
        }
        let probe_namespaces = policy::probe_namespaces(&objects);
        for n in &probe_namespaces {
            apply(&client, n, false).await.unwrap();
        }
        let probe_pods = policy::probe_pods(&objects);
        for p in &probe_pods {
            apply(&client, p, false).await.unwrap();
        }
        datapath::start_traefik(&objects);
        let namespaces = namespaces_of(&objects);
        converge(&client, &name, &owners, &namespaces, played.is_some()).await;
        workloads_available(&client, &workloads).await;
        probe_pods_running(&client, &probe_pods).await;
        let rows = requests(&client, &name, &objects, &issuer).await;
        let policy = truth_table(&client, &name, &objects).await;
        let mut by_scheme: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &rows {
            *by_scheme.entry(r.scheme).or_default() += 1;
        }
        let failed = rows.iter().filter(|r| !r.ok).count();
        println!("{}", table(&name, &rows));
        summary.push(format!(
            "{name}: {} requests ({by_scheme:?}), {failed} failed; policy probes: {}; {:.1}s",
            rows.len(),
            policy.as_deref().unwrap_or("MISMATCH"),
            started.elapsed().as_secs_f64()
        ));
        if failed > 0 {
            failures.push(table(&name, &rows));
        }
        if let Err(t) = policy {
            failures.push(format!(
                "{name}: the live NetworkPolicies differ from the objects:\n{t}"
            ));
        }
        // Workloads and probe pods in namespaces the set shares with the cluster (not
        // deleted with the set), and the probe namespaces.
        for w in &workloads {
            let ns = w["metadata"]["namespace"].as_str().unwrap();
            if PROTECTED_NAMESPACES.contains(&ns) {
                let _ = Api::<Deployment>::namespaced(client.clone(), ns)
                    .delete(
                        w["metadata"]["name"].as_str().unwrap(),
                        &DeleteParams::default(),
                    )
                    .await;
            }
        }
        for p in &probe_pods {
            let ns = p["metadata"]["namespace"].as_str().unwrap();
            let _ = Api::<Pod>::namespaced(client.clone(), ns)
                .delete(
                    p["metadata"]["name"].as_str().unwrap(),
                    &DeleteParams::default(),
                )
                .await;
        }
        for n in &probe_namespaces {
            let _ = Api::<Namespace>::all(client.clone())
                .delete(
                    n["metadata"]["name"].as_str().unwrap(),
                    &DeleteParams::default(),
                )
                .await;
        }
        delete_set(&client, &objects).await;
        let api = Api::<k8s_openapi::api::networking::v1::IngressClass>::all(client.clone());
        for c in &classes {
            let _ = api
                .delete(
                    c["metadata"]["name"].as_str().unwrap(),
                    &DeleteParams::default(),
                )
                .await;
        }
        datapath::delete_gateway_classes(&client, &gateway_classes).await;
    }
    println!("{}", summary.join("\n"));
    op.stop();
    assert!(
        failures.is_empty(),
        "requests failed:\n{}",
        failures.join("\n")
    );
}
