//! `gatehouse diff`, the shell around [`crate::diff`]: reads the files (as `render` does),
//! reads the live cluster with one LIST per kind, prints the diff. It only ever reads: every
//! request is a `list`.

use std::path::PathBuf;

use gatehouse_api::{ClusterNetwork, EgressPolicy, ExposedApp};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DynamicObject, ListParams, ObjectList};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::Value;

use crate::diff::{self, Live};
use crate::render::ChildKind;
use crate::render::context::{API_SERVER_NAMESPACE, API_SERVER_SERVICE, SERVICE_NAME_LABEL};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Exit codes, as `kubectl diff` has them: 0 nothing changes, 1 something does (or an
/// object would be Stalled), 2 and above errors.
pub const EXIT_CHANGES: u8 = 1;
pub const EXIT_ERROR: u8 = 2;

/// The User-Agent of every request (in the API server's audit log).
pub fn user_agent() -> String {
    format!("gatehouse-diff/{}", env!("CARGO_PKG_VERSION"))
}

/// The client configuration: `--kubeconfig` (else $KUBECONFIG, else ~/.kube/config, else
/// in-cluster) and `--context`.
async fn config(kubeconfig: Option<PathBuf>, context: Option<String>) -> Result<Config, String> {
    let options = KubeConfigOptions {
        context,
        ..KubeConfigOptions::default()
    };
    let config = match kubeconfig {
        Some(path) => {
            let k = Kubeconfig::read_from(&path)
                .map_err(|e| format!("--kubeconfig {}: {e}", path.display()))?;
            Config::from_custom_kubeconfig(k, &options)
                .await
                .map_err(|e| format!("--kubeconfig {}: {e}", path.display()))?
        }
        None if options.context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| format!("--context: {e}"))?,
        None => Config::infer().await.map_err(|e| {
            format!("no cluster configuration (--kubeconfig, KUBECONFIG, ~/.kube/config or in-cluster): {e}")
        })?,
    };
    Ok(config)
}

/// Every object of a list, page by page (one request per 500 objects).
async fn list_all<K>(api: Api<K>, selector: Option<&str>) -> Result<Vec<K>, kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(500);
        if let Some(s) = selector {
            lp = lp.labels(s);
        }
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page: ObjectList<K> = api.list(&lp).await?;
        out.extend(page.items);
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(out),
        }
    }
}

fn not_served(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Reads what the diff needs from the cluster: the three Gatehouse kinds, Namespaces,
/// Services, the API server's EndpointSlices and every object of each child kind (a kind
/// whose list is 404 is not served). One LIST each, concurrently.
pub async fn read_live(client: &Client) -> Result<Live, String> {
    fn what(kind: &'static str) -> impl FnOnce(kube::Error) -> String {
        move |e| format!("listing {kind}: {e}")
    }
    let children = futures::future::join_all(
        ChildKind::ALL
            .into_iter()
            .filter(|k| *k != ChildKind::Service)
            .map(|kind| {
                let api: Api<DynamicObject> =
                    Api::all_with(client.clone(), &crate::reconcile::api_resource(kind));
                async move { (kind, list_all(api, None).await) }
            }),
    );
    let slice_selector = format!("{SERVICE_NAME_LABEL}={API_SERVER_SERVICE}");
    let (networks, apps, policies, namespaces, services, slices, children) = futures::join!(
        list_all(Api::<ClusterNetwork>::all(client.clone()), None),
        list_all(Api::<ExposedApp>::all(client.clone()), None),
        list_all(Api::<EgressPolicy>::all(client.clone()), None),
        list_all(Api::<Namespace>::all(client.clone()), None),
        list_all(Api::<Service>::all(client.clone()), None),
        list_all(
            Api::<EndpointSlice>::namespaced(client.clone(), API_SERVER_NAMESPACE),
            Some(&slice_selector)
        ),
        children,
    );
    let crds = |e: kube::Error| {
        if not_served(&e) {
            "the Gatehouse CRDs are not installed in this cluster; install them with `kubectl apply --server-side -k config/crd`".to_string()
        } else {
            format!("cannot read the cluster: {e}")
        }
    };
    let mut live = Live {
        networks: networks.map_err(crds)?,
        apps: apps.map_err(what("ExposedApps"))?,
        policies: policies.map_err(what("EgressPolicies"))?,
        namespaces: namespaces.map_err(what("Namespaces"))?,
        services: services.map_err(what("Services"))?,
        api_server_slices: slices.map_err(what("EndpointSlices"))?,
        children: Default::default(),
    };
    for (kind, result) in children {
        match result {
            Ok(items) => {
                // List items come without apiVersion and kind; the operator's caches and its
                // comparison see them with both.
                let items = items
                    .into_iter()
                    .filter_map(|o| serde_json::to_value(o).ok())
                    .map(|mut v: Value| {
                        v["apiVersion"] = Value::String(kind.api_version());
                        v["kind"] = Value::String(kind.kind().to_string());
                        v
                    })
                    .collect();
                live.children.insert(kind, items);
            }
            Err(e) if not_served(&e) => {}
            Err(e) => return Err(format!("listing {}: {e}", kind.kind())),
        }
    }
    Ok(live)
}

/// The whole command; returns the exit code.
pub fn run(
    paths: &[PathBuf],
    output: Format,
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
) -> u8 {
    let inputs = match crate::input::load(paths) {
        Ok(i) => i,
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            return EXIT_ERROR;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return EXIT_ERROR;
        }
    };
    let live = runtime.block_on(async {
        let mut config = config(kubeconfig, context).await?;
        if let Ok(value) = http::HeaderValue::from_str(&user_agent()) {
            config.headers.push((http::header::USER_AGENT, value));
        }
        let client = Client::try_from(config).map_err(|e| format!("cannot build a client: {e}"))?;
        read_live(&client).await
    });
    let live = match live {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_ERROR;
        }
    };
    let d = diff::diff(&inputs, &live, k8s_openapi::jiff::Timestamp::now());
    match output {
        Format::Text => {
            use std::io::IsTerminal;
            let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            print!("{}", diff::format_text(&d, colour));
        }
        Format::Json => {
            let mut v = serde_json::to_value(&d).unwrap_or_default();
            v["changes"] = Value::Bool(d.has_changes());
            v["stalled"] = Value::from(d.stalled());
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
    }
    if d.has_changes() || d.stalled() > 0 {
        EXIT_CHANGES
    } else {
        0
    }
}
