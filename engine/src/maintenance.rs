//! Taking a node out of rotation without touching its IPVS state: **maintenance withdraws every
//! VIP address** from the VIP link (BGP withdraws them, traffic moves to the other nodes) while
//! the virtual services and destinations stay, so flows that still arrive are served.
//!
//! Three switches, any of which withdraws:
//! - the operator's flag, `balanced maintenance on|off`: the file `<state-dir>/maintenance.json`
//!   exists while it is on (its content — since when, why — is for people; a file that does not
//!   parse still means "on"). `apply` reads it; `run` watches the state directory and converges
//!   as soon as the file appears or goes (SIGHUP re-reads it too);
//! - `maintenance: true` in the NodeConfig (compiled by [`crate::compile`]);
//! - `withdrawOnFailure` in the NodeConfig: when converging keeps failing for that long, the
//!   daemon withdraws; the first successful converge afterwards announces again
//!   ([`FailureWithdrawal`]).
//!
//! Rule: this module decides whether addresses are withdrawn; the planner does the rest (an
//! address that is not desired is withdrawn first, before anything else changes, and services
//! whose manifests stay are never deleted for it). Fail static: when the engine stops or
//! crashes, nothing is withdrawn or removed — the kernel keeps serving what it has.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use balanced_schemas::v1::NodeConfigSpec;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, ExitStatus};
use crate::model::NodeState;
use crate::state_dir::{StateDir, write_atomic};
use crate::status::{StatusDocument, unix_seconds};

/// The operator's flag file in the state directory.
pub const FLAG_FILE: &str = "maintenance.json";

/// What `balanced maintenance on` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Flag {
    /// Unix seconds.
    pub since: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The path of the flag file of a state directory.
pub fn flag_path(state: &StateDir) -> PathBuf {
    state.root().join(FLAG_FILE)
}

/// The operator's flag: `None` when off. A flag file that cannot be parsed is "on" since an
/// unknown time (the operator asked for maintenance; its details are lost).
pub fn read_flag(state: &StateDir) -> Result<Option<Flag>, EngineError> {
    let path = flag_path(state);
    match fs::read(&path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).unwrap_or(Flag {
            since: 0,
            reason: None,
        }))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(EngineError::io(&path, e)),
    }
}

/// Turns the operator's flag on (keeping the original `since` when it is already on) or off.
/// Returns whether the flag changed.
pub fn set_flag(
    state: &StateDir,
    on: bool,
    reason: Option<String>,
    now: SystemTime,
) -> Result<bool, EngineError> {
    let path = flag_path(state);
    let current = read_flag(state)?;
    if !on {
        return match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(EngineError::io(&path, e)),
        };
    }
    let flag = Flag {
        since: current
            .as_ref()
            .map_or_else(|| unix_seconds(now), |f| f.since),
        reason: reason.or_else(|| current.as_ref().and_then(|f| f.reason.clone())),
    };
    if current.as_ref() == Some(&flag) {
        return Ok(false);
    }
    let mut bytes =
        serde_json::to_vec_pretty(&flag).map_err(|source| EngineError::StateFormat {
            path: path.clone(),
            source,
        })?;
    bytes.push(b'\n');
    write_atomic(&path, &bytes).map_err(|e| EngineError::io(&path, e))?;
    Ok(true)
}

/// `balanced maintenance on|off`: sets or clears the operator's flag and says what happens.
pub fn command(
    state: &StateDir,
    on: bool,
    reason: Option<String>,
) -> Result<ExitStatus, EngineError> {
    let changed = set_flag(state, on, reason, SystemTime::now())?;
    let what = match (on, changed) {
        (true, true) => "maintenance on: every VIP address will be withdrawn (IPVS services stay)",
        (true, false) => "maintenance was already on",
        (false, true) => "maintenance off: the VIP addresses will be announced again",
        (false, false) => "maintenance was already off",
    };
    println!(
        "{what}\n(a running `balanced run` on {} acts at once; otherwise the next `balanced apply`)",
        state.root().display()
    );
    Ok(ExitStatus::Success)
}

/// Brings a status document read from the state directory up to date with the operator's flag
/// as it is now (`balanced status` after `balanced maintenance on`, before any converge).
pub fn refresh_status(document: &mut StatusDocument, state: &StateDir) -> Result<(), EngineError> {
    let operator = read_flag(state)?;
    if operator.is_none() && document.maintenance.is_none() {
        return Ok(());
    }
    let status = document
        .maintenance
        .get_or_insert_with(MaintenanceStatus::default);
    status.operator = operator;
    status.withdrawn =
        status.operator.is_some() || status.node_config || status.withdrawn_on_failure;
    Ok(())
}

/// `withdrawOnFailure`: tracks how long converging has been failing and whether the addresses
/// are withdrawn because of it. Pure: the daemon reports each outcome with the time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailureWithdrawal {
    /// Unix seconds of the first failure of the current run of failures.
    pub failing_since: Option<u64>,
    pub withdrawn: bool,
}

impl FailureWithdrawal {
    /// Records one converge (or observation) outcome. A success clears the failure run and
    /// announces again; a failure withdraws once the run lasts `after` (never when `None`).
    /// Returns whether `withdrawn` changed, i.e. whether the caller must plan again.
    pub fn record(&mut self, ok: bool, now: SystemTime, after: Option<Duration>) -> bool {
        let before = self.withdrawn;
        if ok {
            self.failing_since = None;
            self.withdrawn = false;
        } else {
            let now = unix_seconds(now);
            let since = *self.failing_since.get_or_insert(now);
            if let Some(after) = after {
                self.withdrawn |= now.saturating_sub(since) >= after.as_secs();
            }
        }
        before != self.withdrawn
    }
}

/// Why the node's VIP addresses are withdrawn (status and metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceStatus {
    /// True when any switch withdraws the addresses.
    pub withdrawn: bool,
    /// `balanced maintenance on`, if on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<Flag>,
    /// `maintenance: true` in the node config.
    #[serde(default)]
    pub node_config: bool,
    /// Unix seconds since converging has been failing (withdrawn when `withdrawnOnFailure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<u64>,
    #[serde(default)]
    pub withdrawn_on_failure: bool,
}

/// The maintenance switches of one node as the engine holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maintenance {
    pub operator: Option<Flag>,
    pub failure: FailureWithdrawal,
}

impl Maintenance {
    /// Reads the operator's flag from the state directory.
    pub fn load(state: &StateDir) -> Result<Self, EngineError> {
        Ok(Maintenance {
            operator: read_flag(state)?,
            failure: FailureWithdrawal::default(),
        })
    }

    /// Re-reads the operator's flag, keeping the failure tracking. Returns whether it changed.
    pub fn reload(&mut self, state: &StateDir) -> Result<bool, EngineError> {
        let operator = read_flag(state)?;
        let changed = operator.is_some() != self.operator.is_some();
        self.operator = operator;
        Ok(changed)
    }

    pub fn status(&self, node: &NodeConfigSpec) -> MaintenanceStatus {
        MaintenanceStatus {
            withdrawn: self.operator.is_some() || node.maintenance || self.failure.withdrawn,
            operator: self.operator.clone(),
            node_config: node.maintenance,
            failing_since: self.failure.failing_since,
            withdrawn_on_failure: self.failure.withdrawn,
        }
    }

    /// Withdraws every address from a desired state when a switch says so; services and
    /// destinations stay as they are.
    pub fn apply(&self, node: &NodeConfigSpec, desired: &mut NodeState) {
        if self.status(node).withdrawn {
            desired.interface.addresses.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn failures_withdraw_after_the_delay_and_a_success_announces_again() {
        let after = Some(Duration::from_secs(60));
        let mut failure = FailureWithdrawal::default();
        assert!(!failure.record(false, at(1000), after));
        assert_eq!(failure.failing_since, Some(1000));
        assert!(!failure.record(false, at(1059), after), "not yet 60 s");
        assert!(failure.record(false, at(1060), after), "withdraws at 60 s");
        assert!(failure.withdrawn);
        assert!(!failure.record(false, at(2000), after), "stays withdrawn");
        assert_eq!(failure.failing_since, Some(1000));
        assert!(failure.record(true, at(2001), after), "announces again");
        assert_eq!(failure, FailureWithdrawal::default());
        assert!(!failure.record(false, at(3000), after));
        assert_eq!(failure.failing_since, Some(3000), "a new run of failures");
    }

    #[test]
    fn without_withdraw_on_failure_nothing_is_withdrawn() {
        let mut failure = FailureWithdrawal::default();
        assert!(!failure.record(false, at(0), None));
        assert!(!failure.record(false, at(1_000_000), None));
        assert!(!failure.withdrawn);
    }

    #[test]
    fn the_flag_file_round_trips_keeps_its_start_and_any_file_means_on() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        assert_eq!(read_flag(&state).unwrap(), None);
        assert!(set_flag(&state, true, Some("kernel upgrade".into()), at(100)).unwrap());
        assert!(
            !set_flag(&state, true, None, at(200)).unwrap(),
            "already on"
        );
        let flag = read_flag(&state).unwrap().unwrap();
        assert_eq!(flag.since, 100);
        assert_eq!(flag.reason.as_deref(), Some("kernel upgrade"));
        assert!(set_flag(&state, false, None, at(300)).unwrap());
        assert!(
            !set_flag(&state, false, None, at(300)).unwrap(),
            "already off"
        );
        assert_eq!(read_flag(&state).unwrap(), None);

        fs::write(flag_path(&state), "not json").unwrap();
        assert!(read_flag(&state).unwrap().is_some(), "a garbled flag is on");
    }

    #[test]
    fn any_switch_withdraws_every_address_and_keeps_services() {
        let mut desired = NodeState::default();
        desired
            .interface
            .addresses
            .insert("198.51.100.1".parse().unwrap());
        let node = NodeConfigSpec::default();
        let mut maintenance = Maintenance::default();
        let mut state = desired.clone();
        maintenance.apply(&node, &mut state);
        assert_eq!(state, desired, "no switch: unchanged");

        maintenance.operator = Some(Flag {
            since: 1,
            reason: None,
        });
        maintenance.apply(&node, &mut state);
        assert!(state.interface.addresses.is_empty());

        let status = Maintenance {
            operator: None,
            failure: FailureWithdrawal {
                failing_since: Some(5),
                withdrawn: true,
            },
        }
        .status(&node);
        assert!(status.withdrawn && status.withdrawn_on_failure && !status.node_config);
        let config = NodeConfigSpec {
            maintenance: true,
            ..NodeConfigSpec::default()
        };
        assert!(Maintenance::default().status(&config).withdrawn);
    }
}
