//! What each `balanced` command does, returning its exit status (table in [`crate::error`]).
//! Printed results go to standard output; diagnostics of `plan` and every log line to
//! standard error.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use balanced_schemas::{Diagnostic, SchemaKind, Severity, json_schema, validate_paths};
use tracing::{debug, error, info, warn};

use crate::backend::converge::BackendRole;
use crate::cli::{Cli, Command, DataplaneSpec, Output, Role, SchemaKindArg, Switch};
use crate::converge::{Converger, NodeConfig};
use crate::daemon;
use crate::dataplane::{Dataplane, DataplaneError, ObserveRequest};
use crate::display::{describe_action, render_plan};
use crate::error::{EngineError, ExitStatus};
use crate::exec::{execute, verify};
use crate::metrics::Telemetry;
use crate::sim::SimDataplane;
use crate::state_dir::StateDir;
use crate::status::{StatusDocument, Written, render_text, unix_seconds};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<ExitStatus, EngineError> {
    let global = cli.global;
    let state = StateDir::new(&global.state_dir);
    match cli.command {
        Command::Validate { paths } => Ok(validate(&paths, global.config.as_deref())),
        Command::Schema { kind } => schema(kind),
        Command::Plan {
            manifests,
            role,
            output,
            allow_mass_delete,
        } => {
            if let Some(backend) = BackendRole::from_args(&role, &manifests.dirs, &global) {
                return backend.plan_command(output == Output::Json);
            }
            let node = load_node(global.config.as_deref())?;
            plan(
                node,
                &manifests.dirs,
                state,
                &global.dataplane,
                output,
                allow_mass_delete,
            )
        }
        Command::Apply {
            manifests,
            role,
            allow_mass_delete,
        } => {
            if let Some(backend) = BackendRole::from_args(&role, &manifests.dirs, &global) {
                return backend.apply_command();
            }
            let node = load_node(global.config.as_deref())?;
            apply(
                node,
                &manifests.dirs,
                state,
                &global.dataplane,
                allow_mass_delete,
            )
        }
        Command::Run {
            manifests,
            role,
            debounce,
            metrics_addr,
            metrics_destinations,
        } => {
            if let Some(backend) = BackendRole::from_args(&role, &manifests.dirs, &global) {
                return backend.run_command(role.pod_resync.0, metrics_addr);
            }
            let node = load_node(global.config.as_deref())?;
            let lock = state.lock()?;
            let converger = Converger::open(node, &manifests.dirs, state, false)?;
            let dataplane = open_dataplane(&global.dataplane, false)?;
            let telemetry = std::sync::Arc::new(Telemetry::new(metrics_destinations));
            crate::http::start(metrics_addr, telemetry.clone(), &converger.state)?;
            daemon::run(converger, dataplane, debounce.0, lock, telemetry)
        }
        Command::Maintenance { switch, reason } => {
            crate::maintenance::command(&state, switch == Switch::On, reason)
        }
        Command::Status {
            output,
            role: Role::Backend,
        } => crate::backend::status::command(&global.state_dir, output == Output::Json),
        Command::Status {
            output,
            role: Role::Director,
        } => status(global.config.as_deref(), &state, &global.dataplane, output),
    }
}

/// Opens the dataplane the command line names. `read_only`: a simulated node's file is never
/// written (`plan`, `status`).
pub fn open_dataplane(
    spec: &DataplaneSpec,
    read_only: bool,
) -> Result<Box<dyn Dataplane>, EngineError> {
    match spec {
        DataplaneSpec::Kernel => Ok(Box::new(crate::kernel::KernelDataplane::connect()?)),
        DataplaneSpec::Sim(path) => Ok(Box::new(SimDataplane::open(path, read_only)?)),
    }
}

fn load_node(path: Option<&Path>) -> Result<NodeConfig, EngineError> {
    let path = path.ok_or_else(|| {
        EngineError::Usage(
            "--config NODE.yaml (or BALANCED_CONFIG) is required: it says what this node owns"
                .to_owned(),
        )
    })?;
    match NodeConfig::load(path) {
        Ok(node) => {
            for warning in &node.document.warnings {
                warn!("{warning}");
            }
            Ok(node)
        }
        Err(diagnostics) => {
            for diagnostic in &diagnostics {
                eprintln!("{diagnostic}");
            }
            Err(EngineError::InvalidNodeConfig {
                path: path.to_path_buf(),
                errors: diagnostics.iter().filter(|d| d.is_error()).count(),
            })
        }
    }
}

fn validate(paths: &[PathBuf], config: Option<&Path>) -> ExitStatus {
    let diagnostics = validate_paths(paths, config);
    let mut stdout = std::io::stdout().lock();
    for diagnostic in &diagnostics {
        let _ = writeln!(stdout, "{diagnostic}");
    }
    let errors = count(&diagnostics, Severity::Error);
    let warnings = count(&diagnostics, Severity::Warning);
    eprintln!("{errors} error(s), {warnings} warning(s)");
    if errors > 0 {
        ExitStatus::InvalidInput
    } else {
        ExitStatus::Success
    }
}

fn count(diagnostics: &[Diagnostic], severity: Severity) -> usize {
    diagnostics
        .iter()
        .filter(|d| d.severity == severity)
        .count()
}

fn schema(kind: SchemaKindArg) -> Result<ExitStatus, EngineError> {
    let kind = match kind {
        SchemaKindArg::Balancer => SchemaKind::Balancer,
        SchemaKindArg::NodeConfig => SchemaKind::NodeConfig,
    };
    print_json(&json_schema(kind))?;
    Ok(ExitStatus::Success)
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), EngineError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| EngineError::Runtime(format!("cannot render JSON: {e}")))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}").map_err(|e| EngineError::io("<stdout>", e))
}

fn print_text(text: &str) -> Result<(), EngineError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .map_err(|e| EngineError::io("<stdout>", e))
}

/// `plan`: read-only; exit 65 when any manifest is invalid, else 3 when deletions are held,
/// else 2 when actions are pending.
fn plan(
    node: NodeConfig,
    dirs: &[PathBuf],
    state: StateDir,
    dataplane: &DataplaneSpec,
    output: Output,
    allow_mass_delete: bool,
) -> Result<ExitStatus, EngineError> {
    let converger = Converger::open(node, dirs, state, allow_mass_delete)?;
    for diagnostic in &converger.resolution.diagnostics {
        eprintln!("{diagnostic}");
    }
    let mut dataplane = open_dataplane(dataplane, true)?;
    let observed = dataplane.observe(&converger.node.observe_request())?;
    let desired = converger.desired();
    let plan = converger.plan(&desired, &observed, SystemTime::now());
    match output {
        Output::Text => print_text(&render_plan(&plan, &observed))?,
        Output::Json => print_json(&plan)?,
    }
    let mut status = ExitStatus::Success;
    if !plan.actions.is_empty() {
        status = status.worst(ExitStatus::ChangesPending);
    }
    if !plan.held.is_empty() {
        status = status.worst(ExitStatus::Refused);
    }
    if converger.resolution.invalid {
        status = status.worst(ExitStatus::InvalidInput);
    }
    exiting_soon((converger, observed, desired, plan));
    Ok(status)
}

/// Leaves what a one-shot command built to the process exit: freeing ten thousand parsed
/// manifests one by one takes a tenth of a plan's time, and the kernel frees it all at once.
fn exiting_soon<T>(built: T) {
    std::mem::forget(built);
}

/// `apply`: converge once, observe again, verify. Exit 1 when an action failed or a
/// difference is left, else 65 when a manifest is invalid (the rest converged), else 3 when
/// deletions are held.
fn apply(
    node: NodeConfig,
    dirs: &[PathBuf],
    state: StateDir,
    dataplane: &DataplaneSpec,
    allow_mass_delete: bool,
) -> Result<ExitStatus, EngineError> {
    let _lock = state.lock()?;
    let started = Instant::now();
    let mut converger = Converger::open(node, dirs, state, allow_mass_delete)?;
    Converger::log_diagnostics(&converger.resolution.diagnostics);
    let loaded = started.elapsed().as_secs_f64();
    let mut dataplane = open_dataplane(dataplane, false)?;
    let request = converger.node.observe_request();
    let observed = dataplane.observe(&request)?;
    let observed_at = started.elapsed().as_secs_f64();
    let desired = converger.desired();
    let plan = converger.plan(&desired, &observed, SystemTime::now());
    debug!(
        load = loaded,
        observe = observed_at - loaded,
        plan = started.elapsed().as_secs_f64() - observed_at,
        "seconds spent reading the manifests, observing and planning"
    );
    info!(
        actions = plan.actions.len(),
        held = plan.held.len(),
        waiting = plan.waiting.len(),
        "applying"
    );
    for held in &plan.held {
        warn!(
            "held by maxDeletions ({} deletions of {} owned, limit {} allows {}): {}",
            held.reason.deletions,
            held.reason.owned,
            held.reason.limit,
            held.reason.allowed,
            describe_action(&held.action)
        );
    }
    let outcome = execute(&mut *dataplane, &plan.actions, &mut observed.clone());
    dataplane.commit()?;
    let after = dataplane.observe(&request)?;
    let check = verify(
        &desired,
        &after,
        SystemTime::now(),
        &plan.record,
        &converger.options,
    );
    let differences: Vec<String> = check.actions.iter().map(describe_action).collect();
    for difference in &differences {
        error!("verification: difference left: {difference}");
    }
    converger.persist(check.record.clone())?;
    let document = StatusDocument {
        observed: after,
        written: Some(Written::now("apply")),
        node_config: Some(converger.node.path.clone()),
        ownership: Some(converger.options.ownership.clone()),
        sources: converger.manifests.sources(),
        manifests: converger.manifests.status(),
        held: check.held.clone(),
        draining: check.waiting.clone(),
        failures: outcome.failures.clone(),
        differences: differences.clone(),
        maintenance: Some(converger.maintenance.status(&converger.node.spec)),
    };
    converger.state.write_status(&document)?;
    info!(
        applied = outcome.applied,
        failed = outcome.failures.len(),
        differences = differences.len(),
        "apply done"
    );
    let mut status = ExitStatus::Success;
    if !plan.held.is_empty() {
        status = status.worst(ExitStatus::Refused);
    }
    if converger.resolution.invalid {
        status = status.worst(ExitStatus::InvalidInput);
    }
    if !outcome.ok() || !differences.is_empty() {
        status = status.worst(ExitStatus::Failure);
    }
    exiting_soon((converger, desired, plan, document, outcome));
    Ok(status)
}

/// `status`: the document the last `apply`/`run` wrote, with a fresh observation.
fn status(
    config: Option<&Path>,
    state: &StateDir,
    dataplane: &DataplaneSpec,
    output: Output,
) -> Result<ExitStatus, EngineError> {
    let mut document = match state.read_status()? {
        Some(value) => serde_json::from_value::<StatusDocument>(value).unwrap_or_else(|e| {
            warn!(
                "{}: status written by another version, ignored: {e}",
                state.root().display()
            );
            StatusDocument::default()
        }),
        None => StatusDocument::default(),
    };
    let request = match config {
        Some(path) => {
            let node = load_node(Some(path))?;
            document.ownership = Some(crate::ownership::Ownership::from_node(&node.spec));
            node.observe_request()
        }
        None => ObserveRequest {
            interface: document
                .ownership
                .as_ref()
                .map(|o| o.interface.clone())
                .unwrap_or_else(|| balanced_schemas::v1::DEFAULT_INTERFACE.to_owned()),
            // Without the node config the count is unknown; every link named after the
            // interface is observed all the same.
            vip_links: 1,
            sysctls: document.observed.sysctls.keys().cloned().collect(),
        },
    };
    crate::maintenance::refresh_status(&mut document, state)?;
    let mut dataplane = open_dataplane(dataplane, true)?;
    document.observed = dataplane
        .observe(&request)
        .map_err(|e: DataplaneError| EngineError::Dataplane(e))?;
    match output {
        Output::Json => print_json(&document)?,
        Output::Text => print_text(&render_text(&document, unix_seconds(SystemTime::now())))?,
    }
    Ok(ExitStatus::Success)
}
