//! The backend role's status document: per pod, what a pass found and left — the pod's
//! identity, its network namespace (path and identity), how the director reaches it, the VIPs
//! balanced configured in it, why it was skipped, and its last error. `run --role backend`
//! serves it on `/status` and writes it to `STATE_DIR/backend-status.json` when it changes;
//! `apply --role backend` writes it too; `balanced status --role backend` prints that file.
//!
//! Deriving the document from a pass ([`BackendStatus::after`]) and rendering it as text
//! ([`render_text`]) are pure; only [`command`] and [`write`] touch files.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backend::converge::{Pass, PodReport};
use crate::backend::model::{Tunnel, TunnelDevice, family_name};
use crate::backend::namespace::NetnsId;
use crate::error::{EngineError, ExitStatus};
use crate::state_dir::write_atomic;

/// The file in the state directory that holds the last document.
pub const STATUS_FILE: &str = "backend-status.json";

/// What the last pass of the backend role found on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendStatus {
    pub node: String,
    /// Unix seconds of the pass; `None` before the first.
    pub updated: Option<u64>,
    /// Every manifest could be read (when not, nothing was removed from any pod).
    pub complete: bool,
    pub pods: Vec<PodStatus>,
}

/// How one pod stands after a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PodState {
    /// Entered and converged: every action applied, nothing left to do.
    Configured,
    /// Left alone (no namespace found, the host's namespace, or it could not be entered).
    Skipped,
    /// An action failed, a combination cannot be received, or a difference is left.
    Failed,
}

impl PodState {
    pub const ALL: [PodState; 3] = [PodState::Configured, PodState::Skipped, PodState::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            PodState::Configured => "configured",
            PodState::Skipped => "skipped",
            PodState::Failed => "failed",
        }
    }

    pub fn of(report: &PodReport) -> PodState {
        if report.skipped.is_some() {
            PodState::Skipped
        } else if report.problems.is_empty() && report.differences.is_empty() {
            PodState::Configured
        } else {
            PodState::Failed
        }
    }
}

/// A VIP balanced configured inside a pod, and the tunnel device that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PodVip {
    pub vip: IpAddr,
    pub device: TunnelDevice,
}

/// The last error seen for a pod, kept until the pod leaves the document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    pub message: String,
    /// Unix seconds of the pass that saw it.
    pub at: u64,
}

/// One pod in the document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    /// The pod's Kubernetes namespace, when the manifests name the pod.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub uid: String,
    pub state: PodState,
    /// Where its network namespace was found (`/proc/PID/ns/net`, `/run/netns/UID`).
    pub netns: Option<PathBuf>,
    pub netns_id: Option<NetnsId>,
    /// How the director reaches it, from the manifests (none: it left every service).
    pub tunnels: Vec<Tunnel>,
    /// The VIPs balanced configured in it.
    pub vips: Vec<PodVip>,
    /// Why it was left alone.
    pub skipped: Option<String>,
    pub last_error: Option<LastError>,
}

impl PodStatus {
    fn from_report(report: &PodReport, previous: Option<&PodStatus>, now: u64) -> PodStatus {
        let errors: Vec<String> = report
            .problems
            .iter()
            .cloned()
            .chain(
                report
                    .differences
                    .iter()
                    .map(|d| format!("difference left after applying: {d}")),
            )
            .collect();
        let last_error = if errors.is_empty() {
            previous.and_then(|p| p.last_error.clone())
        } else {
            Some(LastError {
                message: errors.join("; "),
                at: now,
            })
        };
        PodStatus {
            namespace: report.pod.as_ref().map(|p| p.namespace.clone()),
            name: report.pod.as_ref().map(|p| p.name.clone()),
            uid: report.uid.clone(),
            state: PodState::of(report),
            netns: report.namespace.clone(),
            netns_id: report.netns_id,
            tunnels: report.tunnels.iter().copied().collect(),
            vips: report
                .configured
                .iter()
                .map(|(device, vip)| PodVip {
                    vip: *vip,
                    device: *device,
                })
                .collect(),
            skipped: report.skipped.clone(),
            last_error,
        }
    }

    /// `namespace/name`, else the UID.
    pub fn display_name(&self) -> String {
        match (&self.namespace, &self.name) {
            (Some(namespace), Some(name)) => format!("{namespace}/{name}"),
            _ => self.uid.clone(),
        }
    }
}

impl BackendStatus {
    /// The document after `pass` at unix time `now`: one entry per pod the pass looked at, in
    /// UID order; a pod's last error carries over from `previous` until a new one replaces it.
    pub fn after(previous: &BackendStatus, node: &str, pass: &Pass, now: u64) -> BackendStatus {
        let before: BTreeMap<&str, &PodStatus> =
            previous.pods.iter().map(|p| (p.uid.as_str(), p)).collect();
        let mut pods: Vec<PodStatus> = pass
            .reports
            .iter()
            .map(|r| PodStatus::from_report(r, before.get(r.uid.as_str()).copied(), now))
            .collect();
        pods.sort_by(|a, b| a.uid.cmp(&b.uid));
        BackendStatus {
            node: node.to_owned(),
            updated: Some(now),
            complete: pass.complete,
            pods,
        }
    }

    /// Pods per state, every state present.
    pub fn count(&self) -> BTreeMap<PodState, usize> {
        let mut counts: BTreeMap<PodState, usize> = PodState::ALL.iter().map(|s| (*s, 0)).collect();
        for pod in &self.pods {
            *counts.entry(pod.state).or_default() += 1;
        }
        counts
    }

    /// VIP addresses configured, over every pod.
    pub fn vips(&self) -> usize {
        self.pods.iter().map(|p| p.vips.len()).sum()
    }

    /// The same document but for the time of the pass: whether it is worth writing again.
    pub fn same_pods(&self, other: &BackendStatus) -> bool {
        self.node == other.node && self.complete == other.complete && self.pods == other.pods
    }
}

fn tunnel_text(t: &Tunnel) -> String {
    let mut text = t.encapsulation.as_str().to_owned();
    if let Some(port) = t.port {
        let _ = write!(text, " port {port}");
    }
    let _ = write!(text, " over {}", family_name(t.outer));
    if t.checksum != Default::default() {
        let _ = write!(text, ", checksum {}", t.checksum.as_str());
    }
    text
}

fn ago(now: u64, at: u64) -> String {
    format!("{}s ago", now.saturating_sub(at))
}

/// The document as `balanced status --role backend` prints it; `now` in unix seconds.
pub fn render_text(status: &BackendStatus, now: u64) -> String {
    let mut out = String::new();
    let Some(updated) = status.updated else {
        return "no backend pass recorded yet (balanced run --role backend writes it)\n".to_owned();
    };
    let counts = status.count();
    let _ = writeln!(
        out,
        "node {}: last pass {}; {} pod(s): {}; {} VIP(s) configured",
        status.node,
        ago(now, updated),
        status.pods.len(),
        counts
            .iter()
            .map(|(state, n)| format!("{n} {}", state.as_str()))
            .collect::<Vec<_>>()
            .join(", "),
        status.vips(),
    );
    if !status.complete {
        out.push_str("a manifest could not be read: nothing was removed from any pod\n");
    }
    for pod in &status.pods {
        let _ = writeln!(
            out,
            "pod {} (uid {}): {}",
            pod.display_name(),
            pod.uid,
            pod.state.as_str()
        );
        if let Some(why) = &pod.skipped {
            let _ = writeln!(out, "  skipped: {why}");
        }
        if let Some(path) = &pod.netns {
            let id = pod.netns_id.map_or_else(String::new, |id| {
                format!(" (dev {}, inode {})", id.dev, id.ino)
            });
            let _ = writeln!(out, "  netns {}{id}", path.display());
        }
        for tunnel in &pod.tunnels {
            let _ = writeln!(out, "  tunnel {}", tunnel_text(tunnel));
        }
        for v in &pod.vips {
            let _ = writeln!(out, "  vip {} on {}", v.vip, v.device);
        }
        if let Some(e) = &pod.last_error {
            let _ = writeln!(out, "  last error ({}): {}", ago(now, e.at), e.message);
        }
    }
    out
}

/// Reads the document from the state directory (the default one when there is none yet).
pub fn read(state_dir: &Path) -> Result<BackendStatus, EngineError> {
    let path = state_dir.join(STATUS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|source| EngineError::StateFormat { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BackendStatus::default()),
        Err(e) => Err(EngineError::io(&path, e)),
    }
}

/// Writes the document to the state directory, atomically.
pub fn write(state_dir: &Path, status: &BackendStatus) -> Result<(), EngineError> {
    std::fs::create_dir_all(state_dir).map_err(|e| EngineError::io(state_dir, e))?;
    let path = state_dir.join(STATUS_FILE);
    let mut bytes = serde_json::to_vec_pretty(status)
        .map_err(|e| EngineError::Runtime(format!("cannot render the backend status: {e}")))?;
    bytes.push(b'\n');
    write_atomic(&path, &bytes).map_err(|e| EngineError::io(&path, e))
}

/// `balanced status --role backend`: the document the last pass wrote, as text or JSON.
pub fn command(state_dir: &Path, json: bool) -> Result<ExitStatus, EngineError> {
    let status = read(state_dir)?;
    let text = if json {
        let mut text = serde_json::to_string_pretty(&status)
            .map_err(|e| EngineError::Runtime(format!("cannot render JSON: {e}")))?;
        text.push('\n');
        text
    } else {
        render_text(
            &status,
            crate::status::unix_seconds(std::time::SystemTime::now()),
        )
    };
    print!("{text}");
    Ok(ExitStatus::Success)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::backend::plan::PodAction;
    use crate::model::Family;
    use balanced_schemas::v1::{Encapsulation, PodRef, TunnelChecksum};

    pub(crate) fn round() -> Pass {
        let vip: IpAddr = "198.51.100.50".parse().unwrap();
        let v6: IpAddr = "2001:db8:100::50".parse().unwrap();
        let pod = |name: &str, uid: &str| PodRef {
            namespace: "default".into(),
            name: name.into(),
            uid: uid.into(),
        };
        let ipip = Tunnel {
            encapsulation: Encapsulation::Ipip,
            outer: Family::V4,
            port: None,
            checksum: TunnelChecksum::None,
        };
        let gue6 = Tunnel {
            encapsulation: Encapsulation::Gue,
            outer: Family::V6,
            port: Some(6080),
            checksum: TunnelChecksum::None,
        };
        Pass {
            complete: true,
            reports: vec![
                PodReport {
                    pod: Some(pod("web-b", "uid-b")),
                    uid: "uid-b".into(),
                    namespace: Some("/run/netns/uid-b".into()),
                    netns_id: Some(NetnsId { dev: 4, ino: 4026 }),
                    tunnels: [ipip, gue6].into(),
                    configured: [(TunnelDevice::Tunl0, vip)].into(),
                    actions: vec![
                        PodAction::AddAddress {
                            device: TunnelDevice::Tunl0,
                            vip,
                        },
                        PodAction::AddAddress {
                            device: TunnelDevice::Ip6tnl0,
                            vip: v6,
                        },
                    ],
                    applied: vec![PodAction::AddAddress {
                        device: TunnelDevice::Tunl0,
                        vip,
                    }],
                    failed: vec![PodAction::AddAddress {
                        device: TunnelDevice::Ip6tnl0,
                        vip: v6,
                    }],
                    problems: vec![
                        "+ address 2001:db8:100::50/128 dev ip6tnl0: No such device".into(),
                    ],
                    ..PodReport::default()
                },
                PodReport {
                    pod: Some(pod("web-a", "uid-a")),
                    uid: "uid-a".into(),
                    namespace: Some("/run/netns/uid-a".into()),
                    netns_id: Some(NetnsId { dev: 4, ino: 4025 }),
                    tunnels: [ipip].into(),
                    configured: [(TunnelDevice::Tunl0, vip)].into(),
                    actions: vec![PodAction::SetRpFilter {
                        conf: "all".into(),
                        value: 0,
                    }],
                    applied: vec![PodAction::SetRpFilter {
                        conf: "all".into(),
                        value: 0,
                    }],
                    ..PodReport::default()
                },
                PodReport {
                    pod: None,
                    uid: "uid-gone".into(),
                    skipped: Some("no network namespace found on this node".into()),
                    ..PodReport::default()
                },
            ],
        }
    }

    #[test]
    fn a_pass_becomes_one_entry_per_pod_with_its_state_vips_and_error() {
        let status = BackendStatus::after(&BackendStatus::default(), "knode", &round(), 1000);
        let uids: Vec<_> = status.pods.iter().map(|p| p.uid.as_str()).collect();
        assert_eq!(uids, ["uid-a", "uid-b", "uid-gone"], "sorted by UID");
        let states: Vec<_> = status.pods.iter().map(|p| p.state).collect();
        assert_eq!(
            states,
            [PodState::Configured, PodState::Failed, PodState::Skipped]
        );
        let b = &status.pods[1];
        assert_eq!(b.display_name(), "default/web-b");
        assert_eq!(b.netns_id, Some(NetnsId { dev: 4, ino: 4026 }));
        assert_eq!(
            b.vips,
            [PodVip {
                vip: "198.51.100.50".parse().unwrap(),
                device: TunnelDevice::Tunl0
            }]
        );
        assert_eq!(b.tunnels.len(), 2);
        let error = b
            .last_error
            .as_ref()
            .expect("the failed address is the last error");
        assert_eq!(error.at, 1000);
        assert!(
            error.message.contains("ip6tnl0: No such device"),
            "{error:?}"
        );
        assert_eq!(status.count()[&PodState::Skipped], 1);
        assert_eq!(status.vips(), 2);
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["pods"][1]["netnsId"]["ino"], 4026);
        assert_eq!(json["pods"][1]["vips"][0]["device"], "tunl0");
        assert_eq!(json["pods"][1]["tunnels"][1]["encapsulation"], "gue");
        assert_eq!(json["pods"][1]["state"], "failed");
        assert_eq!(
            json["pods"][2]["skipped"],
            "no network namespace found on this node"
        );
    }

    #[test]
    fn the_last_error_stays_until_a_new_one_and_goes_with_the_pod() {
        let first = BackendStatus::after(&BackendStatus::default(), "knode", &round(), 1000);
        let mut healed = round();
        healed.reports[0].problems.clear();
        healed.reports[0].failed.clear();
        healed.reports.truncate(1);
        let second = BackendStatus::after(&first, "knode", &healed, 1010);
        assert_eq!(second.pods.len(), 1);
        assert_eq!(second.pods[0].state, PodState::Configured);
        assert_eq!(
            second.pods[0].last_error.as_ref().map(|e| e.at),
            Some(1000),
            "kept from the pass that saw it"
        );
        let gone = BackendStatus::after(&second, "knode", &Pass::default(), 1020);
        let back = BackendStatus::after(&gone, "knode", &healed, 1030);
        assert_eq!(
            back.pods[0].last_error, None,
            "a pod that left is forgotten"
        );
        assert!(!second.same_pods(&first));
        assert!(back.same_pods(&BackendStatus {
            updated: None,
            ..back.clone()
        }));
    }

    #[test]
    fn text_shows_each_pod_its_namespace_tunnels_vips_and_last_error() {
        let status = BackendStatus::after(&BackendStatus::default(), "knode", &round(), 1000);
        let text = render_text(&status, 1005);
        let expected = "\
node knode: last pass 5s ago; 3 pod(s): 1 configured, 1 skipped, 1 failed; 2 VIP(s) configured
pod default/web-a (uid uid-a): configured
  netns /run/netns/uid-a (dev 4, inode 4025)
  tunnel ipip over IPv4
  vip 198.51.100.50 on tunl0
pod default/web-b (uid uid-b): failed
  netns /run/netns/uid-b (dev 4, inode 4026)
  tunnel ipip over IPv4
  tunnel gue port 6080 over IPv6
  vip 198.51.100.50 on tunl0
  last error (5s ago): + address 2001:db8:100::50/128 dev ip6tnl0: No such device
pod uid-gone (uid uid-gone): skipped
  skipped: no network namespace found on this node
";
        assert_eq!(text, expected);
        assert!(render_text(&BackendStatus::default(), 0).starts_with("no backend pass"));
    }

    #[test]
    fn the_document_round_trips_through_the_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), BackendStatus::default());
        let status = BackendStatus::after(&BackendStatus::default(), "knode", &round(), 1000);
        write(dir.path(), &status).unwrap();
        assert_eq!(read(dir.path()).unwrap(), status);
    }
}
