//! The messages the backend role sends inside a pod's namespace and the replies it reads: link
//! MTU and state (`ifinfomsg`), routes (`rtmsg`), policy rules (`fib_rule_hdr`) and FOU ports
//! (generic netlink family `fou`). Addresses reuse [`crate::kernel::rtnl`].
//!
//! Pure: bytes in, values out; every read bounds-checked, unknown attributes skipped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::backend::model::{FouPort, GatewayRoute, MSS_RULE_PRIORITY, MSS_TABLE, RTPROT_BALANCED};
use crate::kernel::netlink::{
    self, AttrReader, AttrWriter, DecodeError, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use crate::kernel::rtnl::RTM_SETLINK;
use crate::model::Family;

pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_DELROUTE: u16 = 25;
pub const RTM_GETROUTE: u16 = 26;
pub const RTM_NEWRULE: u16 = 32;
pub const RTM_DELRULE: u16 = 33;
pub const RTM_GETRULE: u16 = 34;
const NLM_F_REPLACE: u16 = 0x100;

const IFINFOMSG_LEN: usize = 16;
const RTMSG_LEN: usize = 12;
const IFLA_MTU: u16 = 4;
const IFF_UP: u32 = libc::IFF_UP as u32;

const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_METRICS: u16 = 8;
const RTA_TABLE: u16 = 15;
const RTAX_ADVMSS: u16 = 8;
const RT_TABLE_MAIN: u32 = 254;
const RTN_UNICAST: u8 = 1;
const RT_SCOPE_UNIVERSE: u8 = 0;
/// The only route flag copied: `LINKDOWN`/`DEAD` are state the kernel refuses as input.
const RTNH_F_ONLINK: u32 = 4;

const FRA_SRC: u16 = 2;
const FRA_PRIORITY: u16 = 6;
const FRA_TABLE: u16 = 15;
const FRA_PROTOCOL: u16 = 21;
const FR_ACT_TO_TBL: u8 = 1;

pub const FOU_FAMILY_NAME: &str = "fou";
const FOU_CMD_ADD: u8 = 1;
const FOU_CMD_DEL: u8 = 2;
const FOU_CMD_GET: u8 = 3;
const FOU_GENL_VERSION: u8 = 1;
const FOU_ATTR_PORT: u16 = 1;
const FOU_ATTR_AF: u16 = 2;
const FOU_ATTR_TYPE: u16 = 4;
const FOU_ENCAP_GUE: u8 = 2;

fn af(family: Family) -> u8 {
    match family {
        Family::V4 => libc::AF_INET as u8,
        Family::V6 => libc::AF_INET6 as u8,
    }
}

fn family_of_af(af: u8) -> Option<Family> {
    match i32::from(af) {
        libc::AF_INET => Some(Family::V4),
        libc::AF_INET6 => Some(Family::V6),
        _ => None,
    }
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn ip_of(family: Family, p: &[u8]) -> Option<IpAddr> {
    match (family, p.len()) {
        (Family::V4, 4) => Some(IpAddr::V4(Ipv4Addr::new(p[0], p[1], p[2], p[3]))),
        (Family::V6, 16) => {
            let mut b = [0u8; 16];
            b.copy_from_slice(p);
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

fn host_prefix(family: Family) -> u8 {
    match family {
        Family::V4 => 32,
        Family::V6 => 128,
    }
}

fn u32_at(p: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
}

/// `IFLA_MTU` of an `RTM_NEWLINK` payload (the rest is [`crate::kernel::rtnl::decode_link`]).
pub fn link_mtu(payload: &[u8]) -> Result<Option<u32>, DecodeError> {
    let attrs = payload.get(IFINFOMSG_LEN..).ok_or(DecodeError::Truncated {
        what: "ifinfomsg",
        len: payload.len(),
        need: IFINFOMSG_LEN,
    })?;
    let r = AttrReader { context: "link" };
    for (k, p) in netlink::attributes(attrs)? {
        if k == IFLA_MTU {
            return Ok(Some(r.u32(k, p)?));
        }
    }
    Ok(None)
}

/// `ip link show` (every link).
pub fn encode_dump_links(out: &mut Vec<u8>, sequence: u32) {
    netlink::push_message(
        out,
        crate::kernel::rtnl::RTM_GETLINK,
        NLM_F_REQUEST | NLM_F_DUMP,
        sequence,
        |out| out.extend_from_slice(&[0; IFINFOMSG_LEN]),
    );
}

/// `ip link set dev INDEX up [mtu MTU]` (MTU 0: unchanged).
pub fn encode_set_link_up(out: &mut Vec<u8>, index: u32, mtu: u32, sequence: u32) {
    netlink::push_message(
        out,
        RTM_SETLINK,
        NLM_F_REQUEST | NLM_F_ACK,
        sequence,
        |out| {
            out.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
            out.extend_from_slice(&index.to_ne_bytes());
            out.extend_from_slice(&IFF_UP.to_ne_bytes());
            out.extend_from_slice(&IFF_UP.to_ne_bytes());
            if mtu != 0 {
                AttrWriter::new(out).u32(IFLA_MTU, mtu);
            }
        },
    );
}

/// A default route as a dump shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultRoute {
    pub family: Family,
    pub table: u32,
    pub protocol: u8,
    pub route: GatewayRoute,
}

impl DefaultRoute {
    /// The pod's own default route (main table, not ours).
    pub fn is_main(&self) -> bool {
        self.table == RT_TABLE_MAIN && self.protocol != RTPROT_BALANCED
    }

    /// The MSS-clamping route balanced made.
    pub fn is_ours(&self) -> bool {
        self.table == MSS_TABLE && self.protocol == RTPROT_BALANCED
    }
}

/// `ip route show table all` (both families).
pub fn encode_dump_routes(out: &mut Vec<u8>, sequence: u32) {
    netlink::push_message(
        out,
        RTM_GETROUTE,
        NLM_F_REQUEST | NLM_F_DUMP,
        sequence,
        |out| out.extend_from_slice(&[0; RTMSG_LEN]),
    );
}

/// Reads an `RTM_NEWROUTE` payload; `None` unless it is a unicast default route with one next
/// hop (multipath routes have no `RTA_OIF` and are not copied).
pub fn decode_default_route(payload: &[u8]) -> Result<Option<DefaultRoute>, DecodeError> {
    let fixed = payload.get(..RTMSG_LEN).ok_or(DecodeError::Truncated {
        what: "rtmsg",
        len: payload.len(),
        need: RTMSG_LEN,
    })?;
    let Some(family) = family_of_af(fixed[0]) else {
        return Ok(None);
    };
    if fixed[1] != 0 || fixed[7] != RTN_UNICAST {
        return Ok(None);
    }
    let r = AttrReader { context: "route" };
    let mut table = u32::from(fixed[4]);
    let mut oif = None;
    let mut gateway = None;
    let mut advmss = 0;
    for (k, p) in netlink::attributes(&payload[RTMSG_LEN..])? {
        match k {
            RTA_TABLE => table = r.u32(k, p)?,
            RTA_OIF => oif = Some(r.u32(k, p)?),
            RTA_GATEWAY => gateway = ip_of(family, p),
            RTA_METRICS => {
                for (mk, mp) in netlink::attributes(p)? {
                    if mk == RTAX_ADVMSS {
                        advmss = r.u32(mk, mp)?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(oif.map(|oif| DefaultRoute {
        family,
        table,
        protocol: fixed[5],
        route: GatewayRoute {
            gateway,
            oif,
            flags: u32_at(fixed, 8) & RTNH_F_ONLINK,
            advmss,
        },
    }))
}

/// `ip route replace|del default [via GW] dev OIF advmss N table MSS_TABLE proto 177`.
pub fn encode_mss_route(
    out: &mut Vec<u8>,
    add: bool,
    family: Family,
    route: &GatewayRoute,
    sequence: u32,
) {
    let (kind, flags) = if add {
        (
            RTM_NEWROUTE,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )
    } else {
        (RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK)
    };
    netlink::push_message(out, kind, flags, sequence, |out| {
        // rtm_table 0 (RT_TABLE_UNSPEC): the table is RTA_TABLE, which holds ids above 255.
        out.extend_from_slice(&[
            af(family),
            0,
            0,
            0,
            0,
            RTPROT_BALANCED,
            RT_SCOPE_UNIVERSE,
            RTN_UNICAST,
        ]);
        out.extend_from_slice(&route.flags.to_ne_bytes());
        let mut w = AttrWriter::new(out);
        w.u32(RTA_TABLE, MSS_TABLE);
        if let Some(gateway) = route.gateway {
            w.bytes(RTA_GATEWAY, &ip_bytes(&gateway));
        }
        w.u32(RTA_OIF, route.oif);
        if add && route.advmss != 0 {
            w.nested(RTA_METRICS, |m| m.u32(RTAX_ADVMSS, route.advmss));
        }
    });
}

/// A policy rule as a dump shows it, reduced to what identifies balanced's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub source: Option<IpAddr>,
    pub source_len: u8,
    pub table: u32,
    pub priority: u32,
    pub protocol: u8,
}

impl Rule {
    /// `from VIP lookup MSS_TABLE proto 177`: a rule balanced made; its VIP.
    pub fn ours(&self) -> Option<IpAddr> {
        let source = self.source?;
        (self.table == MSS_TABLE
            && self.protocol == RTPROT_BALANCED
            && self.source_len == host_prefix(Family::of(&source)))
        .then_some(source)
    }
}

/// `ip rule show` (both families).
pub fn encode_dump_rules(out: &mut Vec<u8>, sequence: u32) {
    netlink::push_message(
        out,
        RTM_GETRULE,
        NLM_F_REQUEST | NLM_F_DUMP,
        sequence,
        |out| out.extend_from_slice(&[0; RTMSG_LEN]),
    );
}

/// Reads an `RTM_NEWRULE` payload; `None` for families other than IPv4 and IPv6.
pub fn decode_rule(payload: &[u8]) -> Result<Option<Rule>, DecodeError> {
    let fixed = payload.get(..RTMSG_LEN).ok_or(DecodeError::Truncated {
        what: "fib_rule_hdr",
        len: payload.len(),
        need: RTMSG_LEN,
    })?;
    let Some(family) = family_of_af(fixed[0]) else {
        return Ok(None);
    };
    let r = AttrReader { context: "rule" };
    let mut rule = Rule {
        source: None,
        source_len: fixed[2],
        table: u32::from(fixed[4]),
        priority: 0,
        protocol: 0,
    };
    for (k, p) in netlink::attributes(&payload[RTMSG_LEN..])? {
        match k {
            FRA_SRC => rule.source = ip_of(family, p),
            FRA_PRIORITY => rule.priority = r.u32(k, p)?,
            FRA_TABLE => rule.table = r.u32(k, p)?,
            FRA_PROTOCOL => rule.protocol = r.u8(k, p)?,
            _ => {}
        }
    }
    Ok(Some(rule))
}

/// `ip rule add|del from VIP lookup MSS_TABLE priority MSS_RULE_PRIORITY protocol 177`.
pub fn encode_rule(out: &mut Vec<u8>, add: bool, vip: &IpAddr, sequence: u32) {
    let (kind, flags) = if add {
        (
            RTM_NEWRULE,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
    } else {
        (RTM_DELRULE, NLM_F_REQUEST | NLM_F_ACK)
    };
    let family = Family::of(vip);
    netlink::push_message(out, kind, flags, sequence, |out| {
        out.extend_from_slice(&[
            af(family),
            0,
            host_prefix(family),
            0,
            0,
            0,
            0,
            FR_ACT_TO_TBL,
        ]);
        out.extend_from_slice(&0u32.to_ne_bytes());
        let mut w = AttrWriter::new(out);
        w.bytes(FRA_SRC, &ip_bytes(vip));
        w.u32(FRA_PRIORITY, MSS_RULE_PRIORITY);
        w.u32(FRA_TABLE, MSS_TABLE);
        w.u8(FRA_PROTOCOL, RTPROT_BALANCED);
    });
}

fn push_genl(out: &mut Vec<u8>, family_id: u16, command: u8, flags: u16, sequence: u32) -> usize {
    let start = out.len();
    netlink::push_message(out, family_id, flags, sequence, |out| {
        out.extend_from_slice(&[command, FOU_GENL_VERSION, 0, 0]);
    });
    start
}

/// `ip fou add|del port PORT gue [-6]`.
pub fn encode_fou(out: &mut Vec<u8>, family_id: u16, add: bool, port: &FouPort, sequence: u32) {
    let command = if add { FOU_CMD_ADD } else { FOU_CMD_DEL };
    netlink::push_message(out, family_id, NLM_F_REQUEST | NLM_F_ACK, sequence, |out| {
        out.extend_from_slice(&[command, FOU_GENL_VERSION, 0, 0]);
        let mut w = AttrWriter::new(out);
        w.be16(FOU_ATTR_PORT, port.port);
        w.u8(FOU_ATTR_AF, af(port.family));
        if add {
            w.u8(FOU_ATTR_TYPE, FOU_ENCAP_GUE);
        }
    });
}

/// `ip fou show`.
pub fn encode_dump_fou(out: &mut Vec<u8>, family_id: u16, sequence: u32) {
    push_genl(
        out,
        family_id,
        FOU_CMD_GET,
        NLM_F_REQUEST | NLM_F_DUMP,
        sequence,
    );
}

/// Reads one FOU port of a dump; `None` for ports that are not GUE.
pub fn decode_fou(payload: &[u8]) -> Result<Option<FouPort>, DecodeError> {
    let attrs = payload.get(4..).ok_or(DecodeError::Truncated {
        what: "genlmsghdr",
        len: payload.len(),
        need: 4,
    })?;
    let r = AttrReader { context: "fou" };
    let (mut port, mut family, mut gue) = (None, None, false);
    for (k, p) in netlink::attributes(attrs)? {
        match k {
            FOU_ATTR_PORT => port = Some(r.be16(k, p)?),
            FOU_ATTR_AF => family = family_of_af(r.u8(k, p)?),
            FOU_ATTR_TYPE => gue = r.u8(k, p)? == FOU_ENCAP_GUE,
            _ => {}
        }
    }
    Ok(match (port, family, gue) {
        (Some(port), Some(family), true) => Some(FouPort { family, port }),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::netlink::messages;

    #[test]
    fn rule_add_matches_ip_rule_layout() {
        let mut buf = Vec::new();
        encode_rule(&mut buf, true, &"198.51.100.7".parse().expect("ip"), 3);
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            &[60, 0, 0, 0, 32, 0, 0x05, 0x06, 3, 0, 0, 0, 0, 0, 0, 0][..], // NEWRULE ACK|CREATE|EXCL
            &[2, 0, 32, 0, 0, 0, 0, 1, 0, 0, 0, 0],       // AF_INET, src_len 32, FR_ACT_TO_TBL
            &[8, 0, 2, 0, 198, 51, 100, 7],               // FRA_SRC
            &[8, 0, 6, 0], &MSS_RULE_PRIORITY.to_ne_bytes(), // FRA_PRIORITY
            &[8, 0, 15, 0], &MSS_TABLE.to_ne_bytes(),     // FRA_TABLE
            &[5, 0, 21, 0, RTPROT_BALANCED, 0, 0, 0],     // FRA_PROTOCOL
        ].concat();
        assert_eq!(buf, expected);
        let msgs = messages(&buf).expect("framing");
        let rule = decode_rule(msgs[0].payload)
            .expect("decodes")
            .expect("inet");
        assert_eq!(rule.ours(), Some("198.51.100.7".parse().expect("ip")));
        assert_eq!(rule.priority, MSS_RULE_PRIORITY);
    }

    #[test]
    fn foreign_rules_are_not_ours() {
        let mut buf = Vec::new();
        encode_rule(&mut buf, false, &"2001:db8::7".parse().expect("ip"), 1);
        let msgs = messages(&buf).expect("framing");
        let mut rule = decode_rule(msgs[0].payload)
            .expect("decodes")
            .expect("inet");
        assert!(rule.ours().is_some());
        rule.protocol = 0;
        assert_eq!(rule.ours(), None, "a rule without balanced's protocol");
        rule.protocol = RTPROT_BALANCED;
        rule.table = RT_TABLE_MAIN;
        assert_eq!(rule.ours(), None, "a rule into another table");
    }

    #[test]
    fn mss_route_round_trips_with_its_metrics() {
        let route = GatewayRoute {
            gateway: Some("10.244.1.1".parse().expect("ip")),
            oif: 2,
            flags: 4,
            advmss: 1420,
        };
        let mut buf = Vec::new();
        encode_mss_route(&mut buf, true, Family::V4, &route, 9);
        let msgs = messages(&buf).expect("framing");
        assert_eq!(msgs[0].header.kind, RTM_NEWROUTE);
        assert_eq!(
            msgs[0].header.flags,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        );
        let back = decode_default_route(msgs[0].payload)
            .expect("decodes")
            .expect("a default route");
        assert!(back.is_ours());
        assert!(!back.is_main());
        assert_eq!(back.route, route);
        assert_eq!(back.family, Family::V4);
    }

    #[test]
    fn routes_other_than_single_hop_defaults_are_skipped() {
        let mut payload = vec![2, 24, 0, 0, 254, 4, 0, 1, 0, 0, 0, 0];
        AttrWriter::new(&mut payload).u32(RTA_OIF, 3);
        assert_eq!(decode_default_route(&payload).expect("decodes"), None);
        payload[1] = 0;
        let main = decode_default_route(&payload)
            .expect("decodes")
            .expect("default");
        assert!(main.is_main());
        assert_eq!(main.route.gateway, None);
        let multipath = vec![2, 0, 0, 0, 254, 4, 0, 1, 0, 0, 0, 0];
        assert_eq!(decode_default_route(&multipath).expect("decodes"), None);
        assert!(decode_default_route(&payload[..6]).is_err());
    }

    #[test]
    fn fou_add_carries_port_family_and_gue() {
        let port = FouPort {
            family: Family::V6,
            port: 6080,
        };
        let mut buf = Vec::new();
        encode_fou(&mut buf, 0x1d, true, &port, 4);
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            &[44, 0, 0, 0, 0x1d, 0, 0x05, 0, 4, 0, 0, 0, 0, 0, 0, 0][..], // family 0x1d, ACK
            &[FOU_CMD_ADD, 1, 0, 0],
            &[6, 0, 1, 0, 0x17, 0xc0, 0, 0],             // FOU_ATTR_PORT 6080, big-endian
            &[5, 0, 2, 0, 10, 0, 0, 0],                  // FOU_ATTR_AF AF_INET6
            &[5, 0, 4, 0, 2, 0, 0, 0],                   // FOU_ATTR_TYPE GUE
        ].concat();
        assert_eq!(buf, expected);
        let msgs = messages(&buf).expect("framing");
        assert_eq!(decode_fou(msgs[0].payload).expect("decodes"), Some(port));
    }

    #[test]
    fn link_mtu_is_read_and_set() {
        let mut buf = Vec::new();
        encode_set_link_up(&mut buf, 5, 1480, 1);
        let msgs = messages(&buf).expect("framing");
        assert_eq!(link_mtu(msgs[0].payload).expect("decodes"), Some(1480));
        let link = crate::kernel::rtnl::decode_link(msgs[0].payload).expect("decodes");
        assert!(link.up);
        assert_eq!(link.index, 5);
        buf.clear();
        encode_set_link_up(&mut buf, 5, 0, 1);
        let msgs = messages(&buf).expect("framing");
        assert_eq!(link_mtu(msgs[0].payload).expect("decodes"), None);
    }
}
