//! One node's converging context, shared by `plan`, `apply` and `run`: the node config, the
//! manifest set with its last known good versions, the planner options and the drain record.
//!
//! Rule: deciding stays pure and synchronous — this module reads files and the state
//! directory, compiles and plans; it never talks to a dataplane (callers observe and execute).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use balanced_schemas::v1::{self, NodeConfigSpec, Protocol};
use balanced_schemas::{
    Diagnostic, Manifest, NodeConfigDoc, ParsedFile, Severity, load_node_config,
};
use tracing::{error, warn};

use crate::compile::compile;
use crate::dataplane::ObserveRequest;
use crate::error::EngineError;
use crate::maintenance::Maintenance;
use crate::manifests::{FileKey, ManifestSet, Resolution};
use crate::model::{Interface, NodeState, ServiceKey};
use crate::plan::{DrainRecord, Plan, PlanOptions, plan};
use crate::state_dir::StateDir;

/// The node config as loaded from `--config`.
#[derive(Debug)]
pub struct NodeConfig {
    pub path: PathBuf,
    pub document: NodeConfigDoc,
    pub spec: NodeConfigSpec,
}

impl NodeConfig {
    /// Loads and validates the node config; on failure the diagnostics are returned to be
    /// printed.
    pub fn load(path: &Path) -> Result<Self, Vec<Diagnostic>> {
        let document = load_node_config(path)?;
        let spec = match &document.document.manifest {
            Manifest::NodeConfig(config) => config.spec.clone(),
            Manifest::Balancer(_) => NodeConfigSpec::default(),
        };
        Ok(NodeConfig {
            path: path.to_path_buf(),
            document,
            spec,
        })
    }

    pub fn observe_request(&self) -> ObserveRequest {
        ObserveRequest {
            interface: self.spec.interface.clone(),
            vip_links: self.spec.vip_links,
            sysctls: self.spec.sysctls.keys().cloned().collect(),
        }
    }
}

/// Everything needed to plan a node.
#[derive(Debug)]
pub struct Converger {
    pub node: NodeConfig,
    pub options: PlanOptions,
    pub manifests: ManifestSet,
    pub record: DrainRecord,
    pub state: StateDir,
    /// The result of the last [`Converger::resolve`].
    pub resolution: Resolution,
    /// The operator's maintenance flag and the failure withdrawal ([`crate::maintenance`]).
    pub maintenance: Maintenance,
    /// The desired state compiled file by file, for [`Converger::plan_incremental`].
    compiled: RefCell<Compiled>,
}

/// Every protocol a service key can have (the match below fails to compile when one is added).
const PROTOCOLS: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];
const _: fn(Protocol) = |protocol| match protocol {
    Protocol::Tcp | Protocol::Udp | Protocol::Sctp => {}
};

/// The desired state compiled file by file: a changed file's services and VIPs are taken out
/// and its new version's put in; a VIP address stays while any file still has a service on it.
/// Valid only while no two files share a service (a clean set) and the node config is the same.
#[derive(Debug, Default)]
struct Compiled {
    node: Option<NodeConfigSpec>,
    state: NodeState,
    /// By the serial of the file version compiled.
    files: HashMap<u64, Fragment>,
    /// The serial compiled for each file.
    serials: HashMap<FileKey, u64>,
    vip_refs: BTreeMap<IpAddr, usize>,
    round: u64,
    /// The manifests' resolve count at the last update: after it, only the files the set
    /// lists as changed since are looked at.
    epoch: Option<u64>,
    /// What the last update changed.
    touched: Touched,
}

/// The services and VIPs of the file versions the last update took out or put in; `all`
/// when it compiled everything anew.
#[derive(Debug, Default)]
struct Touched {
    all: bool,
    services: BTreeSet<ServiceKey>,
    vips: BTreeSet<IpAddr>,
}

impl Touched {
    fn add(&mut self, services: &[ServiceKey], vips: &[IpAddr]) {
        // Everything is touched already: no need to list 10,000 services one by one.
        if self.all {
            return;
        }
        self.services.extend(services.iter().copied());
        self.vips.extend(vips.iter().copied());
    }

    /// The part of `state` a change to these files can concern: their services, every service
    /// on their VIPs, their VIP addresses, and the node-wide settings.
    fn scope(&self, state: &NodeState) -> NodeState {
        // Range lookups, not a walk of every service: an edit stays cheap at 10,000 services.
        let on_vips = self.vips.iter().flat_map(|&vip| {
            PROTOCOLS.into_iter().flat_map(move |protocol| {
                let key = |port| ServiceKey::Inet {
                    protocol,
                    vip,
                    port,
                };
                state.services.range(key(0)..=key(u16::MAX))
            })
        });
        let listed = self
            .services
            .iter()
            .filter_map(|key| state.services.get_key_value(key));
        NodeState {
            interface: Interface {
                name: state.interface.name.clone(),
                exists: state.interface.exists,
                up: state.interface.up,
                addresses: state
                    .interface
                    .addresses
                    .intersection(&self.vips)
                    .copied()
                    .collect(),
            },
            services: on_vips
                .chain(listed)
                .map(|(key, service)| (*key, service.clone()))
                .collect(),
            sysctls: state.sysctls.clone(),
            timeouts: state.timeouts,
        }
    }
}

#[derive(Debug)]
struct Fragment {
    key: FileKey,
    round: u64,
    services: Vec<ServiceKey>,
    vips: Vec<IpAddr>,
}

impl Compiled {
    fn update(&mut self, manifests: &ManifestSet, spec: &NodeConfigSpec) {
        self.touched = Touched::default();
        if self.node.as_ref() != Some(spec) {
            *self = Compiled {
                node: Some(spec.clone()),
                state: compile(&[], spec),
                ..Compiled::default()
            };
            self.touched.all = true;
        }
        let epoch = manifests.epoch();
        let changed = self.epoch.and_then(|seen| manifests.changed_since(seen));
        self.epoch = Some(epoch);
        match changed {
            Some(keys) => {
                let keys: Vec<FileKey> = keys.cloned().collect();
                self.update_files(manifests, spec, &keys);
            }
            None => self.update_all(manifests, spec),
        }
    }

    /// Looks at every file in force.
    fn update_all(&mut self, manifests: &ManifestSet, spec: &NodeConfigSpec) {
        self.round += 1;
        let round = self.round;
        // Versions are keyed by serial (a new version has a new one), so finding the unchanged
        // files costs no path comparisons.
        let mut new = Vec::new();
        for (key, serial, parsed) in manifests.in_force_files() {
            match self.files.get_mut(&serial) {
                Some(fragment) => fragment.round = round,
                None => new.push((key, serial, parsed)),
            }
        }
        // Old versions go first: a new version may hold the same services.
        let gone: Vec<u64> = self
            .files
            .iter()
            .filter(|(_, f)| f.round != round)
            .map(|(serial, _)| *serial)
            .collect();
        for serial in gone {
            self.remove(serial);
        }
        for (key, serial, parsed) in new {
            self.insert(key, serial, parsed, spec);
        }
    }

    /// Looks at the files in `keys` only: the others kept their versions.
    fn update_files(&mut self, manifests: &ManifestSet, spec: &NodeConfigSpec, keys: &[FileKey]) {
        let mut new = Vec::new();
        for key in keys {
            let now = manifests.in_force_of(key);
            let compiled = self.serials.get(key).copied();
            if compiled == now.map(|(serial, _)| serial) {
                continue;
            }
            if let Some(serial) = compiled {
                self.remove(serial);
            }
            if let Some((serial, parsed)) = now {
                new.push((key, serial, parsed));
            }
        }
        // As in `update_all`: every old version out before any new one goes in.
        for (key, serial, parsed) in new {
            self.insert(key, serial, parsed, spec);
        }
    }

    fn remove(&mut self, serial: u64) {
        if let Some(old) = self.files.remove(&serial) {
            if self.serials.get(&old.key) == Some(&serial) {
                self.serials.remove(&old.key);
            }
            self.touched.add(&old.services, &old.vips);
            self.take_out(&old);
        }
    }

    fn insert(&mut self, key: &FileKey, serial: u64, parsed: &ParsedFile, spec: &NodeConfigSpec) {
        let balancers: Vec<&v1::Balancer> = parsed
            .documents
            .iter()
            .filter_map(|d| match &d.manifest {
                Manifest::Balancer(b) => Some(b),
                Manifest::NodeConfig(_) => None,
            })
            .collect();
        let part = compile(&balancers, spec);
        let fragment = Fragment {
            key: key.clone(),
            round: self.round,
            services: part.services.keys().copied().collect(),
            vips: part.interface.addresses.iter().copied().collect(),
        };
        self.state.services.extend(part.services);
        for vip in &fragment.vips {
            *self.vip_refs.entry(*vip).or_default() += 1;
            self.state.interface.addresses.insert(*vip);
        }
        self.touched.add(&fragment.services, &fragment.vips);
        self.serials.insert(key.clone(), serial);
        self.files.insert(serial, fragment);
    }

    fn take_out(&mut self, fragment: &Fragment) {
        for key in &fragment.services {
            self.state.services.remove(key);
        }
        for vip in &fragment.vips {
            if let Some(count) = self.vip_refs.get_mut(vip) {
                *count -= 1;
                if *count == 0 {
                    self.vip_refs.remove(vip);
                    self.state.interface.addresses.remove(vip);
                }
            }
        }
    }
}

impl Converger {
    /// Loads the manifests (and their last known good versions) and the drain record; resolves
    /// the set once.
    pub fn open(
        node: NodeConfig,
        dirs: &[PathBuf],
        state: StateDir,
        allow_mass_delete: bool,
    ) -> Result<Self, EngineError> {
        let manifests = ManifestSet::load(dirs, &state, allow_mass_delete)?;
        let record = state.read_drain_record()?;
        let options = PlanOptions::from_node(&node.spec, allow_mass_delete);
        let maintenance = Maintenance::load(&state)?;
        let mut converger = Converger {
            node,
            options,
            manifests,
            record,
            state,
            resolution: Resolution::default(),
            maintenance,
            compiled: RefCell::default(),
        };
        converger.resolve();
        Ok(converger)
    }

    /// Re-decides which manifest versions are in force (after files changed).
    pub fn resolve(&mut self) -> &Resolution {
        self.resolution = self.manifests.resolve(Some(&self.node.document));
        &self.resolution
    }

    /// Replaces the node config (the daemon reloads it on change or SIGHUP) and resolves again,
    /// since range checks depend on it.
    pub fn set_node(&mut self, node: NodeConfig) {
        let allow = self.options.allow_mass_delete;
        self.options = PlanOptions::from_node(&node.spec, allow);
        self.node = node;
        self.resolve();
    }

    /// The desired state: every Balancer in force compiled with the node config, without VIP
    /// addresses while maintenance withdraws them.
    pub fn desired(&self) -> NodeState {
        let mut desired = compile(&self.manifests.balancers(), &self.node.spec);
        self.maintenance.apply(&self.node.spec, &mut desired);
        desired
    }

    /// Plans against `observed` with the desired state kept compiled between calls and
    /// updated only for the files whose version in force changed (the daemon's hot path);
    /// the same result as [`Converger::desired`] + [`Converger::plan`].
    ///
    /// `settled`: the caller vouches that `observed` held everything the previous plan asked
    /// for, with nothing held, waiting or failed, and the drain record empty — so nothing
    /// outside the changed files' services and VIPs can differ, and only that part is planned
    /// (a deletion limit that bites in the part is judged on the whole node again).
    pub fn plan_incremental(&self, observed: &NodeState, now: SystemTime, settled: bool) -> Plan {
        let mut compiled = self.compiled.borrow_mut();
        if !self.manifests.is_clean() {
            *compiled = Compiled::default();
            drop(compiled);
            let desired = self.desired();
            return self.plan(&desired, observed, now);
        }
        compiled.update(&self.manifests, &self.node.spec);
        if self.maintenance.status(&self.node.spec).withdrawn {
            let mut desired = compiled.state.clone();
            self.maintenance.apply(&self.node.spec, &mut desired);
            return self.plan(&desired, observed, now);
        }
        let record_empty =
            self.record.destinations.is_empty() && self.record.withdrawals.is_empty();
        if settled && record_empty && !compiled.touched.all {
            let touched = &compiled.touched;
            let part = self.plan(
                &touched.scope(&compiled.state),
                &touched.scope(observed),
                now,
            );
            if part.held.is_empty() {
                return part;
            }
        }
        self.plan(&compiled.state, observed, now)
    }

    pub fn plan(&self, desired: &NodeState, observed: &NodeState, now: SystemTime) -> Plan {
        plan(desired, observed, now, &self.record, &self.options)
    }

    /// Persists the manifests in force as last known good and the drain record.
    pub fn persist(&mut self, record: DrainRecord) -> Result<(), EngineError> {
        self.manifests.persist()?;
        if record != self.record {
            self.state.write_drain_record(&record)?;
            self.record = record;
        }
        Ok(())
    }

    /// Logs each diagnostic as a warning or an error (the daemon's way of reporting).
    pub fn log_diagnostics<'a>(diagnostics: impl IntoIterator<Item = &'a Diagnostic>) {
        for diagnostic in diagnostics {
            match diagnostic.severity {
                Severity::Error => error!("{diagnostic}"),
                Severity::Warning => warn!("{diagnostic}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn balancer(name: &str, vip: &str, port: u16, weight: u32) -> String {
        format!(
            "apiVersion: balanced.io/v1\nkind: Balancer\nmetadata:\n  name: {name}\nspec:\n  vip: {vip}\n  \
             services:\n    - protocol: TCP\n      port: {port}\n      backends:\n        - address: 10.0.0.1\n          \
             weight: {weight}\n"
        )
    }

    /// A temporary root with a manifest directory `m` and a node config owning
    /// 198.51.100.0/24, plus `extra` spec lines.
    fn node_root(extra: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("m");
        fs::create_dir_all(&dir).unwrap();
        let config = root.path().join("node.yaml");
        fs::write(
            &config,
            format!(
                "apiVersion: balanced.io/v1\nkind: NodeConfig\nmetadata:\n  name: n\nspec:\n  \
                 vipRanges: [198.51.100.0/24]\n{extra}"
            ),
        )
        .unwrap();
        (root, dir, config)
    }

    #[test]
    fn the_file_by_file_compile_equals_a_full_compile_after_each_change() {
        let (root, dir, config) = node_root("");
        // Two files share VIP .1 (ports 80 and 443).
        fs::write(dir.join("a.yaml"), balancer("a", "198.51.100.1", 80, 1)).unwrap();
        fs::write(dir.join("b.yaml"), balancer("b", "198.51.100.1", 443, 1)).unwrap();
        fs::write(dir.join("c.yaml"), balancer("c", "198.51.100.3", 80, 1)).unwrap();
        let node = NodeConfig::load(&config).unwrap();
        let state = StateDir::new(root.path().join("state"));
        let mut converger =
            Converger::open(node, std::slice::from_ref(&dir), state, false).unwrap();
        let observed = NodeState::default();
        let check = |converger: &Converger| {
            let incremental = converger.plan_incremental(&observed, SystemTime::UNIX_EPOCH, false);
            let desired = converger.desired();
            assert_eq!(converger.compiled.borrow().state, desired);
            assert_eq!(
                incremental,
                converger.plan(&desired, &observed, SystemTime::UNIX_EPOCH)
            );
        };
        check(&converger);
        let change = |converger: &mut Converger, file: &str, text: Option<String>| {
            let path = dir.join(file);
            match text {
                Some(text) => fs::write(&path, text).unwrap(),
                None => fs::remove_file(&path).unwrap(),
            }
            assert!(converger.manifests.refresh_paths(&[path]));
            converger.resolve();
            check(converger);
        };
        change(
            &mut converger,
            "c.yaml",
            Some(balancer("c", "198.51.100.3", 80, 7)),
        );
        change(&mut converger, "b.yaml", None);
        assert!(
            converger
                .compiled
                .borrow()
                .state
                .interface
                .addresses
                .contains(&"198.51.100.1".parse().unwrap()),
            "a.yaml still has a service on .1"
        );
        change(&mut converger, "a.yaml", None);
        change(
            &mut converger,
            "d.yaml",
            Some(balancer("d", "198.51.100.1", 53, 1)),
        );
        change(
            &mut converger,
            "d.yaml",
            Some(balancer("d", "198.51.100.4", 53, 1)),
        );
        // Weight edits keep every identity: only the edited file is looked at again.
        let epoch = converger.manifests.epoch();
        change(
            &mut converger,
            "d.yaml",
            Some(balancer("d", "198.51.100.4", 53, 2)),
        );
        assert_eq!(
            converger
                .manifests
                .changed_since(epoch)
                .map(|keys| keys.count()),
            Some(1)
        );
        change(
            &mut converger,
            "c.yaml",
            Some(balancer("c", "198.51.100.3", 80, 8)),
        );
    }

    #[test]
    fn a_settled_node_plans_only_the_changed_files_and_gets_the_full_plan() {
        let (root, dir, config) =
            node_root("  withdrawDelay: 0s\n  maxDeletions:\n    services: 1\n");
        for (file, vip, port) in [("a", 1, 80), ("b", 1, 443), ("c", 3, 80), ("d", 4, 80)] {
            let text = balancer(file, &format!("198.51.100.{vip}"), port, 1);
            fs::write(dir.join(format!("{file}.yaml")), text).unwrap();
        }
        let node = NodeConfig::load(&config).unwrap();
        let state = StateDir::new(root.path().join("state"));
        let mut converger =
            Converger::open(node, std::slice::from_ref(&dir), state, false).unwrap();
        let now = SystemTime::UNIX_EPOCH;
        let mut observed = NodeState::default();
        let mut settled = false;
        // Plans incrementally and fully, checks they agree, and applies the plan to `observed`.
        let mut step = |converger: &Converger, observed: &mut NodeState| {
            let incremental = converger.plan_incremental(observed, now, settled);
            let full = converger.plan(&converger.desired(), observed, now);
            assert_eq!(incremental, full);
            for action in &incremental.actions {
                crate::kernel_sim::apply_action(observed, action).unwrap();
            }
            settled = incremental.held.is_empty() && incremental.waiting.is_empty();
            incremental
        };
        assert!(!step(&converger, &mut observed).actions.is_empty());
        assert!(converger.compiled.borrow().touched.all);
        let change = |converger: &mut Converger, file: &str, text: Option<String>| {
            let path = dir.join(format!("{file}.yaml"));
            match text {
                Some(text) => fs::write(&path, text).unwrap(),
                None => fs::remove_file(&path).unwrap(),
            }
            assert!(converger.manifests.refresh_paths(&[path]));
            converger.resolve();
        };
        let vip = |n: u8| -> IpAddr { format!("198.51.100.{n}").parse().unwrap() };
        // A weight: only c's service and VIP are planned.
        change(
            &mut converger,
            "c",
            Some(balancer("c", "198.51.100.3", 80, 5)),
        );
        assert_eq!(step(&converger, &mut observed).actions.len(), 1);
        let touched = converger.compiled.borrow().touched.vips.clone();
        assert_eq!(touched, BTreeSet::from([vip(3)]));
        // b leaves VIP .1, which a keeps: its service goes, the address stays.
        change(&mut converger, "b", None);
        step(&converger, &mut observed);
        assert!(observed.interface.addresses.contains(&vip(1)));
        // d moves to a new VIP: withdraw .4 and its service, announce .5.
        change(
            &mut converger,
            "d",
            Some(balancer("d", "198.51.100.5", 80, 1)),
        );
        step(&converger, &mut observed);
        assert!(!observed.interface.addresses.contains(&vip(4)));
        assert!(observed.interface.addresses.contains(&vip(5)));
        // Two deletions where one is allowed: held in the part, and the full plan decides.
        change(&mut converger, "a", None);
        change(&mut converger, "c", None);
        let plan = step(&converger, &mut observed);
        assert!(!plan.held.is_empty(), "{plan:?}");
        // Not settled: the full plan again, which still agrees.
        step(&converger, &mut observed);
    }
}
