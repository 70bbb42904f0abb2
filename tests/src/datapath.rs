//! The data path of a sample set on the test node: the IngressClasses its tiers name, the
//! Traefik of each tier serving them (hack/stack-up.sh traefik), the OAuth2 Proxy workload,
//! and a real HTTP client (curl) that resolves hosts through a tier's BIND server and
//! connects to that tier's Traefik.
//!
//! Where a sample's controller is ingress-nginx (retired in March 2026), its Ingresses are
//! read by Traefik's kubernetesIngressNGINX provider, the maintained consumer of those
//! annotations; Traefik-controlled tiers by Traefik's own Ingress provider.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Value, json};

use crate::{root, stack_env};

pub const TIERS: [&str; 2] = ["external", "internal"];

/// The set's ClusterNetwork (the first one), if any.
pub fn network(objects: &[Value]) -> Option<&Value> {
    objects.iter().find(|o| o["kind"] == "ClusterNetwork")
}

/// The IngressClass controller value a tier's Traefik serves for a tier `controller`:
/// Traefik's own for `Traefik`, one ingress-nginx value per tier for `Nginx` (as two
/// ingress-nginx releases in one cluster are told apart; Traefik's NGINX provider selects
/// classes by this value).
pub fn class_controller(tier: &str, controller: &str) -> String {
    match controller {
        "Traefik" => "traefik.io/ingress-controller".to_string(),
        _ => format!("k8s.io/ingress-nginx-{tier}"),
    }
}

/// The tiers the set's network defines: (tier, className, controller).
pub fn tiers(objects: &[Value]) -> Vec<(String, String, String)> {
    let Some(net) = network(objects) else {
        return vec![];
    };
    TIERS
        .iter()
        .filter_map(|t| {
            let def = &net["spec"]["ingress"][*t];
            // A Gateway tier has no IngressClass: "" (see gateway_classes).
            let class = def["className"]
                .as_str()
                .or(def["gateway"].is_object().then_some(""))?;
            let controller = def["controller"].as_str().unwrap_or("Nginx");
            Some((t.to_string(), class.to_string(), controller.to_string()))
        })
        .collect()
}

/// The IngressClasses the set's tiers name (the platform creates them with its
/// controllers; Gatehouse only refers to them).
pub fn ingress_classes(objects: &[Value]) -> Vec<Value> {
    tiers(objects)
        .into_iter()
        .filter(|(_, class, _)| !class.is_empty())
        .map(|(tier, class, controller)| {
            json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                "metadata": {"name": class, "labels": {"gatehouse.dev/test-tier": tier}},
                "spec": {"controller": class_controller(&tier, &controller)},
            })
        })
        .collect()
}

/// The GatewayClasses of the set's Gateway tiers (the platform creates them with its
/// Traefiks): the class each tier's Gateway names, controller traefik.io/gateway-controller,
/// labelled with the tier so that tier's Traefik serves it (stack-up.sh's labelSelector).
pub fn gateway_classes(objects: &[Value]) -> Vec<Value> {
    let Some(net) = network(objects) else {
        return vec![];
    };
    let mut out = Vec::new();
    for t in TIERS {
        let gw = &net["spec"]["ingress"][t]["gateway"];
        let Some(class) = objects
            .iter()
            .find(|o| {
                o["kind"] == "Gateway"
                    && o["metadata"]["name"] == gw["name"]
                    && o["metadata"]["namespace"] == gw["namespace"]
            })
            .and_then(|g| g["spec"]["gatewayClassName"].as_str())
        else {
            continue;
        };
        out.push(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": class, "labels": {"gatehouse.dev/test-tier": t}},
            "spec": {"controllerName": "traefik.io/gateway-controller"},
        }));
    }
    out
}

/// The loopback address a tier's Traefik listens on (ports 80 and 443).
pub fn traefik_addr(tier: &str) -> String {
    stack_env(&format!("TRAEFIK_{}_ADDR", tier.to_uppercase()))
}

/// The URL of the set's OAuth2 Proxy (`auth.oauth2Proxy.url`), if any.
pub fn oauth2_url(objects: &[Value]) -> Option<String> {
    network(objects)?["spec"]["auth"]["oauth2Proxy"]["url"]
        .as_str()
        .map(|u| u.trim_end_matches('/').to_string())
}

/// The host of a URL (`https://auth.example.com/x` -> `auth.example.com`).
pub fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map(|x| x.1).unwrap_or(url);
    rest.split(['/', ':'])
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The ExposedApp whose routes serve the network's OAuth2 Proxy host, if the set has one.
pub fn oauth2_app(objects: &[Value]) -> Option<&Value> {
    let host = url_host(&oauth2_url(objects)?);
    objects.iter().find(|o| {
        o["kind"] == "ExposedApp"
            && o["spec"]["routes"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| {
                    r["hosts"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|h| *h == host)
                })
    })
}

/// The tiers a route is served on (its exposure, where the network defines the tier).
pub fn route_tiers(objects: &[Value], route: &Value) -> Vec<String> {
    let defined: Vec<String> = tiers(objects).into_iter().map(|t| t.0).collect();
    let exposure = route["exposure"].as_str().unwrap_or("External");
    TIERS
        .iter()
        .filter(|t| match exposure {
            "Both" => true,
            "Internal" => **t == "internal",
            _ => **t == "external",
        })
        .filter(|t| defined.iter().any(|d| d == *t))
        .map(|t| t.to_string())
        .collect()
}

/// What a tier's Traefik resolves server-side (its forward-auth calls): the OAuth2 Proxy's
/// host, at the Traefik of the tier that serves it, the internal one first. In the seeds the
/// cluster resolves that name through the LAN resolver, which answers with the LAN (internal)
/// ingress address; here /etc/hosts in Traefik's mount namespace says the same.
pub fn traefik_hosts(objects: &[Value]) -> String {
    let (Some(url), Some(app)) = (oauth2_url(objects), oauth2_app(objects)) else {
        return String::new();
    };
    let host = url_host(&url);
    let mut served: Vec<String> = Vec::new();
    for r in app["spec"]["routes"].as_array().into_iter().flatten() {
        if r["hosts"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|h| *h == host)
        {
            served.extend(route_tiers(objects, r));
        }
    }
    let tier = if served.iter().any(|t| t == "internal") {
        "internal"
    } else if served.iter().any(|t| t == "external") {
        "external"
    } else {
        return String::new();
    };
    format!("{} {host}\n", traefik_addr(tier))
}

/// Restarts each tier's Traefik for the set's IngressClasses and server-side names
/// (hack/stack-up.sh traefik; a no-op when they are already what it serves).
pub fn start_traefik(objects: &[Value]) {
    let hosts =
        std::env::temp_dir().join(format!("gatehouse-traefik-hosts-{}", std::process::id()));
    std::fs::write(&hosts, traefik_hosts(objects)).unwrap();
    let mut cmd = Command::new(root().join("hack/stack-up.sh"));
    cmd.arg("traefik")
        .env("CLUSTER_DIR", crate::cluster_dir())
        .env("TRAEFIK_HOSTS_FILE", &hosts);
    for (tier, class, _) in tiers(objects).into_iter().filter(|t| !t.1.is_empty()) {
        cmd.env(format!("TRAEFIK_{}_CLASS", tier.to_uppercase()), class);
    }
    let out = cmd.output().expect("hack/stack-up.sh runs");
    let _ = std::fs::remove_file(&hosts);
    assert!(
        out.status.success(),
        "stack-up.sh traefik: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The mock OIDC issuer and the OAuth2 Proxy image the sign-in workload runs with.
#[derive(Debug, Clone)]
pub struct SignIn {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub image: String,
}

impl SignIn {
    /// From the running test stack (hack/stack-up.sh oidc) and the image make imported.
    pub fn from_stack() -> SignIn {
        SignIn {
            issuer: stack_env("OIDC_ISSUER"),
            client_id: stack_env("OIDC_CLIENT_ID"),
            client_secret: stack_env("OIDC_CLIENT_SECRET"),
            image: std::env::var("OAUTH2_PROXY_IMAGE")
                .unwrap_or_else(|_| "gatehouse.local/oauth2-proxy:v7.15.6".into()),
        }
    }
}

/// The container that makes the set's OAuth2 Proxy app a real OAuth2 Proxy: OIDC against
/// the mock issuer, the session cookie for the parent domain of its host (so every protected
/// host of the set shares it), callbacks at its own host, and the root answering 202 for a
/// session (what Traefik's forward auth needs, docs/api.md "Sign-in").
pub fn oauth2_proxy_container(objects: &[Value], port: i64, sign_in: &SignIn) -> Option<Value> {
    let url = oauth2_url(objects)?;
    let host = url_host(&url);
    let parent = host
        .split_once('.')
        .map(|x| x.1)
        .unwrap_or(&host)
        .to_string();
    // A fixed cookie secret: the pod is a test fixture, its sessions mean nothing elsewhere.
    let cookie_secret = "gatehouse-e2e-cookie-secret-32b!";
    Some(json!({
        "name": "oauth2-proxy",
        "image": sign_in.image,
        "imagePullPolicy": "Never",
        "args": [
            "--provider=oidc",
            format!("--oidc-issuer-url={}", sign_in.issuer),
            format!("--client-id={}", sign_in.client_id),
            format!("--client-secret={}", sign_in.client_secret),
            format!("--cookie-secret={cookie_secret}"),
            format!("--cookie-domain=.{parent}"),
            format!("--whitelist-domain=.{parent}"),
            format!("--redirect-url={url}/oauth2/callback"),
            "--email-domain=*",
            format!("--http-address=0.0.0.0:{port}"),
            "--reverse-proxy=true",
            "--upstream=static://202",
            "--skip-provider-button=true",
            "--set-xauthrequest=true",
        ],
        "ports": [{"containerPort": port, "name": "http"}],
        "readinessProbe": {"httpGet": {"path": "/ping", "port": port}, "periodSeconds": 1},
        "securityContext": {
            "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
        },
    }))
}

/// One HTTP exchange as curl saw it.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub status: u16,
    pub location: String,
    pub effective_url: String,
    pub redirects: u32,
    pub body: String,
    /// The server's leaf certificate (PEM) for https.
    pub leaf_pem: String,
    pub error: String,
}

impl Answer {
    /// The pod that answered (the backend's first line).
    pub fn pod(&self) -> &str {
        self.body.lines().next().unwrap_or_default()
    }
}

static JAR: AtomicU32 = AtomicU32::new(0);

/// A curl session: names resolved to fixed addresses (what the tier's BIND answered, mapped
/// to the tier's Traefik), the stack's CA as the only trust anchor, optionally a cookie jar.
pub struct Browser {
    resolve: Vec<String>,
    ca: String,
    jar: Option<PathBuf>,
}

impl Browser {
    /// `resolve`: (host, address) pairs, for ports 80 and 443.
    pub fn new(resolve: &[(String, String)]) -> Browser {
        Browser {
            resolve: resolve
                .iter()
                .flat_map(|(h, a)| [format!("{h}:80:{a}"), format!("{h}:443:{a}")])
                .collect(),
            ca: stack_env("CA_CERT"),
            jar: None,
        }
    }

    /// With a cookie jar of its own (a fresh browser profile).
    pub fn with_cookies(mut self) -> Browser {
        self.jar = Some(std::env::temp_dir().join(format!(
            "gatehouse-jar-{}-{}",
            std::process::id(),
            JAR.fetch_add(1, Ordering::SeqCst)
        )));
        self
    }

    /// GET `url`; follows redirects when `follow`.
    pub fn get(&self, url: &str, follow: bool) -> Answer {
        let n = JAR.fetch_add(1, Ordering::SeqCst);
        let body = std::env::temp_dir().join(format!("gatehouse-body-{}-{n}", std::process::id()));
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "15", "--cacert", &self.ca, "-o"])
            .arg(&body)
            .args([
                "-w",
                "%{http_code}\n%{redirect_url}\n%{url_effective}\n%{num_redirects}\n%{certs}",
            ]);
        for r in &self.resolve {
            cmd.args(["--resolve", r]);
        }
        if let Some(jar) = &self.jar {
            cmd.arg("-c").arg(jar).arg("-b").arg(jar);
        }
        if follow {
            cmd.args(["-L", "--max-redirs", "10"]);
        }
        let out = cmd.arg(url).output().expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut lines = text.splitn(5, '\n');
        let mut next = || lines.next().unwrap_or_default().to_string();
        let status = next().trim().parse().unwrap_or(0);
        let location = next();
        let effective_url = next();
        let redirects = next().trim().parse().unwrap_or(0);
        let certs = next();
        let leaf_pem = first_pem(&certs);
        let answer = Answer {
            status,
            location,
            effective_url,
            redirects,
            body: std::fs::read_to_string(&body).unwrap_or_default(),
            leaf_pem,
            error: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        };
        let _ = std::fs::remove_file(&body);
        answer
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(jar) = &self.jar {
            let _ = std::fs::remove_file(jar);
        }
    }
}

/// The first PEM certificate block of a text, whitespace-normalized ("" if none).
pub fn first_pem(text: &str) -> String {
    let Some(start) = text.find("-----BEGIN CERTIFICATE-----") else {
        return String::new();
    };
    let rest = &text[start..];
    let end = rest
        .find("-----END CERTIFICATE-----")
        .map(|e| e + "-----END CERTIFICATE-----".len())
        .unwrap_or(rest.len());
    rest[..end]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join("\n")
}

/// Deletes the GatewayClasses `gateway_classes` made (cluster-scoped: not deleted with the
/// set's namespaces).
pub async fn delete_gateway_classes(client: &kube::Client, classes: &[Value]) {
    for c in classes {
        let api = crate::api_for(client, c).await;
        let _ = api
            .delete(
                c["metadata"]["name"].as_str().unwrap_or_default(),
                &kube::api::DeleteParams::default(),
            )
            .await;
    }
}
