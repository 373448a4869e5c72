//! The status document: what `apply` and `run` write to the state directory after each
//! converge and what `balanced status` prints, with a fresh observation in its `observed` key.
//!
//! `observed` is a [`NodeState`], so the JSON document is also the file format of the
//! simulated dataplane: `balanced status --output json > node-a.json` on a node, then
//! `balanced plan DIR --dataplane sim:node-a.json` in a pull-request job. Rendering is pure.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use balanced_schemas::v1::{Scheduler, SchedulerFlag};
use serde::{Deserialize, Serialize};

use crate::exec::Failure;
use crate::maintenance::MaintenanceStatus;
use crate::manifests::{FileState, ManifestStatus, SourceStatus};
use crate::model::{FLAG_ONEPACKET, Forward, NodeState, ServiceKey, SocketLike};
use crate::ownership::Ownership;
use crate::plan::{HeldDeletion, WaitReason, Waiting};

/// The status of a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDocument {
    /// The node as observed (by `status`: now; in the state directory: after the last converge).
    pub observed: NodeState,
    /// Who wrote the rest of the document (`apply` or `run`), when (unix seconds) and the pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<Written>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_config: Option<PathBuf>,
    /// What this node owns (to tell its own state from foreign state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ownership: Option<Ownership>,
    #[serde(default)]
    pub sources: Vec<SourceStatus>,
    /// Every manifest document with its generation and whether it is in force or stale.
    #[serde(default)]
    pub manifests: Vec<ManifestStatus>,
    /// Deletions held by `maxDeletions` (blocked until released).
    #[serde(default)]
    pub held: Vec<HeldDeletion>,
    /// Drains and withdraw delays in progress.
    #[serde(default)]
    pub draining: Vec<Waiting>,
    /// Actions of the last converge that failed or were skipped.
    #[serde(default)]
    pub failures: Vec<Failure>,
    /// Differences left after the last converge (`apply` verifies; `run` at each resync).
    #[serde(default)]
    pub differences: Vec<String>,
    /// Whether maintenance withdraws the VIP addresses, and which switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<MaintenanceStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Written {
    pub by: String,
    pub at: u64,
    pub pid: u32,
}

impl Written {
    pub fn now(by: &str) -> Self {
        Written {
            by: by.to_owned(),
            at: unix_seconds(SystemTime::now()),
            pid: std::process::id(),
        }
    }
}

pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The text `balanced status` prints: the owned state grouped by VIP in manifest terms, then
/// manifests, held deletions, drains and failures. `now` in unix seconds.
pub fn render_text(status: &StatusDocument, now: u64) -> String {
    let mut out = String::new();
    let observed = &status.observed;
    let owned = |key: &ServiceKey| {
        status
            .ownership
            .as_ref()
            .is_none_or(|o| o.owns_service(key))
    };
    let interface = &observed.interface;
    let _ = writeln!(
        out,
        "interface {}: {}",
        if interface.name.is_empty() {
            "?"
        } else {
            &interface.name
        },
        match (interface.exists, interface.up) {
            (false, _) => "missing",
            (true, false) => "down",
            (true, true) => "up",
        }
    );
    if let Some(written) = &status.written {
        let _ = writeln!(
            out,
            "last converge: by {} (pid {}), {} ago",
            written.by,
            written.pid,
            ago(now, written.at)
        );
    }

    if let Some(maintenance) = status.maintenance.as_ref().filter(|m| m.withdrawn) {
        let mut why = Vec::new();
        if let Some(flag) = &maintenance.operator {
            let mut s = format!("balanced maintenance on, {} ago", ago(now, flag.since));
            if let Some(reason) = &flag.reason {
                let _ = write!(s, ": {reason}");
            }
            why.push(s);
        }
        if maintenance.node_config {
            why.push("maintenance: true in the node config".to_owned());
        }
        if maintenance.withdrawn_on_failure {
            why.push(format!(
                "withdrawOnFailure: converging has failed for {}",
                ago(now, maintenance.failing_since.unwrap_or(now))
            ));
        }
        let _ = writeln!(
            out,
            "MAINTENANCE: every VIP address withdrawn, services kept ({})",
            why.join("; ")
        );
    }

    let mut by_vip: BTreeMap<Option<IpAddr>, Vec<&ServiceKey>> = BTreeMap::new();
    let mut foreign = 0;
    for key in observed.services.keys() {
        if owned(key) {
            by_vip.entry(key.vip()).or_default().push(key);
        } else {
            foreign += 1;
        }
    }
    for address in &interface.addresses {
        let owns = status
            .ownership
            .as_ref()
            .is_none_or(|o| o.owns_address(address));
        if owns {
            by_vip.entry(Some(*address)).or_default();
        }
    }
    for (vip, keys) in &by_vip {
        match vip {
            Some(vip) => {
                let announced = interface.addresses.contains(vip);
                let _ = writeln!(
                    out,
                    "\nVIP {vip}  {}",
                    if announced {
                        "announced"
                    } else {
                        "not announced"
                    }
                );
            }
            None => {
                let _ = writeln!(out, "\nfwmark services");
            }
        }
        for key in keys {
            let Some(service) = observed.services.get(key) else {
                continue;
            };
            let what = match key {
                ServiceKey::Inet { protocol, port, .. } => format!("{protocol} port {port}"),
                ServiceKey::Fwmark { family, mark } => format!("fwmark {mark} {family}"),
            };
            let _ = writeln!(
                out,
                "  {what}  scheduler {}{}{}",
                service.config.scheduler,
                flag_names(service.config.scheduler, service.config.flags)
                    .iter()
                    .map(|f| format!("  {f}"))
                    .collect::<String>(),
                if service.config.timeout > 0 {
                    format!("  persistence {}s", service.config.timeout)
                } else {
                    String::new()
                }
            );
            for destination in &service.destinations {
                let _ = writeln!(
                    out,
                    "    backend {}  {}  weight {}  active {}  inactive {}",
                    SocketLike(destination.key.address, destination.key.port),
                    forwarding(&destination.config.forwarding),
                    destination.config.weight,
                    destination.active_connections,
                    destination.inactive_connections
                );
            }
        }
    }
    if foreign > 0 {
        let _ = writeln!(
            out,
            "\n{foreign} service(s) outside this node's ranges (not managed)"
        );
    }

    if !status.sources.is_empty() || !status.manifests.is_empty() {
        let _ = writeln!(out, "\nmanifests:");
    }
    for source in &status.sources {
        if source.health != crate::manifests::SourceHealth::Ok {
            let _ = writeln!(
                out,
                "  ! directory {}: {}",
                source.directory.display(),
                serde_json::to_string(&source.health).unwrap_or_default()
            );
        }
    }
    for manifest in &status.manifests {
        let state = match manifest.state {
            FileState::InForce => "in force",
            FileState::Stale => "STALE",
            FileState::Invalid => "INVALID",
        };
        let _ = writeln!(
            out,
            "  {state:<9} {:<30} generation {:<6} {}{}",
            manifest.name.as_deref().unwrap_or("-"),
            manifest
                .generation
                .map(|g| g.to_string())
                .unwrap_or_else(|| "-".into()),
            manifest.path.display(),
            manifest
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
    }
    if !status.held.is_empty() {
        let _ = writeln!(
            out,
            "\nBLOCKED: {} deletion(s) held by maxDeletions (release: apply --allow-mass-delete):",
            status.held.len()
        );
        for held in &status.held {
            let reason = &held.reason;
            let _ = writeln!(
                out,
                "  {}  ({} deletions of {} owned; limit {} allows {})",
                crate::display::describe_action(&held.action),
                reason.deletions,
                reason.owned,
                reason.limit,
                reason.allowed
            );
        }
    }
    if !status.draining.is_empty() {
        let _ = writeln!(out, "\ndraining:");
        for waiting in &status.draining {
            let why = match &waiting.reason {
                WaitReason::Drain { active_connections } => {
                    format!("{active_connections} active connection(s)")
                }
                WaitReason::WithdrawDelay { address } => format!("{address} withdrawn"),
            };
            let _ = writeln!(
                out,
                "  {}  ({why}; since {} ago, due in {})",
                crate::display::describe_action(&waiting.action),
                ago(now, waiting.since),
                ago(waiting.due, now)
            );
        }
    }
    if !status.failures.is_empty() {
        let _ = writeln!(out, "\nfailed in the last converge:");
        for failure in &status.failures {
            let _ = writeln!(
                out,
                "  {}: {}",
                crate::display::describe_action(&failure.action),
                failure.message
            );
        }
    }
    if !status.differences.is_empty() {
        let _ = writeln!(out, "\ndifferences left after the last converge:");
        for difference in &status.differences {
            let _ = writeln!(out, "  {difference}");
        }
    }
    out
}

/// The service flags in manifest words (`one-packet`, `mh-fallback`, …); persistence is
/// shown with its timeout.
fn flag_names(scheduler: Scheduler, flags: u32) -> Vec<&'static str> {
    let mut names = Vec::new();
    if flags & FLAG_ONEPACKET != 0 {
        names.push("one-packet");
    }
    for flag in [
        SchedulerFlag::MhFallback,
        SchedulerFlag::MhPort,
        SchedulerFlag::ShFallback,
        SchedulerFlag::ShPort,
        SchedulerFlag::Flag1,
        SchedulerFlag::Flag2,
        SchedulerFlag::Flag3,
    ] {
        let applies = match flag {
            SchedulerFlag::MhFallback | SchedulerFlag::MhPort => scheduler == Scheduler::Mh,
            SchedulerFlag::ShFallback | SchedulerFlag::ShPort => scheduler == Scheduler::Sh,
            _ => !matches!(scheduler, Scheduler::Mh | Scheduler::Sh),
        };
        if applies && flags & flag.bit() != 0 {
            names.push(flag.as_str());
        }
    }
    names
}

/// `tunnel gue port 6080 checksum csum`, `direct`, …
pub fn forwarding(forward: &Forward) -> String {
    match forward {
        Forward::Masquerade => "masquerade".into(),
        Forward::Direct => "direct".into(),
        Forward::Tunnel {
            encapsulation,
            port,
            checksum,
        } => {
            let mut s = format!("tunnel {encapsulation}");
            if *port != 0 {
                let _ = write!(s, " port {port}");
            }
            let _ = write!(s, " checksum {checksum}");
            s
        }
        Forward::Local => "local".into(),
        Forward::Bypass => "bypass".into(),
    }
}

/// `later - earlier` as `1h2m3s` (0s when negative).
fn ago(later: u64, earlier: u64) -> String {
    let mut secs = later.saturating_sub(earlier);
    let mut out = String::new();
    for (unit, size) in [("h", 3600), ("m", 60)] {
        if secs >= size {
            let _ = write!(out, "{}{unit}", secs / size);
            secs %= size;
        }
    }
    if secs > 0 || out.is_empty() {
        let _ = write!(out, "{secs}s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_read_in_manifest_words() {
        assert_eq!(
            flag_names(Scheduler::Mh, 0x18),
            vec!["mh-fallback", "mh-port"]
        );
        assert_eq!(flag_names(Scheduler::Sh, 0x09), vec!["sh-fallback"]);
        assert_eq!(
            flag_names(Scheduler::Rr, 0x24),
            vec!["one-packet", "flag-3"]
        );
    }

    #[test]
    fn durations_read_like_an_operator_writes_them() {
        assert_eq!(ago(100, 100), "0s");
        assert_eq!(ago(100, 200), "0s");
        assert_eq!(ago(3725, 0), "1h2m5s");
        assert_eq!(ago(120, 0), "2m");
    }

    #[test]
    fn the_json_document_keeps_observed_as_a_node_state() {
        let document = StatusDocument::default();
        let value = serde_json::to_value(&document).unwrap();
        let observed: NodeState = serde_json::from_value(value["observed"].clone()).unwrap();
        assert_eq!(observed, NodeState::default());
        let back: StatusDocument = serde_json::from_value(value).unwrap();
        assert_eq!(back, document);
    }
}
