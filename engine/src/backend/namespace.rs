//! Finding a pod's network namespace and working inside it.
//!
//! A pod is looked for in three ways, in this order, the first that finds it winning:
//! 1. a named namespace `--netns-dir DIR/<pod UID>`, when that option is given (namespaces
//!    created and named by a CNI setup, or by tests);
//! 2. `/proc`, without any socket: a process whose cgroup path names the pod (`pod<uid>` as the
//!    kubelet's cgroupfs driver writes it, `pod<uid with _>` as its systemd driver does; cgroup
//!    v1 and v2 alike) shares the pod's namespace, so `/proc/PID/ns/net` is it. With hostPID
//!    every containerd or CRI-O pod has such a process (its sandbox's pause process at least);
//! 3. the container runtime over CRI ([`super::cri`]), when `--cri-endpoint` is given: for a
//!    DaemonSet without hostPID (then the runtime's netns path must be mounted at the same
//!    place) or a runtime whose cgroup paths are not recognised.
//!
//! Not found by any way is [`Lookup::Absent`]; a runtime that cannot answer is
//! [`Lookup::Failed`], logged, and the caller keeps what it knows of the pod, since the pod may
//! well still be there. A namespace equal to PID 1's is the host's: such a pod (hostNetwork) is
//! skipped by the caller.
//!
//! Work inside a namespace runs on a dedicated thread that calls `setns(CLONE_NEWNET)` on an
//! open namespace file: `setns` changes only the calling thread, and sockets and
//! `/proc/sys/net` files opened there belong to that namespace. The open file also keeps the
//! namespace alive while the thread uses it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use balanced_schemas::v1::PodRef;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::backend::cri::{CriClient, pod_label};

/// A network namespace's identity: the device and inode of its `nsfs` file. A restarted pod
/// has a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NetnsId {
    pub dev: u64,
    pub ino: u64,
}

impl NetnsId {
    pub fn of(file: &File) -> io::Result<NetnsId> {
        let meta = file.metadata()?;
        Ok(NetnsId {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

/// An open pod namespace.
#[derive(Debug)]
pub struct PodNamespace {
    /// Where it was found (`/proc/4242/ns/net`, `/run/netns/<uid>`).
    pub path: PathBuf,
    pub id: NetnsId,
    file: File,
}

impl PodNamespace {
    pub fn open(path: &Path) -> io::Result<PodNamespace> {
        let file = File::open(path)?;
        Ok(PodNamespace {
            path: path.to_owned(),
            id: NetnsId::of(&file)?,
            file,
        })
    }

    /// Runs `work` on a thread inside this namespace and returns its result.
    pub fn run<T: Send>(&self, work: impl FnOnce() -> T + Send) -> io::Result<T> {
        let fd = self.file.as_raw_fd();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    // SAFETY: `fd` is an open namespace file for the whole scope; setns only
                    // changes this thread, which ends with the scope.
                    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(work())
                })
                .join()
                .map_err(|_| io::Error::other("the namespace thread panicked"))?
        })
    }
}

/// Where pods' namespaces are looked for.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// `/proc` (a directory tree in tests).
    pub proc_root: PathBuf,
    /// Named namespaces by pod UID, looked at first.
    pub netns_dir: Option<PathBuf>,
    /// The container runtime, asked last.
    pub cri: Option<CriClient>,
}

/// The outcome of looking for one pod's namespace.
#[derive(Debug)]
pub enum Lookup {
    Found(PodNamespace),
    /// The pod has no namespace on this node, as far as every way tried can tell.
    Absent,
    /// A way that could have found it failed (the runtime did not answer, or its namespace file
    /// cannot be opened): why, naming the pod.
    Failed(String),
}

/// Pod UID → the processes whose cgroup names it, ascending.
pub type PodProcesses = BTreeMap<String, Vec<u32>>;

impl Discovery {
    /// One pass over `/proc/*/cgroup`. Processes that exit meanwhile are skipped.
    pub fn scan(&self) -> PodProcesses {
        let mut pods = PodProcesses::new();
        let Ok(entries) = std::fs::read_dir(&self.proc_root) else {
            return pods;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(text) = std::fs::read_to_string(entry.path().join("cgroup")) else {
                continue;
            };
            if let Some(uid) = text.lines().find_map(pod_uid_in_cgroup) {
                pods.entry(uid).or_default().push(pid);
            }
        }
        for pids in pods.values_mut() {
            pids.sort_unstable();
        }
        pods
    }

    /// The host's own namespace (PID 1's).
    pub fn host(&self) -> io::Result<NetnsId> {
        NetnsId::of(&File::open(self.proc_root.join("1/ns/net"))?)
    }

    /// Opens the namespace of pod `uid`: the named one, else that of the first of its
    /// processes still there, else the one the container runtime names. `pod` names it in
    /// messages.
    pub fn open(&self, uid: &str, pod: Option<&PodRef>, processes: &PodProcesses) -> Lookup {
        if let Some(dir) = &self.netns_dir
            && valid_uid(uid)
            && let Ok(ns) = PodNamespace::open(&dir.join(uid))
        {
            return Lookup::Found(ns);
        }
        let by_process = processes.get(uid).and_then(|pids| {
            pids.iter().find_map(|pid| {
                PodNamespace::open(&self.proc_root.join(pid.to_string()).join("ns/net")).ok()
            })
        });
        if let Some(ns) = by_process {
            return Lookup::Found(ns);
        }
        match &self.cri {
            Some(cri) => self.open_by_cri(cri, uid, pod),
            None => Lookup::Absent,
        }
    }

    fn open_by_cri(&self, cri: &CriClient, uid: &str, pod: Option<&PodRef>) -> Lookup {
        let sandbox = match cri.sandbox_netns(uid, pod) {
            Ok(Some(sandbox)) => sandbox,
            Ok(None) => return Lookup::Absent,
            Err(e) => {
                warn!("skipped: {e}");
                return Lookup::Failed(e.to_string());
            }
        };
        let mut tried = Vec::new();
        for path in sandbox.candidates(&self.proc_root) {
            match PodNamespace::open(&path) {
                Ok(ns) => return Lookup::Found(ns),
                Err(e) => tried.push(format!("{}: {e}", path.display())),
            }
        }
        let why = format!(
            "CRI at {}: pod {}: sandbox {}: cannot open its network namespace ({})",
            cri.endpoint,
            pod_label(uid, pod),
            sandbox.sandbox,
            tried.join("; ")
        );
        warn!("skipped: {why}");
        Lookup::Failed(why)
    }
}

/// A Kubernetes UID as a file name: hex digits and dashes only, so no path can be made of it.
fn valid_uid(uid: &str) -> bool {
    !uid.is_empty() && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// The pod UID in one line of `/proc/PID/cgroup`, with `-` separators: `…/pod<uid>/…` (cgroupfs
/// driver) or `…-pod<uid with _>.slice/…` (systemd driver).
pub fn pod_uid_in_cgroup(line: &str) -> Option<String> {
    const UID_LEN: usize = 36;
    let mut rest = line;
    while let Some(at) = rest.find("pod") {
        let candidate = rest.get(at + 3..at + 3 + UID_LEN);
        if let Some(uid) = candidate.filter(|c| is_uid(c)) {
            return Some(uid.replace('_', "-"));
        }
        rest = &rest[at + 3..];
    }
    None
}

/// `8-4-4-4-12` hex digits separated by `-` or `_`.
fn is_uid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-' || b == b'_',
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "1b2c3d4e-5f60-4718-9a0b-c1d2e3f40516";

    #[test]
    fn pod_uids_are_found_in_both_cgroup_drivers() {
        let cgroupfs = format!("11:memory:/kubepods/burstable/pod{UID}/0123abcd");
        let systemd = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-0123.scope",
            UID.replace('-', "_")
        );
        assert_eq!(pod_uid_in_cgroup(&cgroupfs).as_deref(), Some(UID));
        assert_eq!(pod_uid_in_cgroup(&systemd).as_deref(), Some(UID));
        assert_eq!(pod_uid_in_cgroup("0::/kubepods.slice/kubepods-pods"), None);
        assert_eq!(pod_uid_in_cgroup("0::/system.slice/kubelet.service"), None);
        assert_eq!(pod_uid_in_cgroup("0::/kubepods/podnot-a-uid"), None);
    }

    #[test]
    fn a_proc_scan_groups_processes_by_pod() {
        let root = tempfile::tempdir().expect("tempdir");
        let write = |pid: &str, cgroup: &str| {
            std::fs::create_dir_all(root.path().join(pid)).expect("mkdir");
            std::fs::write(root.path().join(pid).join("cgroup"), cgroup).expect("write");
        };
        write("300", &format!("0::/kubepods/pod{UID}/app\n"));
        write("12", &format!("0::/kubepods/pod{UID}/pause\n"));
        write("1", "0::/init.scope\n");
        write("self", &format!("0::/kubepods/pod{UID}/app\n"));
        std::fs::create_dir_all(root.path().join("77")).expect("a process that exited");
        let discovery = Discovery {
            proc_root: root.path().to_owned(),
            netns_dir: None,
            cri: None,
        };
        let scan = discovery.scan();
        assert_eq!(scan.len(), 1);
        assert_eq!(scan[UID], vec![12, 300]);
        // No ns/net files in this tree: the pod's processes are gone, so it is not found.
        assert!(matches!(discovery.open(UID, None, &scan), Lookup::Absent));
    }

    #[test]
    fn named_namespaces_are_looked_up_by_uid_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(UID), "").expect("a stand-in namespace file");
        let discovery = Discovery {
            proc_root: dir.path().join("no-proc"),
            netns_dir: Some(dir.path().to_owned()),
            cri: None,
        };
        let Lookup::Found(found) = discovery.open(UID, None, &PodProcesses::new()) else {
            panic!("the named namespace is found");
        };
        assert_eq!(found.path, dir.path().join(UID));
        assert!(matches!(
            discovery.open("../etc", None, &PodProcesses::new()),
            Lookup::Absent
        ));
        assert!(!valid_uid(""));
    }

    #[test]
    fn work_runs_in_the_namespace_of_the_file() {
        // The test's own namespace: entering it needs no privilege beyond what the process has
        // when it is allowed to; without CAP_SYS_ADMIN setns fails with EPERM, also an answer.
        let ns = PodNamespace::open(Path::new("/proc/self/ns/net")).expect("open");
        let own = NetnsId::of(&File::open("/proc/thread-self/ns/net").expect("open")).ok();
        match ns.run(|| {
            File::open("/proc/thread-self/ns/net")
                .and_then(|f| NetnsId::of(&f))
                .ok()
        }) {
            Ok(inside) => assert_eq!(inside, own),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EPERM)),
        }
    }
}
