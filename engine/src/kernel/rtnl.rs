//! The rtnetlink codec for the VIP link: the dummy interface (`ifinfomsg`) and its host
//! addresses (`ifaddrmsg`), as `ip link` and `ip addr` send them.
//!
//! Pure: bytes in, values out. Unknown attributes are skipped; only what the VIP link needs is
//! read (index, name, up flag, kind; address, prefix length).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::kernel::netlink::{
    self, AttrReader, AttrWriter, DecodeError, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};

pub const RTM_NEWLINK: u16 = 16;
pub const RTM_GETLINK: u16 = 18;
pub const RTM_SETLINK: u16 = 19;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_DELADDR: u16 = 21;
pub const RTM_GETADDR: u16 = 22;

const IFINFOMSG_LEN: usize = 16;
const IFADDRMSG_LEN: usize = 8;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFF_UP: u32 = libc::IFF_UP as u32;
/// `IFA_F_NODAD`: a VIP is usable at once, never "tentative".
const IFA_F_NODAD: u8 = 0x02;
const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;

/// A link as `RTM_NEWLINK` replies describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub up: bool,
    /// `IFLA_INFO_KIND` (`dummy`), when the kernel reports one.
    pub kind: Option<String>,
}

/// One address as `RTM_NEWADDR` replies describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkAddress {
    pub index: u32,
    pub address: IpAddr,
    pub prefix_len: u8,
}

impl LinkAddress {
    /// A /32 or /128: a VIP, as balanced announces them.
    pub fn is_host(&self) -> bool {
        self.prefix_len == host_prefix(&self.address)
    }
}

fn host_prefix(a: &IpAddr) -> u8 {
    match a {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn push_ifinfomsg(out: &mut Vec<u8>, index: u32, flags: u32, change: u32) {
    out.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    out.extend_from_slice(&index.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&change.to_ne_bytes());
}

/// `ip link show NAME`.
pub fn encode_get_link(out: &mut Vec<u8>, name: &str, sequence: u32) {
    netlink::push_message(out, RTM_GETLINK, NLM_F_REQUEST, sequence, |out| {
        push_ifinfomsg(out, 0, 0, 0);
        AttrWriter::new(out).string(IFLA_IFNAME, name);
    });
}

/// `ip link add NAME up type dummy`.
pub fn encode_create_dummy(out: &mut Vec<u8>, name: &str, sequence: u32) {
    let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
    netlink::push_message(out, RTM_NEWLINK, flags, sequence, |out| {
        push_ifinfomsg(out, 0, IFF_UP, IFF_UP);
        let mut w = AttrWriter::new(out);
        w.string(IFLA_IFNAME, name);
        w.nested(IFLA_LINKINFO, |n| n.bytes(IFLA_INFO_KIND, b"dummy"));
    });
}

/// `ip link set dev INDEX up`.
pub fn encode_set_up(out: &mut Vec<u8>, index: u32, sequence: u32) {
    netlink::push_message(
        out,
        RTM_SETLINK,
        NLM_F_REQUEST | NLM_F_ACK,
        sequence,
        |out| push_ifinfomsg(out, index, IFF_UP, IFF_UP),
    );
}

/// `ip addr show` (all links; the caller filters by index).
pub fn encode_dump_links(out: &mut Vec<u8>, sequence: u32) {
    netlink::push_message(
        out,
        RTM_GETLINK,
        NLM_F_REQUEST | NLM_F_DUMP,
        sequence,
        |out| push_ifinfomsg(out, 0, 0, 0),
    );
}

pub fn encode_dump_addresses(out: &mut Vec<u8>, sequence: u32) {
    netlink::push_message(
        out,
        RTM_GETADDR,
        NLM_F_REQUEST | NLM_F_DUMP,
        sequence,
        |out| out.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0, 0, 0, 0, 0]),
    );
}

/// `ip addr add|del ADDRESS/32|/128 dev INDEX`.
pub fn encode_address(out: &mut Vec<u8>, add: bool, index: u32, address: &IpAddr, sequence: u32) {
    let (kind, flags) = if add {
        (
            RTM_NEWADDR,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
    } else {
        (RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK)
    };
    netlink::push_message(out, kind, flags, sequence, |out| {
        let (family, bytes, ifa_flags) = match address {
            IpAddr::V4(a) => (AF_INET, a.octets().to_vec(), 0),
            IpAddr::V6(a) => (AF_INET6, a.octets().to_vec(), IFA_F_NODAD),
        };
        out.extend_from_slice(&[family, host_prefix(address), ifa_flags, 0]);
        out.extend_from_slice(&index.to_ne_bytes());
        let mut w = AttrWriter::new(out);
        w.bytes(IFA_LOCAL, &bytes);
        w.bytes(IFA_ADDRESS, &bytes);
    });
}

/// Reads an `RTM_NEWLINK` payload.
pub fn decode_link(payload: &[u8]) -> Result<Link, DecodeError> {
    let fixed = payload.get(..IFINFOMSG_LEN).ok_or(DecodeError::Truncated {
        what: "ifinfomsg",
        len: payload.len(),
        need: IFINFOMSG_LEN,
    })?;
    let index = u32::from_ne_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    let flags = u32::from_ne_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]);
    let r = AttrReader { context: "link" };
    let mut name = String::new();
    let mut kind = None;
    for (k, p) in netlink::attributes(&payload[IFINFOMSG_LEN..])? {
        match k {
            IFLA_IFNAME => name = r.string(k, p)?,
            IFLA_LINKINFO => {
                for (ik, ip) in netlink::attributes(p)? {
                    if ik == IFLA_INFO_KIND {
                        kind = Some(r.string(ik, ip)?);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Link {
        index,
        name,
        up: flags & IFF_UP != 0,
        kind,
    })
}

/// Reads an `RTM_NEWADDR` payload; `None` for families other than IPv4 and IPv6.
pub fn decode_address(payload: &[u8]) -> Result<Option<LinkAddress>, DecodeError> {
    let fixed = payload.get(..IFADDRMSG_LEN).ok_or(DecodeError::Truncated {
        what: "ifaddrmsg",
        len: payload.len(),
        need: IFADDRMSG_LEN,
    })?;
    let family = fixed[0];
    let prefix_len = fixed[1];
    let index = u32::from_ne_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    let (mut local, mut address) = (None, None);
    for (k, p) in netlink::attributes(&payload[IFADDRMSG_LEN..])? {
        let ip = match (family, p.len()) {
            (AF_INET, 4) => IpAddr::V4(Ipv4Addr::new(p[0], p[1], p[2], p[3])),
            (AF_INET6, 16) => {
                let mut b = [0u8; 16];
                b.copy_from_slice(p);
                IpAddr::V6(Ipv6Addr::from(b))
            }
            _ => continue,
        };
        match k {
            IFA_LOCAL => local = Some(ip),
            IFA_ADDRESS => address = Some(ip),
            _ => {}
        }
    }
    // IFA_LOCAL is the address itself; IFA_ADDRESS is the peer on point-to-point links.
    Ok(local.or(address).map(|address| LinkAddress {
        index,
        address,
        prefix_len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::netlink::messages;

    #[test]
    fn address_add_matches_ip_addr_layout() {
        let mut buf = Vec::new();
        encode_address(&mut buf, true, 5, &"192.0.2.1".parse().expect("ip"), 8);
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            &[40, 0, 0, 0, 20, 0, 0x05, 0x06, 8, 0, 0, 0, 0, 0, 0, 0][..], // NEWADDR ACK|CREATE|EXCL
            &[2, 32, 0, 0, 5, 0, 0, 0],                  // AF_INET /32, index 5
            &[8, 0, 2, 0, 192, 0, 2, 1],                 // IFA_LOCAL
            &[8, 0, 1, 0, 192, 0, 2, 1],                 // IFA_ADDRESS
        ].concat();
        assert_eq!(buf, expected);
    }

    #[test]
    fn encoded_addresses_decode_back() {
        for (text, add) in [("192.0.2.1", true), ("2001:db8::7", false)] {
            let ip: IpAddr = text.parse().expect("ip");
            let mut buf = Vec::new();
            encode_address(&mut buf, add, 3, &ip, 1);
            let msgs = messages(&buf).expect("framing");
            let a = decode_address(msgs[0].payload)
                .expect("decodes")
                .expect("inet");
            assert_eq!(a.address, ip);
            assert_eq!(a.index, 3);
            assert!(a.is_host());
            assert_eq!(
                msgs[0].header.kind,
                if add { RTM_NEWADDR } else { RTM_DELADDR }
            );
        }
    }

    #[test]
    fn link_reply_decodes_name_state_and_kind() {
        let mut payload = Vec::new();
        push_ifinfomsg(&mut payload, 7, IFF_UP | 0x80, 0);
        let mut w = AttrWriter::new(&mut payload);
        w.string(IFLA_IFNAME, "balanced0");
        w.u32(4, 1500);
        w.nested(IFLA_LINKINFO, |n| n.string(IFLA_INFO_KIND, "dummy"));
        let link = decode_link(&payload).expect("decodes");
        assert_eq!(
            link,
            Link {
                index: 7,
                name: "balanced0".into(),
                up: true,
                kind: Some("dummy".into())
            }
        );
        assert!(decode_link(&payload[..10]).is_err());
    }

    #[test]
    fn create_dummy_asks_for_an_up_link() {
        let mut buf = Vec::new();
        encode_create_dummy(&mut buf, "balanced0", 2);
        let msgs = messages(&buf).expect("framing");
        assert_eq!(msgs[0].header.kind, RTM_NEWLINK);
        let link = decode_link(msgs[0].payload).expect("decodes");
        assert!(link.up);
        assert_eq!(link.name, "balanced0");
        assert_eq!(link.kind.as_deref(), Some("dummy"));
    }

    #[test]
    fn the_link_dump_asks_for_every_link() {
        let mut buf = Vec::new();
        encode_dump_links(&mut buf, 7);
        let msgs = messages(&buf).expect("framing");
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].header.kind, RTM_GETLINK);
        assert_eq!(msgs[0].header.flags, NLM_F_REQUEST | NLM_F_DUMP);
        assert_eq!(msgs[0].header.sequence, 7);
        // A bare ifinfomsg: any family, no index, no attribute filter.
        assert_eq!(msgs[0].payload, &[0u8; IFINFOMSG_LEN][..]);
    }

    #[test]
    fn subnet_addresses_are_not_host_addresses() {
        let a = LinkAddress {
            index: 1,
            address: "10.0.0.1".parse().expect("ip"),
            prefix_len: 24,
        };
        assert!(!a.is_host());
    }
}
