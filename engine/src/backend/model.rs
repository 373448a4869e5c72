//! The backend role's state of one pod's network namespace — one type, [`PodNet`], for both the
//! desired state (derived from the manifests and the pod's own links) and the observed state
//! (read from the namespace), so planning and verification compare like with like.
//!
//! Pure data and pure derivations: no I/O here. Only what balanced owns is ever in a `PodNet`:
//! the tunnel devices it needs, the VIP addresses it recorded adding, its own rule and route
//! (marked with [`RTPROT_BALANCED`]), the FOU ports it recorded, the `rp_filter` it sets.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use balanced_schemas::v1::{self, Encapsulation, ForwardingMethod, PodRef, TunnelChecksum};
use serde::{Deserialize, Serialize};

use crate::model::Family;

/// The routing table that holds the MSS-clamping copy of the pod's default route.
pub const MSS_TABLE: u32 = 4_177;
/// The priority of the `from VIP lookup MSS_TABLE` rules: before `main` (32766).
pub const MSS_RULE_PRIORITY: u32 = 30_177;
/// `rtm_protocol`/`FRA_PROTOCOL` marking the rules and routes balanced made (not in iproute2's
/// `rt_protos` list).
pub const RTPROT_BALANCED: u8 = 177;

/// A fallback tunnel device the kernel creates in every network namespace once its module is
/// loaded on the node; it receives the encapsulated packets from any director.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TunnelDevice {
    /// IPv4 in IPv4 (module `ipip`).
    Tunl0,
    /// IPv6 in IPv4 (module `sit`).
    Sit0,
    /// IPv6 in IPv6 (module `ip6_tunnel`); its fallback device takes no IPv4 inside IPv6.
    Ip6tnl0,
    /// GRE over IPv4, either family inside (module `ip_gre`).
    Gre0,
    /// GRE over IPv6 (module `ip6_gre`).
    Ip6gre0,
}

impl TunnelDevice {
    pub fn name(self) -> &'static str {
        match self {
            TunnelDevice::Tunl0 => "tunl0",
            TunnelDevice::Sit0 => "sit0",
            TunnelDevice::Ip6tnl0 => "ip6tnl0",
            TunnelDevice::Gre0 => "gre0",
            TunnelDevice::Ip6gre0 => "ip6gre0",
        }
    }

    /// The module that creates the device, for error messages.
    pub fn module(self) -> &'static str {
        match self {
            TunnelDevice::Tunl0 => "ipip",
            TunnelDevice::Sit0 => "sit",
            TunnelDevice::Ip6tnl0 => "ip6_tunnel",
            TunnelDevice::Gre0 => "ip_gre",
            TunnelDevice::Ip6gre0 => "ip6_gre",
        }
    }
}

impl fmt::Display for TunnelDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the director wraps packets to one pod for one VIP: the service's encapsulation and the
/// pod address's family (the outer header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tunnel {
    pub encapsulation: Encapsulation,
    pub outer: Family,
    /// GUE only: the UDP port the pod receives on.
    pub port: Option<u16>,
    pub checksum: TunnelChecksum,
}

/// A combination the backend role cannot receive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    #[error("IPv4 VIP {vip} over IPv6 to the pod: the fallback ip6tnl0 receives IPv6 only")]
    Ipv4OverIpv6 { vip: IpAddr },
    #[error("GUE to VIP {vip} without a port")]
    GueWithoutPort { vip: IpAddr },
}

impl Tunnel {
    /// The device that decapsulates this tunnel for a VIP of family `inner`. GUE is received by
    /// a FOU port that hands the inner IPIP (or IPv6-in-IP) packet to the IPIP device.
    pub fn device(&self, inner: Family, vip: IpAddr) -> Result<TunnelDevice, Unsupported> {
        match (self.encapsulation, self.outer, inner) {
            (Encapsulation::Gre, Family::V4, _) => Ok(TunnelDevice::Gre0),
            (Encapsulation::Gre, Family::V6, _) => Ok(TunnelDevice::Ip6gre0),
            (_, Family::V4, Family::V4) => Ok(TunnelDevice::Tunl0),
            (_, Family::V4, Family::V6) => Ok(TunnelDevice::Sit0),
            (_, Family::V6, Family::V6) => Ok(TunnelDevice::Ip6tnl0),
            (_, Family::V6, Family::V4) => Err(Unsupported::Ipv4OverIpv6 { vip }),
        }
    }

    /// Bytes the director adds in front of the inner packet (what IPVS's `ip_vs_xmit.c`
    /// reserves): the outer IP header, plus 4 for GRE (8 with checksum), plus UDP 8 and the
    /// GUE header 4 for GUE (8 more with remote checksum offload).
    pub fn overhead(&self) -> u32 {
        let outer = match self.outer {
            Family::V4 => 20,
            Family::V6 => 40,
        };
        outer
            + match (self.encapsulation, self.checksum) {
                (Encapsulation::Ipip, _) => 0,
                (Encapsulation::Gre, TunnelChecksum::Csum) => 8,
                (Encapsulation::Gre, _) => 4,
                (Encapsulation::Gue, TunnelChecksum::Remcsum) => 8 + 4 + 8,
                (Encapsulation::Gue, _) => 8 + 4,
            }
    }
}

/// A FOU receive port in GUE mode (`ip fou add port PORT gue [-6]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FouPort {
    pub family: Family,
    pub port: u16,
}

impl fmt::Display for FouPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fou port {} gue ({})",
            self.port,
            family_name(self.family)
        )
    }
}

pub fn family_name(family: Family) -> &'static str {
    match family {
        Family::V4 => "IPv4",
        Family::V6 => "IPv6",
    }
}

/// What the manifests ask of one pod: every VIP it serves by tunnel, with each way it is
/// reached. Draining backends (terminating pods still serving) are included: they keep the VIP
/// so established flows finish; a pod no longer listed (not ready, deleted) is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PodIntent {
    pub vips: BTreeMap<IpAddr, BTreeSet<Tunnel>>,
}

/// The pods of `node` that back tunnel-forwarded services, from the Balancers of the manifests.
pub fn pod_intents<'a>(
    balancers: impl IntoIterator<Item = &'a v1::Balancer>,
    node: &str,
) -> BTreeMap<PodRef, PodIntent> {
    let mut pods: BTreeMap<PodRef, PodIntent> = BTreeMap::new();
    for balancer in balancers {
        let vip = balancer.spec.vip;
        for service in &balancer.spec.services {
            let forwarding = &service.forwarding;
            if forwarding.method != ForwardingMethod::Tunnel {
                continue;
            }
            for backend in &service.backends {
                let (Some(pod), Some(on)) = (&backend.pod, &backend.node) else {
                    continue;
                };
                if on != node {
                    continue;
                }
                let tunnel = Tunnel {
                    encapsulation: forwarding.encapsulation.unwrap_or_default(),
                    outer: Family::of(&backend.address),
                    port: forwarding.port,
                    checksum: forwarding.checksum.unwrap_or_default(),
                };
                pods.entry(pod.clone())
                    .or_default()
                    .vips
                    .entry(vip)
                    .or_default()
                    .insert(tunnel);
            }
        }
    }
    pods
}

/// A tunnel device as balanced wants it: up, with this MTU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelLink {
    pub up: bool,
    pub mtu: u32,
}

/// A route as `ip route` shows it, reduced to what the MSS clamp copies and sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayRoute {
    pub gateway: Option<IpAddr>,
    pub oif: u32,
    /// `RTNH_F_ONLINK` and friends, copied from the pod's route.
    pub flags: u32,
    /// `advmss` (RTAX_ADVMSS); 0 when unset.
    pub advmss: u32,
}

/// The links and default routes of a pod's namespace that the desired state derives from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PodFacts {
    /// The MTU of the primary interface: the one the IPv4 (else IPv6) default route leaves by.
    pub primary_mtu: Option<u32>,
    /// The pod's own default route per family (main table).
    pub default_routes: BTreeMap<Family, GatewayRoute>,
}

/// One pod namespace in balanced's terms, desired or observed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodNet {
    pub tunnels: BTreeMap<TunnelDevice, TunnelLink>,
    /// VIP addresses (/32, /128) per device.
    pub addresses: BTreeSet<(TunnelDevice, IpAddr)>,
    pub fou_ports: BTreeSet<FouPort>,
    /// `net.ipv4.conf.<NAME>.rp_filter` by NAME (`all`, `tunl0`, …).
    pub rp_filter: BTreeMap<String, u32>,
    /// VIPs with a `from VIP lookup MSS_TABLE` rule.
    pub rules: BTreeSet<IpAddr>,
    /// The default route of MSS_TABLE per family.
    pub routes: BTreeMap<Family, GatewayRoute>,
}

/// The desired state of a pod: what `intent` needs given the pod's own links (`facts`).
/// Combinations that cannot work are returned apart and left out.
pub fn desired(intent: &PodIntent, facts: &PodFacts) -> (PodNet, Vec<Unsupported>) {
    let mut net = PodNet::default();
    let mut problems = Vec::new();
    let mut device_overhead: BTreeMap<TunnelDevice, u32> = BTreeMap::new();
    let mut family_overhead: BTreeMap<Family, u32> = BTreeMap::new();
    for (vip, tunnels) in &intent.vips {
        let inner = Family::of(vip);
        for tunnel in tunnels {
            let device = match tunnel.device(inner, *vip) {
                Ok(device) => device,
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            };
            if tunnel.encapsulation == Encapsulation::Gue {
                let Some(port) = tunnel.port else {
                    problems.push(Unsupported::GueWithoutPort { vip: *vip });
                    continue;
                };
                net.fou_ports.insert(FouPort {
                    family: tunnel.outer,
                    port,
                });
            }
            let overhead = device_overhead.entry(device).or_default();
            *overhead = (*overhead).max(tunnel.overhead());
            let overhead = family_overhead.entry(inner).or_default();
            *overhead = (*overhead).max(tunnel.overhead());
            net.addresses.insert((device, *vip));
            if inner == Family::V4 {
                net.rp_filter.insert(device.name().to_owned(), 0);
                net.rp_filter.insert("all".to_owned(), 0);
            }
        }
    }
    let Some(mtu) = facts.primary_mtu else {
        // Without a primary interface there is no MTU to derive: devices are brought up with
        // the kernel's MTU and no MSS clamp is set.
        for device in device_overhead.keys() {
            net.tunnels.insert(*device, TunnelLink { up: true, mtu: 0 });
        }
        return (net, problems);
    };
    for (device, overhead) in device_overhead {
        net.tunnels.insert(
            device,
            TunnelLink {
                up: true,
                mtu: mtu.saturating_sub(overhead),
            },
        );
    }
    for (family, overhead) in family_overhead {
        let Some(route) = facts.default_routes.get(&family) else {
            continue;
        };
        let headers = match family {
            Family::V4 => 40,
            Family::V6 => 60,
        };
        net.routes.insert(
            family,
            GatewayRoute {
                advmss: mtu.saturating_sub(overhead + headers),
                ..*route
            },
        );
        net.rules.extend(
            net.addresses
                .iter()
                .map(|(_, vip)| *vip)
                .filter(|vip| Family::of(vip) == family),
        );
    }
    (net, problems)
}
