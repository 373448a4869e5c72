//! The IPVS codec against the real `ipvsadm` and the real kernel: the messages in
//! `tests/fixtures/ipvsadm/` were captured in the QEMU guest (`tests/vm/run --capture`).
//!
//! - every captured message decodes, and the kernel's replies re-encode byte for byte;
//! - for each ipvsadm command, the action it stands for (written here from the command line)
//!   encodes to a request the kernel reads exactly as it reads ipvsadm's;
//! - the kernel's error replies carry the errnos the engine expects;
//! - the dumps decode to what ipvsadm printed from them (`-Sn`, `-Ln --nosort`, `--timeout`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use balanced_engine::dataplane::Action;
use balanced_engine::kernel::ipvs::codec::{
    self, Command, DestAttr, IpvsAttr, IpvsMessage, ServiceAttr,
};
use balanced_engine::kernel::netlink::{self, NLMSG_DONE, NLMSG_ERROR};
use balanced_engine::model::{
    DestinationConfig, DestinationKey, Family, Forward, IpvsTimeouts, ServiceConfig, ServiceKey,
    VirtualService,
};
use balanced_schemas::v1::{Encapsulation, Protocol, Scheduler, TunnelChecksum};

struct Fixture {
    name: String,
    command: String,
    printed: Vec<String>,
    /// `(sent by ipvsadm, whole netlink message)`.
    messages: Vec<(bool, Vec<u8>)>,
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("fixture hex"))
        .collect()
}

fn load(name: &str) -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ipvsadm")
        .join(format!("{name}.txt"));
    let text = std::fs::read_to_string(&path).expect("fixture file");
    let mut f = Fixture {
        name: name.to_owned(),
        command: String::new(),
        printed: Vec::new(),
        messages: Vec::new(),
    };
    for line in text.lines() {
        if let Some(p) = line.strip_prefix("# | ") {
            f.printed.push(p.trim_end().to_owned());
        } else if line == "# |" {
            f.printed.push(String::new());
        } else if let Some(c) = line.strip_prefix("# ") {
            if f.command.is_empty() {
                f.command = c.to_owned();
            }
        } else if let Some(m) = line.strip_prefix("> ") {
            f.messages.push((true, hex(m.trim())));
        } else if let Some(m) = line.strip_prefix("< ") {
            f.messages.push((false, hex(m.trim())));
        }
    }
    f
}

fn all() -> Vec<Fixture> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ipvsadm");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixture dir")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".txt").map(str::to_owned)
        })
        .collect();
    names.sort();
    assert!(names.len() > 40, "fixtures missing: {names:?}");
    names.iter().map(|n| load(n)).collect()
}

/// The IPVS family id, from the controller's reply in the same conversation.
fn family(f: &Fixture) -> u16 {
    f.messages
        .iter()
        .filter(|(sent, _)| !sent)
        .find_map(|(_, bytes)| {
            let msgs = netlink::messages(bytes).ok()?;
            let m = msgs.first()?;
            (m.header.kind == codec::GENL_ID_CTRL)
                .then(|| codec::family_id(m.payload).ok())
                .flatten()
        })
        .unwrap_or_else(|| panic!("{}: no family resolution", f.name))
}

/// The IPVS messages of a conversation: `(sent, message)`.
fn ipvs(f: &Fixture) -> Vec<(bool, IpvsMessage)> {
    let id = family(f);
    let mut out = Vec::new();
    for (sent, bytes) in &f.messages {
        let msgs = netlink::messages(bytes).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        assert_eq!(msgs.len(), 1, "{}: one message per line", f.name);
        if msgs[0].header.kind == id {
            let m =
                IpvsMessage::decode(msgs[0].payload).unwrap_or_else(|e| panic!("{}: {e}", f.name));
            out.push((*sent, m));
        }
    }
    out
}

/// The request that performs the operation (not the `GET_INFO` ipvsadm asks first).
fn operation(f: &Fixture) -> IpvsMessage {
    ipvs(f)
        .into_iter()
        .filter(|(sent, m)| *sent && m.command != Command::GetInfo)
        .map(|(_, m)| m)
        .next_back()
        .unwrap_or_else(|| panic!("{}: no IPVS request", f.name))
}

#[test]
fn every_captured_message_decodes_and_replies_reencode_exactly() {
    let mut replies = 0;
    for f in all() {
        let id = family(&f);
        for (sent, bytes) in &f.messages {
            let msgs = netlink::messages(bytes).unwrap_or_else(|e| panic!("{}: {e}", f.name));
            let m = &msgs[0];
            if m.header.kind == NLMSG_ERROR {
                netlink::parse_ack(&m.header, m.payload)
                    .unwrap_or_else(|e| panic!("{}: ack: {e}", f.name));
                continue;
            }
            if m.header.kind != id {
                continue;
            }
            let decoded =
                IpvsMessage::decode(m.payload).unwrap_or_else(|e| panic!("{}: {e}", f.name));
            let mut again = Vec::new();
            decoded.encode(&mut again, id, m.header.flags, m.header.sequence);
            if *sent {
                // ipvsadm sets NLA_F_NESTED on some nests, which the typed form does not keep:
                // the re-encoded message must still decode to the same values.
                let back = netlink::messages(&again).expect("framing");
                assert_eq!(
                    IpvsMessage::decode(back[0].payload).expect("decodes"),
                    decoded,
                    "{}",
                    f.name
                );
            } else {
                // The kernel's own replies: byte for byte (port id aside, which we leave 0).
                again[12..16].copy_from_slice(&bytes[12..16]);
                assert_eq!(&again, bytes, "{}: re-encoded reply differs", f.name);
                replies += 1;
            }
        }
    }
    assert!(replies > 50, "only {replies} kernel replies checked");
}

/// What the kernel reads from a request (`ip_vs_genl_parse_service`/`_dest` and
/// `ip_vs_genl_set_config`): attributes it ignores for the command are left out, absent
/// optional ones read as the kernel's default.
fn kernel_view(m: &IpvsMessage) -> BTreeMap<&'static str, String> {
    let mut v = BTreeMap::new();
    v.insert("cmd", format!("{:?}", m.command));
    let full_service = matches!(m.command, Command::NewService | Command::SetService);
    let full_dest = matches!(m.command, Command::NewDest | Command::SetDest);
    let mut service_af = 0u16;
    if let Some(attrs) = codec::service_attrs(m) {
        let fwmark = attrs.iter().find_map(|a| match a {
            ServiceAttr::Fwmark(x) => Some(*x),
            _ => None,
        });
        if full_service {
            v.insert("svc.pe", String::new());
        }
        for a in attrs {
            match a {
                ServiceAttr::Family(x) => {
                    service_af = *x;
                    v.insert("svc.af", x.to_string());
                }
                ServiceAttr::Fwmark(x) => {
                    v.insert("svc.fwmark", x.to_string());
                }
                ServiceAttr::Protocol(x) if fwmark.is_none() => {
                    v.insert("svc.protocol", x.to_string());
                }
                ServiceAttr::Address(x) if fwmark.is_none() => {
                    v.insert("svc.addr", format!("{:?}", x.0));
                }
                ServiceAttr::Port(x) if fwmark.is_none() => {
                    v.insert("svc.port", x.to_string());
                }
                ServiceAttr::Scheduler(x) if full_service => {
                    v.insert("svc.sched", x.clone());
                }
                ServiceAttr::PeName(x) if full_service => {
                    v.insert("svc.pe", x.clone());
                }
                ServiceAttr::Flags { flags, mask } if full_service => {
                    v.insert("svc.flags", format!("{:#x}", flags & mask));
                    v.insert("svc.mask", format!("{mask:#x}"));
                }
                ServiceAttr::Timeout(x) if full_service => {
                    v.insert("svc.timeout", x.to_string());
                }
                ServiceAttr::Netmask(x) if full_service => {
                    v.insert("svc.netmask", format!("{x:#x}"));
                }
                _ => {}
            }
        }
    }
    if let Some(attrs) = codec::destination_attrs(m) {
        v.insert("dst.af", service_af.to_string());
        if full_dest {
            for k in ["dst.tun_type", "dst.tun_port", "dst.tun_flags"] {
                v.insert(k, "0".into());
            }
        }
        for a in attrs {
            let (k, x) = match a {
                DestAttr::AddressFamily(x) => ("dst.af", x.to_string()),
                DestAttr::Address(x) => ("dst.addr", format!("{:?}", x.0)),
                DestAttr::Port(x) => ("dst.port", x.to_string()),
                DestAttr::ForwardMethod(x) if full_dest => ("dst.fwd", (x & 7).to_string()),
                DestAttr::Weight(x) if full_dest => ("dst.weight", x.to_string()),
                DestAttr::UpperThreshold(x) if full_dest => ("dst.u_thresh", x.to_string()),
                DestAttr::LowerThreshold(x) if full_dest => ("dst.l_thresh", x.to_string()),
                DestAttr::TunnelType(x) if full_dest => ("dst.tun_type", x.to_string()),
                DestAttr::TunnelPort(x) if full_dest => ("dst.tun_port", x.to_string()),
                DestAttr::TunnelFlags(x) if full_dest => ("dst.tun_flags", x.to_string()),
                _ => continue,
            };
            v.insert(k, x);
        }
    }
    for a in &m.attributes {
        let (k, x) = match a {
            IpvsAttr::TimeoutTcp(x) => ("timeout.tcp", x),
            IpvsAttr::TimeoutTcpFin(x) => ("timeout.tcpfin", x),
            IpvsAttr::TimeoutUdp(x) => ("timeout.udp", x),
            _ => continue,
        };
        v.insert(k, x.to_string());
    }
    v
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address literal")
}

fn inet(protocol: Protocol, vip: &str, port: u16) -> ServiceKey {
    ServiceKey::Inet {
        protocol,
        vip: ip(vip),
        port,
    }
}

fn fwm(family: Family, mark: u32) -> ServiceKey {
    ServiceKey::Fwmark { family, mark }
}

fn svc(scheduler: Scheduler, flags: u32, timeout: u32, netmask: u32, pe: &str) -> ServiceConfig {
    ServiceConfig {
        scheduler,
        flags,
        timeout,
        netmask,
        pe_name: pe.to_owned(),
    }
}

fn dk(address: &str, port: u16) -> DestinationKey {
    DestinationKey {
        address: ip(address),
        port,
    }
}

fn dc(forwarding: Forward, weight: u32, upper: u32, lower: u32) -> DestinationConfig {
    DestinationConfig {
        forwarding,
        weight,
        upper_threshold: upper,
        lower_threshold: lower,
    }
}

fn tun(encapsulation: Encapsulation, port: u16, checksum: TunnelChecksum) -> Forward {
    Forward::Tunnel {
        encapsulation,
        port,
        checksum,
    }
}

fn add(service: ServiceKey, d: DestinationKey, c: DestinationConfig) -> Action {
    Action::AddDestination {
        service,
        destination: d,
        config: c,
    }
}

fn set(service: ServiceKey, d: DestinationKey, c: DestinationConfig) -> Action {
    Action::SetDestination {
        service,
        destination: d,
        config: c,
    }
}

/// Each ipvsadm command of the fixtures as the engine's action, written from the command line.
fn expected_actions() -> Vec<(&'static str, Action)> {
    use Encapsulation::{Gre, Gue, Ipip};
    use Protocol::{Sctp, Tcp, Udp};
    use TunnelChecksum::{Csum, None as NoCsum, Remcsum};
    let all = u32::MAX;
    let web = inet(Tcp, "198.51.100.1", 80);
    let mh = inet(Tcp, "198.51.100.2", 443);
    let dns6 = inet(Udp, "2001:db8:100::1", 53);
    vec![
        (
            "svc-add-fwmark4",
            Action::AddService {
                key: fwm(Family::V4, 100),
                config: svc(Scheduler::Rr, 0, 0, all, ""),
            },
        ),
        (
            "svc-add-fwmark6",
            Action::AddService {
                key: fwm(Family::V6, 101),
                config: svc(Scheduler::Sh, 0x18, 0, 128, ""),
            },
        ),
        (
            "svc-add-sctp4",
            Action::AddService {
                key: inet(Sctp, "198.51.100.5", 9),
                config: svc(Scheduler::Rr, 0, 0, all, ""),
            },
        ),
        (
            "svc-add-tcp4-mh-flags",
            Action::AddService {
                key: mh,
                config: svc(Scheduler::Mh, 0x18, 0, all, ""),
            },
        ),
        (
            "svc-add-tcp4-persist",
            Action::AddService {
                key: inet(Tcp, "198.51.100.3", 80),
                config: svc(Scheduler::Wlc, 0x1, 300, 0xffff_ff00, ""),
            },
        ),
        (
            "svc-add-tcp4-rr",
            Action::AddService {
                key: web,
                config: svc(Scheduler::Rr, 0, 0, all, ""),
            },
        ),
        (
            "svc-add-tcp6-persist",
            Action::AddService {
                key: inet(Tcp, "2001:db8:100::3", 80),
                config: svc(Scheduler::Wlc, 0x1, 300, 64, ""),
            },
        ),
        (
            "svc-add-udp4-ops",
            Action::AddService {
                key: inet(Udp, "198.51.100.4", 53),
                config: svc(Scheduler::Rr, 0x4, 0, all, ""),
            },
        ),
        (
            "svc-add-udp4-pe-sip",
            Action::AddService {
                key: inet(Udp, "198.51.100.6", 5060),
                config: svc(Scheduler::Rr, 0x1, 60, all, "sip"),
            },
        ),
        (
            "svc-add-udp6-wlc",
            Action::AddService {
                key: dns6,
                config: svc(Scheduler::Wlc, 0, 0, 128, ""),
            },
        ),
        (
            "svc-del-fwmark6",
            Action::DelService {
                key: fwm(Family::V6, 101),
            },
        ),
        (
            "svc-del-tcp4",
            Action::DelService {
                key: inet(Tcp, "198.51.100.3", 80),
            },
        ),
        (
            "svc-edit-mh-flags",
            Action::SetService {
                key: mh,
                config: svc(Scheduler::Mh, 0x10, 0, all, ""),
            },
        ),
        (
            "svc-edit-persist-off",
            Action::SetService {
                key: inet(Tcp, "198.51.100.3", 80),
                config: svc(Scheduler::Wlc, 0, 0, all, ""),
            },
        ),
        (
            "svc-edit-sched",
            Action::SetService {
                key: web,
                config: svc(Scheduler::Wrr, 0, 0, all, ""),
            },
        ),
        (
            "dst-add-fwmark4-port0",
            add(
                fwm(Family::V4, 100),
                dk("192.0.2.11", 0),
                dc(Forward::Masquerade, 1, 0, 0),
            ),
        ),
        (
            "dst-add-fwmark6-route",
            add(
                fwm(Family::V6, 101),
                dk("2001:db8:2::12", 0),
                dc(Forward::Direct, 1, 0, 0),
            ),
        ),
        (
            "dst-add-masq-weight",
            add(
                web,
                dk("192.0.2.11", 8080),
                dc(Forward::Masquerade, 5, 0, 0),
            ),
        ),
        (
            "dst-add-mh",
            add(mh, dk("192.0.2.11", 443), dc(Forward::Direct, 7, 0, 0)),
        ),
        (
            "dst-add-route-thresholds",
            add(web, dk("192.0.2.12", 80), dc(Forward::Direct, 1, 100, 50)),
        ),
        (
            "dst-add-tcp6-on-v4-tunnel",
            add(
                mh,
                dk("2001:db8:2::13", 443),
                dc(tun(Ipip, 0, NoCsum), 1, 0, 0),
            ),
        ),
        (
            "dst-add-tunnel-gre-csum",
            add(web, dk("192.0.2.18", 80), dc(tun(Gre, 0, Csum), 1, 0, 0)),
        ),
        (
            "dst-add-tunnel-gre-nocsum",
            add(web, dk("192.0.2.17", 80), dc(tun(Gre, 0, NoCsum), 1, 0, 0)),
        ),
        (
            "dst-add-tunnel-gue-csum",
            add(web, dk("192.0.2.15", 80), dc(tun(Gue, 6080, Csum), 1, 0, 0)),
        ),
        (
            "dst-add-tunnel-gue-remcsum",
            add(
                web,
                dk("192.0.2.16", 80),
                dc(tun(Gue, 6081, Remcsum), 1, 0, 0),
            ),
        ),
        (
            "dst-add-tunnel-gue",
            add(
                web,
                dk("192.0.2.14", 80),
                dc(tun(Gue, 6080, NoCsum), 1, 0, 0),
            ),
        ),
        (
            "dst-add-tunnel-ipip",
            add(web, dk("192.0.2.13", 80), dc(tun(Ipip, 0, NoCsum), 2, 0, 0)),
        ),
        (
            "dst-add-udp6-masq",
            add(
                dns6,
                dk("2001:db8:2::11", 5353),
                dc(Forward::Masquerade, 3, 0, 0),
            ),
        ),
        (
            "dst-del-v6",
            Action::DelDestination {
                service: dns6,
                destination: dk("2001:db8:2::11", 5353),
            },
        ),
        (
            "dst-del",
            Action::DelDestination {
                service: web,
                destination: dk("192.0.2.11", 8080),
            },
        ),
        (
            "dst-edit-fwd-thresholds",
            set(web, dk("192.0.2.12", 80), dc(tun(Ipip, 0, NoCsum), 4, 0, 0)),
        ),
        (
            "dst-edit-gue-port",
            set(
                web,
                dk("192.0.2.14", 80),
                dc(tun(Gue, 6090, NoCsum), 1, 0, 0),
            ),
        ),
        (
            "dst-edit-weight0",
            set(
                web,
                dk("192.0.2.11", 8080),
                dc(Forward::Masquerade, 0, 0, 0),
            ),
        ),
        (
            "config-set",
            Action::SetTimeouts {
                timeouts: IpvsTimeouts {
                    tcp: 900,
                    tcp_fin: 120,
                    udp: 300,
                },
            },
        ),
        (
            "err-dst-thresholds-range",
            add(web, dk("192.0.2.20", 80), dc(Forward::Direct, 1, 10, 20)),
        ),
    ]
}

#[test]
fn our_requests_read_like_ipvsadm_s_for_every_operation() {
    let expected = expected_actions();
    // Every operation fixture is covered.
    for f in all() {
        let op = ["svc-", "dst-", "config-set"]
            .iter()
            .any(|p| f.name.starts_with(p));
        assert!(
            !op || expected.iter().any(|(n, _)| *n == f.name),
            "{} ({}) has no expected action",
            f.name,
            f.command
        );
    }
    for (name, action) in &expected {
        let f = load(name);
        let theirs = operation(&f);
        let ours = codec::request_for(action).expect("an IPVS action");
        assert_eq!(
            kernel_view(&ours),
            kernel_view(&theirs),
            "{name}: `{}` read differently by the kernel",
            f.command
        );
    }
}

#[test]
fn kernel_error_replies_carry_the_expected_errnos() {
    let cases = [
        ("err-dst-add-exists", libc::EEXIST),
        ("err-dst-add-no-service", libc::ESRCH),
        ("err-dst-del-missing", libc::ENOENT),
        ("err-dst-edit-missing", libc::ENOENT),
        ("err-dst-thresholds-range", libc::ERANGE),
        ("err-svc-add-exists", libc::EEXIST),
        ("err-svc-add-unknown-sched", libc::ENOENT),
        ("err-svc-del-missing", libc::ESRCH),
        ("err-svc-edit-missing", libc::ESRCH),
    ];
    for (name, errno) in cases {
        let f = load(name);
        let (_, last) = f.messages.last().expect("messages");
        let msgs = netlink::messages(last).expect("framing");
        assert_eq!(msgs[0].header.kind, NLMSG_ERROR, "{name}");
        let ack = netlink::parse_ack(&msgs[0].header, msgs[0].payload).expect("ack");
        assert_eq!(ack.errno, errno, "{name}: {}", f.command);
        // The ack answers the operation's request.
        let (_, request) = f
            .messages
            .iter()
            .rev()
            .find(|(sent, _)| *sent)
            .expect("request");
        let req = netlink::messages(request).expect("framing");
        assert_eq!(ack.sequence, req[0].header.sequence, "{name}");
    }
}

/// The services of a dump conversation with their destinations, in the kernel's order.
fn dumped(f: &Fixture) -> Vec<VirtualService> {
    let mut services: Vec<VirtualService> = Vec::new();
    let mut current: Option<ServiceKey> = None;
    for (sent, m) in ipvs(f) {
        match (sent, m.command) {
            (true, Command::GetDest) => {
                current = Some(
                    codec::service_key(codec::service_attrs(&m).expect("service")).expect("key"),
                );
            }
            (false, Command::NewService) => services.push(
                codec::virtual_service(codec::service_attrs(&m).expect("service"))
                    .expect("service model"),
            ),
            (false, Command::NewDest) => {
                let key = current.expect("a destination dump was asked for");
                let s = services
                    .iter_mut()
                    .find(|s| s.key == key)
                    .expect("dumped service");
                let d = codec::destination(
                    codec::destination_attrs(&m).expect("destination"),
                    key.family(),
                )
                .expect("destination model");
                s.destinations.push(d);
            }
            _ => {}
        }
    }
    services
}

/// `ipvsadm -Sn` lines for a service, written independently of the engine's display code.
fn save_lines(s: &VirtualService) -> Vec<String> {
    let ep = |a: IpAddr, p: u16| match a {
        IpAddr::V4(a) => format!("{a}:{p}"),
        IpAddr::V6(a) => format!("[{a}]:{p}"),
    };
    let id = match s.key {
        ServiceKey::Inet {
            protocol,
            vip,
            port,
        } => {
            let flag = match protocol {
                Protocol::Tcp => "-t",
                Protocol::Udp => "-u",
                Protocol::Sctp => "--sctp-service",
            };
            format!("{flag} {}", ep(vip, port))
        }
        ServiceKey::Fwmark { family, mark } => match family {
            Family::V4 => format!("-f {mark}"),
            Family::V6 => format!("-f {mark} -6"),
        },
    };
    let c = &s.config;
    let mut line = format!("-A {id} -s {}", c.scheduler.as_str());
    if c.flags & 0x1 != 0 {
        line.push_str(&format!(" -p {}", c.timeout));
        let mask = match s.key.family() {
            Family::V4 => std::net::Ipv4Addr::from(c.netmask).to_string(),
            Family::V6 => c.netmask.to_string(),
        };
        if c.netmask != u32::MAX && c.netmask != 128 {
            line.push_str(&format!(" -M {mask}"));
        }
    }
    if !c.pe_name.is_empty() {
        line.push_str(&format!(" --pe {}", c.pe_name));
    }
    if c.flags & 0x4 != 0 {
        line.push_str(" -o");
    }
    let prefix = match c.scheduler {
        Scheduler::Mh => "mh",
        _ => "sh",
    };
    let sched_flags: Vec<String> = [(0x8, "fallback"), (0x10, "port")]
        .iter()
        .filter(|(bit, _)| c.flags & bit != 0)
        .map(|(_, n)| format!("{prefix}-{n}"))
        .collect();
    if !sched_flags.is_empty() {
        line.push_str(&format!(" -b {}", sched_flags.join(",")));
    }
    let mut lines = vec![line];
    let mut dests = s.destinations.clone();
    dests.sort_by_key(|d| (d.key.address, d.key.port));
    for d in dests {
        let fwd = match d.config.forwarding {
            Forward::Masquerade => "-m".to_owned(),
            Forward::Direct => "-g".to_owned(),
            Forward::Tunnel {
                encapsulation,
                port,
                checksum,
            } => {
                let mut t = format!("-i -w {} --tun-type {}", d.config.weight, encapsulation);
                if encapsulation == Encapsulation::Gue {
                    t.push_str(&format!(" --tun-port {port}"));
                }
                if encapsulation != Encapsulation::Ipip {
                    t.push_str(match checksum {
                        TunnelChecksum::None => " --tun-nocsum",
                        TunnelChecksum::Csum => " --tun-csum",
                        TunnelChecksum::Remcsum => " --tun-remcsum",
                    });
                }
                lines.push(format!("-a {id} -r {} {t}", ep(d.key.address, d.key.port)));
                continue;
            }
            other => panic!("unexpected forwarding {other:?}"),
        };
        lines.push(format!(
            "-a {id} -r {} {fwd} -w {}",
            ep(d.key.address, d.key.port),
            d.config.weight
        ));
    }
    lines
}

#[test]
fn service_dump_decodes_to_what_ipvsadm_saved() {
    let f = load("dump-save");
    let services = dumped(&f);
    assert_eq!(services.len(), 10);
    let mut ours: Vec<String> = services.iter().flat_map(save_lines).collect();
    let mut theirs = f.printed.clone();
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs);
}

#[test]
fn destination_dumps_keep_the_kernel_list_order() {
    let f = load("dump-list-nosort");
    let services = dumped(&f);
    // ipvsadm --nosort prints each service's destinations in the order the kernel sent them.
    let mut printed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = String::new();
    for line in &f.printed {
        if let Some(d) = line.strip_prefix("  -> ") {
            let addr = d.split_whitespace().next().unwrap_or_default().to_owned();
            if addr != "RemoteAddress:Port" {
                printed.entry(current.clone()).or_default().push(addr);
            }
        } else {
            current = line
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
        }
    }
    let mut ours: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in &services {
        let header = match s.key {
            ServiceKey::Inet {
                protocol,
                vip,
                port,
            } => format!(
                "{protocol} {}",
                balanced_engine::model::SocketLike(vip, port)
            ),
            ServiceKey::Fwmark { mark, .. } => format!("FWM {mark}"),
        };
        if !s.destinations.is_empty() {
            ours.insert(
                header,
                s.destinations.iter().map(|d| d.key.to_string()).collect(),
            );
        }
    }
    assert_eq!(ours, printed);
    assert_eq!(
        ours["TCP 198.51.100.1:80"].first().map(String::as_str),
        Some("192.0.2.18:80"),
        "newest first"
    );
}

#[test]
fn config_reply_decodes_to_the_timeouts_ipvsadm_printed() {
    let f = load("config-get");
    let reply = ipvs(&f)
        .into_iter()
        .find(|(sent, m)| !sent && m.command == Command::SetConfig)
        .map(|(_, m)| m)
        .expect("GET_CONFIG reply");
    let t = codec::timeouts(&reply);
    assert_eq!(
        f.printed,
        vec![format!(
            "Timeout (tcp tcpfin udp): {} {} {}",
            t.tcp, t.tcp_fin, t.udp
        )]
    );
    // And the dump ends with NLMSG_DONE in every dump conversation.
    for name in ["dump-list", "dump-save", "dump-stats"] {
        let f = load(name);
        let done = f.messages.iter().any(|(sent, b)| {
            !sent
                && netlink::messages(b)
                    .map(|m| m[0].header.kind == NLMSG_DONE)
                    .unwrap_or(false)
        });
        assert!(done, "{name}: no NLMSG_DONE");
    }
}
