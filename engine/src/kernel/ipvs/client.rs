//! The IPVS client: resolves the generic netlink family, reads the whole IPVS state (one
//! service dump, then one destination dump per service) and sends batches of requests.
//!
//! Transport only: what a message means is the codec's business ([`super::codec`]).

use neli::consts::socket::NlFamily;

use crate::kernel::ipvs::codec::{self, Command, IpvsMessage};
use crate::kernel::netlink::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use crate::kernel::socket::{Answers, NetlinkSocket, SocketError};
use crate::model::{IpvsTimeouts, VirtualService};

/// Why the client could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("IPVS is not available: load the ip_vs module")]
    NotAvailable,
    #[error("IPVS needs CAP_NET_ADMIN")]
    NotPermitted,
    #[error("IPVS GET_INFO: {0}")]
    Info(codec::ModelError),
    #[error("IPVS {doing}: {source}")]
    Socket {
        doing: &'static str,
        #[source]
        source: SocketError,
    },
}

impl ConnectError {
    pub fn errno(&self) -> i32 {
        match self {
            ConnectError::NotAvailable => libc::ENOENT,
            ConnectError::NotPermitted => libc::EPERM,
            ConnectError::Info(_) => libc::EPROTO,
            ConnectError::Socket { source, .. } => source.errno(),
        }
    }
}

/// A service the dump reported but the model cannot hold (an out-of-tree scheduler, say).
#[derive(Debug, thiserror::Error)]
#[error("IPVS dump: {0}")]
pub struct Unreadable(pub codec::ModelError);

pub struct IpvsClient {
    socket: NetlinkSocket,
    family: u16,
    /// `IPVS_INFO_ATTR_VERSION` of the running kernel (0x010201 = 1.2.1).
    pub version: u32,
}

impl IpvsClient {
    /// Opens a generic netlink socket, resolves the `IPVS` family and asks for IPVS's version,
    /// which also proves the permission to use it.
    pub fn connect() -> Result<Self, ConnectError> {
        let mut socket =
            NetlinkSocket::open(NlFamily::Generic).map_err(|e| ConnectError::Socket {
                doing: "opening a generic netlink socket",
                source: SocketError::Io(e),
            })?;
        let mut family = None;
        socket
            .request(
                |out, seq| codec::encode_family_request(out, codec::FAMILY_NAME, seq),
                false,
                |m| {
                    family = Some(codec::family_id(m.payload)?);
                    Ok(())
                },
            )
            .map_err(|e| match e.errno() {
                libc::ENOENT => ConnectError::NotAvailable,
                _ => ConnectError::Socket {
                    doing: "resolving the generic netlink family",
                    source: e,
                },
            })?;
        let family = family.ok_or(ConnectError::NotAvailable)?;
        let mut client = IpvsClient {
            socket,
            family,
            version: 0,
        };
        let info = client.get(Command::GetInfo).map_err(|e| match e.errno() {
            libc::EPERM => ConnectError::NotPermitted,
            _ => ConnectError::Socket {
                doing: "reading its version (GET_INFO)",
                source: e,
            },
        })?;
        client.version = codec::info(&info).map_err(ConnectError::Info)?.0;
        Ok(client)
    }

    /// A request with a single reply (`GET_INFO`, `GET_CONFIG`).
    fn get(&mut self, command: Command) -> Result<IpvsMessage, SocketError> {
        let family = self.family;
        let mut reply = None;
        self.socket.request(
            |out, seq| {
                IpvsMessage::new(command, Vec::new()).encode(out, family, NLM_F_REQUEST, seq)
            },
            false,
            |m| {
                reply = Some(IpvsMessage::decode(m.payload)?);
                Ok(())
            },
        )?;
        reply.ok_or(SocketError::Kernel {
            errno: libc::ENODATA,
            message: Some(format!("no reply to {command:?}")),
        })
    }

    /// `GET_CONFIG`: the tcp / tcpfin / udp timeouts.
    pub fn timeouts(&mut self) -> Result<IpvsTimeouts, SocketError> {
        Ok(codec::timeouts(&self.get(Command::GetConfig)?))
    }

    /// Every service with its destinations in the kernel's list order. Services the model
    /// cannot hold are returned apart, never fatal.
    pub fn services(&mut self) -> Result<(Vec<VirtualService>, Vec<Unreadable>), SocketError> {
        let family = self.family;
        let mut services = Vec::new();
        let mut unreadable = Vec::new();
        self.socket.request(
            |out, seq| codec::dump_services().encode(out, family, NLM_F_REQUEST | NLM_F_DUMP, seq),
            true,
            |m| {
                let msg = IpvsMessage::decode(m.payload)?;
                if let Some(attrs) = codec::service_attrs(&msg) {
                    match codec::virtual_service(attrs) {
                        Ok(s) => services.push(s),
                        Err(e) => unreadable.push(Unreadable(e)),
                    }
                }
                Ok(())
            },
        )?;
        for service in &mut services {
            let key = service.key;
            let service_family = key.family();
            let destinations = &mut service.destinations;
            self.socket.request(
                |out, seq| {
                    codec::dump_destinations(&key).encode(
                        out,
                        family,
                        NLM_F_REQUEST | NLM_F_DUMP,
                        seq,
                    )
                },
                true,
                |m| {
                    let msg = IpvsMessage::decode(m.payload)?;
                    if let Some(attrs) = codec::destination_attrs(&msg) {
                        match codec::destination(attrs, service_family) {
                            Ok(d) => destinations.push(d),
                            Err(e) => unreadable.push(Unreadable(e)),
                        }
                    }
                    Ok(())
                },
            )?;
        }
        Ok((services, unreadable))
    }

    /// Sends `count` requests pipelined (many per `sendmsg`), one ack each, in order. Request
    /// `i` is `message(i)`, built only as it is encoded: a plan from empty sends 110,000, and
    /// holding them all at once cost more than building them. `None` is answered `EINVAL`.
    pub fn execute(
        &mut self,
        count: usize,
        message: impl Fn(usize) -> Option<IpvsMessage>,
    ) -> Answers {
        let family = self.family;
        self.socket.batch(count, |i, out, seq| {
            if let Some(m) = message(i) {
                m.encode(out, family, NLM_F_REQUEST | NLM_F_ACK, seq);
            }
        })
    }
}
