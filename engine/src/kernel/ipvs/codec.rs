//! The IPVS generic-netlink codec: commands and attributes of `include/uapi/linux/ip_vs.h` as
//! typed values, their byte encoding, and the conversion to and from the engine's model.
//!
//! Pure: no sockets. Every attribute the kernel defines has a variant; an attribute this code
//! does not know (a newer kernel's) is kept as `Other` and never makes a message undecodable.
//! Conversions to the model fail with an error naming the missing or unexpected attribute.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use balanced_schemas::v1::{Encapsulation, Protocol, Scheduler, TunnelChecksum};

use crate::dataplane::Action;
use crate::kernel::netlink::{self, AttrReader, AttrWriter, DecodeError, RawAttr};
use crate::model::{
    Destination, DestinationConfig, DestinationKey, FLAG_HASHED, Family, Forward, IpvsTimeouts,
    ServiceConfig, ServiceKey, Stats, VirtualService,
};

/// The generic netlink family version IPVS speaks.
pub const VERSION: u8 = 1;
/// `struct genlmsghdr`: cmd, version, reserved.
pub const GENL_HEADER_LEN: usize = 4;

const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;
const IPPROTO_TCP: u16 = libc::IPPROTO_TCP as u16;
const IPPROTO_UDP: u16 = libc::IPPROTO_UDP as u16;
const IPPROTO_SCTP: u16 = libc::IPPROTO_SCTP as u16;

/// `IPVS_CMD_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    NewService,
    SetService,
    DelService,
    GetService,
    NewDest,
    SetDest,
    DelDest,
    GetDest,
    NewDaemon,
    DelDaemon,
    GetDaemon,
    SetConfig,
    GetConfig,
    /// Only in the kernel's reply to `GetInfo`.
    SetInfo,
    GetInfo,
    Zero,
    Flush,
    Other(u8),
}

impl Command {
    const TABLE: [(Command, u8); 17] = [
        (Command::NewService, 1),
        (Command::SetService, 2),
        (Command::DelService, 3),
        (Command::GetService, 4),
        (Command::NewDest, 5),
        (Command::SetDest, 6),
        (Command::DelDest, 7),
        (Command::GetDest, 8),
        (Command::NewDaemon, 9),
        (Command::DelDaemon, 10),
        (Command::GetDaemon, 11),
        (Command::SetConfig, 12),
        (Command::GetConfig, 13),
        (Command::SetInfo, 14),
        (Command::GetInfo, 15),
        (Command::Zero, 16),
        (Command::Flush, 17),
    ];

    pub fn value(self) -> u8 {
        match self {
            Command::Other(v) => v,
            known => Self::TABLE
                .iter()
                .find(|(c, _)| *c == known)
                .map(|(_, v)| *v)
                .unwrap_or_default(),
        }
    }

    pub fn from_value(v: u8) -> Command {
        Self::TABLE
            .iter()
            .find(|(_, n)| *n == v)
            .map(|(c, _)| *c)
            .unwrap_or(Command::Other(v))
    }
}

/// An address as IPVS carries it: `union nf_inet_addr`, 16 bytes, IPv4 in the first 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InetAddr(pub [u8; 16]);

impl InetAddr {
    pub fn from_ip(ip: &IpAddr) -> Self {
        let mut b = [0u8; 16];
        match ip {
            IpAddr::V4(a) => b[..4].copy_from_slice(&a.octets()),
            IpAddr::V6(a) => b = a.octets(),
        }
        InetAddr(b)
    }

    /// The address read as `af` (`AF_INET` / `AF_INET6`).
    pub fn to_ip(self, af: u16) -> Option<IpAddr> {
        match af {
            AF_INET => Some(IpAddr::V4(Ipv4Addr::new(
                self.0[0], self.0[1], self.0[2], self.0[3],
            ))),
            AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(self.0))),
            _ => None,
        }
    }

    fn decode(context: &'static str, kind: u16, p: &[u8]) -> Result<Self, DecodeError> {
        let mut b = [0u8; 16];
        match p.len() {
            4 | 16 => {
                b[..p.len()].copy_from_slice(p);
                Ok(InetAddr(b))
            }
            len => Err(DecodeError::AttributeLength {
                context,
                kind,
                len,
                expected: "4 or 16 (address)",
            }),
        }
    }
}

/// `IPVS_STATS_ATTR_*`. In `STATS` the counters are u32 except the byte counts (u64); in
/// `STATS64` all are u64. Values are held as u64 either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsAttr {
    Connections(u64),
    PacketsIn(u64),
    PacketsOut(u64),
    BytesIn(u64),
    BytesOut(u64),
    ConnectionRate(u64),
    PacketRateIn(u64),
    PacketRateOut(u64),
    ByteRateIn(u64),
    ByteRateOut(u64),
    Other(RawAttr),
}

/// `IPVS_SVC_ATTR_*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceAttr {
    Family(u16),
    Protocol(u16),
    Address(InetAddr),
    /// Host order here; network order on the wire.
    Port(u16),
    Fwmark(u32),
    Scheduler(String),
    /// `struct ip_vs_flags`: the kernel applies `(old & !mask) | (flags & mask)`.
    Flags {
        flags: u32,
        mask: u32,
    },
    Timeout(u32),
    Netmask(u32),
    Stats(Vec<StatsAttr>),
    PeName(String),
    Stats64(Vec<StatsAttr>),
    Other(RawAttr),
}

/// `IPVS_DEST_ATTR_*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestAttr {
    Address(InetAddr),
    /// Host order here; network order on the wire.
    Port(u16),
    ForwardMethod(u32),
    Weight(u32),
    UpperThreshold(u32),
    LowerThreshold(u32),
    ActiveConnections(u32),
    InactiveConnections(u32),
    PersistentConnections(u32),
    Stats(Vec<StatsAttr>),
    AddressFamily(u16),
    Stats64(Vec<StatsAttr>),
    TunnelType(u8),
    /// Host order here; network order on the wire.
    TunnelPort(u16),
    TunnelFlags(u16),
    Other(RawAttr),
}

/// A top-level attribute (`IPVS_CMD_ATTR_*`, or `IPVS_INFO_ATTR_*` in a `SetInfo` reply —
/// the two sets share numbers, the command tells them apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpvsAttr {
    Service(Vec<ServiceAttr>),
    Destination(Vec<DestAttr>),
    TimeoutTcp(u32),
    TimeoutTcpFin(u32),
    TimeoutUdp(u32),
    /// `IPVS_INFO_ATTR_VERSION` (e.g. 0x010201 = 1.2.1).
    Version(u32),
    ConnectionTableSize(u32),
    /// The sync daemon's nested attributes, and anything newer.
    Other(RawAttr),
}

/// One IPVS message: the generic netlink header's command and version, and the attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsMessage {
    pub command: Command,
    pub version: u8,
    pub attributes: Vec<IpvsAttr>,
}

mod kind {
    pub const CMD_SERVICE: u16 = 1;
    pub const CMD_DEST: u16 = 2;
    pub const CMD_TIMEOUT_TCP: u16 = 4;
    pub const CMD_TIMEOUT_TCP_FIN: u16 = 5;
    pub const CMD_TIMEOUT_UDP: u16 = 6;
    pub const INFO_VERSION: u16 = 1;
    pub const INFO_CONN_TAB_SIZE: u16 = 2;

    pub const SVC_AF: u16 = 1;
    pub const SVC_PROTOCOL: u16 = 2;
    pub const SVC_ADDR: u16 = 3;
    pub const SVC_PORT: u16 = 4;
    pub const SVC_FWMARK: u16 = 5;
    pub const SVC_SCHED_NAME: u16 = 6;
    pub const SVC_FLAGS: u16 = 7;
    pub const SVC_TIMEOUT: u16 = 8;
    pub const SVC_NETMASK: u16 = 9;
    pub const SVC_STATS: u16 = 10;
    pub const SVC_PE_NAME: u16 = 11;
    pub const SVC_STATS64: u16 = 12;

    pub const DEST_ADDR: u16 = 1;
    pub const DEST_PORT: u16 = 2;
    pub const DEST_FWD_METHOD: u16 = 3;
    pub const DEST_WEIGHT: u16 = 4;
    pub const DEST_U_THRESH: u16 = 5;
    pub const DEST_L_THRESH: u16 = 6;
    pub const DEST_ACTIVE_CONNS: u16 = 7;
    pub const DEST_INACT_CONNS: u16 = 8;
    pub const DEST_PERSIST_CONNS: u16 = 9;
    pub const DEST_STATS: u16 = 10;
    pub const DEST_ADDR_FAMILY: u16 = 11;
    pub const DEST_STATS64: u16 = 12;
    pub const DEST_TUN_TYPE: u16 = 13;
    pub const DEST_TUN_PORT: u16 = 14;
    pub const DEST_TUN_FLAGS: u16 = 15;

    pub const STATS_CONNS: u16 = 1;
    pub const STATS_INPKTS: u16 = 2;
    pub const STATS_OUTPKTS: u16 = 3;
    pub const STATS_INBYTES: u16 = 4;
    pub const STATS_OUTBYTES: u16 = 5;
    pub const STATS_CPS: u16 = 6;
    pub const STATS_INPPS: u16 = 7;
    pub const STATS_OUTPPS: u16 = 8;
    pub const STATS_INBPS: u16 = 9;
    pub const STATS_OUTBPS: u16 = 10;
}

// ---------------------------------------------------------------------------------------------
// Encoding

impl IpvsMessage {
    pub fn new(command: Command, attributes: Vec<IpvsAttr>) -> Self {
        IpvsMessage {
            command,
            version: VERSION,
            attributes,
        }
    }

    /// Appends this message as one netlink message of generic-netlink `family` to `out`.
    pub fn encode(&self, out: &mut Vec<u8>, family: u16, flags: u16, sequence: u32) {
        netlink::push_message(out, family, flags, sequence, |out| {
            out.extend_from_slice(&[self.command.value(), self.version, 0, 0]);
            let mut w = AttrWriter::new(out);
            for a in &self.attributes {
                encode_top(&mut w, a);
            }
        });
    }

    /// Decodes a generic netlink payload (after the netlink header).
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        if payload.len() < GENL_HEADER_LEN {
            return Err(DecodeError::Truncated {
                what: "generic netlink header",
                len: payload.len(),
                need: GENL_HEADER_LEN,
            });
        }
        let command = Command::from_value(payload[0]);
        let info = matches!(command, Command::SetInfo | Command::GetInfo);
        let r = AttrReader { context: "IPVS" };
        let mut attributes = Vec::new();
        for (k, p) in netlink::attributes(&payload[GENL_HEADER_LEN..])? {
            attributes.push(match (info, k) {
                (true, kind::INFO_VERSION) => IpvsAttr::Version(r.u32(k, p)?),
                (true, kind::INFO_CONN_TAB_SIZE) => IpvsAttr::ConnectionTableSize(r.u32(k, p)?),
                (false, kind::CMD_SERVICE) => IpvsAttr::Service(decode_service(p)?),
                (false, kind::CMD_DEST) => IpvsAttr::Destination(decode_dest(p)?),
                (false, kind::CMD_TIMEOUT_TCP) => IpvsAttr::TimeoutTcp(r.u32(k, p)?),
                (false, kind::CMD_TIMEOUT_TCP_FIN) => IpvsAttr::TimeoutTcpFin(r.u32(k, p)?),
                (false, kind::CMD_TIMEOUT_UDP) => IpvsAttr::TimeoutUdp(r.u32(k, p)?),
                _ => IpvsAttr::Other(raw(k, p)),
            });
        }
        Ok(IpvsMessage {
            command,
            version: payload[1],
            attributes,
        })
    }
}

fn raw(kind: u16, p: &[u8]) -> RawAttr {
    RawAttr {
        kind,
        payload: p.to_vec(),
    }
}

fn encode_top(w: &mut AttrWriter<'_>, a: &IpvsAttr) {
    match a {
        IpvsAttr::Service(attrs) => w.nested(kind::CMD_SERVICE, |n| {
            attrs.iter().for_each(|a| encode_service(n, a))
        }),
        IpvsAttr::Destination(attrs) => w.nested(kind::CMD_DEST, |n| {
            attrs.iter().for_each(|a| encode_dest(n, a))
        }),
        IpvsAttr::TimeoutTcp(v) => w.u32(kind::CMD_TIMEOUT_TCP, *v),
        IpvsAttr::TimeoutTcpFin(v) => w.u32(kind::CMD_TIMEOUT_TCP_FIN, *v),
        IpvsAttr::TimeoutUdp(v) => w.u32(kind::CMD_TIMEOUT_UDP, *v),
        IpvsAttr::Version(v) => w.u32(kind::INFO_VERSION, *v),
        IpvsAttr::ConnectionTableSize(v) => w.u32(kind::INFO_CONN_TAB_SIZE, *v),
        IpvsAttr::Other(r) => w.bytes(r.kind, &r.payload),
    }
}

fn encode_service(w: &mut AttrWriter<'_>, a: &ServiceAttr) {
    match a {
        ServiceAttr::Family(v) => w.u16(kind::SVC_AF, *v),
        ServiceAttr::Protocol(v) => w.u16(kind::SVC_PROTOCOL, *v),
        ServiceAttr::Address(v) => w.bytes(kind::SVC_ADDR, &v.0),
        ServiceAttr::Port(v) => w.be16(kind::SVC_PORT, *v),
        ServiceAttr::Fwmark(v) => w.u32(kind::SVC_FWMARK, *v),
        ServiceAttr::Scheduler(v) => w.string(kind::SVC_SCHED_NAME, v),
        ServiceAttr::Flags { flags, mask } => {
            let mut b = flags.to_ne_bytes().to_vec();
            b.extend_from_slice(&mask.to_ne_bytes());
            w.bytes(kind::SVC_FLAGS, &b);
        }
        ServiceAttr::Timeout(v) => w.u32(kind::SVC_TIMEOUT, *v),
        ServiceAttr::Netmask(v) => w.u32(kind::SVC_NETMASK, *v),
        ServiceAttr::Stats(s) => w.nested(kind::SVC_STATS, |n| encode_stats(n, s, false)),
        ServiceAttr::PeName(v) => w.string(kind::SVC_PE_NAME, v),
        ServiceAttr::Stats64(s) => w.nested(kind::SVC_STATS64, |n| encode_stats(n, s, true)),
        ServiceAttr::Other(r) => w.bytes(r.kind, &r.payload),
    }
}

fn encode_dest(w: &mut AttrWriter<'_>, a: &DestAttr) {
    match a {
        DestAttr::Address(v) => w.bytes(kind::DEST_ADDR, &v.0),
        DestAttr::Port(v) => w.be16(kind::DEST_PORT, *v),
        DestAttr::ForwardMethod(v) => w.u32(kind::DEST_FWD_METHOD, *v),
        DestAttr::Weight(v) => w.u32(kind::DEST_WEIGHT, *v),
        DestAttr::UpperThreshold(v) => w.u32(kind::DEST_U_THRESH, *v),
        DestAttr::LowerThreshold(v) => w.u32(kind::DEST_L_THRESH, *v),
        DestAttr::ActiveConnections(v) => w.u32(kind::DEST_ACTIVE_CONNS, *v),
        DestAttr::InactiveConnections(v) => w.u32(kind::DEST_INACT_CONNS, *v),
        DestAttr::PersistentConnections(v) => w.u32(kind::DEST_PERSIST_CONNS, *v),
        DestAttr::Stats(s) => w.nested(kind::DEST_STATS, |n| encode_stats(n, s, false)),
        DestAttr::AddressFamily(v) => w.u16(kind::DEST_ADDR_FAMILY, *v),
        DestAttr::Stats64(s) => w.nested(kind::DEST_STATS64, |n| encode_stats(n, s, true)),
        DestAttr::TunnelType(v) => w.u8(kind::DEST_TUN_TYPE, *v),
        DestAttr::TunnelPort(v) => w.be16(kind::DEST_TUN_PORT, *v),
        DestAttr::TunnelFlags(v) => w.u16(kind::DEST_TUN_FLAGS, *v),
        DestAttr::Other(r) => w.bytes(r.kind, &r.payload),
    }
}

fn encode_stats(w: &mut AttrWriter<'_>, stats: &[StatsAttr], wide: bool) {
    for s in stats {
        let (k, v, is_u64) = match s {
            StatsAttr::Connections(v) => (kind::STATS_CONNS, *v, wide),
            StatsAttr::PacketsIn(v) => (kind::STATS_INPKTS, *v, wide),
            StatsAttr::PacketsOut(v) => (kind::STATS_OUTPKTS, *v, wide),
            StatsAttr::BytesIn(v) => (kind::STATS_INBYTES, *v, true),
            StatsAttr::BytesOut(v) => (kind::STATS_OUTBYTES, *v, true),
            StatsAttr::ConnectionRate(v) => (kind::STATS_CPS, *v, wide),
            StatsAttr::PacketRateIn(v) => (kind::STATS_INPPS, *v, wide),
            StatsAttr::PacketRateOut(v) => (kind::STATS_OUTPPS, *v, wide),
            StatsAttr::ByteRateIn(v) => (kind::STATS_INBPS, *v, wide),
            StatsAttr::ByteRateOut(v) => (kind::STATS_OUTBPS, *v, wide),
            StatsAttr::Other(r) => {
                w.bytes(r.kind, &r.payload);
                continue;
            }
        };
        if is_u64 {
            w.u64(k, v);
        } else {
            // The 32-bit set carries these counters truncated, as the kernel does.
            w.u32(k, v as u32);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

fn decode_service(buf: &[u8]) -> Result<Vec<ServiceAttr>, DecodeError> {
    let r = AttrReader {
        context: "IPVS service",
    };
    netlink::attributes(buf)?
        .into_iter()
        .map(|(k, p)| {
            Ok(match k {
                kind::SVC_AF => ServiceAttr::Family(r.u16(k, p)?),
                kind::SVC_PROTOCOL => ServiceAttr::Protocol(r.u16(k, p)?),
                kind::SVC_ADDR => ServiceAttr::Address(InetAddr::decode(r.context, k, p)?),
                kind::SVC_PORT => ServiceAttr::Port(r.be16(k, p)?),
                kind::SVC_FWMARK => ServiceAttr::Fwmark(r.u32(k, p)?),
                kind::SVC_SCHED_NAME => ServiceAttr::Scheduler(r.string(k, p)?),
                kind::SVC_FLAGS => {
                    if p.len() != 8 {
                        return Err(DecodeError::AttributeLength {
                            context: r.context,
                            kind: k,
                            len: p.len(),
                            expected: "8 (flags, mask)",
                        });
                    }
                    ServiceAttr::Flags {
                        flags: r.u32(k, &p[..4])?,
                        mask: r.u32(k, &p[4..])?,
                    }
                }
                kind::SVC_TIMEOUT => ServiceAttr::Timeout(r.u32(k, p)?),
                kind::SVC_NETMASK => ServiceAttr::Netmask(r.u32(k, p)?),
                kind::SVC_STATS => ServiceAttr::Stats(decode_stats(p)?),
                kind::SVC_PE_NAME => ServiceAttr::PeName(r.string(k, p)?),
                kind::SVC_STATS64 => ServiceAttr::Stats64(decode_stats(p)?),
                _ => ServiceAttr::Other(raw(k, p)),
            })
        })
        .collect()
}

fn decode_dest(buf: &[u8]) -> Result<Vec<DestAttr>, DecodeError> {
    let r = AttrReader {
        context: "IPVS destination",
    };
    netlink::attributes(buf)?
        .into_iter()
        .map(|(k, p)| {
            Ok(match k {
                kind::DEST_ADDR => DestAttr::Address(InetAddr::decode(r.context, k, p)?),
                kind::DEST_PORT => DestAttr::Port(r.be16(k, p)?),
                kind::DEST_FWD_METHOD => DestAttr::ForwardMethod(r.u32(k, p)?),
                kind::DEST_WEIGHT => DestAttr::Weight(r.u32(k, p)?),
                kind::DEST_U_THRESH => DestAttr::UpperThreshold(r.u32(k, p)?),
                kind::DEST_L_THRESH => DestAttr::LowerThreshold(r.u32(k, p)?),
                kind::DEST_ACTIVE_CONNS => DestAttr::ActiveConnections(r.u32(k, p)?),
                kind::DEST_INACT_CONNS => DestAttr::InactiveConnections(r.u32(k, p)?),
                kind::DEST_PERSIST_CONNS => DestAttr::PersistentConnections(r.u32(k, p)?),
                kind::DEST_STATS => DestAttr::Stats(decode_stats(p)?),
                kind::DEST_ADDR_FAMILY => DestAttr::AddressFamily(r.u16(k, p)?),
                kind::DEST_STATS64 => DestAttr::Stats64(decode_stats(p)?),
                kind::DEST_TUN_TYPE => DestAttr::TunnelType(r.u8(k, p)?),
                kind::DEST_TUN_PORT => DestAttr::TunnelPort(r.be16(k, p)?),
                kind::DEST_TUN_FLAGS => DestAttr::TunnelFlags(r.u16(k, p)?),
                _ => DestAttr::Other(raw(k, p)),
            })
        })
        .collect()
}

fn decode_stats(buf: &[u8]) -> Result<Vec<StatsAttr>, DecodeError> {
    let r = AttrReader {
        context: "IPVS stats",
    };
    netlink::attributes(buf)?
        .into_iter()
        .map(|(k, p)| {
            let value = || match p.len() {
                4 => r.u32(k, p).map(u64::from),
                _ => r.u64(k, p),
            };
            Ok(match k {
                kind::STATS_CONNS => StatsAttr::Connections(value()?),
                kind::STATS_INPKTS => StatsAttr::PacketsIn(value()?),
                kind::STATS_OUTPKTS => StatsAttr::PacketsOut(value()?),
                kind::STATS_INBYTES => StatsAttr::BytesIn(value()?),
                kind::STATS_OUTBYTES => StatsAttr::BytesOut(value()?),
                kind::STATS_CPS => StatsAttr::ConnectionRate(value()?),
                kind::STATS_INPPS => StatsAttr::PacketRateIn(value()?),
                kind::STATS_OUTPPS => StatsAttr::PacketRateOut(value()?),
                kind::STATS_INBPS => StatsAttr::ByteRateIn(value()?),
                kind::STATS_OUTBPS => StatsAttr::ByteRateOut(value()?),
                _ => StatsAttr::Other(raw(k, p)),
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Model → attributes

const FWD_MASQ: u32 = 0;
const FWD_LOCALNODE: u32 = 1;
const FWD_TUNNEL: u32 = 2;
const FWD_DROUTE: u32 = 3;
const FWD_BYPASS: u32 = 4;
/// `IP_VS_CONN_F_FWD_MASK`: the kernel reports more connection flags than the method.
const FWD_MASK: u32 = 0x7;

fn af(family: Family) -> u16 {
    match family {
        Family::V4 => AF_INET,
        Family::V6 => AF_INET6,
    }
}

fn protocol_number(p: Protocol) -> u16 {
    match p {
        Protocol::Tcp => IPPROTO_TCP,
        Protocol::Udp => IPPROTO_UDP,
        Protocol::Sctp => IPPROTO_SCTP,
    }
}

/// The attributes that identify a service (what `DEL_SERVICE` and every destination command
/// carry).
pub fn service_identity(key: &ServiceKey) -> Vec<ServiceAttr> {
    let mut attrs = vec![ServiceAttr::Family(af(key.family()))];
    match key {
        ServiceKey::Inet {
            protocol,
            vip,
            port,
        } => {
            attrs.push(ServiceAttr::Protocol(protocol_number(*protocol)));
            attrs.push(ServiceAttr::Address(InetAddr::from_ip(vip)));
            attrs.push(ServiceAttr::Port(*port));
        }
        ServiceKey::Fwmark { mark, .. } => attrs.push(ServiceAttr::Fwmark(*mark)),
    }
    attrs
}

/// A complete service specification (`NEW_SERVICE` / `SET_SERVICE` need all of scheduler,
/// flags, timeout and netmask). Flags go with mask `0xffffffff` so they are set exactly.
pub fn service_spec(key: &ServiceKey, config: &ServiceConfig) -> Vec<ServiceAttr> {
    let mut attrs = service_identity(key);
    attrs.push(ServiceAttr::Scheduler(config.scheduler.as_str().to_owned()));
    if !config.pe_name.is_empty() {
        attrs.push(ServiceAttr::PeName(config.pe_name.clone()));
    }
    attrs.push(ServiceAttr::Flags {
        flags: config.flags & !FLAG_HASHED,
        mask: u32::MAX,
    });
    attrs.push(ServiceAttr::Timeout(config.timeout));
    attrs.push(ServiceAttr::Netmask(netmask_to_wire(
        key.family(),
        config.netmask,
    )));
    attrs
}

/// The model holds an IPv4 persistence netmask as the mask's numeric value (`0xffffff00` for
/// `/24`); on the wire it is a `__be32`, so its bytes are the dotted mask in network order.
/// An IPv6 netmask is a prefix length, a plain u32 both ways.
fn netmask_to_wire(family: Family, netmask: u32) -> u32 {
    match family {
        Family::V4 => u32::from_ne_bytes(netmask.to_be_bytes()),
        Family::V6 => netmask,
    }
}

fn netmask_from_wire(family: Family, wire: u32) -> u32 {
    match family {
        Family::V4 => u32::from_be_bytes(wire.to_ne_bytes()),
        Family::V6 => wire,
    }
}

/// The attributes that identify a destination within a service; the family is always sent so
/// a destination of the other family (tunnel only) is understood.
pub fn destination_identity(key: &DestinationKey) -> Vec<DestAttr> {
    vec![
        DestAttr::AddressFamily(af(Family::of(&key.address))),
        DestAttr::Address(InetAddr::from_ip(&key.address)),
        DestAttr::Port(key.port),
    ]
}

/// A complete destination specification (`NEW_DEST` / `SET_DEST` need forwarding method,
/// weight and both thresholds). Tunnel attributes are sent only for tunnel forwarding, so a
/// kernel older than 5.2 is never asked for what it cannot do unless a tunnel type needs it.
pub fn destination_spec(key: &DestinationKey, config: &DestinationConfig) -> Vec<DestAttr> {
    let mut attrs = destination_identity(key);
    let method = match config.forwarding {
        Forward::Masquerade => FWD_MASQ,
        Forward::Local => FWD_LOCALNODE,
        Forward::Tunnel { .. } => FWD_TUNNEL,
        Forward::Direct => FWD_DROUTE,
        Forward::Bypass => FWD_BYPASS,
    };
    attrs.push(DestAttr::ForwardMethod(method));
    attrs.push(DestAttr::Weight(config.weight));
    if let Forward::Tunnel {
        encapsulation,
        port,
        checksum,
    } = config.forwarding
    {
        attrs.push(DestAttr::TunnelType(tunnel_type(encapsulation)));
        attrs.push(DestAttr::TunnelPort(port));
        attrs.push(DestAttr::TunnelFlags(tunnel_flags(checksum)));
    }
    attrs.push(DestAttr::UpperThreshold(config.upper_threshold));
    attrs.push(DestAttr::LowerThreshold(config.lower_threshold));
    attrs
}

fn tunnel_type(e: Encapsulation) -> u8 {
    match e {
        Encapsulation::Ipip => 0,
        Encapsulation::Gue => 1,
        Encapsulation::Gre => 2,
    }
}

fn tunnel_flags(c: TunnelChecksum) -> u16 {
    match c {
        TunnelChecksum::None => 0,
        TunnelChecksum::Csum => 1,
        TunnelChecksum::Remcsum => 2,
    }
}

/// Whether [`request_for`] has a request for `action`, without building it.
pub fn is_request(action: &Action) -> bool {
    !matches!(
        action,
        Action::EnsureInterface { .. }
            | Action::AddAddress { .. }
            | Action::DelAddress { .. }
            | Action::SetSysctl { .. }
    )
}

/// The IPVS request that carries out `action`; `None` for actions that are not IPVS's
/// (addresses, links, sysctls).
pub fn request_for(action: &Action) -> Option<IpvsMessage> {
    let svc = |key: &ServiceKey| IpvsAttr::Service(service_identity(key));
    let (command, attributes) = match action {
        Action::AddService { key, config } => (
            Command::NewService,
            vec![IpvsAttr::Service(service_spec(key, config))],
        ),
        Action::SetService { key, config } => (
            Command::SetService,
            vec![IpvsAttr::Service(service_spec(key, config))],
        ),
        Action::DelService { key } => (Command::DelService, vec![svc(key)]),
        Action::AddDestination {
            service,
            destination,
            config,
        } => (
            Command::NewDest,
            vec![
                svc(service),
                IpvsAttr::Destination(destination_spec(destination, config)),
            ],
        ),
        Action::SetDestination {
            service,
            destination,
            config,
        } => (
            Command::SetDest,
            vec![
                svc(service),
                IpvsAttr::Destination(destination_spec(destination, config)),
            ],
        ),
        Action::DelDestination {
            service,
            destination,
        } => (
            Command::DelDest,
            vec![
                svc(service),
                IpvsAttr::Destination(destination_identity(destination)),
            ],
        ),
        Action::SetTimeouts { timeouts } => (Command::SetConfig, timeout_attrs(timeouts)),
        Action::EnsureInterface { .. }
        | Action::AddAddress { .. }
        | Action::DelAddress { .. }
        | Action::SetSysctl { .. } => return None,
    };
    Some(IpvsMessage::new(command, attributes))
}

fn timeout_attrs(t: &IpvsTimeouts) -> Vec<IpvsAttr> {
    vec![
        IpvsAttr::TimeoutTcp(t.tcp),
        IpvsAttr::TimeoutTcpFin(t.tcp_fin),
        IpvsAttr::TimeoutUdp(t.udp),
    ]
}

/// The dump request for all services.
pub fn dump_services() -> IpvsMessage {
    IpvsMessage::new(Command::GetService, Vec::new())
}

/// The dump request for one service's destinations.
pub fn dump_destinations(key: &ServiceKey) -> IpvsMessage {
    IpvsMessage::new(
        Command::GetDest,
        vec![IpvsAttr::Service(service_identity(key))],
    )
}

// ---------------------------------------------------------------------------------------------
// Attributes → model

/// A message or attribute set that does not describe what the engine expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("{what} without attribute {attribute}")]
    Missing {
        what: &'static str,
        attribute: &'static str,
    },
    #[error("{what}: unknown address family {af}")]
    Family { what: &'static str, af: u16 },
    #[error("service {key}: protocol {protocol} is not TCP, UDP or SCTP")]
    Protocol { key: String, protocol: u16 },
    #[error("service {key}: scheduler {name:?} is not one balanced knows")]
    Scheduler { key: String, name: String },
    #[error("destination {key}: unknown forwarding method {method}")]
    Forwarding { key: String, method: u32 },
    #[error("destination {key}: unknown tunnel type {value}")]
    TunnelType { key: String, value: u8 },
    #[error("destination {key}: unknown tunnel flags {value:#x}")]
    TunnelFlags { key: String, value: u16 },
    #[error("{command:?} reply without a {what} attribute")]
    Reply {
        command: Command,
        what: &'static str,
    },
}

fn family_of(what: &'static str, af_value: u16) -> Result<Family, ModelError> {
    match af_value {
        AF_INET => Ok(Family::V4),
        AF_INET6 => Ok(Family::V6),
        af => Err(ModelError::Family { what, af }),
    }
}

fn stats_of(attrs: &[StatsAttr]) -> Stats {
    let mut s = Stats::default();
    for a in attrs {
        match a {
            StatsAttr::Connections(v) => s.connections = *v,
            StatsAttr::PacketsIn(v) => s.packets_in = *v,
            StatsAttr::PacketsOut(v) => s.packets_out = *v,
            StatsAttr::BytesIn(v) => s.bytes_in = *v,
            StatsAttr::BytesOut(v) => s.bytes_out = *v,
            _ => {}
        }
    }
    s
}

/// The service's identity from its attributes.
pub fn service_key(attrs: &[ServiceAttr]) -> Result<ServiceKey, ModelError> {
    let (mut family, mut protocol, mut addr, mut port, mut mark) = (None, None, None, None, None);
    for a in attrs {
        match a {
            ServiceAttr::Family(v) => family = Some(*v),
            ServiceAttr::Protocol(v) => protocol = Some(*v),
            ServiceAttr::Address(v) => addr = Some(*v),
            ServiceAttr::Port(v) => port = Some(*v),
            ServiceAttr::Fwmark(v) => mark = Some(*v),
            _ => {}
        }
    }
    let what = "IPVS service";
    let af_value = family.ok_or(ModelError::Missing {
        what,
        attribute: "AF",
    })?;
    let family = family_of(what, af_value)?;
    // The kernel reports fwmark 0 (and address/port) for protocol services, and only the mark
    // for fwmark services.
    if let Some(mark) = mark.filter(|m| *m != 0) {
        return Ok(ServiceKey::Fwmark { family, mark });
    }
    let missing = |attribute| ModelError::Missing { what, attribute };
    let vip = addr
        .ok_or(missing("ADDR"))?
        .to_ip(af_value)
        .ok_or(ModelError::Family { what, af: af_value })?;
    let port = port.ok_or(missing("PORT"))?;
    let number = protocol.ok_or(missing("PROTOCOL"))?;
    let protocol = match number {
        IPPROTO_TCP => Protocol::Tcp,
        IPPROTO_UDP => Protocol::Udp,
        IPPROTO_SCTP => Protocol::Sctp,
        other => {
            return Err(ModelError::Protocol {
                key: format!("{}", SocketDisplay(vip, port)),
                protocol: other,
            });
        }
    };
    Ok(ServiceKey::Inet {
        protocol,
        vip,
        port,
    })
}

struct SocketDisplay(IpAddr, u16);

impl std::fmt::Display for SocketDisplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::model::SocketLike(self.0, self.1).fmt(f)
    }
}

/// A service as a dump reports it, without destinations (they come from their own dump).
/// The kernel-internal `HASHED` flag is dropped.
pub fn virtual_service(attrs: &[ServiceAttr]) -> Result<VirtualService, ModelError> {
    let key = service_key(attrs)?;
    let what = "IPVS service";
    let (mut sched, mut flags, mut timeout, mut netmask, mut pe) = (None, None, None, None, None);
    let (mut stats32, mut stats64) = (None, None);
    for a in attrs {
        match a {
            ServiceAttr::Scheduler(v) => sched = Some(v.as_str()),
            ServiceAttr::Flags { flags: f, .. } => flags = Some(*f),
            ServiceAttr::Timeout(v) => timeout = Some(*v),
            ServiceAttr::Netmask(v) => netmask = Some(*v),
            ServiceAttr::PeName(v) => pe = Some(v.clone()),
            ServiceAttr::Stats(s) => stats32 = Some(s.as_slice()),
            ServiceAttr::Stats64(s) => stats64 = Some(s.as_slice()),
            _ => {}
        }
    }
    let missing = |attribute| ModelError::Missing { what, attribute };
    let name = sched.ok_or(missing("SCHED_NAME"))?;
    let scheduler = Scheduler::ALL
        .into_iter()
        .find(|s| s.as_str() == name)
        .ok_or_else(|| ModelError::Scheduler {
            key: key.to_string(),
            name: name.to_owned(),
        })?;
    Ok(VirtualService {
        key,
        config: ServiceConfig {
            scheduler,
            flags: flags.ok_or(missing("FLAGS"))? & !FLAG_HASHED,
            timeout: timeout.ok_or(missing("TIMEOUT"))?,
            netmask: netmask_from_wire(key.family(), netmask.ok_or(missing("NETMASK"))?),
            pe_name: pe.unwrap_or_default(),
        },
        destinations: Vec::new(),
        stats: stats64.or(stats32).map(stats_of).unwrap_or_default(),
    })
}

/// A destination as a dump reports it. `service_family` is used when the kernel does not
/// report the destination's own family (kernels before 3.18).
pub fn destination(attrs: &[DestAttr], service_family: Family) -> Result<Destination, ModelError> {
    let what = "IPVS destination";
    let missing = |attribute| ModelError::Missing { what, attribute };
    let (mut addr, mut port, mut method, mut weight, mut upper, mut lower) =
        (None, None, None, None, None, None);
    let (mut family, mut active, mut inactive, mut tun_type, mut tun_port, mut tun_flags) =
        (None, 0, 0, 0u8, 0u16, 0u16);
    let (mut stats32, mut stats64) = (None, None);
    for a in attrs {
        match a {
            DestAttr::Address(v) => addr = Some(*v),
            DestAttr::Port(v) => port = Some(*v),
            DestAttr::ForwardMethod(v) => method = Some(*v),
            DestAttr::Weight(v) => weight = Some(*v),
            DestAttr::UpperThreshold(v) => upper = Some(*v),
            DestAttr::LowerThreshold(v) => lower = Some(*v),
            DestAttr::ActiveConnections(v) => active = *v,
            DestAttr::InactiveConnections(v) => inactive = *v,
            DestAttr::AddressFamily(v) => family = Some(*v),
            DestAttr::TunnelType(v) => tun_type = *v,
            DestAttr::TunnelPort(v) => tun_port = *v,
            DestAttr::TunnelFlags(v) => tun_flags = *v,
            DestAttr::Stats(s) => stats32 = Some(s.as_slice()),
            DestAttr::Stats64(s) => stats64 = Some(s.as_slice()),
            _ => {}
        }
    }
    let af_value = family.unwrap_or(af(service_family));
    let address = addr
        .ok_or(missing("ADDR"))?
        .to_ip(af_value)
        .ok_or(ModelError::Family { what, af: af_value })?;
    let key = DestinationKey {
        address,
        port: port.ok_or(missing("PORT"))?,
    };
    let method = method.ok_or(missing("FWD_METHOD"))? & FWD_MASK;
    let forwarding = match method {
        FWD_MASQ => Forward::Masquerade,
        FWD_LOCALNODE => Forward::Local,
        FWD_DROUTE => Forward::Direct,
        FWD_BYPASS => Forward::Bypass,
        FWD_TUNNEL => Forward::Tunnel {
            encapsulation: match tun_type {
                0 => Encapsulation::Ipip,
                1 => Encapsulation::Gue,
                2 => Encapsulation::Gre,
                value => {
                    return Err(ModelError::TunnelType {
                        key: key.to_string(),
                        value,
                    });
                }
            },
            port: tun_port,
            checksum: match tun_flags {
                0 => TunnelChecksum::None,
                1 => TunnelChecksum::Csum,
                2 => TunnelChecksum::Remcsum,
                value => {
                    return Err(ModelError::TunnelFlags {
                        key: key.to_string(),
                        value,
                    });
                }
            },
        },
        method => {
            return Err(ModelError::Forwarding {
                key: key.to_string(),
                method,
            });
        }
    };
    Ok(Destination {
        key,
        config: DestinationConfig {
            forwarding,
            weight: weight.ok_or(missing("WEIGHT"))?,
            upper_threshold: upper.ok_or(missing("U_THRESH"))?,
            lower_threshold: lower.ok_or(missing("L_THRESH"))?,
        },
        active_connections: active,
        inactive_connections: inactive,
        stats: stats64.or(stats32).map(stats_of).unwrap_or_default(),
        // The kernel keeps last_weight to itself: no dump reports it.
        last_weight: 0,
    })
}

/// The timeouts of a `GET_CONFIG` reply.
pub fn timeouts(message: &IpvsMessage) -> IpvsTimeouts {
    let mut t = IpvsTimeouts::default();
    for a in &message.attributes {
        match a {
            IpvsAttr::TimeoutTcp(v) => t.tcp = *v,
            IpvsAttr::TimeoutTcpFin(v) => t.tcp_fin = *v,
            IpvsAttr::TimeoutUdp(v) => t.udp = *v,
            _ => {}
        }
    }
    t
}

/// IPVS's version and connection table size from a `GET_INFO` reply.
pub fn info(message: &IpvsMessage) -> Result<(u32, u32), ModelError> {
    let mut version = None;
    let mut size = None;
    for a in &message.attributes {
        match a {
            IpvsAttr::Version(v) => version = Some(*v),
            IpvsAttr::ConnectionTableSize(v) => size = Some(*v),
            _ => {}
        }
    }
    let reply = |what| ModelError::Reply {
        command: message.command,
        what,
    };
    Ok((
        version.ok_or(reply("VERSION"))?,
        size.ok_or(reply("CONN_TAB_SIZE"))?,
    ))
}

/// The nested service attributes of a message (a service dump entry, a request).
pub fn service_attrs(message: &IpvsMessage) -> Option<&[ServiceAttr]> {
    message.attributes.iter().find_map(|a| match a {
        IpvsAttr::Service(s) => Some(s.as_slice()),
        _ => None,
    })
}

/// The nested destination attributes of a message.
pub fn destination_attrs(message: &IpvsMessage) -> Option<&[DestAttr]> {
    message.attributes.iter().find_map(|a| match a {
        IpvsAttr::Destination(d) => Some(d.as_slice()),
        _ => None,
    })
}

// ---------------------------------------------------------------------------------------------
// The generic netlink controller: resolving the "IPVS" family to its message type

/// `GENL_ID_CTRL`, the controller's fixed message type.
pub const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_VERSION: u8 = 2;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
/// The family name IPVS registers.
pub const FAMILY_NAME: &str = "IPVS";

/// Appends the controller request that resolves `name`.
pub fn encode_family_request(out: &mut Vec<u8>, name: &str, sequence: u32) {
    netlink::push_message(out, GENL_ID_CTRL, netlink::NLM_F_REQUEST, sequence, |out| {
        out.extend_from_slice(&[CTRL_CMD_GETFAMILY, CTRL_VERSION, 0, 0]);
        AttrWriter::new(out).string(CTRL_ATTR_FAMILY_NAME, name);
    });
}

/// The family id from the controller's reply payload.
pub fn family_id(payload: &[u8]) -> Result<u16, DecodeError> {
    let attrs = payload
        .get(GENL_HEADER_LEN..)
        .ok_or(DecodeError::Truncated {
            what: "generic netlink header",
            len: payload.len(),
            need: GENL_HEADER_LEN,
        })?;
    let r = AttrReader {
        context: "nlctrl family",
    };
    for (k, p) in netlink::attributes(attrs)? {
        if k == CTRL_ATTR_FAMILY_ID {
            return r.u16(k, p);
        }
    }
    Err(DecodeError::Invalid(
        "nlctrl reply without CTRL_ATTR_FAMILY_ID".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::netlink::{NLM_F_ACK, NLM_F_REQUEST, messages};

    fn v4(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn round_trip(msg: &IpvsMessage) -> IpvsMessage {
        let mut buf = Vec::new();
        msg.encode(&mut buf, 0x24, NLM_F_REQUEST | NLM_F_ACK, 9);
        let msgs = messages(&buf).expect("framing");
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].header.kind, 0x24);
        let back = IpvsMessage::decode(msgs[0].payload).expect("decodes");
        let mut again = Vec::new();
        back.encode(&mut again, 0x24, NLM_F_REQUEST | NLM_F_ACK, 9);
        assert_eq!(buf, again, "re-encoding is byte-identical");
        back
    }

    /// TCP 10.0.0.1:80 on `scheduler` with `flags`, no persistence.
    fn tcp_service(scheduler: Scheduler, flags: u32) -> (ServiceKey, ServiceConfig) {
        let key = ServiceKey::Inet {
            protocol: Protocol::Tcp,
            vip: v4("10.0.0.1"),
            port: 80,
        };
        let config = ServiceConfig {
            scheduler,
            flags,
            timeout: 0,
            netmask: 0xffff_ffff,
            pe_name: String::new(),
        };
        (key, config)
    }

    #[test]
    fn is_request_says_whether_request_for_has_one() {
        let (key, config) = tcp_service(Scheduler::Rr, 0);
        let destination = DestinationKey {
            address: v4("10.1.0.1"),
            port: 80,
        };
        let dest_config = DestinationConfig {
            forwarding: Forward::Direct,
            weight: 1,
            upper_threshold: 0,
            lower_threshold: 0,
        };
        let address = v4("10.0.0.1");
        let interface = "balanced0".to_owned();
        let actions = [
            Action::EnsureInterface {
                name: interface.clone(),
            },
            Action::AddAddress {
                interface: interface.clone(),
                address,
            },
            Action::DelAddress { interface, address },
            Action::SetSysctl {
                name: "net.ipv4.vs.conntrack".into(),
                value: "0".into(),
            },
            Action::SetTimeouts {
                timeouts: IpvsTimeouts::default(),
            },
            Action::AddService {
                key,
                config: config.clone(),
            },
            Action::SetService { key, config },
            Action::DelService { key },
            Action::AddDestination {
                service: key,
                destination,
                config: dest_config.clone(),
            },
            Action::SetDestination {
                service: key,
                destination,
                config: dest_config,
            },
            Action::DelDestination {
                service: key,
                destination,
            },
        ];
        let requests: Vec<bool> = actions.iter().map(is_request).collect();
        let built: Vec<bool> = actions.iter().map(|a| request_for(a).is_some()).collect();
        assert_eq!(requests, built);
        assert_eq!(requests.iter().filter(|r| **r).count(), 7);
    }

    #[test]
    fn add_service_bytes_match_the_kernel_layout() {
        let (key, config) = tcp_service(Scheduler::Mh, 0x10);
        let msg = request_for(&Action::AddService { key, config }).expect("IPVS action");
        let mut buf = Vec::new();
        msg.encode(&mut buf, 0x24, NLM_F_REQUEST | NLM_F_ACK, 1);
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            &[104, 0, 0, 0, 0x24, 0, 0x05, 0, 1, 0, 0, 0, 0, 0, 0, 0][..], // nlmsghdr
            &[1, 1, 0, 0],                                  // NEW_SERVICE, version 1
            &[84, 0, 1, 0],                                 // nested SERVICE, 84 bytes
            &[6, 0, 1, 0, 2, 0, 0, 0],                      // AF = AF_INET
            &[6, 0, 2, 0, 6, 0, 0, 0],                      // PROTOCOL = TCP
            &[20, 0, 3, 0, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // ADDR
            &[6, 0, 4, 0, 0, 80, 0, 0],                     // PORT (be16)
            &[7, 0, 6, 0, b'm', b'h', 0, 0],                // SCHED_NAME "mh\0"
            &[12, 0, 7, 0, 0x10, 0, 0, 0, 0xff, 0xff, 0xff, 0xff], // FLAGS mh-port, mask ~0
            &[8, 0, 8, 0, 0, 0, 0, 0],                      // TIMEOUT 0
            &[8, 0, 9, 0, 0xff, 0xff, 0xff, 0xff],          // NETMASK
        ].concat();
        assert_eq!(buf, expected);
        round_trip(&msg);
    }

    #[test]
    fn every_attribute_round_trips() {
        let stats = |base: u64| {
            vec![
                StatsAttr::Connections(base),
                StatsAttr::PacketsIn(base + 1),
                StatsAttr::PacketsOut(base + 2),
                StatsAttr::BytesIn(base + 3),
                StatsAttr::BytesOut(base + 4),
                StatsAttr::ConnectionRate(base + 5),
                StatsAttr::PacketRateIn(base + 6),
                StatsAttr::PacketRateOut(base + 7),
                StatsAttr::ByteRateIn(base + 8),
                StatsAttr::ByteRateOut(base + 9),
                StatsAttr::Other(RawAttr {
                    kind: 11,
                    payload: vec![],
                }),
            ]
        };
        let msg = IpvsMessage::new(
            Command::NewDest,
            vec![
                IpvsAttr::Service(vec![
                    ServiceAttr::Family(AF_INET6),
                    ServiceAttr::Protocol(IPPROTO_UDP),
                    ServiceAttr::Address(InetAddr::from_ip(&v4("2001:db8::10"))),
                    ServiceAttr::Port(53),
                    ServiceAttr::Fwmark(0),
                    ServiceAttr::Scheduler("sh".into()),
                    ServiceAttr::Flags {
                        flags: 0x1b,
                        mask: 0xffff_ffff,
                    },
                    ServiceAttr::Timeout(300),
                    ServiceAttr::Netmask(64),
                    ServiceAttr::Stats(stats(10)),
                    ServiceAttr::PeName("sip".into()),
                    ServiceAttr::Stats64(stats(1 << 40)),
                    ServiceAttr::Other(RawAttr {
                        kind: 99,
                        payload: vec![1, 2, 3],
                    }),
                ]),
                IpvsAttr::Destination(vec![
                    DestAttr::Address(InetAddr::from_ip(&v4("192.0.2.7"))),
                    DestAttr::Port(8080),
                    DestAttr::ForwardMethod(FWD_TUNNEL),
                    DestAttr::Weight(u32::MAX),
                    DestAttr::UpperThreshold(100),
                    DestAttr::LowerThreshold(10),
                    DestAttr::ActiveConnections(1),
                    DestAttr::InactiveConnections(2),
                    DestAttr::PersistentConnections(3),
                    DestAttr::Stats(stats(20)),
                    DestAttr::AddressFamily(AF_INET),
                    DestAttr::Stats64(stats(30)),
                    DestAttr::TunnelType(1),
                    DestAttr::TunnelPort(6080),
                    DestAttr::TunnelFlags(2),
                    DestAttr::Other(RawAttr {
                        kind: 16,
                        payload: vec![7; 5],
                    }),
                ]),
                IpvsAttr::TimeoutTcp(900),
                IpvsAttr::TimeoutTcpFin(120),
                IpvsAttr::TimeoutUdp(300),
                IpvsAttr::Other(RawAttr {
                    kind: 3,
                    payload: vec![4, 0, 1, 0],
                }),
            ],
        );
        assert_eq!(round_trip(&msg), msg);
    }

    #[test]
    fn info_reply_attributes_are_read_by_command() {
        let msg = IpvsMessage::new(
            Command::SetInfo,
            vec![
                IpvsAttr::Version(0x010201),
                IpvsAttr::ConnectionTableSize(4096),
            ],
        );
        let back = round_trip(&msg);
        assert_eq!(info(&back), Ok((0x010201, 4096)));
        // The same numbers in another command are the SERVICE/DEST attributes.
        let mut buf = Vec::new();
        IpvsMessage::new(Command::GetConfig, vec![]).encode(&mut buf, 0x24, 0, 1);
        let mut w = Vec::new();
        AttrWriter::new(&mut w).u32(4, 900);
        buf.extend_from_slice(&w);
        let len = buf.len() as u32;
        buf[..4].copy_from_slice(&len.to_ne_bytes());
        let msgs = messages(&buf).expect("framing");
        let decoded = IpvsMessage::decode(msgs[0].payload).expect("decodes");
        assert_eq!(decoded.attributes, vec![IpvsAttr::TimeoutTcp(900)]);
        assert_eq!(
            timeouts(&decoded),
            IpvsTimeouts {
                tcp: 900,
                tcp_fin: 0,
                udp: 0
            }
        );
    }

    #[test]
    fn dumped_service_becomes_the_model_without_hashed() {
        let attrs = vec![
            ServiceAttr::Family(AF_INET),
            ServiceAttr::Protocol(IPPROTO_TCP),
            ServiceAttr::Address(InetAddr::from_ip(&v4("198.51.100.10"))),
            ServiceAttr::Port(443),
            ServiceAttr::Scheduler("mh".into()),
            ServiceAttr::Flags {
                flags: 0x2 | 0x8 | 0x10,
                mask: 0xffff_ffff,
            },
            ServiceAttr::Timeout(0),
            ServiceAttr::Netmask(0xffff_ffff),
            ServiceAttr::Stats64(vec![StatsAttr::Connections(5), StatsAttr::BytesOut(9)]),
            ServiceAttr::Other(RawAttr {
                kind: 40,
                payload: vec![],
            }),
        ];
        let svc = virtual_service(&attrs).expect("model");
        assert_eq!(
            svc.key,
            ServiceKey::Inet {
                protocol: Protocol::Tcp,
                vip: v4("198.51.100.10"),
                port: 443
            }
        );
        assert_eq!(svc.config.flags, 0x18);
        assert_eq!(svc.config.scheduler, Scheduler::Mh);
        assert_eq!(svc.stats.connections, 5);
        assert_eq!(svc.stats.bytes_out, 9);
        // And back: the spec carries the same identity and settings.
        let spec = service_spec(&svc.key, &svc.config);
        let again = virtual_service(&spec).expect("model");
        assert_eq!(again.key, svc.key);
        assert_eq!(again.config, svc.config);
    }

    #[test]
    fn ipv4_netmask_is_big_endian_on_the_wire_ipv6_a_prefix() {
        let inet4 = ServiceKey::Inet {
            protocol: Protocol::Tcp,
            vip: v4("198.51.100.3"),
            port: 80,
        };
        let mut config = ServiceConfig {
            scheduler: Scheduler::Wlc,
            flags: 1,
            timeout: 300,
            netmask: 0xffff_ff00,
            pe_name: String::new(),
        };
        let msg = IpvsMessage::new(
            Command::NewService,
            vec![IpvsAttr::Service(service_spec(&inet4, &config))],
        );
        let mut buf = Vec::new();
        msg.encode(&mut buf, 0x24, 0, 1);
        let tail = &buf[buf.len() - 8..];
        assert_eq!(tail, &[8, 0, 9, 0, 0xff, 0xff, 0xff, 0x00]);
        assert_eq!(
            virtual_service(service_attrs(&msg).expect("service"))
                .expect("model")
                .config
                .netmask,
            0xffff_ff00
        );
        let v6 = ServiceKey::Inet {
            protocol: Protocol::Tcp,
            vip: v4("2001:db8::3"),
            port: 80,
        };
        config.netmask = 64;
        let spec = service_spec(&v6, &config);
        assert_eq!(spec.last(), Some(&ServiceAttr::Netmask(64)));
        assert_eq!(virtual_service(&spec).expect("model").config.netmask, 64);
    }

    #[test]
    fn fwmark_service_identity() {
        let key = ServiceKey::Fwmark {
            family: Family::V6,
            mark: 7,
        };
        let attrs = service_identity(&key);
        assert_eq!(
            attrs,
            vec![ServiceAttr::Family(AF_INET6), ServiceAttr::Fwmark(7)]
        );
        assert_eq!(service_key(&attrs), Ok(key));
    }

    #[test]
    fn missing_and_unknown_values_are_named() {
        let attrs = vec![
            ServiceAttr::Family(AF_INET),
            ServiceAttr::Protocol(IPPROTO_TCP),
            ServiceAttr::Address(InetAddr::from_ip(&v4("10.0.0.1"))),
            ServiceAttr::Port(80),
            ServiceAttr::Scheduler("fancy".into()),
            ServiceAttr::Flags { flags: 0, mask: 0 },
            ServiceAttr::Timeout(0),
            ServiceAttr::Netmask(0),
        ];
        let err = virtual_service(&attrs).expect_err("unknown scheduler");
        assert_eq!(
            err.to_string(),
            "service TCP 10.0.0.1:80: scheduler \"fancy\" is not one balanced knows"
        );
        let err = virtual_service(&attrs[..3]).expect_err("no port");
        assert_eq!(err.to_string(), "IPVS service without attribute PORT");
        let err = service_key(&[ServiceAttr::Family(7)]).expect_err("family");
        assert_eq!(err.to_string(), "IPVS service: unknown address family 7");
    }

    #[test]
    fn destinations_with_every_forwarding_method() {
        let cases = [
            Forward::Masquerade,
            Forward::Direct,
            Forward::Local,
            Forward::Bypass,
            Forward::Tunnel {
                encapsulation: Encapsulation::Ipip,
                port: 0,
                checksum: TunnelChecksum::None,
            },
            Forward::Tunnel {
                encapsulation: Encapsulation::Gue,
                port: 6080,
                checksum: TunnelChecksum::Remcsum,
            },
            Forward::Tunnel {
                encapsulation: Encapsulation::Gre,
                port: 0,
                checksum: TunnelChecksum::Csum,
            },
        ];
        for forwarding in cases {
            let key = DestinationKey {
                address: v4("2001:db8::5"),
                port: 8443,
            };
            let config = DestinationConfig {
                forwarding,
                weight: 3,
                upper_threshold: 50,
                lower_threshold: 5,
            };
            let attrs = destination_spec(&key, &config);
            // A v6 destination of a v4 service keeps its own family.
            let d = destination(&attrs, Family::V4).expect("model");
            assert_eq!(d.key, key);
            assert_eq!(d.config, config, "{forwarding:?}");
        }
    }

    #[test]
    fn dumped_forwarding_method_ignores_other_connection_flags() {
        let attrs = vec![
            DestAttr::Address(InetAddr::from_ip(&v4("10.0.0.2"))),
            DestAttr::Port(80),
            DestAttr::ForwardMethod(0x100 | FWD_DROUTE),
            DestAttr::Weight(1),
            DestAttr::UpperThreshold(0),
            DestAttr::LowerThreshold(0),
        ];
        let d = destination(&attrs, Family::V4).expect("model");
        assert_eq!(d.config.forwarding, Forward::Direct);
        assert_eq!(d.key.address, v4("10.0.0.2"));
    }

    #[test]
    fn actions_map_to_commands() {
        let key = ServiceKey::Fwmark {
            family: Family::V4,
            mark: 1,
        };
        let dest = DestinationKey {
            address: v4("10.0.0.2"),
            port: 0,
        };
        let del = request_for(&Action::DelDestination {
            service: key,
            destination: dest,
        })
        .expect("IPVS action");
        assert_eq!(del.command, Command::DelDest);
        assert_eq!(
            destination_attrs(&del),
            Some(&destination_identity(&dest)[..])
        );
        let t = request_for(&Action::SetTimeouts {
            timeouts: IpvsTimeouts {
                tcp: 900,
                tcp_fin: 120,
                udp: 300,
            },
        })
        .expect("IPVS action");
        assert_eq!(t.command, Command::SetConfig);
        assert_eq!(
            t.attributes,
            vec![
                IpvsAttr::TimeoutTcp(900),
                IpvsAttr::TimeoutTcpFin(120),
                IpvsAttr::TimeoutUdp(300)
            ]
        );
        assert!(
            request_for(&Action::SetSysctl {
                name: "net.ipv4.vs.sloppy_tcp".into(),
                value: "1".into()
            })
            .is_none()
        );
    }

    #[test]
    fn family_resolution_request_and_reply() {
        let mut buf = Vec::new();
        encode_family_request(&mut buf, FAMILY_NAME, 3);
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            &[32, 0, 0, 0, 0x10, 0, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0][..],
            &[3, 2, 0, 0],
            &[9, 0, 2, 0, b'I', b'P', b'V', b'S', 0, 0, 0, 0],
        ].concat();
        assert_eq!(buf, expected);
        let mut reply = vec![1, 2, 0, 0];
        let mut w = AttrWriter::new(&mut reply);
        w.string(CTRL_ATTR_FAMILY_NAME, "IPVS");
        w.u16(CTRL_ATTR_FAMILY_ID, 0x24);
        assert_eq!(family_id(&reply), Ok(0x24));
        assert!(family_id(&reply[..4]).is_err());
    }

    #[test]
    fn commands_keep_unknown_values() {
        for v in 0..=255u8 {
            assert_eq!(Command::from_value(v).value(), v);
        }
    }
}
