//! Version 1 of the manifest format (`apiVersion: balanced.io/v1`).
//!
//! These types are the source of truth: the JSON Schema files in `schemas/` are generated from
//! them, the exporter serializes them and the engine compiles them. Every struct refuses unknown
//! fields. No tagged or untagged enums carry data here, so every parse error keeps the exact
//! position of the offending field (see `crate::yaml`). Rules that span several fields
//! (protocol + port *or* fwmark, tunnel-only options, …) live in `crate::validate`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The only `apiVersion` this module understands.
pub const API_VERSION: &str = "balanced.io/v1";

/// Fields every document carries.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// The manifest's identity: unique across all manifests a node loads. A DNS-style name
    /// (lowercase letters, digits, `-` and `.`), e.g. `default.web`.
    pub name: String,
    /// Free-form labels, e.g. to select manifests in tooling.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Free-form notes for people and tools; balanced ignores them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Bumped by the writer whenever the content changes. Informational: shown in status and
    /// metrics so operators see which version each node runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// Who wrote the manifest: `kubernetes/<namespace>/<name>` or `manual`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// `kind: Balancer` — one VIP and its virtual services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Balancer {
    /// `balanced.io/v1`.
    #[schemars(extend("enum" = ["balanced.io/v1"]))]
    pub api_version: String,
    /// `Balancer`.
    #[schemars(extend("enum" = ["Balancer"]))]
    pub kind: String,
    pub metadata: Metadata,
    pub spec: BalancerSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BalancerSpec {
    /// The virtual IP, IPv4 or IPv6. The node holds it as a /32 or /128 on its interface while
    /// at least one of its services exists.
    pub vip: IpAddr,
    /// The virtual services on this VIP; each (protocol, port) or fwmark at most once, across
    /// every manifest a node loads.
    pub services: Vec<VirtualService>,
}

/// One IPVS virtual service: `protocol` + `port`, or `fwmark`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("oneOf" = [
    {"required": ["protocol", "port"], "not": {"required": ["fwmark"]}},
    {"required": ["fwmark"], "not": {"anyOf": [{"required": ["protocol"]}, {"required": ["port"]}]}}
]))]
pub struct VirtualService {
    /// `TCP`, `UDP` or `SCTP`, with `port`; absent on fwmark services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// The VIP's port (1-65535), with `protocol`; absent on fwmark services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// A firewall mark (1 and up) instead of protocol + port: the service takes every packet
    /// to the VIP's family that iptables/nftables marked so, whatever its protocol and port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fwmark: Option<u32>,
    /// The IPVS scheduler (default `wlc`).
    #[serde(default)]
    pub scheduler: Scheduler,
    /// Scheduler flags: `mh-*` only with `mh`, `sh-*` only with `sh`. `mh-port`/`sh-port`
    /// also hash the client's source port (TCP, UDP and SCTP all carry one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scheduler_flags: Vec<SchedulerFlag>,
    /// Keep each client (or client network) on one backend for a while.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence: Option<Persistence>,
    /// One-packet scheduling: every UDP datagram is scheduled on its own. UDP services only;
    /// on a fwmark service it applies to the marked UDP packets.
    #[serde(default, skip_serializing_if = "is_false")]
    pub one_packet: bool,
    /// How packets reach the backends (default: direct routing).
    #[serde(default)]
    pub forwarding: Forwarding,
    /// The real servers, each (address, port) once.
    #[serde(default)]
    pub backends: Vec<Backend>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum Protocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "SCTP")]
    Sctp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every scheduler mainline Linux ships (`ip_vs_<name>.ko`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Scheduler {
    /// Round robin.
    Rr,
    /// Weighted round robin.
    Wrr,
    /// Least connections.
    Lc,
    /// Weighted least connections: the kernel's and ipvsadm's default.
    #[default]
    Wlc,
    /// Locality-based least connections.
    Lblc,
    /// Locality-based least connections with replication.
    Lblcr,
    /// Destination hashing.
    Dh,
    /// Source hashing; flags `sh-fallback`, `sh-port`.
    Sh,
    /// Shortest expected delay.
    Sed,
    /// Never queue.
    Nq,
    /// Weighted failover (Linux 4.2+).
    Fo,
    /// Weighted overflow (Linux 4.3+).
    Ovf,
    /// Maglev hashing (Linux 4.18+): consistent hashing, so every director picks the same
    /// backend for a client; flags `mh-fallback`, `mh-port`. The kernel's table has 4093
    /// slots: more backends are an error, more than 40 spread the load less evenly.
    Mh,
    /// Weighted random twos choice (Linux 5.9+).
    Twos,
}

impl Scheduler {
    pub const ALL: [Scheduler; 14] = [
        Scheduler::Rr,
        Scheduler::Wrr,
        Scheduler::Lc,
        Scheduler::Wlc,
        Scheduler::Lblc,
        Scheduler::Lblcr,
        Scheduler::Dh,
        Scheduler::Sh,
        Scheduler::Sed,
        Scheduler::Nq,
        Scheduler::Fo,
        Scheduler::Ovf,
        Scheduler::Mh,
        Scheduler::Twos,
    ];

    /// The name the kernel knows the scheduler by (`IPVS_SVC_ATTR_SCHED_NAME`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scheduler::Rr => "rr",
            Scheduler::Wrr => "wrr",
            Scheduler::Lc => "lc",
            Scheduler::Wlc => "wlc",
            Scheduler::Lblc => "lblc",
            Scheduler::Lblcr => "lblcr",
            Scheduler::Dh => "dh",
            Scheduler::Sh => "sh",
            Scheduler::Sed => "sed",
            Scheduler::Nq => "nq",
            Scheduler::Fo => "fo",
            Scheduler::Ovf => "ovf",
            Scheduler::Mh => "mh",
            Scheduler::Twos => "twos",
        }
    }

    /// The minimum kernel version that ships this scheduler, when newer than 4.4.
    pub fn min_kernel(self) -> Option<&'static str> {
        match self {
            Scheduler::Fo => Some("4.2"),
            Scheduler::Ovf => Some("4.3"),
            Scheduler::Mh => Some("4.18"),
            Scheduler::Twos => Some("5.9"),
            _ => None,
        }
    }
}

impl fmt::Display for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scheduler {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scheduler::ALL
            .into_iter()
            .find(|sched| sched.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Scheduler::ALL.iter().map(|s| s.as_str()).collect();
                format!(
                    "unknown scheduler {s:?}: expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Scheduler flags. `mh-*` are valid only with `mh`, `sh-*` only with `sh`; `flag-1..3` are the
/// raw IP_VS_SVC_F_SCHED1..3 bits for schedulers that define their own meaning.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum SchedulerFlag {
    /// `mh`: a connection hashing to a backend with weight 0 (draining) or over its upper
    /// threshold moves on to another backend instead of being dropped.
    MhFallback,
    /// `mh`: hash the client's source port too, not only its address.
    MhPort,
    /// `sh`: like `mh-fallback`, for source hashing.
    ShFallback,
    /// `sh`: hash the client's source port too.
    ShPort,
    /// Raw IP_VS_SVC_F_SCHED1 (what `mh-fallback`/`sh-fallback` set).
    #[serde(rename = "flag-1")]
    Flag1,
    /// Raw IP_VS_SVC_F_SCHED2 (what `mh-port`/`sh-port` set).
    #[serde(rename = "flag-2")]
    Flag2,
    /// Raw IP_VS_SVC_F_SCHED3.
    #[serde(rename = "flag-3")]
    Flag3,
}

impl SchedulerFlag {
    /// The `IP_VS_SVC_F_*` bit this flag sets.
    pub fn bit(self) -> u32 {
        match self {
            SchedulerFlag::MhFallback | SchedulerFlag::ShFallback | SchedulerFlag::Flag1 => 0x08,
            SchedulerFlag::MhPort | SchedulerFlag::ShPort | SchedulerFlag::Flag2 => 0x10,
            SchedulerFlag::Flag3 => 0x20,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SchedulerFlag::MhFallback => "mh-fallback",
            SchedulerFlag::MhPort => "mh-port",
            SchedulerFlag::ShFallback => "sh-fallback",
            SchedulerFlag::ShPort => "sh-port",
            SchedulerFlag::Flag1 => "flag-1",
            SchedulerFlag::Flag2 => "flag-2",
            SchedulerFlag::Flag3 => "flag-3",
        }
    }
}

impl fmt::Display for SchedulerFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Client persistence (`ipvsadm -p TIMEOUT -M NETMASK`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Persistence {
    /// Seconds a client stays on its backend after its last connection (1 to 2147483).
    pub timeout: u32,
    /// Clients are grouped by this mask: a dotted IPv4 mask (`255.255.255.0`) on IPv4 VIPs, a
    /// prefix length on either family (`24`, `/64`). Default: the whole address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netmask: Option<Netmask>,
}

/// A persistence netmask as written: dotted IPv4 or a prefix length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Netmask {
    Dotted(std::net::Ipv4Addr),
    Prefix(u8),
}

impl Netmask {
    /// The prefix length this mask stands for, when it is contiguous.
    pub fn prefix_len(&self) -> Option<u8> {
        match self {
            Netmask::Prefix(p) => Some(*p),
            Netmask::Dotted(m) => {
                let bits = u32::from(*m);
                let ones = bits.leading_ones();
                (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
            }
        }
    }
}

impl fmt::Display for Netmask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Netmask::Dotted(m) => write!(f, "{m}"),
            Netmask::Prefix(p) => write!(f, "{p}"),
        }
    }
}

impl FromStr for Netmask {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix('/').unwrap_or(s);
        if let Ok(p) = digits.parse::<u8>() {
            return if p <= 128 {
                Ok(Netmask::Prefix(p))
            } else {
                Err(format!("netmask prefix /{p} is longer than 128 bits"))
            };
        }
        s.parse::<std::net::Ipv4Addr>()
            .map(Netmask::Dotted)
            .map_err(|_| {
                format!("invalid netmask {s:?}: expected a dotted IPv4 mask or a prefix length")
            })
    }
}

impl Serialize for Netmask {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Netmask::Prefix(p) => s.serialize_u8(*p),
            Netmask::Dotted(_) => s.collect_str(self),
        }
    }
}

/// Deserializes a value written either as an integer or as a string: the string goes through
/// `FromStr`, the integer through `from_int` (which words its own errors). Netmasks, limits,
/// fwmark ranges and durations all read this way.
fn int_or_str<'de, D, T>(
    d: D,
    expecting: &'static str,
    from_int: fn(i128) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = String>,
{
    struct V<T> {
        expecting: &'static str,
        from_int: fn(i128) -> Result<T, String>,
    }
    impl<T: FromStr<Err = String>> serde::de::Visitor<'_> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<T, E> {
            (self.from_int)(i128::from(v)).map_err(E::custom)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<T, E> {
            (self.from_int)(i128::from(v)).map_err(E::custom)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
            v.parse().map_err(E::custom)
        }
    }
    d.deserialize_any(V {
        expecting,
        from_int,
    })
}

impl<'de> Deserialize<'de> for Netmask {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        int_or_str(d, "a dotted IPv4 netmask or a prefix length", |v| {
            v.to_string().parse()
        })
    }
}

impl JsonSchema for Netmask {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Netmask".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A dotted IPv4 mask (255.255.255.0) or a prefix length (24, \"/64\").",
            "oneOf": [
                {"type": "integer", "minimum": 0, "maximum": 128},
                {"type": "string", "pattern": "^(/?[0-9]{1,3}|[0-9]{1,3}(\\.[0-9]{1,3}){3})$"}
            ]
        })
    }
}

/// How packets reach the backends.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Forwarding {
    /// `tunnel`, `direct` or `masquerade`. Only masquerade rewrites ports; only tunnel
    /// reaches a backend of the other address family.
    pub method: ForwardingMethod,
    /// Tunnel only: the encapsulation (default `ipip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encapsulation: Option<Encapsulation>,
    /// Tunnel with `gue` only: the backend's UDP port for GUE (required there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Tunnel with `gue` or `gre` only: outer checksum (`remcsum` is GUE only). Default `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<TunnelChecksum>,
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ForwardingMethod {
    /// Encapsulate to the backend (`ipvsadm -i`); backends answer clients directly.
    Tunnel,
    /// Direct routing (`ipvsadm -g`): rewrite the MAC only; backends on the same L2 segment.
    #[default]
    Direct,
    /// NAT (`ipvsadm -m`): rewrite the destination; replies must route back through the node.
    Masquerade,
}

impl ForwardingMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardingMethod::Tunnel => "tunnel",
            ForwardingMethod::Direct => "direct",
            ForwardingMethod::Masquerade => "masquerade",
        }
    }
}

impl fmt::Display for ForwardingMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Encapsulation {
    /// IP-in-IP (any kernel); an IPv6 packet goes in IPv6-in-IPv6 or IPv6-in-IPv4.
    #[default]
    Ipip,
    /// Needs Linux 5.2.
    Gue,
    /// Needs Linux 5.3.
    Gre,
}

impl Encapsulation {
    pub fn as_str(self) -> &'static str {
        match self {
            Encapsulation::Ipip => "ipip",
            Encapsulation::Gue => "gue",
            Encapsulation::Gre => "gre",
        }
    }
}

impl fmt::Display for Encapsulation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum TunnelChecksum {
    /// No outer checksum.
    #[default]
    None,
    /// An outer checksum (GUE: UDP checksum; GRE: GRE checksum).
    Csum,
    /// Remote checksum offload; GUE only.
    Remcsum,
}

impl TunnelChecksum {
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelChecksum::None => "none",
            TunnelChecksum::Csum => "csum",
            TunnelChecksum::Remcsum => "remcsum",
        }
    }
}

impl fmt::Display for TunnelChecksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One real server behind a virtual service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backend {
    /// The real server's address. Another family than the VIP's only with tunnel forwarding.
    pub address: IpAddr,
    /// Default: the service's port (0 for fwmark services). 0 is allowed only for fwmark
    /// services under masquerade, where it keeps the client's destination port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Relative share of new connections, 0 to 2147483647 (default 1; 0 takes none).
    #[serde(default = "default_weight", skip_serializing_if = "is_default_weight")]
    #[schemars(range(min = 0, max = 2147483647))]
    pub weight: u32,
    /// Stop sending new connections above this many (0 or absent: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper_threshold: Option<u32>,
    /// Resume below this many after the upper threshold was hit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower_threshold: Option<u32>,
    /// `active` (default) or `draining`.
    #[serde(default, skip_serializing_if = "BackendState::is_active")]
    pub state: BackendState,
    /// The Kubernetes node the backend runs on (the EndpointSlice's `nodeName`), so the
    /// backend role (`balanced run --role backend`) of that node finds its pods. Informational
    /// for directors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The pod behind the address (the EndpointSlice's `targetRef`). The backend role puts
    /// the VIP inside this pod's network namespace for tunnel forwarding. The exporter leaves
    /// it out for host-network pods and for pods that opted out of the tunnel setup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodRef>,
}

/// A Kubernetes pod, as an EndpointSlice's `targetRef` names it.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodRef {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's UID: what the backend role looks for in the processes' cgroups, and what
    /// tells a restarted pod (a new UID) from the old one.
    pub uid: String,
}

/// The largest weight the kernel accepts (it is an `int` there).
pub const MAX_WEIGHT: u32 = i32::MAX as u32;

fn default_weight() -> u32 {
    1
}

fn is_default_weight(w: &u32) -> bool {
    *w == 1
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum BackendState {
    /// Takes new connections by its weight.
    #[default]
    Active,
    /// Weight 0: no new connections; deleted once its connections are gone or the node's
    /// `drainTimeout` passed.
    Draining,
}

impl BackendState {
    pub fn is_active(&self) -> bool {
        *self == BackendState::Active
    }
}

/// `kind: NodeConfig` — how one LVS node runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeConfig {
    /// `balanced.io/v1`.
    #[schemars(extend("enum" = ["balanced.io/v1"]))]
    pub api_version: String,
    /// `NodeConfig`.
    #[schemars(extend("enum" = ["NodeConfig"]))]
    pub kind: String,
    pub metadata: Metadata,
    /// Everything has a default: an empty spec owns no VIP and no mark.
    #[serde(default)]
    pub spec: NodeConfigSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeConfigSpec {
    /// The dummy link that holds the VIP addresses (BGP announces what is on it). A Linux
    /// interface name: 1 to 15 bytes, no `/`, `:` or whitespace. Default `balanced0`.
    #[serde(default = "default_interface")]
    pub interface: String,
    /// Spread the VIP addresses over this many dummy links: `interface` itself, then
    /// `<interface>-1` to `<interface>-<N-1>`. A hash of each VIP's address picks its link, the
    /// same on every node. Linux walks a link's whole address list for every address it adds,
    /// so thousands of VIPs on one link take quadratic time; at 10,000 VIPs, 16 links cut it
    /// 16-fold. BGP must announce from every one of them (bird: `interface "balanced0*"`).
    /// Changing it moves no address: addresses stay where they are until withdrawn. 1 to 64,
    /// default 1.
    #[serde(default = "default_vip_links", skip_serializing_if = "is_one")]
    pub vip_links: u8,
    /// The VIPs this node owns, as CIDRs without host bits, not overlapping. IPVS services and
    /// addresses outside them are never created, changed or deleted. Empty: the node owns no
    /// VIP.
    #[serde(default)]
    pub vip_ranges: Vec<IpNet>,
    /// The firewall marks this node owns, as `N` or `FROM-TO` (decimal or `0x` hex), not
    /// overlapping, without 0.
    #[serde(default)]
    pub fwmark_ranges: Vec<FwmarkRange>,
    /// `net.ipv4.vs.*` sysctls to converge, by full name (`net.ipv4.vs.sloppy_tcp: 1`). Names
    /// mainline Linux does not document are accepted with a warning.
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
    /// IPVS connection timeouts (set through netlink); absent ones are left as they are.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// How long a draining destination may keep connections before it is deleted anyway
    /// (0s to 168h, default 5m).
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: Duration,
    /// How often the kernel is observed again to repair drift (1s to 1h, default 30s).
    #[serde(default = "default_resync_interval")]
    pub resync_interval: Duration,
    /// Time between withdrawing a VIP address and deleting its services, so BGP converges
    /// before the services go (0s to 10m, default 5s).
    #[serde(default = "default_withdraw_delay")]
    pub withdraw_delay: Duration,
    /// How much one converge may delete before an operator must release it.
    #[serde(default)]
    pub max_deletions: DeletionLimits,
    /// Withdraw every VIP address (BGP withdraws; IPVS services stay).
    #[serde(default)]
    pub maintenance: bool,
    /// Withdraw every VIP address when converging keeps failing for this long (at least
    /// `resyncInterval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdraw_on_failure: Option<Duration>,
}

impl Default for NodeConfigSpec {
    fn default() -> Self {
        NodeConfigSpec {
            interface: default_interface(),
            vip_links: default_vip_links(),
            vip_ranges: Vec::new(),
            fwmark_ranges: Vec::new(),
            sysctls: BTreeMap::new(),
            timeouts: Timeouts::default(),
            drain_timeout: default_drain_timeout(),
            resync_interval: default_resync_interval(),
            withdraw_delay: default_withdraw_delay(),
            max_deletions: DeletionLimits::default(),
            maintenance: false,
            withdraw_on_failure: None,
        }
    }
}

pub const DEFAULT_INTERFACE: &str = "balanced0";

fn default_interface() -> String {
    DEFAULT_INTERFACE.to_owned()
}

/// The most links `vipLinks` may ask for.
pub const MAX_VIP_LINKS: u8 = 64;

fn default_vip_links() -> u8 {
    1
}

fn is_one(links: &u8) -> bool {
    *links == 1
}

impl NodeConfigSpec {
    /// The VIP links, in order: `interface`, `<interface>-1`, … (`vipLinks` of them).
    pub fn vip_links(&self) -> Vec<String> {
        (0..self.vip_links.max(1))
            .map(|i| vip_link_name(&self.interface, i))
            .collect()
    }
}

/// The name of VIP link number `index` of `interface` (see `vipLinks`).
pub fn vip_link_name(interface: &str, index: u8) -> String {
    match index {
        0 => interface.to_owned(),
        i => format!("{interface}-{i}"),
    }
}

fn default_drain_timeout() -> Duration {
    Duration::from_secs(300)
}

fn default_resync_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_withdraw_delay() -> Duration {
    Duration::from_secs(5)
}

/// IPVS connection timeouts (`ipvsadm --set TCP TCPFIN UDP`): whole seconds from 1s to
/// 2147483s; an absent one is left as the kernel has it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Timeouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_fin: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<Duration>,
}

/// How many deletions one converge may make; more are held until an operator releases them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeletionLimits {
    /// Virtual services (and VIP addresses) deleted at once: a count or a percentage of the
    /// owned services. Default `50%`.
    #[serde(default = "default_limit")]
    pub services: Limit,
    /// Destinations deleted at once: a count or a percentage of the owned destinations.
    /// Default `50%`.
    #[serde(default = "default_limit")]
    pub destinations: Limit,
}

impl Default for DeletionLimits {
    fn default() -> Self {
        DeletionLimits {
            services: default_limit(),
            destinations: default_limit(),
        }
    }
}

fn default_limit() -> Limit {
    Limit::Percent(50)
}

/// A count (`10`) or a percentage (`"25%"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Count(u64),
    Percent(u8),
}

impl Limit {
    /// How many deletions out of `total` owned objects this limit allows.
    pub fn allowed(self, total: usize) -> usize {
        match self {
            Limit::Count(n) => usize::try_from(n).unwrap_or(usize::MAX),
            Limit::Percent(p) => (total * usize::from(p)).div_ceil(100),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Count(n) => write!(f, "{n}"),
            Limit::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl FromStr for Limit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("invalid limit {s:?}: expected a count (10) or a percentage (\"25%\")");
        match s.strip_suffix('%') {
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if p <= 100 => Ok(Limit::Percent(p)),
                Ok(_) => Err(format!("invalid limit {s:?}: a percentage is at most 100%")),
                Err(_) => Err(bad()),
            },
            None => s.trim().parse().map(Limit::Count).map_err(|_| bad()),
        }
    }
}

impl Serialize for Limit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Limit::Count(n) => s.serialize_u64(*n),
            Limit::Percent(_) => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        int_or_str(d, "a count or a percentage such as \"25%\"", |v| {
            u64::try_from(v)
                .map(Limit::Count)
                .map_err(|_| format!("invalid limit {v}: must not be negative"))
        })
    }
}

impl JsonSchema for Limit {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Limit".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A count (10) or a percentage (\"25%\").",
            "oneOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": "^[0-9]{1,3}%$"}
            ]
        })
    }
}

/// An inclusive range of firewall marks, written `N` or `FROM-TO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FwmarkRange {
    pub first: u32,
    pub last: u32,
}

impl FwmarkRange {
    pub fn contains(&self, mark: u32) -> bool {
        (self.first..=self.last).contains(&mark)
    }
}

impl fmt::Display for FwmarkRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl FromStr for FwmarkRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("invalid fwmark range {s:?}: expected N or FROM-TO");
        let (first, last) = match s.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (s.trim(), s.trim()),
        };
        let first: u32 = parse_mark(first).ok_or_else(bad)?;
        let last: u32 = parse_mark(last).ok_or_else(bad)?;
        if first > last {
            return Err(format!(
                "invalid fwmark range {s:?}: {first} is above {last}"
            ));
        }
        Ok(FwmarkRange { first, last })
    }
}

fn parse_mark(s: &str) -> Option<u32> {
    match s.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

impl Serialize for FwmarkRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.first == self.last {
            s.serialize_u32(self.first)
        } else {
            s.collect_str(self)
        }
    }
}

impl<'de> Deserialize<'de> for FwmarkRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        int_or_str(d, "a firewall mark or a range FROM-TO", |v| {
            if v < 0 {
                return Err(format!("fwmark {v} must not be negative"));
            }
            u32::try_from(v)
                .map(|m| FwmarkRange { first: m, last: m })
                .map_err(|_| format!("fwmark {v} does not fit in 32 bits"))
        })
    }
}

impl JsonSchema for FwmarkRange {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FwmarkRange".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A firewall mark (N) or an inclusive range (\"FROM-TO\").",
            "oneOf": [
                {"type": "integer", "minimum": 0, "maximum": 4294967295u64},
                {"type": "string", "pattern": "^(0x[0-9a-fA-F]+|[0-9]+)(-(0x[0-9a-fA-F]+|[0-9]+))?$"}
            ]
        })
    }
}

/// A duration written with a unit: `500ms`, `30s`, `5m`, `1h`, or combined (`1m30s`). A bare
/// integer is seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const fn from_secs(s: u64) -> Self {
        Duration(std::time::Duration::from_secs(s))
    }

    pub fn as_std(self) -> std::time::Duration {
        self.0
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total_ms = self.0.as_millis();
        if total_ms == 0 {
            return f.write_str("0s");
        }
        let (h, rest) = (total_ms / 3_600_000, total_ms % 3_600_000);
        let (m, rest) = (rest / 60_000, rest % 60_000);
        let (s, ms) = (rest / 1000, rest % 1000);
        for (value, unit) in [(h, "h"), (m, "m"), (s, "s"), (ms, "ms")] {
            if value > 0 {
                write!(f, "{value}{unit}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for Duration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("invalid duration {s:?}: expected e.g. 500ms, 30s, 5m, 1h or 1m30s");
        let s = s.trim();
        if s.is_empty() {
            return Err(bad());
        }
        if let Ok(secs) = s.parse::<u64>() {
            return Ok(Duration::from_secs(secs));
        }
        let mut total = std::time::Duration::ZERO;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let value: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let part = match &rest[..unit_len] {
                "ms" => std::time::Duration::from_millis(value),
                "s" => std::time::Duration::from_secs(value),
                "m" => std::time::Duration::from_secs(value.saturating_mul(60)),
                "h" => std::time::Duration::from_secs(value.saturating_mul(3600)),
                _ => return Err(bad()),
            };
            rest = &rest[unit_len..];
            total = total.checked_add(part).ok_or_else(bad)?;
        }
        Ok(Duration(total))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        int_or_str(d, "a duration such as 30s, 5m or 1h", |v| {
            u64::try_from(v)
                .map(Duration::from_secs)
                .map_err(|_| format!("invalid duration {v}: must not be negative"))
        })
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration: 500ms, 30s, 5m, 1h, 1m30s; a bare integer is seconds.",
            "oneOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": "^([0-9]+(ms|s|m|h))+$"}
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_round_trip() {
        for (text, ms) in [
            ("500ms", 500),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1m30s", 90_000),
        ] {
            let d: Duration = text.parse().unwrap();
            assert_eq!(d.0.as_millis(), ms, "{text}");
            assert_eq!(d.to_string(), text);
        }
        assert_eq!("45".parse::<Duration>().unwrap(), Duration::from_secs(45));
        assert!("5 minutes".parse::<Duration>().is_err());
        assert!("m".parse::<Duration>().is_err());
    }

    #[test]
    fn limits_allow_a_ceiling_of_the_percentage() {
        assert_eq!(Limit::Percent(50).allowed(3), 2);
        assert_eq!(Limit::Percent(50).allowed(0), 0);
        assert_eq!(Limit::Count(7).allowed(3), 7);
        assert!("101%".parse::<Limit>().is_err());
    }

    #[test]
    fn netmasks_know_their_prefix() {
        assert_eq!(
            "255.255.255.0".parse::<Netmask>().unwrap().prefix_len(),
            Some(24)
        );
        assert_eq!("255.0.255.0".parse::<Netmask>().unwrap().prefix_len(), None);
        assert_eq!("/64".parse::<Netmask>().unwrap().prefix_len(), Some(64));
        assert!("129".parse::<Netmask>().is_err());
    }

    #[test]
    fn fwmark_ranges_parse() {
        assert_eq!(
            "7".parse::<FwmarkRange>().unwrap(),
            FwmarkRange { first: 7, last: 7 }
        );
        assert_eq!(
            "0x10-0x20".parse::<FwmarkRange>().unwrap(),
            FwmarkRange {
                first: 16,
                last: 32
            }
        );
        assert!("9-3".parse::<FwmarkRange>().is_err());
    }
}
