//! The kernel dataplane: IPVS over generic netlink, the VIP link over rtnetlink, sysctls
//! through `/proc/sys`.
//!
//! It keeps no desired state: `observe` reads everything anew (one service dump, one
//! destination dump per service, one address dump), and `apply_all` pipelines consecutive
//! IPVS requests (and consecutive address changes) many per `sendmsg`, answering every action
//! with its own result. Features the running kernel lacks are refused with an error, never
//! silently degraded.

pub mod ipvs;
pub mod link;
pub mod netlink;
pub mod rtnl;
pub mod socket;
pub mod sysctl;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Instant;

use balanced_schemas::v1::{self, Encapsulation};
use tracing::debug;

use crate::dataplane::{
    Action, ActionError, Applied, Dataplane, DataplaneError, Errno, ObserveRequest,
};
use crate::kernel::ipvs::client::{ConnectError, IpvsClient};
use crate::kernel::ipvs::codec;
use crate::kernel::link::{LinkClient, vip_link_of};
use crate::kernel::netlink::Ack;
use crate::kernel::socket::SocketError;
use crate::kernel::sysctl::Sysctls;
use crate::model::{DestinationConfig, Forward, NodeState};

pub struct KernelDataplane {
    ipvs: IpvsClient,
    link: LinkClient,
    sysctls: Sysctls,
    /// `(major, minor)` of the running kernel, for features IPVS added late.
    release: Option<(u32, u32)>,
    /// The VIP link as the last observation found it.
    vip: VipLinks,
}

/// The VIP link's dummy links (`vipLinks`), from the last observation: actions name the VIP
/// link, and this says which of its links an address goes on or comes off.
#[derive(Debug, Default)]
struct VipLinks {
    name: String,
    count: u8,
    /// The link index each address was seen on (or added to since).
    located: HashMap<IpAddr, u32>,
}

impl VipLinks {
    /// The link an address change goes to: by name, or the index it was seen on.
    fn target(&self, interface: &str, add: bool, address: &IpAddr) -> Target {
        if interface != self.name {
            return Target::Name(interface.to_owned());
        }
        match self.located.get(address) {
            Some(index) if !add => Target::Index(*index),
            _ => Target::Name(v1::vip_link_name(
                interface,
                vip_link_of(address, self.count),
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Name(String),
    Index(u32),
}

impl KernelDataplane {
    /// Connects to IPVS and rtnetlink in the current network namespace.
    pub fn connect() -> Result<Self, DataplaneError> {
        let ipvs = IpvsClient::connect().map_err(|e: ConnectError| DataplaneError::Kernel {
            errno: Errno(e.errno()),
            context: e.to_string(),
        })?;
        let link = LinkClient::open().map_err(|e| DataplaneError::Kernel {
            context: "opening an rtnetlink socket".into(),
            errno: Errno(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .and_then(|r| parse_release(&r));
        Ok(KernelDataplane {
            ipvs,
            link,
            sysctls: Sysctls::default(),
            release,
            vip: VipLinks::default(),
        })
    }

    /// IPVS's version as the kernel reports it (`0x010201` = 1.2.1).
    pub fn ipvs_version(&self) -> u32 {
        self.ipvs.version
    }

    /// Address changes, pipelined per link after one lookup of each link's index; on a VIP
    /// link spread over several, each address goes to its own.
    fn address_changes(&mut self, run: &[&Action]) -> Vec<Applied> {
        let mut results: Vec<Option<Applied>> = vec![None; run.len()];
        let mut by_target: BTreeMap<Target, Vec<usize>> = BTreeMap::new();
        for (i, action) in run.iter().enumerate() {
            if let Some((name, add, address)) = address_change(action) {
                let target = self.vip.target(name, add, &address);
                by_target.entry(target).or_default().push(i);
            }
        }
        let mut indexes: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (target, members) in by_target {
            let name = match target {
                Target::Index(index) => {
                    indexes.entry(index).or_default().extend(members);
                    continue;
                }
                Target::Name(name) => name,
            };
            match self.link.find(&name) {
                Ok(Some(link)) => indexes.entry(link.index).or_default().extend(members),
                found => {
                    let (errno, detail) = match found {
                        Err(e) => (e.errno(), socket_detail(&e)),
                        _ => (libc::ENODEV, Some(format!("no link {name}"))),
                    };
                    for i in members {
                        let error = action_error(run[i], errno, detail.clone());
                        results[i] = Some(Applied::now(Err(error)));
                    }
                }
            }
        }
        for (index, mut members) in indexes {
            members.sort_unstable();
            let changes: Vec<(bool, IpAddr)> = members
                .iter()
                .filter_map(|i| address_change(run[*i]).map(|(_, add, a)| (add, a)))
                .collect();
            let started = Instant::now();
            let answers = self.link.change_addresses(index, &changes);
            debug!(
                link = index,
                changes = changes.len(),
                seconds = started.elapsed().as_secs_f64(),
                "address changes answered"
            );
            for (n, i) in members.into_iter().enumerate() {
                let result = ack_result(run[i], answers.acks.get(n));
                if result.is_ok() {
                    let (add, address) = changes[n];
                    if add {
                        self.vip.located.insert(address, index);
                    } else {
                        self.vip.located.remove(&address);
                    }
                }
                results[i] = Some(Applied {
                    result,
                    at: answers.at(n),
                });
            }
        }
        complete(run, results)
    }

    /// Creates and sets up a link; the VIP link's every link when it is spread.
    fn ensure(&mut self, name: &str) -> Result<(), SocketError> {
        if name != self.vip.name {
            return self.link.ensure(name);
        }
        for number in 0..self.vip.count.max(1) {
            self.link.ensure(&v1::vip_link_name(name, number))?;
        }
        Ok(())
    }

    /// IPVS requests, pipelined; those the kernel cannot do are refused before sending.
    fn ipvs_requests(&mut self, run: &[&Action]) -> Vec<Applied> {
        let mut results: Vec<Option<Applied>> = vec![None; run.len()];
        // Every action of a run is an IPVS request (`channel` sorted them); one that is not
        // encodes to nothing and the batch answers it EINVAL.
        let mut sent: Vec<usize> = Vec::new();
        for (i, action) in run.iter().enumerate() {
            match missing_feature(self.release, action) {
                Some(missing) => {
                    let error = action_error(action, libc::EOPNOTSUPP, Some(missing));
                    results[i] = Some(Applied::now(Err(error)));
                }
                None => sent.push(i),
            }
        }
        let started = Instant::now();
        let answers = self
            .ipvs
            .execute(sent.len(), |n| codec::request_for(run[sent[n]]));
        debug!(
            requests = sent.len(),
            seconds = started.elapsed().as_secs_f64(),
            "IPVS requests answered"
        );
        for (n, i) in sent.into_iter().enumerate() {
            results[i] = Some(Applied {
                result: ack_result(run[i], answers.acks.get(n)),
                at: answers.at(n),
            });
        }
        complete(run, results)
    }

    fn single(&mut self, action: &Action) -> Result<(), ActionError> {
        match action {
            Action::EnsureInterface { name } => self
                .ensure(name)
                .map_err(|e| action_error(action, e.errno(), socket_detail(&e))),
            Action::SetSysctl { name, value } => self.sysctls.write(name, value).map_err(|e| {
                let errno = e.raw_os_error().unwrap_or(libc::EINVAL);
                let detail = match errno {
                    libc::ENOENT => Some("this kernel has no such sysctl".to_owned()),
                    _ if e.raw_os_error().is_none() => Some(e.to_string()),
                    _ => None,
                };
                action_error(action, errno, detail)
            }),
            other => {
                let run = std::slice::from_ref(&other);
                let mut results = if address_change(other).is_some() {
                    self.address_changes(run)
                } else {
                    self.ipvs_requests(run)
                };
                results.pop().map_or_else(
                    || Err(action_error(other, libc::EPROTO, None)),
                    |applied| applied.result,
                )
            }
        }
    }
}

/// Every action of a run has its result; one left without is a bug reported as `EPROTO`.
fn complete(run: &[&Action], results: Vec<Option<Applied>>) -> Vec<Applied> {
    results
        .into_iter()
        .zip(run)
        .map(|(r, action)| {
            r.unwrap_or_else(|| {
                Applied::now(Err(action_error(
                    action,
                    libc::EPROTO,
                    Some("no result was recorded".into()),
                )))
            })
        })
        .collect()
}

/// `(interface, add, address)` of an address action.
fn address_change(action: &Action) -> Option<(&str, bool, IpAddr)> {
    match action {
        Action::AddAddress { interface, address } => Some((interface, true, *address)),
        Action::DelAddress { interface, address } => Some((interface, false, *address)),
        _ => None,
    }
}

/// Tunnel types a kernel of `release` cannot do. Kernels before 5.2 ignore the tunnel
/// attributes, so sending them would silently create an IPIP destination. An unknown release
/// is left to the kernel to judge.
fn missing_feature(release: Option<(u32, u32)>, action: &Action) -> Option<String> {
    let config = match action {
        Action::AddDestination { config, .. } | Action::SetDestination { config, .. } => config,
        _ => return None,
    };
    let needs = needed_release(config)?;
    let release = release?;
    (release < needs).then(|| {
        format!(
            "this kernel ({}.{}) cannot do it: {} tunnels need Linux {}.{}",
            release.0,
            release.1,
            tunnel_name(config),
            needs.0,
            needs.1
        )
    })
}

fn needed_release(config: &DestinationConfig) -> Option<(u32, u32)> {
    match config.forwarding {
        Forward::Tunnel {
            encapsulation: Encapsulation::Gue,
            ..
        } => Some((5, 2)),
        Forward::Tunnel {
            encapsulation: Encapsulation::Gre,
            ..
        } => Some((5, 3)),
        _ => None,
    }
}

fn tunnel_name(config: &DestinationConfig) -> &'static str {
    match config.forwarding {
        Forward::Tunnel { encapsulation, .. } => encapsulation.as_str(),
        _ => "ipip",
    }
}

/// `6.1.0-56-amd64` → `(6, 1)`.
pub fn parse_release(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.trim().split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn socket_detail(e: &SocketError) -> Option<String> {
    match e {
        SocketError::Kernel { message, .. } => message.clone(),
        other => Some(other.to_string()),
    }
}

fn ack_result(action: &Action, ack: Option<&Ack>) -> Result<(), ActionError> {
    match ack {
        Some(Ack { errno: 0, .. }) => Ok(()),
        Some(ack) => Err(action_error(action, ack.errno, ack.message.clone())),
        None => Err(action_error(
            action,
            libc::EPROTO,
            Some("the kernel sent no ack".into()),
        )),
    }
}

/// The error for `action`: what was being done, a hint for the errnos whose cause is known,
/// and the kernel's own text when it gave one.
fn action_error(action: &Action, errno: i32, detail: Option<String>) -> ActionError {
    let mut message = doing(action);
    if let Some(hint) = hint(action, errno) {
        message.push_str(": ");
        message.push_str(&hint);
    }
    if let Some(detail) = detail.filter(|d| !d.is_empty()) {
        message.push_str(&format!(" ({detail})"));
    }
    ActionError {
        errno: Errno(errno),
        message,
    }
}

fn hint(action: &Action, errno: i32) -> Option<String> {
    match (action, errno) {
        (_, libc::EPERM) => Some("needs CAP_NET_ADMIN".into()),
        (Action::AddService { config, .. } | Action::SetService { config, .. }, libc::ENOENT) => {
            let sched = config.scheduler.as_str();
            Some(if config.pe_name.is_empty() {
                format!("scheduler {sched} is not available: load ip_vs_{sched}")
            } else {
                let pe = &config.pe_name;
                format!(
                    "scheduler {sched} or persistence engine {pe} is not available: \
                     load ip_vs_{sched} and ip_vs_pe_{pe}"
                )
            })
        }
        _ => None,
    }
}

/// What `action` was doing, in words, naming the objects.
fn doing(action: &Action) -> String {
    match action {
        Action::EnsureInterface { name } => format!("creating or setting up link {name}"),
        Action::AddAddress { interface, address } => {
            format!("adding address {address} to {interface}")
        }
        Action::DelAddress { interface, address } => {
            format!("deleting address {address} from {interface}")
        }
        Action::AddService { key, .. } => format!("adding service {key}"),
        Action::SetService { key, .. } => format!("changing service {key}"),
        Action::DelService { key } => format!("deleting service {key}"),
        Action::AddDestination {
            service,
            destination,
            ..
        } => format!("adding destination {destination} to {service}"),
        Action::SetDestination {
            service,
            destination,
            ..
        } => format!("changing destination {destination} of {service}"),
        Action::DelDestination {
            service,
            destination,
        } => format!("deleting destination {destination} from {service}"),
        Action::SetSysctl { name, value } => format!("setting sysctl {name} to {value}"),
        Action::SetTimeouts { timeouts } => format!(
            "setting IPVS timeouts tcp {} tcpfin {} udp {}",
            timeouts.tcp, timeouts.tcp_fin, timeouts.udp
        ),
    }
}

#[derive(PartialEq)]
enum Channel {
    Ipvs,
    Address,
    Single,
}

fn channel(action: &Action) -> Channel {
    if address_change(action).is_some() {
        Channel::Address
    } else if codec::is_request(action) {
        Channel::Ipvs
    } else {
        Channel::Single
    }
}

impl Dataplane for KernelDataplane {
    fn observe(&mut self, request: &ObserveRequest) -> Result<NodeState, DataplaneError> {
        let kernel = |context: &str| {
            let context = context.to_owned();
            move |e: SocketError| {
                let mut context = context.clone();
                if e.errno() == libc::EPERM {
                    context.push_str(" needs CAP_NET_ADMIN");
                }
                if let Some(detail) = socket_detail(&e) {
                    context.push_str(&format!(" ({detail})"));
                }
                DataplaneError::Kernel {
                    errno: Errno(e.errno()),
                    context,
                }
            }
        };
        let (services, unreadable) = self.ipvs.services().map_err(kernel("dumping IPVS"))?;
        for u in unreadable {
            tracing::warn!("{u}; left out of the observed state");
        }
        let timeouts = self
            .ipvs
            .timeouts()
            .map_err(kernel("reading IPVS timeouts"))?;
        let interface = if request.interface.is_empty() {
            Default::default()
        } else {
            let count = request.vip_links.max(1);
            let (interface, located) = self
                .link
                .observe_spread(&request.interface, count)
                .map_err(kernel(&format!("reading link {}", request.interface)))?;
            self.vip = VipLinks {
                name: request.interface.clone(),
                count,
                located,
            };
            interface
        };
        let mut sysctls = BTreeMap::new();
        for name in &request.sysctls {
            let value = self.sysctls.read(name).map_err(|e| DataplaneError::Io {
                path: self
                    .sysctls
                    .path(name)
                    .unwrap_or_else(|_| std::path::PathBuf::from(name)),
                source: e,
            })?;
            if let Some(value) = value {
                sysctls.insert(name.clone(), value);
            }
        }
        Ok(NodeState {
            interface,
            services: services.into_iter().map(|s| (s.key, s)).collect(),
            sysctls,
            timeouts,
        })
    }

    fn apply(&mut self, action: &Action) -> Result<(), ActionError> {
        self.single(action)
    }

    /// Runs of consecutive IPVS actions go out pipelined, as do runs of address changes; the
    /// order of the actions is kept and every action gets its own result, timed by the answer
    /// to its `sendmsg`.
    fn apply_all(&mut self, actions: &[&Action]) -> Vec<Applied> {
        let mut results = Vec::with_capacity(actions.len());
        let mut start = 0;
        while start < actions.len() {
            let kind = channel(actions[start]);
            let mut end = start + 1;
            if kind != Channel::Single {
                while end < actions.len() && channel(actions[end]) == kind {
                    end += 1;
                }
            }
            let run = &actions[start..end];
            match kind {
                Channel::Ipvs => results.extend(self.ipvs_requests(run)),
                Channel::Address => results.extend(self.address_changes(run)),
                Channel::Single => results.push(Applied::now(self.single(actions[start]))),
            }
            start = end;
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ServiceConfig, ServiceKey};
    use balanced_schemas::v1::{Protocol, Scheduler};

    #[test]
    fn vip_addresses_go_to_their_hashed_link_and_leave_from_where_they_are() {
        let located: IpAddr = "198.18.39.16".parse().unwrap();
        let vip = VipLinks {
            name: "balanced0".into(),
            count: 16,
            located: HashMap::from([(located, 42)]),
        };
        let fresh: IpAddr = "198.18.0.1".parse().unwrap();
        // FNV-1a of 198.18.0.1 modulo 16 is 6 (pinned in link.rs's tests).
        assert_eq!(
            vip.target("balanced0", true, &fresh),
            Target::Name("balanced0-6".into())
        );
        assert_eq!(
            vip.target("balanced0", false, &fresh),
            Target::Name("balanced0-6".into())
        );
        assert_eq!(vip.target("balanced0", false, &located), Target::Index(42));
        assert_eq!(
            vip.target("other0", false, &located),
            Target::Name("other0".into())
        );
        let single = VipLinks {
            name: "balanced0".into(),
            count: 1,
            located: HashMap::new(),
        };
        assert_eq!(
            single.target("balanced0", true, &fresh),
            Target::Name("balanced0".into())
        );
    }

    #[test]
    fn kernel_releases_parse() {
        assert_eq!(parse_release("6.1.0-56-amd64\n"), Some((6, 1)));
        assert_eq!(parse_release("5.2.0"), Some((5, 2)));
        assert_eq!(parse_release("4.19.0+"), Some((4, 19)));
        assert_eq!(parse_release("garbage"), None);
    }

    #[test]
    fn missing_scheduler_is_named_with_the_module_to_load() {
        let action = Action::AddService {
            key: ServiceKey::Inet {
                protocol: Protocol::Tcp,
                vip: "198.51.100.10".parse().expect("ip"),
                port: 80,
            },
            config: ServiceConfig {
                scheduler: Scheduler::Mh,
                flags: 0,
                timeout: 0,
                netmask: u32::MAX,
                pe_name: String::new(),
            },
        };
        let e = action_error(&action, libc::ENOENT, None);
        assert_eq!(e.errno, Errno::ENOENT);
        assert_eq!(
            e.message,
            "adding service TCP 198.51.100.10:80: scheduler mh is not available: load ip_vs_mh"
        );
        let e = action_error(&action, libc::EPERM, Some("denied".into()));
        assert_eq!(
            e.message,
            "adding service TCP 198.51.100.10:80: needs CAP_NET_ADMIN (denied)"
        );
    }

    #[test]
    fn tunnels_the_running_kernel_lacks_are_refused_before_sending() {
        let tunnel = |encapsulation| Action::AddDestination {
            service: ServiceKey::Fwmark {
                family: crate::model::Family::V4,
                mark: 1,
            },
            destination: crate::model::DestinationKey {
                address: "192.0.2.1".parse().expect("ip"),
                port: 80,
            },
            config: DestinationConfig {
                forwarding: Forward::Tunnel {
                    encapsulation,
                    port: 6080,
                    checksum: Default::default(),
                },
                weight: 1,
                upper_threshold: 0,
                lower_threshold: 0,
            },
        };
        let gue = tunnel(Encapsulation::Gue);
        let gre = tunnel(Encapsulation::Gre);
        let ipip = tunnel(Encapsulation::Ipip);
        assert_eq!(
            missing_feature(Some((5, 1)), &gue).as_deref(),
            Some("this kernel (5.1) cannot do it: gue tunnels need Linux 5.2")
        );
        assert_eq!(missing_feature(Some((5, 2)), &gue), None);
        assert!(missing_feature(Some((5, 2)), &gre).is_some());
        assert_eq!(missing_feature(Some((5, 3)), &gre), None);
        assert_eq!(missing_feature(Some((4, 19)), &ipip), None);
        assert_eq!(missing_feature(None, &gre), None);
        assert_eq!(missing_feature(Some((6, 1)), &gre), None);
    }

    #[test]
    fn actions_are_routed_to_their_channel() {
        let set = Action::SetSysctl {
            name: "net.ipv4.vs.sloppy_tcp".into(),
            value: "1".into(),
        };
        let add = Action::AddAddress {
            interface: "balanced0".into(),
            address: "192.0.2.1".parse().expect("ip"),
        };
        let del = Action::DelService {
            key: ServiceKey::Fwmark {
                family: crate::model::Family::V4,
                mark: 1,
            },
        };
        assert!(channel(&set) == Channel::Single);
        assert!(channel(&add) == Channel::Address);
        assert!(channel(&del) == Channel::Ipvs);
        assert!(
            channel(&Action::EnsureInterface {
                name: "balanced0".into()
            }) == Channel::Single
        );
    }
}
