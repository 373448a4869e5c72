//! Observing and changing one pod's network namespace over rtnetlink, generic netlink (`fou`)
//! and `/proc/sys/net`. Every function here must run on a thread inside that namespace
//! ([`super::namespace::PodNamespace::run`]): the sockets and sysctl files it opens belong to the
//! namespace of the thread that opens them.
//!
//! Transport only: messages come from [`super::codec`] and [`crate::kernel::rtnl`]. What is
//! read back is limited to what balanced owns (see [`super::model`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use neli::consts::socket::NlFamily;

use crate::backend::codec::{self, DefaultRoute};
use crate::backend::model::{FouPort, PodFacts, PodNet, TunnelDevice, TunnelLink};
use crate::backend::plan::PodAction;
use crate::kernel::ipvs::codec as genl;
use crate::kernel::netlink::Ack;
use crate::kernel::rtnl::{self, RTM_NEWADDR, RTM_NEWLINK};
use crate::kernel::socket::{NetlinkSocket, SocketError};
use crate::kernel::sysctl::Sysctls;
use crate::model::Family;

const DEVICES: [TunnelDevice; 5] = [
    TunnelDevice::Tunl0,
    TunnelDevice::Sit0,
    TunnelDevice::Ip6tnl0,
    TunnelDevice::Gre0,
    TunnelDevice::Ip6gre0,
];

/// What balanced recorded adding in this namespace: addresses and FOU ports carry no mark of
/// their own in the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owned {
    pub addresses: BTreeSet<(TunnelDevice, IpAddr)>,
    pub fou_ports: BTreeSet<FouPort>,
}

/// One observation of a namespace.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// Balanced's objects, plus the desired addresses and ports already there (those are left
    /// alone but never claimed: see [`PodKernel::observe`]).
    pub net: PodNet,
    pub facts: PodFacts,
    /// Tunnel device → link index, for the devices that exist.
    pub devices: BTreeMap<TunnelDevice, u32>,
}

/// A failed action: the errno (the kernel's, or ENODEV for a missing device) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub errno: i32,
    pub text: String,
}

impl From<SocketError> for Failed {
    fn from(e: SocketError) -> Self {
        Failed {
            errno: e.errno(),
            text: e.to_string(),
        }
    }
}

pub struct PodKernel {
    route: NetlinkSocket,
    fou: Option<(NetlinkSocket, u16)>,
    sysctls: Sysctls,
}

fn kernel_error(ack: &Ack) -> SocketError {
    SocketError::Kernel {
        errno: ack.errno,
        message: ack.message.clone(),
    }
}

impl PodKernel {
    pub fn open() -> Result<Self, SocketError> {
        Ok(PodKernel {
            route: NetlinkSocket::open(NlFamily::Route)?,
            fou: None,
            sysctls: Sysctls::default(),
        })
    }

    /// The `fou` generic netlink family of this namespace; `ENOENT` without the `fou` module.
    fn fou(&mut self) -> Result<(&mut NetlinkSocket, u16), SocketError> {
        let fou = match self.fou.take() {
            Some(fou) => fou,
            None => {
                let mut socket = NetlinkSocket::open(NlFamily::Generic)?;
                let mut id = None;
                socket.request(
                    |out, seq| genl::encode_family_request(out, codec::FOU_FAMILY_NAME, seq),
                    false,
                    |m| {
                        id = Some(genl::family_id(m.payload)?);
                        Ok(())
                    },
                )?;
                let id = id.ok_or(SocketError::Kernel {
                    errno: libc::ENOENT,
                    message: Some("no fou family".into()),
                })?;
                (socket, id)
            }
        };
        let (socket, id) = self.fou.insert(fou);
        Ok((socket, *id))
    }

    /// Reads the namespace. `desired` says which devices, sysctls and ports matter; `owned` is
    /// the record of what balanced added. An address or port that is desired and present counts
    /// as present whoever added it; one not desired counts only when balanced added it, so only
    /// those are ever removed.
    pub fn observe(&mut self, desired: &PodNet, owned: &Owned) -> Result<Observation, SocketError> {
        let mut obs = Observation::default();
        let mut links: BTreeMap<u32, (String, bool, Option<u32>)> = BTreeMap::new();
        self.route.request(codec::encode_dump_links, true, |m| {
            if m.header.kind == RTM_NEWLINK {
                let link = rtnl::decode_link(m.payload)?;
                let mtu = codec::link_mtu(m.payload)?;
                links.insert(link.index, (link.name, link.up, mtu));
            }
            Ok(())
        })?;
        let mut by_index: BTreeMap<u32, TunnelDevice> = BTreeMap::new();
        for (index, (name, up, mtu)) in &links {
            if let Some(device) = DEVICES.iter().find(|d| d.name() == name) {
                by_index.insert(*index, *device);
                obs.devices.insert(*device, *index);
                if desired.tunnels.contains_key(device) {
                    obs.net.tunnels.insert(
                        *device,
                        TunnelLink {
                            up: *up,
                            mtu: mtu.unwrap_or(0),
                        },
                    );
                }
            }
        }
        let mut routes: Vec<DefaultRoute> = Vec::new();
        self.route.request(codec::encode_dump_routes, true, |m| {
            if let Some(r) = codec::decode_default_route(m.payload)? {
                routes.push(r);
            }
            Ok(())
        })?;
        for r in routes {
            if r.is_ours() {
                obs.net.routes.insert(r.family, r.route);
            } else if r.is_main() {
                obs.facts.default_routes.entry(r.family).or_insert(r.route);
            }
        }
        obs.facts.primary_mtu = [Family::V4, Family::V6]
            .iter()
            .filter_map(|f| obs.facts.default_routes.get(f))
            .find_map(|r| links.get(&r.oif).and_then(|l| l.2));
        let mut rules = BTreeSet::new();
        self.route.request(codec::encode_dump_rules, true, |m| {
            if let Some(vip) = codec::decode_rule(m.payload)?.and_then(|r| r.ours()) {
                rules.insert(vip);
            }
            Ok(())
        })?;
        obs.net.rules = rules;
        let mut addresses = BTreeSet::new();
        self.route.request(rtnl::encode_dump_addresses, true, |m| {
            if m.header.kind == RTM_NEWADDR
                && let Some(a) = rtnl::decode_address(m.payload)?
                && a.is_host()
                && let Some(device) = by_index.get(&a.index)
            {
                addresses.insert((*device, a.address));
            }
            Ok(())
        })?;
        obs.net.addresses = addresses
            .into_iter()
            .filter(|a| owned.addresses.contains(a) || desired.addresses.contains(a))
            .collect();
        if !desired.fou_ports.is_empty() || !owned.fou_ports.is_empty() {
            let mut ports = BTreeSet::new();
            let (socket, id) = self.fou()?;
            socket.request(
                |out, seq| codec::encode_dump_fou(out, id, seq),
                true,
                |m| {
                    if let Some(port) = codec::decode_fou(m.payload)? {
                        ports.insert(port);
                    }
                    Ok(())
                },
            )?;
            obs.net.fou_ports = ports
                .into_iter()
                .filter(|p| owned.fou_ports.contains(p) || desired.fou_ports.contains(p))
                .collect();
        }
        for conf in desired.rp_filter.keys() {
            let name = format!("net.ipv4.conf.{conf}.rp_filter");
            if let Ok(Some(value)) = self.sysctls.read(&name)
                && let Ok(value) = value.parse()
            {
                obs.net.rp_filter.insert(conf.clone(), value);
            }
        }
        Ok(obs)
    }

    fn one(&mut self, encode: impl FnMut(usize, &mut Vec<u8>, u32)) -> Result<(), SocketError> {
        match self.route.batch(1, encode).acks.first() {
            Some(Ack { errno: 0, .. }) => Ok(()),
            Some(ack) => Err(kernel_error(ack)),
            None => Err(SocketError::Kernel {
                errno: libc::EPROTO,
                message: Some("no ack".into()),
            }),
        }
    }

    /// Carries out one action. `devices` are the link indexes [`Self::observe`] found.
    pub fn apply(
        &mut self,
        action: &PodAction,
        devices: &BTreeMap<TunnelDevice, u32>,
    ) -> Result<(), Failed> {
        let index = |device: &TunnelDevice| {
            devices.get(device).copied().ok_or_else(|| Failed {
                errno: libc::ENODEV,
                text: format!(
                    "no {device} in the namespace: load module {} on the node",
                    device.module()
                ),
            })
        };
        let text = Failed::from;
        match action {
            PodAction::SetTunnel { device, link } => {
                let i = index(device)?;
                self.one(|_, out, seq| codec::encode_set_link_up(out, i, link.mtu, seq))
                    .map_err(text)
            }
            PodAction::AddAddress { device, vip } | PodAction::DelAddress { device, vip } => {
                let add = matches!(action, PodAction::AddAddress { .. });
                let i = index(device)?;
                self.one(|_, out, seq| rtnl::encode_address(out, add, i, vip, seq))
                    .map_err(text)
            }
            PodAction::SetMssRoute { family, route } | PodAction::DelMssRoute { family, route } => {
                let add = matches!(action, PodAction::SetMssRoute { .. });
                self.one(|_, out, seq| codec::encode_mss_route(out, add, *family, route, seq))
                    .map_err(text)
            }
            PodAction::AddRule { vip } | PodAction::DelRule { vip } => {
                let add = matches!(action, PodAction::AddRule { .. });
                self.one(|_, out, seq| codec::encode_rule(out, add, vip, seq))
                    .map_err(text)
            }
            PodAction::AddFouPort { port } | PodAction::DelFouPort { port } => {
                let add = matches!(action, PodAction::AddFouPort { .. });
                let (socket, id) = self.fou().map_err(|e| match e.errno() {
                    libc::ENOENT => Failed {
                        errno: libc::ENOENT,
                        text: "no fou family: load module fou on the node".to_owned(),
                    },
                    _ => Failed::from(e),
                })?;
                match socket
                    .batch(1, |_, out, seq| codec::encode_fou(out, id, add, port, seq))
                    .acks
                    .first()
                {
                    Some(Ack { errno: 0, .. }) => Ok(()),
                    Some(ack) => Err(Failed::from(kernel_error(ack))),
                    None => Err(Failed {
                        errno: libc::EPROTO,
                        text: "no ack".to_owned(),
                    }),
                }
            }
            PodAction::SetRpFilter { conf, value } => self
                .sysctls
                .write(
                    &format!("net.ipv4.conf.{conf}.rp_filter"),
                    &value.to_string(),
                )
                .map_err(|e| Failed {
                    errno: e.raw_os_error().unwrap_or(libc::EIO),
                    text: e.to_string(),
                }),
        }
    }
}
