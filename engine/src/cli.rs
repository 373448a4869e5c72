//! The command line of `balanced`: arguments only, no behaviour (that is in `main.rs` and the
//! modules it calls). Every option shared by several commands is global and can also come from
//! the environment (`BALANCED_*`), which is how a container or a systemd unit sets them.

use std::path::PathBuf;
use std::str::FromStr;

use balanced_schemas::v1::Duration;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::EngineError;
use crate::state_dir::DEFAULT_STATE_DIR;

#[derive(Debug, Parser)]
#[command(
    name = "balanced",
    version,
    about = "GitOps-style Layer-4 load balancer node engine: converges Linux IPVS to manifests",
    after_help = "Exit codes: 0 success/no changes, 1 runtime failure, 2 plan: changes pending, \
                  3 refused by a safety limit, 65 invalid input."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The node config (kind: NodeConfig): interface, owned ranges, limits.
    #[arg(long, global = true, env = "BALANCED_CONFIG", value_name = "NODE.yaml")]
    pub config: Option<PathBuf>,
    /// Where to observe and apply: `kernel` or `sim:PATH` (a simulated node in a JSON file).
    #[arg(
        long,
        global = true,
        env = "BALANCED_DATAPLANE",
        default_value = "kernel",
        value_name = "kernel|sim:PATH"
    )]
    pub dataplane: DataplaneSpec,
    /// Last-known-good manifests, drain record and status live here.
    #[arg(long, global = true, env = "BALANCED_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Log lines as text or one JSON object per line (stderr). Levels: BALANCED_LOG or RUST_LOG.
    #[arg(
        long,
        global = true,
        env = "BALANCED_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check manifests (files or directories, recursive *.yaml/*.yml); print every diagnostic.
    Validate {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Print the JSON Schema of a manifest kind.
    Schema {
        #[arg(long, value_enum)]
        kind: SchemaKindArg,
    },
    /// Show what `apply` would change (read-only, also with a sim dataplane).
    Plan {
        #[command(flatten)]
        manifests: ManifestDirs,
        #[command(flatten)]
        role: RoleArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Show held deletions as if released.
        #[arg(long)]
        allow_mass_delete: bool,
    },
    /// Converge the node once, then observe again and verify.
    Apply {
        #[command(flatten)]
        manifests: ManifestDirs,
        #[command(flatten)]
        role: RoleArgs,
        /// Release deletions held by maxDeletions (also accepts an emptied directory).
        #[arg(long)]
        allow_mass_delete: bool,
    },
    /// Run as a daemon: watch the directories and keep the node converged.
    Run {
        #[command(flatten)]
        manifests: ManifestDirs,
        #[command(flatten)]
        role: RoleArgs,
        /// How long a burst of file events is collected before converging once.
        #[arg(long, env = "BALANCED_DEBOUNCE", default_value = "300ms")]
        debounce: DurationArg,
        /// Where /metrics, /healthz, /readyz and /status are served; '' or `off`: nowhere.
        /// The bound address is logged and written to <state-dir>/metrics-address.
        #[arg(
            long,
            env = "BALANCED_METRICS_ADDR",
            default_value = crate::http::DEFAULT_METRICS_ADDR,
            value_name = "ADDR:PORT|off"
        )]
        metrics_addr: crate::http::MetricsAddr,
        /// Also export per-destination series (a node may hold a million destinations).
        #[arg(long, env = "BALANCED_METRICS_DESTINATIONS")]
        metrics_destinations: bool,
    },
    /// Withdraw every VIP address (BGP withdraws; IPVS services stay and serve what still
    /// arrives) or announce them again. A running daemon acts at once; else the next apply.
    Maintenance {
        #[arg(value_enum)]
        switch: Switch,
        /// Why, for `balanced status` (with `on`).
        #[arg(long)]
        reason: Option<String>,
    },
    /// The observed state in manifest terms, with manifests in force, stale, held and draining.
    /// `--role backend`: the pods the last backend pass found and configured.
    Status {
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        #[arg(long, env = "BALANCED_ROLE", value_enum, default_value_t = Role::Director)]
        role: Role,
    },
}

/// The watched manifest directories (also `BALANCED_MANIFESTS`, colon-separated).
#[derive(Debug, Args)]
pub struct ManifestDirs {
    #[arg(
        required = true,
        value_name = "DIR",
        env = "BALANCED_MANIFESTS",
        value_delimiter = ':'
    )]
    pub dirs: Vec<PathBuf>,
}

/// Which part of the load balancer this node plays (`plan`, `apply`, `run`).
#[derive(Debug, Args)]
pub struct RoleArgs {
    /// `director`: IPVS and the VIP link (the LVS nodes). `backend`: the VIPs inside this
    /// Kubernetes node's pods, for tunnel forwarding (see `balanced_engine::backend`); it needs
    /// no --config.
    #[arg(long, env = "BALANCED_ROLE", value_enum, default_value_t = Role::Director)]
    pub role: Role,
    /// Backend role: this node's name, as the manifests' `backends[].node` say it.
    #[arg(long, env = "BALANCED_NODE_NAME", required_if_eq("role", "backend"))]
    pub node_name: Option<String>,
    /// Backend role: named network namespaces, each named after its pod's UID (a CNI setup
    /// that names them so, or tests), looked at before the processes under /proc.
    #[arg(long, env = "BALANCED_NETNS_DIR", value_name = "DIR")]
    pub netns_dir: Option<PathBuf>,
    /// Backend role: the container runtime's CRI socket, asked for the pods that neither
    /// --netns-dir nor /proc shows (no hostPID, unrecognised cgroup paths). Off by default.
    #[arg(long, env = "BALANCED_CRI_ENDPOINT", value_name = "unix:///PATH")]
    pub cri_endpoint: Option<crate::backend::cri::CriEndpoint>,
    /// Backend role, `run`: how often the pods are looked at again.
    #[arg(long, env = "BALANCED_POD_RESYNC", default_value = "10s")]
    pub pod_resync: DurationArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    Director,
    Backend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKindArg {
    #[value(name = "Balancer")]
    Balancer,
    #[value(name = "NodeConfig")]
    NodeConfig,
}

/// Which dataplane to observe and change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataplaneSpec {
    Kernel,
    Sim(PathBuf),
}

impl FromStr for DataplaneSpec {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("sim:") {
            _ if s == "kernel" => Ok(DataplaneSpec::Kernel),
            Some(path) if !path.is_empty() => Ok(DataplaneSpec::Sim(PathBuf::from(path))),
            _ => Err(EngineError::DataplaneSpec(s.to_owned())),
        }
    }
}

/// A duration in the manifests' syntax (`300ms`, `2s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationArg(pub std::time::Duration);

impl FromStr for DurationArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<Duration>().map(|d| DurationArg(d.as_std()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn dataplane_spec_parses_kernel_and_sim_only() {
        assert_eq!(
            "kernel".parse::<DataplaneSpec>().unwrap(),
            DataplaneSpec::Kernel
        );
        assert_eq!(
            "sim:/tmp/node-a.json".parse::<DataplaneSpec>().unwrap(),
            DataplaneSpec::Sim(PathBuf::from("/tmp/node-a.json"))
        );
        assert!("sim:".parse::<DataplaneSpec>().is_err());
        assert!("netlink".parse::<DataplaneSpec>().is_err());
    }

    #[test]
    fn global_options_are_accepted_after_the_command() {
        let cli = Cli::try_parse_from([
            "balanced",
            "plan",
            "m",
            "--config",
            "node.yaml",
            "--dataplane",
            "sim:n.json",
            "--output",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.global.config, Some(PathBuf::from("node.yaml")));
        assert_eq!(cli.global.dataplane, DataplaneSpec::Sim("n.json".into()));
        assert!(matches!(
            cli.command,
            Command::Plan {
                output: Output::Json,
                ..
            }
        ));
    }

    #[test]
    fn the_backend_role_needs_a_node_name() {
        let parse = |args: &[&str]| Cli::try_parse_from(args.iter().copied());
        assert!(parse(&["balanced", "run", "m", "--role", "backend"]).is_err());
        let cli = parse(&[
            "balanced",
            "run",
            "m",
            "--role",
            "backend",
            "--node-name",
            "n1",
        ])
        .expect("parses");
        let Command::Run { role, .. } = cli.command else {
            panic!("run expected");
        };
        assert_eq!(role.role, Role::Backend);
        assert_eq!(role.node_name.as_deref(), Some("n1"));
        let cli = parse(&["balanced", "plan", "m"]).expect("parses");
        let Command::Plan { role, .. } = cli.command else {
            panic!("plan expected");
        };
        assert_eq!(role.role, Role::Director, "the default role");
        assert_eq!(role.cri_endpoint, None, "no runtime is asked by default");
    }

    #[test]
    fn the_cri_endpoint_is_a_unix_socket() {
        let parse = |endpoint: &str| {
            Cli::try_parse_from([
                "balanced",
                "plan",
                "m",
                "--role",
                "backend",
                "--node-name",
                "n1",
                "--cri-endpoint",
                endpoint,
            ])
        };
        let cli = parse("unix:///run/containerd/containerd.sock").expect("parses");
        let Command::Plan { role, .. } = cli.command else {
            panic!("plan expected");
        };
        assert_eq!(
            role.cri_endpoint.map(|e| e.socket),
            Some(PathBuf::from("/run/containerd/containerd.sock"))
        );
        assert!(parse("tcp://127.0.0.1:10010").is_err());
    }
}
