//! The VIP link over rtnetlink: find the dummy interface, create it and set it up, list its
//! host addresses, and add or delete /32 and /128 addresses in batches.
//!
//! Transport only; the messages come from [`super::rtnl`].

use std::collections::BTreeSet;
use std::net::IpAddr;

use neli::consts::socket::NlFamily;

use crate::kernel::netlink::Ack;
use crate::kernel::rtnl::{self, Link, RTM_NEWADDR, RTM_NEWLINK};
use crate::kernel::socket::{NetlinkSocket, SocketError};
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

    /// Creates the dummy link (up) when it is missing, or sets an existing one up.
    pub fn ensure(&mut self, name: &str) -> Result<(), SocketError> {
        let acks = match self.find(name)? {
            None => self
                .socket
                .batch(1, |_, out, seq| rtnl::encode_create_dummy(out, name, seq)),
            Some(link) if !link.up => self
                .socket
                .batch(1, |_, out, seq| rtnl::encode_set_up(out, link.index, seq)),
            Some(_) => return Ok(()),
        };
        match acks.first() {
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
    pub fn change_addresses(&mut self, index: u32, changes: &[(bool, IpAddr)]) -> Vec<Ack> {
        self.socket.batch(changes.len(), |i, out, seq| {
            let (add, address) = changes[i];
            rtnl::encode_address(out, add, index, &address, seq)
        })
    }
}
