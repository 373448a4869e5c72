//! Netlink framing shared by the IPVS (generic netlink) and rtnetlink codecs: message headers,
//! attribute TLVs, and the kernel's `nlmsgerr` answers.
//!
//! Pure: bytes in, values out — no sockets here. Decoding never trusts a length field: every
//! read is bounds-checked and a malformed message is an error naming what was wrong.

use std::fmt;

/// `struct nlmsghdr` is 16 bytes; attributes and messages are aligned to 4 bytes.
pub const HEADER_LEN: usize = 16;
const ALIGN: usize = 4;

pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLMSG_OVERRUN: u16 = 4;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_MULTI: u16 = 0x2;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;

/// Set on an attribute type when its payload is a list of attributes.
const NLA_F_NESTED: u16 = 0x8000;
const NLA_F_NET_BYTEORDER: u16 = 0x4000;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

/// `NLMSGERR_ATTR_MSG`: the extended-ack text the kernel may add to an error.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// The ack flag telling that the original request was not echoed (`NETLINK_CAP_ACK`).
const NLM_F_CAPPED: u16 = 0x100;
/// The ack flag telling that extended-ack attributes follow.
const NLM_F_ACK_TLVS: u16 = 0x200;

pub fn align(len: usize) -> usize {
    len.div_ceil(ALIGN) * ALIGN
}

/// A malformed message from the kernel (or a fixture).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated {what}: {len} bytes, need {need}")]
    Truncated {
        what: &'static str,
        len: usize,
        need: usize,
    },
    #[error("attribute {kind} of {context}: payload of {len} bytes, expected {expected}")]
    AttributeLength {
        context: &'static str,
        kind: u16,
        len: usize,
        expected: &'static str,
    },
    #[error("attribute {kind} of {context}: not a NUL-terminated UTF-8 string")]
    BadString { context: &'static str, kind: u16 },
    #[error("{0}")]
    Invalid(String),
}

/// The fixed part of every netlink message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub length: u32,
    pub kind: u16,
    pub flags: u16,
    pub sequence: u32,
    pub port: u32,
}

/// One netlink message: its header and the payload after it (`length - 16` bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub header: Header,
    pub payload: &'a [u8],
}

/// Splits a datagram (or a batch) into messages.
pub fn messages(mut buf: &[u8]) -> Result<Vec<Message<'_>>, DecodeError> {
    let mut out = Vec::new();
    while buf.len() >= HEADER_LEN {
        let header = Header {
            length: u32::from_ne_bytes(word(buf, 0)),
            kind: u16::from_ne_bytes([buf[4], buf[5]]),
            flags: u16::from_ne_bytes([buf[6], buf[7]]),
            sequence: u32::from_ne_bytes(word(buf, 8)),
            port: u32::from_ne_bytes(word(buf, 12)),
        };
        let len = header.length as usize;
        if len < HEADER_LEN || len > buf.len() {
            return Err(DecodeError::Truncated {
                what: "netlink message",
                len: buf.len(),
                need: len.max(HEADER_LEN),
            });
        }
        out.push(Message {
            header,
            payload: &buf[HEADER_LEN..len],
        });
        buf = &buf[align(len).min(buf.len())..];
    }
    if !buf.is_empty() {
        return Err(DecodeError::Truncated {
            what: "netlink message header",
            len: buf.len(),
            need: HEADER_LEN,
        });
    }
    Ok(out)
}

fn word(buf: &[u8], at: usize) -> [u8; 4] {
    [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]
}

/// Appends one message (header + `payload` written by the closure) to `out`, padded to 4 bytes.
pub fn push_message(
    out: &mut Vec<u8>,
    kind: u16,
    flags: u16,
    sequence: u32,
    payload: impl FnOnce(&mut Vec<u8>),
) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    payload(out);
    let len = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    out[start + 4..start + 6].copy_from_slice(&kind.to_ne_bytes());
    out[start + 6..start + 8].copy_from_slice(&flags.to_ne_bytes());
    out[start + 8..start + 12].copy_from_slice(&sequence.to_ne_bytes());
    pad(out);
}

fn pad(out: &mut Vec<u8>) {
    out.resize(align(out.len()), 0);
}

/// One attribute as it appears on the wire: its type (flags stripped) and its payload.
#[derive(Clone, PartialEq, Eq)]
pub struct RawAttr {
    pub kind: u16,
    pub payload: Vec<u8>,
}

impl fmt::Debug for RawAttr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawAttr({}, ", self.kind)?;
        for b in &self.payload {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// Walks the attributes of a payload, yielding `(type, payload)`.
pub fn attributes(mut buf: &[u8]) -> Result<Vec<(u16, &[u8])>, DecodeError> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            return Err(DecodeError::Truncated {
                what: "attribute",
                len: buf.len(),
                need: len.max(4),
            });
        }
        out.push((kind, &buf[4..len]));
        buf = &buf[align(len).min(buf.len())..];
    }
    Ok(out)
}

/// Writes attributes into a message payload.
pub struct AttrWriter<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> AttrWriter<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        AttrWriter { out }
    }

    pub fn bytes(&mut self, kind: u16, payload: &[u8]) {
        let len = (4 + payload.len()) as u16;
        self.out.extend_from_slice(&len.to_ne_bytes());
        self.out.extend_from_slice(&kind.to_ne_bytes());
        self.out.extend_from_slice(payload);
        pad(self.out);
    }

    pub fn u8(&mut self, kind: u16, v: u8) {
        self.bytes(kind, &[v]);
    }

    pub fn u16(&mut self, kind: u16, v: u16) {
        self.bytes(kind, &v.to_ne_bytes());
    }

    /// A 16-bit value in network byte order (ports).
    pub fn be16(&mut self, kind: u16, v: u16) {
        self.bytes(kind, &v.to_be_bytes());
    }

    pub fn u32(&mut self, kind: u16, v: u32) {
        self.bytes(kind, &v.to_ne_bytes());
    }

    pub fn u64(&mut self, kind: u16, v: u64) {
        self.bytes(kind, &v.to_ne_bytes());
    }

    /// A NUL-terminated string, as the kernel's `NLA_NUL_STRING`/`NLA_STRING` policies accept.
    pub fn string(&mut self, kind: u16, v: &str) {
        let mut payload = Vec::with_capacity(v.len() + 1);
        payload.extend_from_slice(v.as_bytes());
        payload.push(0);
        self.bytes(kind, &payload);
    }

    /// A nested attribute (`nla_nest_start_noflag`, as ipvsadm and the kernel's IPVS code use).
    pub fn nested(&mut self, kind: u16, inner: impl FnOnce(&mut AttrWriter<'_>)) {
        let start = self.out.len();
        self.out.extend_from_slice(&[0; 4]);
        inner(&mut AttrWriter { out: self.out });
        let len = (self.out.len() - start) as u16;
        self.out[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self.out[start + 2..start + 4].copy_from_slice(&kind.to_ne_bytes());
    }
}

/// Typed readers for attribute payloads; `context` names the attribute set in errors.
pub struct AttrReader {
    pub context: &'static str,
}

impl AttrReader {
    fn exact<const N: usize>(
        &self,
        kind: u16,
        p: &[u8],
        expected: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        p.try_into().map_err(|_| DecodeError::AttributeLength {
            context: self.context,
            kind,
            len: p.len(),
            expected,
        })
    }

    pub fn u8(&self, kind: u16, p: &[u8]) -> Result<u8, DecodeError> {
        Ok(self.exact::<1>(kind, p, "1 (u8)")?[0])
    }

    pub fn u16(&self, kind: u16, p: &[u8]) -> Result<u16, DecodeError> {
        Ok(u16::from_ne_bytes(self.exact(kind, p, "2 (u16)")?))
    }

    pub fn be16(&self, kind: u16, p: &[u8]) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.exact(kind, p, "2 (be16)")?))
    }

    pub fn u32(&self, kind: u16, p: &[u8]) -> Result<u32, DecodeError> {
        Ok(u32::from_ne_bytes(self.exact(kind, p, "4 (u32)")?))
    }

    pub fn u64(&self, kind: u16, p: &[u8]) -> Result<u64, DecodeError> {
        Ok(u64::from_ne_bytes(self.exact(kind, p, "8 (u64)")?))
    }

    /// A string attribute; the trailing NUL (and anything after it) is dropped.
    pub fn string(&self, kind: u16, p: &[u8]) -> Result<String, DecodeError> {
        let end = p.iter().position(|b| *b == 0).unwrap_or(p.len());
        String::from_utf8(p[..end].to_vec()).map_err(|_| DecodeError::BadString {
            context: self.context,
            kind,
        })
    }
}

/// The kernel's answer to a request: `Ok` for an ack, the (positive) errno otherwise, with the
/// extended-ack text when the kernel gave one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The sequence number of the request answered.
    pub sequence: u32,
    /// 0 for success, else a positive errno.
    pub errno: i32,
    pub message: Option<String>,
}

/// Parses the payload of an `NLMSG_ERROR` message. `header` is that message's header (its
/// flags say whether the original request is echoed and extended-ack attributes follow).
pub fn parse_ack(header: &Header, payload: &[u8]) -> Result<Ack, DecodeError> {
    if payload.len() < 4 + HEADER_LEN {
        return Err(DecodeError::Truncated {
            what: "netlink error message",
            len: payload.len(),
            need: 4 + HEADER_LEN,
        });
    }
    let error = i32::from_ne_bytes(word(payload, 0));
    let original = &payload[4..];
    let sequence = u32::from_ne_bytes(word(original, 8));
    let mut message = None;
    if header.flags & NLM_F_ACK_TLVS != 0 {
        let echoed = if header.flags & NLM_F_CAPPED != 0 {
            HEADER_LEN
        } else {
            align(u32::from_ne_bytes(word(original, 0)) as usize)
        };
        let tlvs = original.get(echoed..).unwrap_or(&[]);
        let reader = AttrReader {
            context: "netlink extended ack",
        };
        for (kind, p) in attributes(tlvs)? {
            if kind == NLMSGERR_ATTR_MSG {
                message = Some(reader.string(kind, p)?);
            }
        }
    }
    Ok(Ack {
        sequence,
        errno: error.checked_neg().unwrap_or(i32::MAX),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_with_padding_and_nesting() {
        let mut buf = Vec::new();
        push_message(&mut buf, 0x20, NLM_F_REQUEST | NLM_F_ACK, 7, |out| {
            let mut w = AttrWriter::new(out);
            w.string(6, "mh");
            w.nested(1, |n| {
                n.u16(1, 2);
                n.be16(4, 80);
            });
            w.u8(13, 1);
        });
        assert_eq!(buf.len() % 4, 0);
        let msgs = messages(&buf).expect("decodes");
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].header.kind, 0x20);
        assert_eq!(msgs[0].header.sequence, 7);
        let attrs = attributes(msgs[0].payload).expect("attributes");
        assert_eq!(attrs.len(), 3);
        assert_eq!(attrs[0], (6, &b"mh\0"[..]));
        let inner = attributes(attrs[1].1).expect("nested");
        assert_eq!(inner, vec![(1, &2u16.to_ne_bytes()[..]), (4, &[0, 80][..])]);
        assert_eq!(attrs[2], (13, &[1][..]));
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let mut buf = Vec::new();
        push_message(&mut buf, 1, 0, 1, |out| AttrWriter::new(out).u32(1, 5));
        for cut in 1..buf.len() {
            let r = messages(&buf[..cut]);
            if let Ok(msgs) = r {
                // A cut inside the padding-free message body can still leave a valid prefix only
                // when no message was started.
                assert!(msgs.is_empty(), "cut at {cut} decoded {msgs:?}");
            }
        }
        // An attribute whose length runs past the payload.
        assert!(attributes(&[8, 0, 1, 0, 1, 2]).is_err());
    }

    #[test]
    fn nested_flag_is_stripped_from_attribute_types() {
        let payload = [8u8, 0, 0x01, 0x80, 1, 2, 3, 4];
        let attrs = attributes(&payload).expect("decodes");
        assert_eq!(attrs, vec![(1, &[1, 2, 3, 4][..])]);
    }

    #[test]
    fn ack_with_capped_echo_and_extended_message() {
        let mut req = Vec::new();
        push_message(&mut req, 0x20, NLM_F_REQUEST, 42, |_| {});
        let mut buf = Vec::new();
        push_message(
            &mut buf,
            NLMSG_ERROR,
            NLM_F_CAPPED | NLM_F_ACK_TLVS,
            42,
            |out| {
                out.extend_from_slice(&(-17i32).to_ne_bytes());
                out.extend_from_slice(&req);
                AttrWriter::new(out).string(NLMSGERR_ATTR_MSG, "exists");
            },
        );
        let msgs = messages(&buf).expect("decodes");
        let ack = parse_ack(&msgs[0].header, msgs[0].payload).expect("ack");
        assert_eq!(
            ack,
            Ack {
                sequence: 42,
                errno: 17,
                message: Some("exists".into())
            }
        );
    }
}
