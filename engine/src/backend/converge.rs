//! The backend role's converge pass — read the manifests, find this node's pods, and for each
//! pod namespace: observe, plan (pure), apply, observe again and verify — and the commands
//! built on it: `plan --role backend` (dry run), `apply --role backend` (one pass) and
//! `run --role backend` (a pass every `--resync`; pods come and go without any file event, so
//! the loop polls).
//!
//! The record of what balanced added (addresses and FOU ports, per pod UID and namespace
//! identity) lives in `STATE_DIR/backend-record.json`. A pod found in a namespace other than
//! the recorded one has restarted: its record starts empty and it is configured again. A
//! namespace that cannot be opened or entered, or vanishes mid-pass, is a logged skip.
//!
//! `run` feeds each pass to [`BackendTelemetry`] (served on `--metrics-addr` as the director's
//! metrics are) and writes the status document (`crate::backend::status`) when it changes;
//! `apply` writes it too.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use balanced_schemas::v1::PodRef;
use balanced_schemas::{Manifest, load_paths};
use serde::{Deserialize, Serialize};
use tracing::{debug, error, info, warn};

use crate::backend::cri::CriClient;
use crate::backend::kernel::{Observation, Owned, PodKernel};
use crate::backend::metrics::BackendTelemetry;
use crate::backend::model::{FouPort, PodIntent, Tunnel, TunnelDevice, desired, pod_intents};
use crate::backend::namespace::{Discovery, Lookup, NetnsId, PodNamespace};
use crate::backend::plan::{PodAction, plan};
use crate::backend::status::{self, BackendStatus};
use crate::cli::{GlobalArgs, Role, RoleArgs};
use crate::error::{EngineError, ExitStatus};
use crate::http::MetricsAddr;
use crate::state_dir::{StateDir, write_atomic};

const RECORD: &str = "backend-record.json";

/// What balanced added in one pod's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRecord {
    pub pod: Option<PodRef>,
    pub netns: Option<NetnsId>,
    pub addresses: BTreeSet<(TunnelDevice, IpAddr)>,
    pub fou_ports: BTreeSet<FouPort>,
}

/// Pod UID → its record.
pub type Record = BTreeMap<String, PodRecord>;

/// The backend role of one node.
#[derive(Debug, Clone)]
pub struct BackendRole {
    pub node_name: String,
    pub dirs: Vec<PathBuf>,
    pub discovery: Discovery,
    pub state_dir: PathBuf,
}

/// What happened to one pod in a pass.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodReport {
    pub pod: Option<PodRef>,
    pub uid: String,
    pub namespace: Option<PathBuf>,
    /// The namespace's identity, when it was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns_id: Option<NetnsId>,
    /// How the director reaches the pod, from the manifests.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub tunnels: BTreeSet<Tunnel>,
    /// Why the pod was left alone, when it was.
    pub skipped: Option<String>,
    pub actions: Vec<PodAction>,
    /// Actions the kernel took (apply, run).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub applied: Vec<PodAction>,
    /// Actions the kernel refused (apply, run); each is also in `problems`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<PodAction>,
    /// Combinations the pod cannot receive, and actions that failed.
    pub problems: Vec<String>,
    /// Actions a fresh observation still finds needed after applying.
    pub differences: Vec<PodAction>,
    /// The VIPs balanced configured in the pod after the pass, by device (its record).
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub configured: BTreeSet<(TunnelDevice, IpAddr)>,
}

/// The intents of this node's pods, and whether every manifest could be read (when not,
/// nothing is removed this pass).
pub fn intents(dirs: &[PathBuf], node: &str) -> (BTreeMap<PodRef, PodIntent>, bool) {
    let files = load_paths(dirs);
    let mut complete = true;
    let mut balancers = Vec::new();
    for file in &files {
        if file.has_errors() {
            complete = false;
            for d in &file.diagnostics {
                warn!("{d}");
            }
            continue;
        }
        balancers.extend(file.documents.iter().filter_map(|d| match &d.manifest {
            Manifest::Balancer(b) => Some(b),
            Manifest::NodeConfig(_) => None,
        }));
    }
    (pod_intents(balancers, node), complete)
}

impl BackendRole {
    /// The backend role the command line asks for; `None` for the director role.
    pub fn from_args(role: &RoleArgs, dirs: &[PathBuf], global: &GlobalArgs) -> Option<Self> {
        match (role.role, &role.node_name) {
            (Role::Backend, Some(node)) => Some(BackendRole {
                node_name: node.clone(),
                dirs: dirs.to_vec(),
                discovery: Discovery {
                    proc_root: PathBuf::from("/proc"),
                    netns_dir: role.netns_dir.clone(),
                    cri: role.cri_endpoint.clone().map(CriClient::new),
                },
                state_dir: global.state_dir.clone(),
            }),
            _ => None,
        }
    }

    fn record_path(&self) -> PathBuf {
        self.state_dir.join(RECORD)
    }

    pub fn read_record(&self) -> Result<Record, EngineError> {
        let path = self.record_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| EngineError::StateFormat { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Record::new()),
            Err(e) => Err(EngineError::io(&path, e)),
        }
    }

    fn write_record(&self, record: &Record) -> Result<(), EngineError> {
        std::fs::create_dir_all(&self.state_dir)
            .map_err(|e| EngineError::io(&self.state_dir, e))?;
        let path = self.record_path();
        let bytes = serde_json::to_vec_pretty(record)
            .map_err(|e| EngineError::Runtime(format!("cannot render the record: {e}")))?;
        write_atomic(&path, &bytes).map_err(|e| EngineError::io(&path, e))
    }

    /// One pass over every pod that is desired or recorded. `apply` false: plan only.
    pub fn pass(&self, record: &mut Record, apply: bool) -> Pass {
        let (intents, complete) = intents(&self.dirs, &self.node_name);
        if !complete {
            warn!("a manifest cannot be read: nothing is removed from any pod in this pass");
        }
        let processes = self.discovery.scan();
        let host = self.discovery.host().ok();
        let mut uids: BTreeMap<String, (Option<PodRef>, PodIntent)> = BTreeMap::new();
        for (pod, intent) in intents {
            uids.insert(pod.uid.clone(), (Some(pod), intent));
        }
        for (uid, entry) in record.iter() {
            uids.entry(uid.clone())
                .or_insert_with(|| (entry.pod.clone(), PodIntent::default()));
        }
        let mut reports = Vec::new();
        for (uid, (pod, intent)) in uids {
            let mut report = PodReport {
                pod: pod.clone(),
                uid: uid.clone(),
                tunnels: intent.vips.values().flatten().copied().collect(),
                ..PodReport::default()
            };
            let ns = match self.discovery.open(&uid, pod.as_ref(), &processes) {
                Lookup::Found(ns) => ns,
                Lookup::Absent => {
                    report.skipped = Some("no network namespace found on this node".into());
                    if intent.vips.is_empty() {
                        // A recorded pod that is gone: its namespace went with it.
                        record.remove(&uid);
                    }
                    reports.push(report);
                    continue;
                }
                Lookup::Failed(why) => {
                    // The pod may still be there: its record is kept.
                    report.skipped = Some(why);
                    reports.push(report);
                    continue;
                }
            };
            report.namespace = Some(ns.path.clone());
            report.netns_id = Some(ns.id);
            if Some(ns.id) == host {
                report.skipped = Some("the host's network namespace (hostNetwork)".into());
                reports.push(report);
                continue;
            }
            let entry = record.entry(uid.clone()).or_default();
            if entry.netns != Some(ns.id) {
                // A new namespace (first sight, or the pod restarted): nothing of ours in it.
                *entry = PodRecord {
                    pod: pod.clone(),
                    netns: Some(ns.id),
                    ..PodRecord::default()
                };
            }
            if pod.is_some() {
                entry.pod = pod;
            }
            converge_pod(&ns, &intent, entry, complete, apply, &mut report);
            report.configured = entry.addresses.clone();
            if intent.vips.is_empty() && entry.addresses.is_empty() && entry.fou_ports.is_empty() {
                record.remove(&uid);
            }
            reports.push(report);
        }
        Pass { reports, complete }
    }

    /// `plan --role backend`: exit 65 when a manifest is invalid, else 2 when changes are
    /// pending (the director's table).
    pub fn plan_command(&self, json: bool) -> Result<ExitStatus, EngineError> {
        let mut record = self.read_record()?;
        let pass = self.pass(&mut record, false);
        if json {
            let text = serde_json::to_string_pretty(&pass.reports)
                .map_err(|e| EngineError::Runtime(format!("cannot render JSON: {e}")))?;
            println!("{text}");
        } else {
            print!("{}", render(&pass.reports));
        }
        let mut status = ExitStatus::Success;
        if pass.reports.iter().any(|r| !r.actions.is_empty()) {
            status = status.worst(ExitStatus::ChangesPending);
        }
        if !pass.complete {
            status = status.worst(ExitStatus::InvalidInput);
        }
        Ok(status)
    }

    /// `apply --role backend`: one pass; exit 1 when an action failed or a difference is left.
    pub fn apply_command(&self) -> Result<ExitStatus, EngineError> {
        let _lock = StateDir::new(&self.state_dir).lock()?;
        let mut record = self.read_record()?;
        let pass = self.pass(&mut record, true);
        self.write_record(&record)?;
        // The status only reports: one that cannot be read never stops a pass.
        let previous = status::read(&self.state_dir).unwrap_or_else(|e| {
            warn!("{e}: the backend status starts anew");
            BackendStatus::default()
        });
        let now = crate::status::unix_seconds(SystemTime::now());
        status::write(
            &self.state_dir,
            &BackendStatus::after(&previous, &self.node_name, &pass, now),
        )?;
        Ok(pass.outcome())
    }

    /// `run --role backend`: a pass every `every`, until the process is stopped; metrics,
    /// health and status served on `metrics_addr`.
    pub fn run_command(
        &self,
        every: Duration,
        metrics_addr: MetricsAddr,
    ) -> Result<ExitStatus, EngineError> {
        let state = StateDir::new(&self.state_dir);
        let _lock = state.lock()?;
        let mut record = self.read_record()?;
        let telemetry = Arc::new(BackendTelemetry::new(&self.node_name, every));
        crate::http::start(metrics_addr, telemetry.clone(), &state)?;
        let mut written: Option<Arc<BackendStatus>> = None;
        info!(node = %self.node_name, "backend role running");
        loop {
            let before = record.clone();
            let started = Instant::now();
            let pass = self.pass(&mut record, true);
            if record != before
                && let Err(e) = self.write_record(&record)
            {
                error!("{e}");
            }
            let now = crate::status::unix_seconds(SystemTime::now());
            let document = telemetry.passed(&pass, started.elapsed(), now);
            if written.as_ref().is_none_or(|w| !w.same_pods(&document)) {
                match status::write(&self.state_dir, &document) {
                    Ok(()) => written = Some(document),
                    Err(e) => error!("{e}"),
                }
            }
            let pods = pass.reports.len();
            let changed: usize = pass.reports.iter().map(|r| r.actions.len()).sum();
            if changed > 0 || pass.outcome() != ExitStatus::Success {
                info!(pods, changed, "backend pass done");
            } else {
                debug!(pods, "backend pass: no changes");
            }
            std::thread::sleep(every);
        }
    }
}

/// One pass: a report per pod, and whether every manifest could be read.
#[derive(Debug, Clone, Default)]
pub struct Pass {
    pub reports: Vec<PodReport>,
    pub complete: bool,
}

impl Pass {
    /// 1 when an action failed or a difference is left, else 65 when a manifest is invalid.
    pub fn outcome(&self) -> ExitStatus {
        let failed = self
            .reports
            .iter()
            .any(|r| !r.problems.is_empty() || !r.differences.is_empty());
        match (failed, self.complete) {
            (true, _) => ExitStatus::Failure,
            (false, false) => ExitStatus::InvalidInput,
            (false, true) => ExitStatus::Success,
        }
    }
}

/// Observe, plan, and (with `apply`) apply and verify one pod, inside its namespace.
fn converge_pod(
    ns: &PodNamespace,
    intent: &PodIntent,
    entry: &mut PodRecord,
    removals: bool,
    apply: bool,
    report: &mut PodReport,
) {
    let owned = Owned {
        addresses: entry.addresses.clone(),
        fou_ports: entry.fou_ports.clone(),
    };
    let pod = report.pod.as_ref().map_or_else(
        || report.uid.clone(),
        |p| format!("{}/{}", p.namespace, p.name),
    );
    let result = ns.run(|| -> Result<PodOutcome, String> {
        let mut kernel = PodKernel::open().map_err(|e| format!("rtnetlink: {e}"))?;
        let observe = |kernel: &mut PodKernel| -> Result<(Observation, _), String> {
            // The desired state derives from the pod's links, so observe twice at most: once
            // for the facts, once more only for what the desired state names.
            let first = kernel
                .observe(&Default::default(), &owned)
                .map_err(|e| format!("observing: {e}"))?;
            let (want, problems) = desired(intent, &first.facts);
            let obs = kernel
                .observe(&want, &owned)
                .map_err(|e| format!("observing: {e}"))?;
            Ok((obs, (want, problems)))
        };
        let (obs, (want, problems)) = observe(&mut kernel)?;
        let actions = plan(&want, &obs.net, removals);
        let mut out = PodOutcome {
            problems: problems.iter().map(ToString::to_string).collect(),
            actions: actions.clone(),
            ..PodOutcome::default()
        };
        if !apply {
            return Ok(out);
        }
        for action in &actions {
            match kernel.apply(action, &obs.devices) {
                Ok(()) => out.applied.push(action.clone()),
                Err(e) if is_gone(action, e.errno) => out.applied.push(action.clone()),
                Err(e) if already_there(action, e.errno) => {}
                Err(e) => {
                    out.problems.push(format!("{action}: {}", e.text));
                    out.failed.push(action.clone());
                }
            }
        }
        let (after, (want, _)) = observe(&mut kernel)?;
        out.differences = plan(&want, &after.net, removals);
        Ok(out)
    });
    match result {
        Err(e) => {
            warn!(pod, namespace = %ns.path.display(), "skipped: cannot enter the namespace: {e}");
            report.skipped = Some(format!("cannot enter the namespace: {e}"));
        }
        Ok(Err(e)) => {
            warn!(pod, namespace = %ns.path.display(), "skipped: {e}");
            report.skipped = Some(e);
        }
        Ok(Ok(out)) => {
            for action in &out.applied {
                info!(pod, "{action}");
                match action {
                    PodAction::AddAddress { device, vip } => {
                        entry.addresses.insert((*device, *vip));
                    }
                    PodAction::DelAddress { device, vip } => {
                        entry.addresses.remove(&(*device, *vip));
                    }
                    PodAction::AddFouPort { port } => {
                        entry.fou_ports.insert(*port);
                    }
                    PodAction::DelFouPort { port } => {
                        entry.fou_ports.remove(port);
                    }
                    _ => {}
                }
            }
            for problem in &out.problems {
                error!(pod, "{problem}");
            }
            for difference in &out.differences {
                error!(pod, "verification: difference left: {difference}");
            }
            report.actions = out.actions;
            report.applied = out.applied;
            report.failed = out.failed;
            report.problems = out.problems;
            report.differences = out.differences;
        }
    }
}

#[derive(Debug, Default)]
struct PodOutcome {
    actions: Vec<PodAction>,
    applied: Vec<PodAction>,
    failed: Vec<PodAction>,
    problems: Vec<String>,
    differences: Vec<PodAction>,
}

/// A removal of something already gone succeeded (`fou` answers a missing port with EINVAL).
fn is_gone(action: &PodAction, errno: i32) -> bool {
    match action {
        PodAction::DelFouPort { .. } => errno == libc::EINVAL,
        _ => {
            action.is_removal() && [libc::ENOENT, libc::ESRCH, libc::EADDRNOTAVAIL].contains(&errno)
        }
    }
}

/// An addition of something present that balanced did not record: left to its owner (`fou`
/// answers an existing port with EALREADY).
fn already_there(action: &PodAction, errno: i32) -> bool {
    match action {
        PodAction::AddAddress { .. } => errno == libc::EEXIST,
        PodAction::AddFouPort { .. } => errno == libc::EEXIST || errno == libc::EALREADY,
        _ => false,
    }
}

/// The plan as text: one block per pod, one diff line per action.
pub fn render(reports: &[PodReport]) -> String {
    let mut out = String::new();
    for r in reports {
        let name = r
            .pod
            .as_ref()
            .map_or_else(|| r.uid.clone(), |p| format!("{}/{}", p.namespace, p.name));
        let place = r
            .namespace
            .as_deref()
            .map_or_else(String::new, |p: &Path| format!(" ({})", p.display()));
        let _ = writeln!(out, "pod {name}{place}:");
        if let Some(why) = &r.skipped {
            let _ = writeln!(out, "  skipped: {why}");
        }
        for problem in &r.problems {
            let _ = writeln!(out, "  ! {problem}");
        }
        for action in &r.actions {
            let _ = writeln!(out, "  {action}");
        }
        if r.skipped.is_none() && r.actions.is_empty() && r.problems.is_empty() {
            let _ = writeln!(out, "  no changes");
        }
    }
    if reports.is_empty() {
        out.push_str("no pods of tunnel-forwarded services on this node\n");
    }
    out
}
