//! `balanced run`: the daemon that keeps a node converged.
//!
//! Two layers:
//! - [`Daemon`] — synchronous and testable without a watcher: changed paths → re-read only
//!   those files → re-check the whole set → compile → plan against the **cached observation**
//!   ([`Daemon::plan_changes`], the path the `run` benchmark measures); executing a plan applies
//!   each successful action to the cache with the kernel's semantics; [`Daemon::resync`]
//!   observes the dataplane again and logs any difference from the cache as drift.
//! - [`run`] — the event loop (tokio, current thread): `notify` + `notify-debouncer-full`
//!   watching every manifest directory (each one alone, as the scan walked them) *and* each
//!   watched directory's parent, so a directory that is a symlink
//!   swapped atomically (git-sync, a ConfigMap volume) is re-resolved and followed; the node
//!   config's directory, so an edited config is reloaded; a resync every `resyncInterval`,
//!   sooner while drains wait (every 5 s) or after a failure; SIGHUP = reload and resync now;
//!   SIGTERM/SIGINT = stop, leaving the kernel as it is. The state directory is watched too:
//!   the operator's maintenance flag ([`crate::maintenance`]) acts as soon as it changes.
//!   Each converge feeds [`crate::metrics::Telemetry`] (metrics, `/healthz`, `/readyz`, `/status`)
//!   and [`crate::status_writer`] (`status.json`, written off the loop).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use notify_debouncer_full::notify::{RecursiveMode, Watcher};
use notify_debouncer_full::{DebounceEventResult, DebouncedEvent, new_debouncer};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{debug, error, info, warn};

use crate::converge::{Converger, NodeConfig};
use crate::dataplane::Dataplane;
use crate::display::describe_action;
use crate::error::{EngineError, ExitStatus};
use crate::exec::{Failure, execute};
use crate::maintenance::flag_path;
use crate::metrics::{NodeView, Telemetry, service_names};
use crate::model::{NodeState, ServiceKey, VirtualService};
use crate::plan::{Plan, WaitReason};
use crate::state_dir::StateLock;
use crate::status::{StatusDocument, Written, unix_seconds};
use crate::status_writer::{Busy, StatusWriter};

/// How soon the daemon observes again while drains wait for connections to end, or after an
/// action failed.
pub const FAST_RESYNC: Duration = Duration::from_secs(5);

/// A running node: its converging context, its dataplane and the cached observation.
pub struct Daemon {
    converger: Converger,
    dataplane: Box<dyn Dataplane>,
    /// The dataplane as last observed, updated by every action applied since.
    cache: NodeState,
    /// Diagnostics already logged (each is logged once, when it appears).
    reported: BTreeSet<String>,
    /// The last plan's held and waiting deletions and the last failures, for status.
    last_plan: Plan,
    failures: Vec<Failure>,
    /// Something failed: observe again soon rather than trust the cache.
    suspect: bool,
    /// Metrics and health facts for the operations endpoint ([`crate::http`]).
    telemetry: Arc<Telemetry>,
    /// Writes `status.json` off the loop (dropped with the daemon: the last one is written).
    status_writer: StatusWriter,
}

impl Daemon {
    /// Observes the dataplane once; nothing is applied yet.
    pub fn start(
        converger: Converger,
        mut dataplane: Box<dyn Dataplane>,
    ) -> Result<Self, EngineError> {
        let started = Instant::now();
        let cache = dataplane.observe(&converger.node.observe_request())?;
        let status_writer = StatusWriter::start(converger.state.clone())?;
        debug!(
            seconds = started.elapsed().as_secs_f64(),
            "observed the dataplane"
        );
        let mut daemon = Daemon {
            converger,
            dataplane,
            cache,
            reported: BTreeSet::new(),
            last_plan: Plan::default(),
            failures: Vec::new(),
            suspect: false,
            telemetry: Arc::new(Telemetry::new(false)),
            status_writer,
        };
        daemon.report_diagnostics();
        Ok(daemon)
    }

    /// Reports to `telemetry` from now on (the observation of [`Daemon::start`] worked).
    pub fn with_telemetry(mut self, telemetry: Arc<Telemetry>) -> Self {
        telemetry.observed(true);
        self.telemetry = telemetry;
        self
    }

    /// Marks the daemon busy until the guard is dropped: `status.json` is not written
    /// meanwhile (unless it is [`crate::status_writer::MAX_AGE`] old).
    pub fn busy(&self) -> Busy {
        self.status_writer.busy()
    }

    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// Re-reads the operator's maintenance flag; plans and converges when it changed.
    pub fn reload_maintenance(&mut self) {
        match self.converger.maintenance.reload(&self.converger.state) {
            Ok(false) => {}
            Ok(true) => {
                let on = self.converger.maintenance.operator.is_some();
                warn!(
                    "maintenance {}: {} every VIP address",
                    if on { "on" } else { "off" },
                    if on { "withdrawing" } else { "announcing" }
                );
                let plan = self.plan_now(SystemTime::now());
                self.converge(plan);
            }
            Err(e) => error!("maintenance flag: {e}"),
        }
    }

    pub fn converger(&self) -> &Converger {
        &self.converger
    }

    /// The cached observation.
    pub fn cache(&self) -> &NodeState {
        &self.cache
    }

    /// The hot path: re-reads the changed `paths` (only those; a directory-level change
    /// rescans that directory), re-checks the set, compiles and plans against the cached
    /// observation. `None` when no manifest changed.
    pub fn plan_changes(&mut self, paths: &[PathBuf], now: SystemTime) -> Option<Plan> {
        let started = Instant::now();
        if !self.converger.manifests.refresh_paths(paths) {
            return None;
        }
        self.converger.resolve();
        self.report_diagnostics();
        let plan = self
            .converger
            .plan_incremental(&self.cache, now, self.settled());
        debug!(
            paths = ?paths,
            actions = plan.actions.len(),
            seconds = started.elapsed().as_secs_f64(),
            "manifests changed: re-read, re-checked and planned"
        );
        Some(plan)
    }

    /// Plans against the cache without re-reading anything.
    pub fn plan_now(&self, now: SystemTime) -> Plan {
        self.converger.plan_incremental(&self.cache, now, false)
    }

    /// Whether the cache holds everything the last plan asked for: it was applied without a
    /// failure, held or left nothing waiting, and no observation failed since.
    fn settled(&self) -> bool {
        !self.suspect
            && self.failures.is_empty()
            && self.last_plan.held.is_empty()
            && self.last_plan.waiting.is_empty()
    }

    /// Replaces the node config and re-resolves the set.
    pub fn set_node(&mut self, node: NodeConfig) {
        self.converger.set_node(node);
        self.report_diagnostics();
    }

    /// Rescans every directory, observes the dataplane again (logging drift from the cache)
    /// and plans.
    pub fn resync(&mut self, now: SystemTime) -> Result<Plan, EngineError> {
        let started = Instant::now();
        if self.converger.manifests.rescan_all() {
            self.converger.resolve();
            self.report_diagnostics();
        }
        let rescanned = started.elapsed().as_secs_f64();
        let observed = match self
            .dataplane
            .observe(&self.converger.node.observe_request())
        {
            Ok(observed) => observed,
            Err(e) => {
                self.telemetry.observed(false);
                if self.record_outcome(false) {
                    let plan = self.plan_now(now);
                    self.converge_round(plan, false);
                }
                return Err(e.into());
            }
        };
        self.telemetry.observed(true);
        let observed_at = started.elapsed().as_secs_f64();
        let drift = drift(&self.cache, &observed, &self.converger.options.ownership);
        self.telemetry.drift(drift.len());
        if !drift.is_empty() {
            warn!(
                differences = drift.len(),
                "drift: the node differs from what balanced last applied; repairing"
            );
            for line in &drift {
                warn!("drift: {line}");
            }
        }
        self.cache = observed;
        self.suspect = false;
        let plan = self.plan_now(now);
        debug!(
            services = self.cache.services.len(),
            addresses = self.cache.interface.addresses.len(),
            actions = plan.actions.len(),
            rescan = rescanned,
            observe = observed_at - rescanned,
            drift_and_plan = started.elapsed().as_secs_f64() - observed_at,
            seconds = started.elapsed().as_secs_f64(),
            "resynced: rescanned, observed and planned"
        );
        Ok(plan)
    }

    /// Executes a plan on the dataplane and the cache, then persists the last known good
    /// manifests and the drain record and publishes the status document. Failures are logged
    /// and kept for status; they make the next resync come sooner.
    pub fn converge(&mut self, plan: Plan) {
        self.converge_round(plan, true);
    }

    /// Executes a plan, then lets `withdrawOnFailure` judge the outcome (`observed`: the
    /// dataplane's last observation worked); when that withdraws or announces again, plans and
    /// executes once more. Publishes the status and metrics at the end, and hands the status
    /// to the writer of `status.json`.
    fn converge_round(&mut self, mut plan: Plan, observed: bool) {
        for _ in 0..3 {
            let ok = self.execute_plan(plan) && observed;
            if !self.record_outcome(ok) {
                break;
            }
            plan = self.plan_now(SystemTime::now());
        }
        let started = Instant::now();
        self.telemetry
            .set_resync_interval(self.converger.node.spec.resync_interval.as_std());
        let view = Arc::new(NodeView {
            status: self.status(),
            names: service_names(&self.converger.manifests.balancers()),
        });
        self.telemetry.publish(view.clone());
        self.status_writer.submit(view);
        debug!(
            seconds = started.elapsed().as_secs_f64(),
            "status and metrics published"
        );
    }

    /// Feeds one outcome to `withdrawOnFailure`; true when the addresses must be withdrawn or
    /// announced again now.
    fn record_outcome(&mut self, ok: bool) -> bool {
        let after = self
            .converger
            .node
            .spec
            .withdraw_on_failure
            .map(|d| d.as_std());
        let failure = &mut self.converger.maintenance.failure;
        let changed = failure.record(ok, SystemTime::now(), after);
        if changed && failure.withdrawn {
            error!(
                "converging has kept failing for withdrawOnFailure; withdrawing every VIP address"
            );
        } else if changed {
            warn!("converged again after failures; announcing the VIP addresses again");
        }
        changed
    }

    /// Executes one plan on the dataplane and the cache and persists the outcome; true when
    /// every action and the commit succeeded.
    fn execute_plan(&mut self, plan: Plan) -> bool {
        if !plan.actions.is_empty() {
            info!(actions = plan.actions.len(), "converging");
        }
        let started = Instant::now();
        let outcome = execute(&mut *self.dataplane, &plan.actions, &mut self.cache);
        let committed = match self.dataplane.commit() {
            Ok(()) => true,
            Err(e) => {
                error!("{e}");
                false
            }
        };
        let ok = committed && outcome.ok();
        self.telemetry
            .converged(&plan.actions, &outcome.failures, ok, started.elapsed());
        if !ok {
            self.suspect = true;
        }
        let held_changed = plan.held != self.last_plan.held;
        if held_changed && !plan.held.is_empty() {
            warn!(
                held = plan.held.len(),
                "deletions held by maxDeletions (release: balanced apply --allow-mass-delete or raise the limit)"
            );
            for held in &plan.held {
                warn!("held: {}", describe_action(&held.action));
            }
        }
        if let Err(e) = self.converger.persist(plan.record.clone()) {
            error!("{e}");
        }
        self.failures = outcome.failures;
        self.last_plan = plan;
        ok
    }

    /// The status document of the node as the daemon sees it (observed = the cache).
    pub fn status(&self) -> StatusDocument {
        StatusDocument {
            observed: self.cache.clone(),
            written: Some(Written::now("run")),
            node_config: Some(self.converger.node.path.clone()),
            ownership: Some(self.converger.options.ownership.clone()),
            sources: self.converger.manifests.sources(),
            manifests: self.converger.manifests.status(),
            held: self.last_plan.held.clone(),
            draining: self.last_plan.waiting.clone(),
            failures: self.failures.clone(),
            differences: Vec::new(),
            maintenance: Some(self.converger.maintenance.status(&self.converger.node.spec)),
        }
    }

    /// When the daemon should observe again at the latest, besides the resync interval: the
    /// earliest due drain or withdrawal, sooner while drains wait for connections to end or
    /// after a failure.
    pub fn wake_after(&self, now: SystemTime) -> Option<Duration> {
        let now_secs = unix_seconds(now);
        let due = self
            .last_plan
            .waiting
            .iter()
            .map(|w| Duration::from_secs(w.due.saturating_sub(now_secs)))
            .min();
        let draining = self
            .last_plan
            .waiting
            .iter()
            .any(|w| matches!(w.reason, WaitReason::Drain { .. }));
        let fast = (draining || self.suspect).then_some(FAST_RESYNC);
        due.into_iter().chain(fast).min()
    }

    fn report_diagnostics(&mut self) {
        let now: BTreeSet<String> = self
            .converger
            .resolution
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .collect();
        let new = self
            .converger
            .resolution
            .diagnostics
            .iter()
            .filter(|d| !self.reported.contains(&d.to_string()));
        Converger::log_diagnostics(new);
        self.reported = now;
    }
}

/// The differences between the cache and a fresh observation, on what the node owns,
/// ignoring connection counts and counters.
fn drift(
    cache: &NodeState,
    observed: &NodeState,
    ownership: &crate::ownership::Ownership,
) -> Vec<String> {
    let mut out = Vec::new();
    // Counters and statistics change all the time; everything else is what balanced set.
    let same = |a: &VirtualService, b: &VirtualService| {
        a.config == b.config
            && a.destinations.len() == b.destinations.len()
            && a.destinations.iter().zip(&b.destinations).all(|(a, b)| {
                a.key == b.key && a.config == b.config && a.last_weight == b.last_weight
            })
    };
    fn owned<'a>(
        state: &'a NodeState,
        ownership: &crate::ownership::Ownership,
    ) -> BTreeMap<ServiceKey, &'a VirtualService> {
        state
            .services
            .iter()
            .filter(|(k, _)| ownership.owns_service(k))
            .map(|(k, s)| (*k, s))
            .collect()
    }
    let (before, after) = (owned(cache, ownership), owned(observed, ownership));
    for (key, service) in &before {
        match after.get(key) {
            None => out.push(format!("service {key} disappeared")),
            Some(now) if !same(now, service) => out.push(format!("service {key} changed")),
            Some(_) => {}
        }
    }
    for key in after.keys().filter(|k| !before.contains_key(k)) {
        out.push(format!("service {key} appeared"));
    }
    let addresses = |state: &NodeState| -> BTreeSet<std::net::IpAddr> {
        state
            .interface
            .addresses
            .iter()
            .filter(|a| ownership.owns_address(a))
            .copied()
            .collect()
    };
    let (a, b) = (addresses(cache), addresses(observed));
    for gone in a.difference(&b) {
        out.push(format!("address {gone} disappeared"));
    }
    for new in b.difference(&a) {
        out.push(format!("address {new} appeared"));
    }
    if cache.interface.exists != observed.interface.exists
        || cache.interface.up != observed.interface.up
    {
        out.push(format!(
            "interface {} changed state",
            observed.interface.name
        ));
    }
    if cache.sysctls != observed.sysctls {
        out.push("sysctls changed".to_owned());
    }
    if cache.timeouts != observed.timeouts {
        out.push("IPVS timeouts changed".to_owned());
    }
    out
}

/// What the watcher must watch, each path alone: every manifest directory (as resolved now,
/// with the directories under it), the parent of each watched directory, the node config's
/// directory and the state directory. Not a recursive watch: that walks the whole tree and
/// looks at every file in it once more (notify follows symlinks), which at 10,000 files was
/// a fifth of a second of a slow node's start; the manifests' own scan has the directories.
fn wanted_watches(daemon: &Daemon) -> BTreeMap<PathBuf, RecursiveMode> {
    let mut wanted = BTreeMap::new();
    for (dir, _) in daemon.converger.manifests.watched() {
        if let Some(parent) = dir.parent() {
            wanted.insert(parent.to_path_buf(), RecursiveMode::NonRecursive);
        }
    }
    for dir in daemon.converger.manifests.directories() {
        wanted.insert(dir.to_path_buf(), RecursiveMode::NonRecursive);
    }
    if let Some(parent) = config_dir(&daemon.converger.node.path) {
        wanted.entry(parent).or_insert(RecursiveMode::NonRecursive);
    }
    if let Ok(state) = std::path::absolute(daemon.converger.state.root()) {
        wanted.entry(state).or_insert(RecursiveMode::NonRecursive);
    }
    wanted
}

fn config_dir(config: &Path) -> Option<PathBuf> {
    let absolute = std::path::absolute(config).ok()?;
    absolute.parent().map(Path::to_path_buf)
}

/// Brings the watcher's watches to [`wanted_watches`] (after a directory was re-resolved);
/// returns the manifest directories watched from now on that were not before.
fn update_watches<W: Watcher, C: notify_debouncer_full::FileIdCache>(
    daemon: &Daemon,
    debouncer: &mut notify_debouncer_full::Debouncer<W, C>,
    watching: &mut BTreeMap<PathBuf, RecursiveMode>,
) -> Vec<PathBuf> {
    let wanted = wanted_watches(daemon);
    for (path, _) in watching.iter().filter(|(p, m)| wanted.get(*p) != Some(m)) {
        let _ = debouncer.unwatch(path);
    }
    watching.retain(|p, m| wanted.get(p) == Some(m));
    let manifest_dirs: BTreeSet<&Path> = daemon.converger.manifests.directories().collect();
    let mut added = Vec::new();
    for (path, mode) in wanted {
        if watching.contains_key(&path) {
            continue;
        }
        match debouncer.watch(&path, mode) {
            Ok(()) => {
                if manifest_dirs.contains(path.as_path()) {
                    added.push(path.clone());
                }
                watching.insert(path, mode);
            }
            Err(e) => warn!("cannot watch {}: {e}", path.display()),
        }
    }
    added
}

/// Updates the watches, then reads each manifest directory watched for the first time once
/// more: a file created in it after the scan that found it and before its watch raised no
/// event (an exporter writing a new namespace's files while the daemon converged the first
/// one), and would otherwise wait for the next resync. Repeats while that finds directories.
fn watch_and_catch_up<W: Watcher, C: notify_debouncer_full::FileIdCache>(
    daemon: &mut Daemon,
    debouncer: &mut notify_debouncer_full::Debouncer<W, C>,
    watching: &mut BTreeMap<PathBuf, RecursiveMode>,
) {
    for _ in 0..4 {
        let added = update_watches(daemon, debouncer, watching);
        if !catch_up(daemon, &added) {
            return;
        }
    }
}

/// Re-reads `directories` (just watched); converges when that changed the manifests.
fn catch_up(daemon: &mut Daemon, directories: &[PathBuf]) -> bool {
    if directories.is_empty() {
        return false;
    }
    match daemon.plan_changes(directories, SystemTime::now()) {
        Some(plan) => {
            daemon.converge(plan);
            true
        }
        None => false,
    }
}

/// Runs the daemon until SIGTERM or SIGINT. The lock keeps other writers out of the state
/// directory meanwhile.
pub fn run(
    converger: Converger,
    dataplane: Box<dyn Dataplane>,
    debounce: Duration,
    lock: StateLock,
    telemetry: Arc<Telemetry>,
) -> Result<ExitStatus, EngineError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| EngineError::Runtime(format!("cannot start the runtime: {e}")))?;
    let result = runtime.block_on(event_loop(converger, dataplane, debounce, telemetry));
    drop(lock);
    result
}

async fn event_loop(
    converger: Converger,
    dataplane: Box<dyn Dataplane>,
    debounce: Duration,
    telemetry: Arc<Telemetry>,
) -> Result<ExitStatus, EngineError> {
    let mut daemon = Daemon::start(converger, dataplane)?.with_telemetry(telemetry);
    let flag = std::path::absolute(flag_path(&daemon.converger.state)).ok();
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel::<DebounceEventResult>();
    let mut debouncer = new_debouncer(debounce, None, move |result| {
        // The receiver is gone only when the loop has ended.
        let _ = tx.send(result);
    })
    .map_err(|e| EngineError::Runtime(format!("cannot watch the manifest directories: {e}")))?;
    let mut watching: BTreeMap<PathBuf, RecursiveMode> = BTreeMap::new();
    let watched_at_start = update_watches(&daemon, &mut debouncer, &mut watching);

    let signal_error = |e: std::io::Error| EngineError::Runtime(format!("signals: {e}"));
    let mut hangup = signal(SignalKind::hangup()).map_err(signal_error)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(signal_error)?;

    info!(
        directories = daemon.converger.manifests.watched().count(),
        "balanced run: watching manifests"
    );
    {
        let _busy = daemon.busy();
        let first = daemon.plan_now(SystemTime::now());
        daemon.converge(first);
        // Files made between the start-up scan and the watches raised no event.
        if catch_up(&mut daemon, &watched_at_start) {
            watch_and_catch_up(&mut daemon, &mut debouncer, &mut watching);
        }
    }
    let resync_interval = |daemon: &Daemon| {
        daemon
            .converger
            .node
            .spec
            .resync_interval
            .as_std()
            .max(Duration::from_secs(1))
    };
    let mut next_resync = Instant::now() + resync_interval(&daemon);
    loop {
        daemon.telemetry.loop_turned();
        let wake = daemon
            .wake_after(SystemTime::now())
            .map(|d| Instant::now() + d)
            .map_or(next_resync, |w| w.min(next_resync));
        tokio::select! {
            received = events.recv() => {
                let _busy = daemon.busy();
                let Some(result) = received else { break };
                let (paths, rescan) = match result {
                    Ok(batch) => match changes(&batch) {
                        Some(changes) => changes,
                        None => continue,
                    },
                    Err(errors) => {
                        for e in errors {
                            warn!("watcher: {e}");
                        }
                        (Vec::new(), true)
                    }
                };
                let config_dir = config_dir(&daemon.converger.node.path);
                // A changed node config is observed again, not planned against the cache:
                // the link, its vipLinks and the sysctls to look at may have changed.
                let reloaded = paths
                    .iter()
                    .any(|p| config_dir.as_deref().is_some_and(|d| p.starts_with(d)))
                    && reload_config(&mut daemon);
                if paths.iter().any(|p| Some(p) == flag.as_ref()) {
                    daemon.reload_maintenance();
                }
                let now = SystemTime::now();
                let plan = if rescan || reloaded {
                    match daemon.resync(now) {
                        Ok(plan) => Some(plan),
                        Err(e) => { error!("{e}"); None }
                    }
                } else {
                    daemon.plan_changes(&paths, now)
                };
                if let Some(plan) = plan {
                    daemon.converge(plan);
                }
                watch_and_catch_up(&mut daemon, &mut debouncer, &mut watching);
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                let _busy = daemon.busy();
                match daemon.resync(SystemTime::now()) {
                    Ok(plan) => daemon.converge(plan),
                    Err(e) => error!("resync: {e}"),
                }
                watch_and_catch_up(&mut daemon, &mut debouncer, &mut watching);
                if Instant::now() >= next_resync {
                    next_resync = Instant::now() + resync_interval(&daemon);
                }
            }
            _ = hangup.recv() => {
                let _busy = daemon.busy();
                info!("SIGHUP: reloading the node config and resyncing now");
                reload_config(&mut daemon);
                daemon.reload_maintenance();
                match daemon.resync(SystemTime::now()) {
                    Ok(plan) => daemon.converge(plan),
                    Err(e) => error!("resync: {e}"),
                }
                watch_and_catch_up(&mut daemon, &mut debouncer, &mut watching);
                next_resync = Instant::now() + resync_interval(&daemon);
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    info!("stopping; the node is left as it is");
    debouncer.stop_nonblocking();
    Ok(ExitStatus::Success)
}

/// The paths a batch of watcher events changed, and whether the watcher lost events (rescan);
/// `None` when nothing changed. Opening and reading a file or directory change nothing — and
/// the daemon's own reads of the watched directories raise such events, so heeding them would
/// make every rescan cause the next.
fn changes(batch: &[DebouncedEvent]) -> Option<(Vec<PathBuf>, bool)> {
    let mut paths = Vec::new();
    let mut rescan = false;
    for event in batch.iter().filter(|e| !e.kind.is_access()) {
        rescan |= event.need_rescan();
        paths.extend(event.event.paths.iter().cloned());
    }
    (rescan || !paths.is_empty()).then_some((paths, rescan))
}

/// Reloads the node config; an invalid one is reported and the running one kept.
/// Loads the node config again; true when it changed and the new one is in force (the caller
/// then resyncs).
fn reload_config(daemon: &mut Daemon) -> bool {
    let path = daemon.converger.node.path.clone();
    match NodeConfig::load(&path) {
        Ok(node) if node.spec == daemon.converger.node.spec => false,
        Ok(node) => {
            info!("node config {} changed; reloaded", path.display());
            daemon.set_node(node);
            true
        }
        Err(diagnostics) => {
            error!(
                "node config {} is invalid; keeping the running one",
                path.display()
            );
            Converger::log_diagnostics(&diagnostics);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::model::{ServiceConfig, ServiceKey, VirtualService};
    use crate::ownership::Ownership;
    use crate::sim::SimDataplane;
    use crate::state_dir::StateDir;
    use balanced_schemas::v1::{Protocol, Scheduler};

    fn service(vip: &str, scheduler: Scheduler) -> (ServiceKey, VirtualService) {
        let key = ServiceKey::Inet {
            protocol: Protocol::Tcp,
            vip: vip.parse().unwrap(),
            port: 80,
        };
        let service = VirtualService {
            key,
            config: ServiceConfig {
                scheduler,
                flags: 0,
                timeout: 0,
                netmask: u32::MAX,
                pe_name: String::new(),
            },
            destinations: Vec::new(),
            stats: Default::default(),
        };
        (key, service)
    }

    #[test]
    fn reading_the_watched_files_is_not_a_change() {
        use notify_debouncer_full::notify::event::{
            AccessKind, AccessMode, CreateKind, Event, EventKind, Flag, ModifyKind,
        };
        let event = |kind: EventKind, path: &str| {
            DebouncedEvent::new(
                Event::new(kind).add_path(PathBuf::from(path)),
                std::time::Instant::now(),
            )
        };
        let reads = vec![
            event(EventKind::Access(AccessKind::Open(AccessMode::Any)), "/m"),
            event(
                EventKind::Access(AccessKind::Close(AccessMode::Read)),
                "/m/a.yaml",
            ),
        ];
        assert_eq!(changes(&reads), None);
        let mut batch = reads;
        batch.push(event(EventKind::Create(CreateKind::File), "/m/b.yaml"));
        batch.push(event(EventKind::Modify(ModifyKind::Any), "/m/a.yaml"));
        assert_eq!(
            changes(&batch),
            Some((
                vec![PathBuf::from("/m/b.yaml"), PathBuf::from("/m/a.yaml")],
                false
            ))
        );
        let lost = vec![DebouncedEvent::new(
            Event::new(EventKind::Other).set_flag(Flag::Rescan),
            std::time::Instant::now(),
        )];
        assert_eq!(changes(&lost), Some((Vec::new(), true)));
    }

    fn balancer(name: &str, vip: &str) -> String {
        format!(
            "apiVersion: balanced.io/v1\nkind: Balancer\nmetadata:\n  name: {name}\nspec:\n  \
             vip: {vip}\n  services:\n    - protocol: TCP\n      port: 80\n      backends:\n        \
             - address: 10.0.0.1\n"
        )
    }

    #[test]
    fn a_file_made_in_a_new_directory_before_its_watch_is_caught_up_at_once() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("m");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("web.yaml"), balancer("web", "198.51.100.1")).unwrap();
        let config = root.path().join("node.yaml");
        fs::write(
            &config,
            "apiVersion: balanced.io/v1\nkind: NodeConfig\nmetadata:\n  name: n\nspec:\n  \
             vipRanges: [198.51.100.0/24]\n",
        )
        .unwrap();
        let converger = Converger::open(
            NodeConfig::load(&config).unwrap(),
            std::slice::from_ref(&dir),
            StateDir::new(root.path().join("state")),
            false,
        )
        .unwrap();
        let sim = SimDataplane::open(&root.path().join("sim.json"), false).unwrap();
        let mut daemon = Daemon::start(converger, Box::new(sim)).unwrap();
        let first = daemon.plan_now(SystemTime::now());
        daemon.converge(first);

        let mut debouncer = new_debouncer(Duration::from_secs(3600), None, |_| {}).unwrap();
        let mut watching = BTreeMap::new();
        let dir = dir.canonicalize().unwrap();
        assert_eq!(
            update_watches(&daemon, &mut debouncer, &mut watching),
            vec![dir.clone()],
            "at start every manifest directory is new"
        );

        // A new directory, found by the rescan its creation causes in its parent...
        let team = dir.join("team");
        fs::create_dir(&team).unwrap();
        assert!(
            daemon
                .plan_changes(std::slice::from_ref(&team), SystemTime::now())
                .is_none()
        );
        // ...and a file written in it before it is watched: no event will name it.
        fs::write(team.join("api.yaml"), balancer("api", "198.51.100.2")).unwrap();
        watch_and_catch_up(&mut daemon, &mut debouncer, &mut watching);

        assert!(watching.contains_key(&team), "{watching:?}");
        let api = ServiceKey::Inet {
            protocol: Protocol::Tcp,
            vip: "198.51.100.2".parse().unwrap(),
            port: 80,
        };
        assert!(
            daemon.cache().services.contains_key(&api),
            "the file in the new directory is in force: {:?}",
            daemon.cache().services.keys().collect::<Vec<_>>()
        );
        assert!(
            update_watches(&daemon, &mut debouncer, &mut watching).is_empty(),
            "nothing new the second time"
        );
    }

    #[test]
    fn drift_covers_owned_state_only_and_ignores_counters() {
        let ownership = Ownership {
            interface: "balanced0".into(),
            vip_ranges: vec!["198.51.100.0/24".parse().unwrap()],
            fwmark_ranges: Vec::new(),
        };
        let mut cache = NodeState::default();
        cache
            .services
            .extend([service("198.51.100.1", Scheduler::Rr)]);
        let mut observed = cache.clone();
        observed
            .services
            .values_mut()
            .for_each(|s| s.stats.connections = 99);
        observed
            .services
            .extend([service("192.0.2.1", Scheduler::Rr)]);
        assert!(drift(&cache, &observed, &ownership).is_empty());

        observed
            .services
            .extend([service("198.51.100.1", Scheduler::Wlc)]);
        observed
            .interface
            .addresses
            .insert("198.51.100.9".parse().unwrap());
        assert_eq!(
            drift(&cache, &observed, &ownership),
            vec![
                "service TCP 198.51.100.1:80 changed".to_owned(),
                "address 198.51.100.9 appeared".to_owned(),
            ]
        );
    }
}
