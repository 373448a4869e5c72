//! The boundary between planning and the machine: a [`Dataplane`] observes the node's state and
//! applies one [`Action`] at a time, answering each with the kernel's errno on failure.
//!
//! Two implementations: the simulated dataplane (`sim:PATH`, a file that behaves like the kernel)
//! and the kernel (IPVS generic netlink + rtnetlink + `/proc/sys`).

use std::fmt;
use std::net::IpAddr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::model::{
    DestinationConfig, DestinationKey, IpvsTimeouts, NodeState, ServiceConfig, ServiceKey,
};

/// One change to the node, the unit of a plan and of execution. Each maps to one kernel request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "action")]
pub enum Action {
    /// Create the VIP link (a dummy interface) if it is missing, and set it up.
    EnsureInterface { name: String },
    /// Announce: add a /32 or /128 to the VIP link.
    AddAddress { interface: String, address: IpAddr },
    /// Withdraw: remove the address from the VIP link.
    DelAddress { interface: String, address: IpAddr },
    AddService {
        key: ServiceKey,
        config: ServiceConfig,
    },
    SetService {
        key: ServiceKey,
        config: ServiceConfig,
    },
    /// Deletes the service and, as the kernel does, all its destinations.
    DelService { key: ServiceKey },
    AddDestination {
        service: ServiceKey,
        destination: DestinationKey,
        config: DestinationConfig,
    },
    SetDestination {
        service: ServiceKey,
        destination: DestinationKey,
        config: DestinationConfig,
    },
    DelDestination {
        service: ServiceKey,
        destination: DestinationKey,
    },
    /// Write a sysctl (`net.ipv4.vs.sloppy_tcp` = `1`).
    SetSysctl { name: String, value: String },
    /// Set the IPVS connection timeouts; a 0 field is left unchanged, as the kernel does.
    SetTimeouts { timeouts: IpvsTimeouts },
}

/// What to observe besides IPVS: the VIP link and the sysctls the node config names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObserveRequest {
    pub interface: String,
    /// `vipLinks`: how many dummy links hold the VIP link's addresses (0 counts as 1). The
    /// kernel dataplane spreads addresses over them; the model sees one link.
    pub vip_links: u8,
    pub sysctls: Vec<String>,
}

/// An errno as the kernel returned it (positive: `ENOENT` = 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Errno(pub i32);

impl Errno {
    pub const EPERM: Errno = Errno(libc::EPERM);
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    pub const ESRCH: Errno = Errno(libc::ESRCH);
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    pub const ENODEV: Errno = Errno(libc::ENODEV);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const ERANGE: Errno = Errno(libc::ERANGE);
    pub const EOPNOTSUPP: Errno = Errno(libc::EOPNOTSUPP);
    pub const EADDRNOTAVAIL: Errno = Errno(libc::EADDRNOTAVAIL);

    /// The symbolic name (`ENOENT`), or the number when it is not one the kernel's IPVS and
    /// rtnetlink code returns.
    pub fn name(self) -> String {
        let known = [
            Errno::EPERM,
            Errno::ENOENT,
            Errno::ESRCH,
            Errno::EEXIST,
            Errno::ENODEV,
            Errno::EINVAL,
            Errno::ERANGE,
            Errno::EOPNOTSUPP,
            Errno::EADDRNOTAVAIL,
        ];
        let names = [
            "EPERM",
            "ENOENT",
            "ESRCH",
            "EEXIST",
            "ENODEV",
            "EINVAL",
            "ERANGE",
            "EOPNOTSUPP",
            "EADDRNOTAVAIL",
        ];
        known
            .iter()
            .position(|e| *e == self)
            .map(|i| names[i].to_owned())
            .unwrap_or_else(|| format!("errno {}", self.0))
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({})",
            self.name(),
            std::io::Error::from_raw_os_error(self.0)
        )
    }
}

/// One action the dataplane refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{message}: {errno}")]
pub struct ActionError {
    pub errno: Errno,
    /// What was being done, in words (`adding destination 10.0.0.1:80 to TCP 198.51.100.10:80`).
    pub message: String,
}

/// One action's result from [`Dataplane::apply_all`], and when the dataplane gave it: the time
/// the action's change line carries. A converge logs its lines after the whole wave, and a
/// hundred thousand lines take a while to write; the time says when the change was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub result: Result<(), ActionError>,
    /// When the dataplane confirmed the result (for the kernel: when the answer to the
    /// `sendmsg` holding the request came back).
    pub at: SystemTime,
}

impl Applied {
    /// A result given now.
    pub fn now(result: Result<(), ActionError>) -> Self {
        Applied {
            result,
            at: SystemTime::now(),
        }
    }
}

/// The dataplane could not be observed or reached at all.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a simulated dataplane state: {source}")]
    SimFormat {
        path: std::path::PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: the simulated dataplane is read-only here (plan never changes it)")]
    ReadOnly { path: std::path::PathBuf },
    #[error("{context}: {errno}")]
    Kernel { context: String, errno: Errno },
    #[error("{0}")]
    Unavailable(String),
}

/// Observes and changes a node. Implementations keep no desired state of their own.
pub trait Dataplane {
    /// The node's state as it is now: every IPVS service with its destinations in list order,
    /// the VIP link and its addresses, the requested sysctls and the IPVS timeouts.
    fn observe(&mut self, request: &ObserveRequest) -> Result<NodeState, DataplaneError>;

    /// Applies one action, answering with the kernel's errno on failure.
    fn apply(&mut self, action: &Action) -> Result<(), ActionError>;

    /// Applies actions in order; one result per action, with the time it was given.
    /// Implementations may pipeline requests (the kernel one sends many per `sendmsg`); a
    /// failure never stops the later actions.
    fn apply_all(&mut self, actions: &[&Action]) -> Vec<Applied> {
        actions
            .iter()
            .map(|a| Applied::now(self.apply(a)))
            .collect()
    }

    /// Makes applied changes durable where the dataplane has such a step (the simulated one
    /// writes its file). The kernel needs none.
    fn commit(&mut self) -> Result<(), DataplaneError> {
        Ok(())
    }
}
