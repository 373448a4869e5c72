//! The netlink transport: one socket, requests pipelined many per `sendmsg`, answers matched by
//! sequence number, dumps read to their end.
//!
//! A pipelined batch asks for an ack on its last request only. The kernel answers every
//! request that fails whatever its flags (`netlink_rcv_skb` acks on `NLM_F_ACK` *or* an
//! error) and handles the requests of one `sendmsg` in order, so once the last request is
//! answered, a request without an answer succeeded. That spares the kernel an ack message and
//! us a `recvmsg` for every request that worked — most of them.
//!
//! The only module of the kernel dataplane that does socket I/O. It knows framing (headers,
//! acks, `NLMSG_DONE`), never what a message means: encoding and decoding stay with the codecs.

use std::io;
use std::os::fd::AsRawFd;
use std::time::SystemTime;

use neli::consts::socket::{Msg, NlFamily};
use neli::socket::NlSocket;
use neli::utils::Groups;

use crate::kernel::netlink::{
    self, Ack, DecodeError, Message, NLM_F_ACK, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN,
};

/// Requests per `sendmsg`. Each answer takes about 1 KiB of receive buffer (skb overhead); the
/// buffer is forced to [`RECEIVE_BUFFER`], so a batch's answers never overflow it, even when
/// every request fails.
const BATCH: usize = 512;
/// The socket's receive buffer: large, so dumps and batches of acks are never dropped.
const RECEIVE_BUFFER: usize = 8 << 20;
/// One datagram: the kernel builds dump datagrams of at most 32 KiB.
const DATAGRAM: usize = 64 << 10;

const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;

/// A request the kernel answered with an error, or a transport failure.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("netlink socket: {0}")]
    Io(#[from] io::Error),
    #[error("{}", kernel_text(.errno, .message))]
    Kernel { errno: i32, message: Option<String> },
    #[error("malformed netlink message: {0}")]
    Decode(#[from] DecodeError),
}

fn kernel_text(errno: &i32, message: &Option<String>) -> String {
    let base = io::Error::from_raw_os_error(*errno).to_string();
    match message {
        Some(m) => format!("{base} ({m})"),
        None => base,
    }
}

impl SocketError {
    /// The errno behind the error: the kernel's, or the socket's.
    pub fn errno(&self) -> i32 {
        match self {
            SocketError::Kernel { errno, .. } => *errno,
            SocketError::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
            SocketError::Decode(_) => libc::EPROTO,
        }
    }
}

/// What a pipelined batch got back: one ack per request, in order, and when they came.
#[derive(Debug, Default)]
pub struct Answers {
    pub acks: Vec<Ack>,
    /// One `(end, at)` per `sendmsg`, in order: every request before `end` (and after the
    /// previous `end`) was answered by `at`.
    times: Vec<(usize, SystemTime)>,
}

impl Answers {
    /// When request `i` was answered: when the last answer of its `sendmsg` came (the kernel
    /// handles a `sendmsg`'s requests in order, before that answer).
    pub fn at(&self, i: usize) -> SystemTime {
        let run = self.times.partition_point(|(end, _)| *end <= i);
        self.times
            .get(run)
            .or(self.times.last())
            .map_or_else(SystemTime::now, |(_, at)| *at)
    }
}

pub struct NetlinkSocket {
    socket: NlSocket,
    sequence: u32,
    buffer: Vec<u8>,
}

impl NetlinkSocket {
    pub fn open(family: NlFamily) -> io::Result<Self> {
        let socket = NlSocket::connect(family, None, Groups::empty())?;
        let fd = socket.as_raw_fd();
        // SO_RCVBUFFORCE needs CAP_NET_ADMIN, which every IPVS operation needs anyway; without
        // it the kernel's rmem_max caps the plain SO_RCVBUF.
        if setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            RECEIVE_BUFFER as i32,
        )
        .is_err()
        {
            socket.set_recv_buffer_size(RECEIVE_BUFFER)?;
        }
        // Acks echo only the request's header, and errors may carry the kernel's text. Both
        // are optional on old kernels.
        let _ = setsockopt(fd, libc::SOL_NETLINK, NETLINK_CAP_ACK, 1);
        let _ = setsockopt(fd, libc::SOL_NETLINK, NETLINK_EXT_ACK, 1);
        Ok(NetlinkSocket {
            socket,
            sequence: 0,
            buffer: vec![0; DATAGRAM],
        })
    }

    fn next_sequence(&mut self) -> u32 {
        self.sequence = self.sequence.wrapping_add(1);
        self.sequence
    }

    fn send(&self, buf: &[u8]) -> io::Result<()> {
        let sent = self.socket.send(buf, Msg::empty())?;
        if sent != buf.len() {
            return Err(io::Error::other(format!(
                "netlink send: {sent} of {} bytes sent",
                buf.len()
            )));
        }
        Ok(())
    }

    fn receive(&mut self) -> io::Result<usize> {
        loop {
            match self.socket.recv(&mut self.buffer[..], Msg::empty()) {
                Ok((len, _)) => return Ok(len),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends `count` requests, many per `sendmsg`; `encode(i, out, sequence)` appends request
    /// `i` (with `NLM_F_ACK` set or not: the batch decides, see the module doc), or nothing
    /// when there is nothing to send — that request is answered `EINVAL` here. Returns one
    /// ack per request, in order: a failing request never stops the later ones (the kernel
    /// handles every message of a batch). When the socket fails before the kernel answered
    /// the last request of a `sendmsg`, every request of it without an answer gets an ack
    /// carrying the socket's errno: its outcome is unknown, and the caller observes again.
    pub fn batch(
        &mut self,
        count: usize,
        mut encode: impl FnMut(usize, &mut Vec<u8>, u32),
    ) -> Answers {
        let mut acks: Vec<Option<Ack>> = vec![None; count];
        let mut times = Vec::with_capacity(count.div_ceil(BATCH));
        let mut start = 0;
        let mut out = Vec::new();
        while start < count {
            let end = (start + BATCH).min(count);
            out.clear();
            let first = self.sequence.wrapping_add(1);
            self.sequence = self.sequence.wrapping_add((end - start) as u32);
            let chunk = &mut acks[start..end];
            let sent = encode_chunk(&mut out, start, first, &mut encode, chunk);
            if let Some(last) = sent
                && let Err(e) = self.collect_acks(&out, first, chunk, last)
            {
                for (n, slot) in chunk.iter_mut().enumerate() {
                    slot.get_or_insert_with(|| Ack {
                        sequence: first.wrapping_add(n as u32),
                        errno: e.errno(),
                        message: Some(format!("no answer from the kernel: {e}")),
                    });
                }
            }
            times.push((end, SystemTime::now()));
            start = end;
        }
        Answers {
            acks: acks.into_iter().flatten().collect(),
            times,
        }
    }

    /// Sends one pipelined batch and reads answers until its `last` request's; fills `acks`.
    fn collect_acks(
        &mut self,
        out: &[u8],
        first: u32,
        acks: &mut [Option<Ack>],
        last: usize,
    ) -> Result<(), SocketError> {
        self.send(out)?;
        loop {
            let len = self.receive()?;
            if take_answers(&self.buffer[..len], first, acks, last)? {
                return Ok(());
            }
        }
    }

    /// Sends one request expecting replies (a dump with `NLM_F_DUMP`, or a single answer), and
    /// hands every reply message to `each` until the kernel is done.
    pub fn request(
        &mut self,
        encode: impl FnOnce(&mut Vec<u8>, u32),
        dump: bool,
        mut each: impl FnMut(&Message<'_>) -> Result<(), SocketError>,
    ) -> Result<(), SocketError> {
        let sequence = self.next_sequence();
        let mut out = Vec::new();
        encode(&mut out, sequence);
        self.send(&out)?;
        loop {
            let len = self.receive()?;
            let buffer = std::mem::take(&mut self.buffer);
            let result = answer(&buffer[..len], sequence, dump, &mut each);
            self.buffer = buffer;
            if let Some(done) = result? {
                return done;
            }
        }
    }
}

/// Handles one received datagram; `Some` once the exchange is over.
fn answer(
    buf: &[u8],
    sequence: u32,
    dump: bool,
    each: &mut impl FnMut(&Message<'_>) -> Result<(), SocketError>,
) -> Result<Option<Result<(), SocketError>>, SocketError> {
    for m in netlink::messages(buf)? {
        if m.header.sequence != sequence {
            continue;
        }
        match m.header.kind {
            NLMSG_NOOP => {}
            NLMSG_OVERRUN => {
                return Err(SocketError::Io(io::Error::from_raw_os_error(libc::ENOBUFS)));
            }
            NLMSG_ERROR => {
                let ack = netlink::parse_ack(&m.header, m.payload)?;
                return Ok(Some(if ack.errno == 0 {
                    Ok(())
                } else {
                    Err(SocketError::Kernel {
                        errno: ack.errno,
                        message: ack.message,
                    })
                }));
            }
            NLMSG_DONE => return Ok(Some(done_status(m.payload))),
            _ => {
                each(&m)?;
                if !dump {
                    return Ok(Some(Ok(())));
                }
            }
        }
    }
    Ok(None)
}

/// Encodes the requests `start..start + acks.len()` into `out`, the first with sequence
/// `first`. Only the last message asks for an ack; a request that encodes to nothing gets its
/// `EINVAL` answer in `acks` at once. Returns the position in `acks` of the last request
/// encoded, `None` when there is nothing to send.
fn encode_chunk(
    out: &mut Vec<u8>,
    start: usize,
    first: u32,
    encode: &mut impl FnMut(usize, &mut Vec<u8>, u32),
    acks: &mut [Option<Ack>],
) -> Option<usize> {
    // Where the latest message encoded starts in `out`, and its position.
    let mut latest: Option<(usize, usize)> = None;
    for (n, slot) in acks.iter_mut().enumerate() {
        let sequence = first.wrapping_add(n as u32);
        let at = out.len();
        encode(start + n, out, sequence);
        if out.len() == at {
            *slot = Some(Ack {
                sequence,
                errno: libc::EINVAL,
                message: Some("no request to send".to_owned()),
            });
        } else if let Some((previous, _)) = latest.replace((at, n)) {
            set_ack(&mut out[previous..], false);
        }
    }
    let (at, last) = latest?;
    set_ack(&mut out[at..], true);
    Some(last)
}

/// Sets or clears `NLM_F_ACK` in the header of the message at the start of `message`.
fn set_ack(message: &mut [u8], ack: bool) {
    let flags = u16::from_ne_bytes([message[6], message[7]]);
    let flags = if ack {
        flags | NLM_F_ACK
    } else {
        flags & !NLM_F_ACK
    };
    message[6..8].copy_from_slice(&flags.to_ne_bytes());
}

/// Files the answers in one received datagram to a batch whose first request has sequence
/// `first`, one slot per request. True once request `last` (the last one sent) is answered;
/// every request still without an answer then succeeded, and gets an ack saying so.
fn take_answers(
    buf: &[u8],
    first: u32,
    acks: &mut [Option<Ack>],
    last: usize,
) -> Result<bool, DecodeError> {
    for m in netlink::messages(buf)? {
        if m.header.kind != NLMSG_ERROR {
            continue;
        }
        let ack = netlink::parse_ack(&m.header, m.payload)?;
        let index = ack.sequence.wrapping_sub(first) as usize;
        if let Some(slot @ None) = acks.get_mut(index) {
            *slot = Some(ack);
        }
    }
    if acks.get(last).is_none_or(Option::is_none) {
        return Ok(false);
    }
    for (n, slot) in acks.iter_mut().enumerate() {
        slot.get_or_insert_with(|| Ack {
            sequence: first.wrapping_add(n as u32),
            errno: 0,
            message: None,
        });
    }
    Ok(true)
}

/// `NLMSG_DONE` carries the dump's final status (negative errno) when the dump failed late.
fn done_status(payload: &[u8]) -> Result<(), SocketError> {
    match payload.get(..4) {
        Some(b) => match i32::from_ne_bytes([b[0], b[1], b[2], b[3]]) {
            0 => Ok(()),
            e => Err(SocketError::Kernel {
                errno: e.checked_neg().unwrap_or(i32::MAX),
                message: None,
            }),
        },
        None => Ok(()),
    }
}

fn setsockopt(
    fd: libc::c_int,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` lives across the call and the length given is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::netlink::{AttrWriter, NLM_F_REQUEST, push_message};

    fn error(out: &mut Vec<u8>, sequence: u32, errno: i32) {
        push_message(out, NLMSG_ERROR, 0, sequence, |out| {
            out.extend_from_slice(&(-errno).to_ne_bytes());
            push_message(out, 0x24, 0, sequence, |_| {});
        });
    }

    fn collect(buf: &[u8], sequence: u32, dump: bool) -> (Option<Result<(), i32>>, Vec<u32>) {
        let mut seen = Vec::new();
        let r = answer(buf, sequence, dump, &mut |m| {
            seen.push(m.header.sequence);
            Ok(())
        })
        .expect("well-formed");
        (r.map(|r| r.map_err(|e| e.errno())), seen)
    }

    /// A request is timed by the answer to its `sendmsg`; one past the end by the last.
    #[test]
    fn answers_are_timed_by_their_sendmsg() {
        let t = |s| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s);
        let answers = Answers {
            acks: Vec::new(),
            times: vec![(512, t(1)), (1024, t(2)), (1100, t(3))],
        };
        let at: Vec<SystemTime> = [0, 511, 512, 1023, 1024, 1099, 1100]
            .into_iter()
            .map(|i| answers.at(i))
            .collect();
        assert_eq!(at, [t(1), t(1), t(2), t(2), t(3), t(3), t(3)]);
    }

    /// A batch of five requests, 10 to 14, the fourth with nothing to send: only the last
    /// message asks for an ack, and the answers name the failures alone.
    #[test]
    fn a_batch_acks_its_last_request_and_silence_before_that_is_success() {
        let mut out = Vec::new();
        let mut acks = vec![None; 5];
        let mut encode = |i: usize, out: &mut Vec<u8>, sequence: u32| {
            if i != 3 {
                push_message(out, 0x24, NLM_F_REQUEST | NLM_F_ACK, sequence, |out| {
                    AttrWriter::new(out).u32(1, sequence)
                });
            }
        };
        assert_eq!(
            encode_chunk(&mut out, 0, 10, &mut encode, &mut acks),
            Some(4)
        );
        let sent: Vec<(u32, u16)> = netlink::messages(&out)
            .unwrap()
            .iter()
            .map(|m| (m.header.sequence, m.header.flags))
            .collect();
        let request = NLM_F_REQUEST;
        assert_eq!(
            sent,
            [
                (10, request),
                (11, request),
                (12, request),
                (14, request | NLM_F_ACK)
            ]
        );
        assert_eq!(
            acks[3].as_ref().map(|a| (a.sequence, a.errno)),
            Some((13, libc::EINVAL))
        );

        // The failures come first, each in its own datagram; the batch is not over yet.
        let mut failed = Vec::new();
        error(&mut failed, 11, libc::ENOENT);
        assert!(!take_answers(&failed, 10, &mut acks, 4).unwrap());
        let mut stray = Vec::new();
        error(&mut stray, 99, libc::EPERM);
        assert!(!take_answers(&stray, 10, &mut acks, 4).unwrap());
        let mut last = Vec::new();
        error(&mut last, 12, libc::EEXIST);
        error(&mut last, 14, 0);
        assert!(take_answers(&last, 10, &mut acks, 4).unwrap());
        let got: Vec<(u32, i32)> = acks
            .iter()
            .map(|a| a.as_ref().map(|a| (a.sequence, a.errno)).unwrap())
            .collect();
        let (enoent, eexist, einval) = (libc::ENOENT, libc::EEXIST, libc::EINVAL);
        assert_eq!(
            got,
            [(10, 0), (11, enoent), (12, eexist), (13, einval), (14, 0)]
        );
        // Nothing to send at all: no message, no wait.
        let mut none = vec![None; 2];
        let mut nothing = |_: usize, _: &mut Vec<u8>, _: u32| {};
        assert_eq!(
            encode_chunk(&mut Vec::new(), 0, 1, &mut nothing, &mut none),
            None
        );
        assert!(
            none.iter()
                .all(|a| a.as_ref().is_some_and(|a| a.errno == einval))
        );
    }

    #[test]
    fn dump_replies_go_on_until_done_and_other_sequences_are_ignored() {
        let mut buf = Vec::new();
        push_message(&mut buf, 0x24, 0x2, 7, |out| AttrWriter::new(out).u32(1, 1));
        push_message(&mut buf, 0x24, 0x2, 6, |_| {});
        push_message(&mut buf, 0x24, 0x2, 7, |_| {});
        assert_eq!(collect(&buf, 7, true), (None, vec![7, 7]));
        push_message(&mut buf, NLMSG_DONE, 0x2, 7, |out| {
            out.extend_from_slice(&0i32.to_ne_bytes())
        });
        assert_eq!(collect(&buf, 7, true), (Some(Ok(())), vec![7, 7]));
    }

    #[test]
    fn a_single_reply_ends_the_exchange_and_errors_keep_their_errno() {
        let mut buf = Vec::new();
        push_message(&mut buf, 0x24, 0, 3, |_| {});
        assert_eq!(collect(&buf, 3, false), (Some(Ok(())), vec![3]));
        let mut buf = Vec::new();
        error(&mut buf, 3, libc::EPERM);
        assert_eq!(collect(&buf, 3, false), (Some(Err(libc::EPERM)), vec![]));
        let mut buf = Vec::new();
        push_message(&mut buf, NLMSG_DONE, 0x2, 3, |out| {
            out.extend_from_slice(&(-libc::EINTR).to_ne_bytes())
        });
        assert_eq!(collect(&buf, 3, true), (Some(Err(libc::EINTR)), vec![]));
    }
}
