//! One node's converging context, shared by `plan`, `apply` and `run`: the node config, the
//! manifest set with its last known good versions, the planner options and the drain record.
//!
//! Rule: deciding stays pure and synchronous — this module reads files and the state
//! directory, compiles and plans; it never talks to a dataplane (callers observe and execute).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use balanced_schemas::v1::NodeConfigSpec;
use balanced_schemas::{Diagnostic, Manifest, NodeConfigDoc, Severity, load_node_config};
use tracing::{error, warn};

use crate::compile::compile;
use crate::dataplane::ObserveRequest;
use crate::error::EngineError;
use crate::maintenance::Maintenance;
use crate::manifests::{ManifestSet, Resolution};
use crate::model::NodeState;
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
