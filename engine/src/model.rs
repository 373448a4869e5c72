//! The node's state in kernel terms — one set of types for both the **desired** state (compiled
//! from manifests) and the **observed** state (read from a dataplane), so that planning and
//! verification compare like with like.
//!
//! Pure data: no I/O here. Collections are ordered (`BTreeMap`) so every rendering and every plan
//! is deterministic; the one exception is a service's destination list, which keeps the kernel's
//! list order because `mh` builds its table from it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use balanced_schemas::v1::{Encapsulation, ForwardingMethod, Protocol, Scheduler, TunnelChecksum};
use serde::{Deserialize, Serialize};

/// Identifies a virtual service, as the kernel does: (family, protocol, address, port) or
/// (family, fwmark).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum ServiceKey {
    /// `-t/-u/--sctp-service VIP:PORT`
    Inet {
        protocol: Protocol,
        vip: IpAddr,
        port: u16,
    },
    /// `-f MARK`, per address family (`-6` for IPv6).
    Fwmark { family: Family, mark: u32 },
}

impl ServiceKey {
    pub fn family(&self) -> Family {
        match self {
            ServiceKey::Inet { vip, .. } => Family::of(vip),
            ServiceKey::Fwmark { family, .. } => *family,
        }
    }

    /// The VIP of a protocol/port service; fwmark services have none of their own.
    pub fn vip(&self) -> Option<IpAddr> {
        match self {
            ServiceKey::Inet { vip, .. } => Some(*vip),
            ServiceKey::Fwmark { .. } => None,
        }
    }
}

impl fmt::Display for ServiceKey {
    /// `TCP 198.51.100.10:80`, `TCP [2001:db8::10]:443`, `FWM 7 IPv4`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceKey::Inet {
                protocol,
                vip,
                port,
            } => write!(f, "{protocol} {}", SocketLike(*vip, *port)),
            ServiceKey::Fwmark { family, mark } => write!(f, "FWM {mark} {family}"),
        }
    }
}

/// Formats an address and a port as `1.2.3.4:80` or `[2001:db8::1]:80`.
pub struct SocketLike(pub IpAddr, pub u16);

impl fmt::Display for SocketLike {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            // Written by hand: a converge's change lines hold a few hundred thousand of these,
            // and the formatting machinery, once per octet and port, cost more than the rest
            // of each line.
            IpAddr::V4(a) => {
                let mut text = [0u8; 21]; // 255.255.255.255:65535
                let mut len = 0;
                for (i, octet) in a.octets().into_iter().enumerate() {
                    if i > 0 {
                        text[len] = b'.';
                        len += 1;
                    }
                    push_decimal(&mut text, &mut len, u32::from(octet));
                }
                text[len] = b':';
                len += 1;
                push_decimal(&mut text, &mut len, u32::from(self.1));
                f.write_str(std::str::from_utf8(&text[..len]).map_err(|_| fmt::Error)?)
            }
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.1),
        }
    }
}

/// Appends `value` in decimal at `text[*len..]`.
fn push_decimal(text: &mut [u8], len: &mut usize, value: u32) {
    let mut digits = [0u8; 10];
    let mut count = 0;
    let mut rest = value;
    loop {
        digits[count] = b'0' + (rest % 10) as u8;
        count += 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for digit in digits[..count].iter().rev() {
        text[*len] = *digit;
        *len += 1;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Family {
    #[serde(rename = "IPv4")]
    V4,
    #[serde(rename = "IPv6")]
    V6,
}

impl Family {
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// The settable properties of a virtual service (everything `SET_SERVICE` can change in place).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceConfig {
    pub scheduler: Scheduler,
    /// `IP_VS_SVC_F_*` bits without the kernel-internal `HASHED` (0x2): persistent (0x1),
    /// one-packet (0x4), scheduler flags 1–3 (0x8, 0x10, 0x20).
    pub flags: u32,
    /// Persistence timeout in seconds; 0 when not persistent.
    pub timeout: u32,
    /// Persistence netmask as the kernel holds it: a be32 mask for IPv4 (`0xffffffff` when
    /// unused), a prefix length for IPv6 (128 when unused).
    pub netmask: u32,
    /// Persistence engine name (`sip`); empty when none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pe_name: String,
}

/// The kernel-internal flag that dumps report on every service; never compared.
pub const FLAG_HASHED: u32 = 0x2;
pub const FLAG_PERSISTENT: u32 = 0x1;
pub const FLAG_ONEPACKET: u32 = 0x4;

/// One real server as the kernel identifies it within a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DestinationKey {
    pub address: IpAddr,
    pub port: u16,
}

impl fmt::Display for DestinationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        SocketLike(self.address, self.port).fmt(f)
    }
}

/// The settable properties of a destination (everything `SET_DEST` can change in place).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationConfig {
    pub forwarding: Forward,
    pub weight: u32,
    /// 0: no limit.
    pub upper_threshold: u32,
    pub lower_threshold: u32,
}

/// A forwarding method with its tunnel parameters, as the kernel holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "method")]
pub enum Forward {
    Masquerade,
    Direct,
    Tunnel {
        encapsulation: Encapsulation,
        /// GUE's UDP port; 0 otherwise.
        #[serde(default)]
        port: u16,
        #[serde(default)]
        checksum: TunnelChecksum,
    },
    /// `IP_VS_CONN_F_LOCALNODE` / `IP_VS_CONN_F_BYPASS`: never desired, but a dump may show them
    /// on services this node does not own.
    Local,
    Bypass,
}

impl Forward {
    pub fn method(&self) -> Option<ForwardingMethod> {
        match self {
            Forward::Masquerade => Some(ForwardingMethod::Masquerade),
            Forward::Direct => Some(ForwardingMethod::Direct),
            Forward::Tunnel { .. } => Some(ForwardingMethod::Tunnel),
            Forward::Local | Forward::Bypass => None,
        }
    }
}

/// Kernel counters of a service or destination (the 64-bit `STATS64` set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub connections: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// One destination of a service: identity, settable configuration and what only the kernel
/// knows (connection counts, counters). Desired destinations carry zeros there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    pub key: DestinationKey,
    #[serde(flatten)]
    pub config: DestinationConfig,
    #[serde(default)]
    pub active_connections: u32,
    #[serde(default)]
    pub inactive_connections: u32,
    #[serde(default, skip_serializing_if = "is_zero_stats")]
    pub stats: Stats,
    /// Desired states only: the weight a draining destination (weight 0) had in its manifest.
    /// The kernel's `mh` builds its table from a destination's *last non-zero* weight
    /// (`ip_vs_dest.last_weight`), which no dump reports: a node that saw the backend active
    /// keeps its table slots. A node adding it afresh adds it with this weight and then sets 0,
    /// so both hold the same table. 0 everywhere else.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_weight: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_stats(s: &Stats) -> bool {
    *s == Stats::default()
}

/// One virtual service with its destinations **in the kernel's list order** (newest first, as
/// the kernel inserts at the head). For a desired service this is the order the kernel must end
/// up with: canonical (by address, then port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualService {
    pub key: ServiceKey,
    #[serde(flatten)]
    pub config: ServiceConfig,
    pub destinations: Vec<Destination>,
    #[serde(default, skip_serializing_if = "is_zero_stats")]
    pub stats: Stats,
}

/// IPVS connection timeouts in seconds (`GET_CONFIG` / `SET_CONFIG`); 0 = unchanged/unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpvsTimeouts {
    pub tcp: u32,
    pub tcp_fin: u32,
    pub udp: u32,
}

/// A whole node in kernel terms. Observed states hold everything the dataplane reports (also
/// what this node does not own); desired states hold only what the manifests ask for.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeState {
    /// The VIP link's name and whether it exists and is up.
    pub interface: Interface,
    /// The services, by key. JSON holds them as a list (each service carries its key), since
    /// JSON object keys must be strings.
    #[serde(default, with = "services_as_list")]
    pub services: BTreeMap<ServiceKey, VirtualService>,
    /// `sysctl` values by full dotted name (`net.ipv4.vs.sloppy_tcp`). Observed: only the
    /// names the node config mentions (and those a status export carries).
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
    #[serde(default)]
    pub timeouts: IpvsTimeouts,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub name: String,
    pub exists: bool,
    pub up: bool,
    /// Host addresses (/32, /128) on the link, sorted.
    pub addresses: std::collections::BTreeSet<IpAddr>,
}

/// `NodeState::services` in JSON: a list of services, each with its `key`, in key order.
mod services_as_list {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::{ServiceKey, VirtualService};

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<ServiceKey, VirtualService>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.values())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<ServiceKey, VirtualService>, D::Error> {
        let services = Vec::<VirtualService>::deserialize(d)?;
        let mut map = BTreeMap::new();
        for service in services {
            let key = service.key;
            if map.insert(key, service).is_some() {
                return Err(serde::de::Error::custom(format!(
                    "service {key} listed twice"
                )));
            }
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The hand-written IPv4 form is the standard library's, for every address and port.
        #[test]
        fn sockets_read_as_the_standard_library_writes_them(address: u32, port: u16) {
            let v4 = std::net::Ipv4Addr::from(address);
            proptest::prop_assert_eq!(
                SocketLike(IpAddr::V4(v4), port).to_string(),
                std::net::SocketAddrV4::new(v4, port).to_string()
            );
        }
    }

    #[test]
    fn socket_edges() {
        let text = |a: &str, port| SocketLike(a.parse().unwrap(), port).to_string();
        assert_eq!(text("0.0.0.0", 0), "0.0.0.0:0");
        assert_eq!(text("255.255.255.255", 65535), "255.255.255.255:65535");
        assert_eq!(text("10.0.100.9", 80), "10.0.100.9:80");
        assert_eq!(text("2001:db8::1", 443), "[2001:db8::1]:443");
    }
}
