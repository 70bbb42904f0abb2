//! Command-line entry points.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::render_cmd::{self, Format};

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "Gatehouse: a cluster's network stack from three objects"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print every child object the operator would create for the given inputs, with no cluster.
    Render {
        /// Files or directories of YAML/JSON documents (ClusterNetwork, ExposedApp,
        /// EgressPolicy, Namespace, Service); `-` reads stdin. Repeatable.
        #[arg(short = 'f', long = "filename", required = true)]
        paths: Vec<PathBuf>,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "yaml")]
        output: Format,
    },
    /// Print what applying the given files would change in the live cluster: each Gatehouse
    /// object's children created (+), changed (~, with every field the operator would write
    /// differently) and deleted (-), and the Ready and Stalled conditions it would get.
    ///
    /// The files are rendered as by `render`, with the live cluster supplying everything
    /// else (other apps' host claims, the ClusterNetwork when the files have none,
    /// Namespaces, Services, the live children); an object in the files replaces the live
    /// one of the same kind, namespace and name. The files are additive, as with `kubectl
    /// diff`: a Gatehouse object in the cluster that the files leave out is not shown as
    /// deleted, and neither are its children. Only reads (LIST calls), never writes.
    ///
    /// Exit code: 0 no changes and nothing Stalled; 1 something changes or an object would
    /// be Stalled (so a pull-request gate sees both); 2 an error (bad input, naming the
    /// file and field; cluster unreachable; CRDs missing).
    Diff {
        /// Files or directories of YAML/JSON documents, as for `render`; `-` reads stdin.
        /// Repeatable.
        #[arg(short = 'f', long = "filename", required = true)]
        paths: Vec<PathBuf>,
        /// Output format: `text` (human, colour only on a terminal) or `json`.
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        output: crate::diff_cmd::Format,
        /// Kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else in-cluster).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Kubeconfig context (default: its current context).
        #[arg(long)]
        context: Option<String>,
    },
    /// Print the three CRDs as YAML.
    Crd,
    /// Run the controllers against the cluster of the current kubeconfig (or in-cluster).
    Run {
        /// Log as JSON lines (for log collectors) instead of human-readable text.
        #[arg(long)]
        log_json: bool,
        /// Run the controllers only while holding the leader Lease (for several replicas).
        #[arg(long)]
        leader_elect: bool,
        /// Namespace of the leader Lease (default: $POD_NAMESPACE, else gatehouse-system).
        #[arg(long)]
        leader_election_namespace: Option<String>,
        /// This replica's identity in the Lease (default: $POD_NAME, else hostname-pid).
        #[arg(long)]
        identity: Option<String>,
        /// Seconds a Lease stays valid without renewal: a standby takes over after this.
        #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=3600))]
        lease_duration_seconds: u64,
        /// Seconds between the leader's renewals (and a standby's attempts); below the
        /// lease duration.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
        renew_period_seconds: u64,
        /// Address of /metrics, /healthz and /readyz ("" to disable).
        #[arg(long, default_value = "0.0.0.0:8080")]
        http_addr: String,
        /// Address of the Multus attachment webhook (TLS; "" to disable).
        #[arg(long, default_value = "")]
        webhook_addr: String,
        /// The Service the API server calls the webhook through, as namespace/name.
        #[arg(long, default_value = "gatehouse-system/gatehouse-webhook")]
        webhook_service: String,
        /// Call the webhook at this https URL instead of a Service (outside a cluster).
        #[arg(long)]
        webhook_url: Option<String>,
        /// Name of the MutatingWebhookConfiguration the operator keeps.
        #[arg(long, default_value = "gatehouse")]
        webhook_configuration: String,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Diff {
            paths,
            output,
            kubeconfig,
            context,
        } => ExitCode::from(crate::diff_cmd::run(&paths, output, kubeconfig, context)),
        Command::Crd => {
            print!("{}", crate::crd::crds_yaml());
            ExitCode::SUCCESS
        }
        Command::Run {
            log_json,
            leader_elect,
            leader_election_namespace,
            identity,
            lease_duration_seconds,
            renew_period_seconds,
            http_addr,
            webhook_addr,
            webhook_service,
            webhook_url,
            webhook_configuration,
        } => {
            let leader = leader_elect.then(|| {
                let namespace = leader_election_namespace
                    .or_else(|| std::env::var("POD_NAMESPACE").ok())
                    .unwrap_or_else(|| "gatehouse-system".into());
                let identity = identity
                    .or_else(|| std::env::var("POD_NAME").ok())
                    .unwrap_or_else(|| {
                        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
                        format!("{}-{}", host.trim(), std::process::id())
                    });
                crate::leader::LeaderConfig {
                    lease_duration: std::time::Duration::from_secs(lease_duration_seconds),
                    renew_period: std::time::Duration::from_secs(renew_period_seconds),
                    ..crate::leader::LeaderConfig::new(namespace, identity)
                }
            });
            if renew_period_seconds >= lease_duration_seconds {
                eprintln!(
                    "error: --renew-period-seconds ({renew_period_seconds}) must be below --lease-duration-seconds ({lease_duration_seconds})"
                );
                return ExitCode::FAILURE;
            }
            // In the API server's audit log and metrics by user agent: which replica sent a
            // request (client-go controllers name themselves the same way).
            let user_agent = match &leader {
                Some(l) => format!("gatehouse/{} ({})", env!("CARGO_PKG_VERSION"), l.identity),
                None => format!("gatehouse/{}", env!("CARGO_PKG_VERSION")),
            };
            let http_addr = match http_addr.as_str() {
                "" => None,
                a => match a.parse() {
                    Ok(addr) => Some(addr),
                    Err(e) => {
                        eprintln!("error: --http-addr {a:?}: {e}");
                        return ExitCode::FAILURE;
                    }
                },
            };
            let webhook = match webhook_options(
                &webhook_addr,
                &webhook_service,
                webhook_url,
                webhook_configuration,
            ) {
                Ok(w) => w,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            run(
                log_json,
                user_agent,
                crate::reconcile::RunOptions {
                    leader,
                    http_addr,
                    webhook,
                },
            )
        }
        Command::Render { paths, output } => {
            let out = render_cmd::render_paths(&paths);
            for note in &out.notes {
                eprintln!("note: {note}");
            }
            if !out.errors.is_empty() {
                for e in &out.errors {
                    eprintln!("error: {e}");
                }
                return ExitCode::FAILURE;
            }
            print!("{}", render_cmd::format(&out.children, output));
            if output == render_cmd::Format::Yaml {
                print!("{}", render_cmd::format_listeners(&out.listeners));
            }
            ExitCode::SUCCESS
        }
    }
}

fn run(log_json: bool, user_agent: String, options: crate::reconcile::RunOptions) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let mut config = match kube::Config::infer().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: no cluster configuration (KUBECONFIG, ~/.kube/config or in-cluster): {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Ok(value) = http::HeaderValue::from_str(&user_agent) {
            config.headers.push((http::header::USER_AGENT, value));
        }
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::default());
        let client = match crate::metrics::counting_client(config, metrics.clone()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: cannot build a client: {e}");
                return ExitCode::FAILURE;
            }
        };
        // SIGTERM is what the kubelet sends a pod (and the operator is PID 1 in its
        // container, which the kernel sends no signal it does not handle): without this the
        // pod waits out its grace period and is SIGKILLed, never releasing the Lease.
        let shutdown = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot handle SIGTERM; stopping on SIGINT only");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
            tracing::info!("signal received, shutting down");
        };
        match crate::reconcile::run(client, metrics, options, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Webhook options from the flags; None when --webhook-addr is empty.
fn webhook_options(
    addr: &str,
    service: &str,
    url: Option<String>,
    configuration: String,
) -> Result<Option<crate::webhook::WebhookOptions>, String> {
    if addr.is_empty() {
        return Ok(None);
    }
    let addr: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| format!("--webhook-addr {addr:?}: {e}"))?;
    let (target, names) = match url {
        Some(url) => {
            let host = url
                .trim_start_matches("https://")
                .split(['/', ':'])
                .next()
                .unwrap_or_default()
                .to_string();
            (crate::webhook::Target::Url(url), vec![host])
        }
        None => {
            let (namespace, name) = service
                .split_once('/')
                .ok_or_else(|| format!("--webhook-service {service:?}: expected namespace/name"))?;
            let names = vec![
                format!("{name}.{namespace}.svc"),
                format!("{name}.{namespace}.svc.cluster.local"),
            ];
            let target = crate::webhook::Target::Service {
                namespace: namespace.into(),
                name: name.into(),
                port: 443,
            };
            (target, names)
        }
    };
    let own_namespace =
        std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "gatehouse-system".into());
    Ok(Some(crate::webhook::WebhookOptions {
        addr,
        configuration,
        target,
        subject_alt_names: names,
        excluded_namespaces: vec!["kube-system".into(), own_namespace],
    }))
}
