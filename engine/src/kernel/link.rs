//! The VIP link over rtnetlink: find the dummy interface, create it and set it up, list its
//! host addresses, and add or delete /32 and /128 addresses in batches.
//!
//! With `vipLinks: N` the VIP link is N dummy links — `balanced0`, `balanced0-1`, … — and a
//! hash of each address picks its link ([`vip_link_of`]); the model still sees one link,
//! whose addresses are those of every one of them.
//!
//! Transport only; the messages come from [`super::rtnl`].

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use neli::consts::socket::NlFamily;

use balanced_schemas::v1;

use crate::kernel::netlink::Ack;
use crate::kernel::rtnl::{self, Link, RTM_NEWADDR, RTM_NEWLINK};
use crate::kernel::socket::{Answers, NetlinkSocket, SocketError};
use crate::model::Interface;

pub struct LinkClient {
    socket: NetlinkSocket,
}

impl LinkClient {
    pub fn open() -> std::io::Result<Self> {
        Ok(LinkClient {
            socket: NetlinkSocket::open(NlFamily::Route)?,
        })
    }

    /// The link named `name`; `None` when there is none (`ENODEV`).
    pub fn find(&mut self, name: &str) -> Result<Option<Link>, SocketError> {
        let mut link = None;
        let result = self.socket.request(
            |out, seq| rtnl::encode_get_link(out, name, seq),
            false,
            |m| {
                if m.header.kind == RTM_NEWLINK {
                    link = Some(rtnl::decode_link(m.payload)?);
                }
                Ok(())
            },
        );
        match result {
            Ok(()) => Ok(link),
            Err(e) if e.errno() == libc::ENODEV => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The interface as the model holds it: existence, state and host addresses.
    pub fn observe(&mut self, name: &str) -> Result<Interface, SocketError> {
        let Some(link) = self.find(name)? else {
            return Ok(Interface {
                name: name.to_owned(),
                ..Interface::default()
            });
        };
        let mut addresses = BTreeSet::new();
        self.socket
            .request(rtnl::encode_dump_addresses, true, |m| {
                if m.header.kind == RTM_NEWADDR
                    && let Some(a) = rtnl::decode_address(m.payload)?
                    && a.index == link.index
                    && a.is_host()
                {
                    addresses.insert(a.address);
                }
                Ok(())
            })?;
        Ok(Interface {
            name: name.to_owned(),
            exists: true,
            up: link.up,
            addresses,
        })
    }

    /// The VIP link spread over the links named after `base` (see the module doc): it exists
    /// and is up when all of its first `count` links are; its addresses are the host
    /// addresses of every link named after `base`, also those beyond `count` (left by a
    /// larger `vipLinks`), each with the index of the link it is on.
    pub fn observe_spread(
        &mut self,
        base: &str,
        count: u8,
    ) -> Result<(Interface, HashMap<IpAddr, u32>), SocketError> {
        let mut links = HashMap::new();
        self.socket.request(rtnl::encode_dump_links, true, |m| {
            if m.header.kind == RTM_NEWLINK {
                let link = rtnl::decode_link(m.payload)?;
                if let Some(number) = vip_link_number(base, &link.name) {
                    links.insert(link.index, (number, link.up));
                }
            }
            Ok(())
        })?;
        let wanted = |number: u8| number < count.max(1);
        let present = links.values().filter(|(n, _)| wanted(*n)).count();
        let exists = present == usize::from(count.max(1));
        let up = exists && links.values().all(|(n, up)| *up || !wanted(*n));
        let mut located = HashMap::new();
        self.socket
            .request(rtnl::encode_dump_addresses, true, |m| {
                if m.header.kind == RTM_NEWADDR
                    && let Some(a) = rtnl::decode_address(m.payload)?
                    && links.contains_key(&a.index)
                    && a.is_host()
                {
                    located.insert(a.address, a.index);
                }
                Ok(())
            })?;
        let interface = Interface {
            name: base.to_owned(),
            exists,
            up,
            addresses: located.keys().copied().collect(),
        };
        Ok((interface, located))
    }

    /// Creates the dummy link (up) when it is missing, or sets an existing one up.
    pub fn ensure(&mut self, name: &str) -> Result<(), SocketError> {
        let answers = match self.find(name)? {
            None => self
                .socket
                .batch(1, |_, out, seq| rtnl::encode_create_dummy(out, name, seq)),
            Some(link) if !link.up => self
                .socket
                .batch(1, |_, out, seq| rtnl::encode_set_up(out, link.index, seq)),
            Some(_) => return Ok(()),
        };
        match answers.acks.first() {
            Some(Ack { errno: 0, .. }) => Ok(()),
            Some(ack) => Err(SocketError::Kernel {
                errno: ack.errno,
                message: ack.message.clone(),
            }),
            None => Err(SocketError::Kernel {
                errno: libc::EPROTO,
                message: Some("no ack".into()),
            }),
        }
    }

    /// Adds (`add`) or deletes host addresses on link `index`, pipelined; one ack each.
    pub fn change_addresses(&mut self, index: u32, changes: &[(bool, IpAddr)]) -> Answers {
        self.socket.batch(changes.len(), |i, out, seq| {
            let (add, address) = changes[i];
            rtnl::encode_address(out, add, index, &address, seq)
        })
    }
}

/// The number of the VIP link `name` among the links of `base`: 0 for `base` itself, `i` for
/// `<base>-<i>` (no leading zero, below [`v1::MAX_VIP_LINKS`]).
pub fn vip_link_number(base: &str, name: &str) -> Option<u8> {
    let rest = name.strip_prefix(base)?;
    if rest.is_empty() {
        return Some(0);
    }
    let digits = rest.strip_prefix('-')?;
    if digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits
        .parse::<u8>()
        .ok()
        .filter(|n| (1..v1::MAX_VIP_LINKS).contains(n))
}

/// The VIP link an address goes on among `count`: FNV-1a (64 bit) of its bytes, modulo
/// `count` — the same on every node and every release.
pub fn vip_link_of(address: &IpAddr, count: u8) -> u8 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = match address {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(count.max(1))) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vip_link_names_are_recognised_exactly() {
        assert_eq!(vip_link_number("balanced0", "balanced0"), Some(0));
        assert_eq!(vip_link_number("balanced0", "balanced0-1"), Some(1));
        assert_eq!(vip_link_number("balanced0", "balanced0-63"), Some(63));
        for other in [
            "balanced0-64",
            "balanced0-01",
            "balanced0-",
            "balanced0-x",
            "balanced00",
            "balanced1",
            "eth0",
        ] {
            assert_eq!(vip_link_number("balanced0", other), None, "{other}");
        }
    }

    #[test]
    fn vip_links_are_picked_by_a_fixed_hash() {
        // Pinned (computed apart from this code): every node and every release must pick
        // the same link.
        for (address, of_16, of_7) in [
            ("198.18.0.1", 6, 3),
            ("198.18.39.16", 6, 1),
            ("2001:db8::10", 7, 5),
        ] {
            let address: IpAddr = address.parse().unwrap();
            assert_eq!(vip_link_of(&address, 1), 0);
            assert_eq!(vip_link_of(&address, 16), of_16, "{address}");
            assert_eq!(vip_link_of(&address, 7), of_7, "{address}");
        }
        let mut per_link = [0usize; 16];
        for i in 0..10_000u32 {
            let address = IpAddr::V4(std::net::Ipv4Addr::from(0xc612_0000 + i));
            per_link[usize::from(vip_link_of(&address, 16))] += 1;
        }
        // Spread evenly enough: every link within a fifth of the mean.
        assert!(
            per_link.iter().all(|n| (500..=750).contains(n)),
            "{per_link:?}"
        );
    }
}
