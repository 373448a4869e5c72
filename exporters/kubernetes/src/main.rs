//! `balanced-exporter`: the command line. Without a subcommand it watches the cluster and
//! writes manifests (allocating VIPs on the Lease holder unless `--allocate=false`); `render`
//! does one offline render of a `kubectl get services,endpointslices,pods -A -o yaml` dump with
//! the same code (pods optional: only their opt-out annotations are read).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use balanced_exporter::alloc::{Allocator, Pools};
use balanced_exporter::config::{DEFAULT_CLASS, RenderConfig};
use balanced_exporter::events;
use balanced_exporter::http::{self, Health};
use balanced_exporter::lease::LeaseLock;
use balanced_exporter::metrics::Metrics;
use balanced_exporter::pods::OptedOut;
use balanced_exporter::run::{AllocateOptions, Renderer, allocate_loop, run_renderer};
use balanced_exporter::watch::Cache;
use balanced_exporter::writer::{GitConfig, Writer};
use balanced_exporter::{Error, dump, render};
use balanced_schemas::v1::{ForwardingMethod, Scheduler};
use clap::{Args, Parser, Subcommand};
use kube::runtime::events::{Recorder, Reporter};

/// Exit code for bad input data (sysexits EX_DATAERR).
const EXIT_DATA: u8 = 65;

/// Watch the cluster, write manifests, and allocate VIPs while holding the Lease.
#[derive(Parser)]
#[command(
    name = "balanced-exporter",
    version,
    about = "Renders balanced manifests from Kubernetes Services and EndpointSlices",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Render a `kubectl get services,endpointslices,pods -A -o yaml` dump once (pods optional).
    Render(RenderArgs),
}

#[derive(Args)]
struct RenderOptions {
    /// The directory manifests are written to (`<namespace>/<name>.yaml`).
    #[arg(long, env = "BALANCED_OUTPUT")]
    output: Option<PathBuf>,
    /// The spec.loadBalancerClass served.
    #[arg(long, default_value = DEFAULT_CLASS)]
    class: String,
    /// Also serve LoadBalancer Services without a class.
    #[arg(long)]
    accept_without_class: bool,
    /// Scheduler of Services without balanced.io/scheduler.
    #[arg(long, default_value = "mh", value_parser = parse_scheduler)]
    scheduler: Scheduler,
    /// Forwarding of Services without balanced.io/forwarding.
    #[arg(long, default_value = "tunnel", value_parser = parse_forwarding)]
    forwarding: ForwardingMethod,
}

#[derive(Args)]
struct RenderArgs {
    /// The dump to render.
    #[arg(long)]
    from: PathBuf,
    #[command(flatten)]
    render: RenderOptions,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    render: RenderOptions,
    /// Watch only these namespaces (repeatable); default all.
    #[arg(long = "namespace")]
    namespaces: Vec<String>,
    /// Allocate VIPs (false: a render-only exporter, e.g. a sidecar beside each engine).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    allocate: bool,
    /// An address pool: NAME=CIDR|FIRST-LAST[,…] (repeatable).
    #[arg(long = "pool")]
    pools: Vec<String>,
    /// The pool of Services without balanced.io/ip-pool (default: the only pool).
    #[arg(long)]
    default_pool: Option<String>,
    /// How long a released address is held back before automatic reuse.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    quarantine: Duration,
    /// status.loadBalancer.ingress[].ipMode to write; "none" leaves it out.
    #[arg(long, default_value = "Proxy")]
    ip_mode: String,
    /// The Lease electing the allocator.
    #[arg(long, default_value = "balanced-exporter")]
    lease_name: String,
    /// The Lease's namespace (default: the client's namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    lease_duration: Duration,
    /// This instance's identity in the Lease.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Commit each batch of changes to the Git repository holding the output directory.
    #[arg(long)]
    git_commit: bool,
    /// Push each commit to this remote (implies --git-commit).
    #[arg(long)]
    git_push: Option<String>,
    /// Serve /metrics and /healthz here.
    #[arg(long, default_value = "0.0.0.0:9481")]
    metrics_addr: SocketAddr,
}

fn parse_scheduler(s: &str) -> Result<Scheduler, String> {
    s.parse()
}

fn parse_forwarding(s: &str) -> Result<ForwardingMethod, String> {
    match s {
        "tunnel" => Ok(ForwardingMethod::Tunnel),
        "direct" => Ok(ForwardingMethod::Direct),
        "masquerade" => Ok(ForwardingMethod::Masquerade),
        _ => Err(format!(
            "unknown forwarding {s:?}: expected tunnel, direct or masquerade"
        )),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    s.parse::<balanced_schemas::v1::Duration>()
        .map(|d| d.as_std())
}

impl RenderOptions {
    /// `--output`, required by both modes (checked here: clap cannot require a flattened
    /// argument of the default command only).
    fn output(&self) -> Result<&Path, Error> {
        self.output
            .as_deref()
            .ok_or_else(|| Error::Config("--output DIR is required".to_owned()))
    }

    fn config(&self) -> RenderConfig {
        RenderConfig {
            class: self.class.clone(),
            accept_without_class: self.accept_without_class,
            scheduler: self.scheduler,
            forwarding: self.forwarding,
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Render(args)) => render_offline(&args),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Config(format!("starting the runtime: {e}")))
            .and_then(|rt| rt.block_on(run(cli.run))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("balanced-exporter: {e}");
            match e {
                Error::Yaml { .. } | Error::Dump { .. } | Error::Foreign { .. } => {
                    ExitCode::from(EXIT_DATA)
                }
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn render_offline(args: &RenderArgs) -> Result<(), Error> {
    let text = std::fs::read_to_string(&args.from).map_err(|e| Error::io(&args.from, e))?;
    let dump = dump::parse(&args.from, &text)?;
    let mut writer = Writer::open(args.render.output()?, None)?;
    let (opted_out, pod_warnings) = OptedOut::from_pods(&dump.pods);
    for warning in &pod_warnings {
        eprintln!("warning: InvalidAnnotation: {warning}");
    }
    let rendered = render::render(
        &dump.services,
        &dump.slices,
        &opted_out,
        &args.render.config(),
        &writer.configs(),
    );
    for problem in &rendered.problems {
        eprintln!("warning: {}: {}", problem.reason.as_str(), problem.message);
    }
    let held = rendered.held.into_iter().collect();
    let changes = writer
        .sync_except(rendered.manifests, &held)
        .into_result()?;
    for change in &changes {
        println!("{change}");
    }
    Ok(())
}

async fn run(args: RunArgs) -> Result<(), Error> {
    let output = args.render.output()?.to_path_buf();
    let config = args.render.config();
    let pools = Pools::parse(&args.pools, args.default_pool.clone()).map_err(Error::Pools)?;
    if args.allocate && pools.is_empty() {
        return Err(Error::Config(
            "--allocate needs at least one --pool (or pass --allocate=false)".to_owned(),
        ));
    }
    let client = kube::Client::try_default()
        .await
        .map_err(|e| Error::kube("connecting to the cluster", e))?;
    let git = (args.git_commit || args.git_push.is_some()).then(|| GitConfig {
        push: args.git_push.clone(),
        author_name: "balanced-exporter".to_owned(),
        author_email: "balanced-exporter@localhost".to_owned(),
    });
    let writer = Writer::open(output, git)?;
    let renderer = Renderer::new(config.clone(), Cache::new(&args.namespaces), writer);

    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("balanced-exporter-{}", std::process::id()));
    // Only the Lease holder publishes Events: render-only sidecars (one per LVS node) would
    // repeat every Warning once per node, and need no write access to the API.
    let (events, notices) = events::channel(1024);
    if args.allocate {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "balanced-exporter".to_owned(),
                instance: Some(identity.clone()),
            },
        );
        tokio::spawn(events::publish(recorder, notices));
    } else {
        drop(notices);
    }

    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|e| Error::Config(format!("listening on {}: {e}", args.metrics_addr)))?;
    tokio::spawn(http::serve(listener, metrics.clone(), health.clone()));

    let (services_tx, services_rx) = tokio::sync::watch::channel(None);
    if args.allocate {
        let lease_namespace = args
            .lease_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_owned());
        let lease = LeaseLock::new(
            kube::Api::namespaced(client.clone(), &lease_namespace),
            &args.lease_name,
            identity,
            args.lease_duration,
        );
        let options = AllocateOptions {
            ip_mode: (args.ip_mode != "none").then(|| args.ip_mode.clone()),
            lease,
        };
        let allocator = Allocator::new(pools, args.quarantine);
        tokio::spawn(allocate_loop(
            client.clone(),
            allocator,
            config,
            options,
            services_rx,
            metrics.clone(),
            events.clone(),
        ));
    }
    tokio::select! {
        result = run_renderer(&client, renderer, metrics, health, events, services_tx) => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exporter command lines in examples/deploy must parse.
    #[test]
    fn deployment_examples_use_real_flags() {
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/deploy");
        let mut checked = 0;
        for file in ["exporter-deployment.yaml", "engine-daemonset.yaml"] {
            let text = std::fs::read_to_string(deploy.join(file)).unwrap();
            let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
            for document in documents {
                let containers = document
                    .pointer("/spec/template/spec/containers")
                    .and_then(|c| c.as_array())
                    .cloned()
                    .unwrap_or_default();
                for container in containers {
                    let command: Vec<String> = container["command"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|a| a.as_str().map(str::to_owned))
                        .collect();
                    if command
                        .first()
                        .is_none_or(|c| !c.ends_with("balanced-exporter"))
                    {
                        continue;
                    }
                    if let Err(e) = Cli::try_parse_from(&command) {
                        panic!("{file}: {command:?}: {e}");
                    }
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 2);
    }
}
