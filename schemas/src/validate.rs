//! Semantic checks that need one document only.
//!
//! Pure: takes a typed [`Document`], returns diagnostics. Each message names the object
//! (`service TCP 198.51.100.10:80: backend 10.0.0.1:8080: …`) and each position is the
//! offending field or value, or the nearest written parent when the value is a default.
//! Rules that span documents (unique names, services across files, node ranges) live in
//! `crate::check`.
//!
//! Minimum kernels (documented on the types, so in the JSON Schema too): `mh` needs Linux
//! 4.18, GUE tunnels 5.2, GRE tunnels 5.3, `twos` 5.9.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::diagnostic::Diagnostic;
use crate::document::{Document, Manifest};
use crate::v1::{
    self, Backend, BackendState, Encapsulation, ForwardingMethod, Netmask, Protocol, Scheduler,
    SchedulerFlag, TunnelChecksum, VirtualService,
};

/// Slots of the kernel's `mh` lookup table at the default `CONFIG_IP_VS_MH_TAB_INDEX` (12).
pub const MH_TABLE_SIZE: usize = 4093;
/// Above this many backends (1 % of the table) Maglev's balance degrades noticeably.
pub const MH_BALANCED_BACKENDS: usize = MH_TABLE_SIZE / 100;
/// The longest interface name Linux accepts (IFNAMSIZ − 1).
pub const MAX_INTERFACE_NAME: usize = 15;
/// The longest IPVS timeout the kernel takes (`INT_MAX / HZ` at HZ=1000), in seconds.
pub const MAX_IPVS_TIMEOUT_SECS: u64 = 2_147_483;
/// The sysctls every manifest-driven node may converge live under this prefix.
pub const SYSCTL_PREFIX: &str = "net.ipv4.vs.";
/// The `net.ipv4.vs.*` sysctls of mainline Linux (Documentation/networking/ipvs-sysctl.rst).
/// Others are accepted with a warning, for newer kernels.
pub const KNOWN_SYSCTLS: &[&str] = &[
    "am_droprate",
    "amemthresh",
    "backup_only",
    "cache_bypass",
    "conn_reuse_mode",
    "conntrack",
    "debug_level",
    "drop_entry",
    "drop_packet",
    "est_cpulist",
    "est_nice",
    "expire_nodest_conn",
    "expire_quiescent_template",
    "ignore_tunneled",
    "lblc_expiration",
    "lblcr_expiration",
    "nat_icmp_send",
    "pmtu_disc",
    "run_estimation",
    "schedule_icmp",
    "secure_tcp",
    "sloppy_sctp",
    "sloppy_tcp",
    "snat_reroute",
    "sync_persist_mode",
    "sync_ports",
    "sync_qlen_max",
    "sync_refresh_period",
    "sync_retries",
    "sync_sock_size",
    "sync_threshold",
    "sync_version",
];

/// What identifies a virtual service in the kernel: (VIP, protocol, port) or (family, mark).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceKey {
    Port(IpAddr, Protocol, u16),
    Mark(Family, u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub fn of(address: IpAddr) -> Family {
        match address {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ipv4 => "IPv4",
            Family::Ipv6 => "IPv6",
        }
    }
}

/// The kernel identity of a service, when it has a complete one.
pub fn service_key(vip: IpAddr, service: &VirtualService) -> Option<ServiceKey> {
    match (service.fwmark, service.protocol, service.port) {
        (Some(mark), _, _) => Some(ServiceKey::Mark(Family::of(vip), mark)),
        (None, Some(protocol), Some(port)) => Some(ServiceKey::Port(vip, protocol, port)),
        _ => None,
    }
}

/// How messages name a service: `TCP 198.51.100.10:80`, `UDP [2001:db8::53]:53`,
/// `fwmark 7 (IPv4)`.
pub fn service_name(vip: IpAddr, service: &VirtualService) -> String {
    if let Some(mark) = service.fwmark {
        return format!("fwmark {mark} ({})", Family::of(vip).as_str());
    }
    let protocol = service.protocol.map_or("?", Protocol::as_str);
    match service.port {
        Some(port) => format!("{protocol} {}", socket(vip, port)),
        None => format!("{protocol} {vip}"),
    }
}

fn socket(address: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(address, port).to_string()
}

/// The port a backend receives: its own, else the service's (0 for fwmark services).
pub fn backend_port(service: &VirtualService, backend: &Backend) -> u16 {
    backend.port.or(service.port).unwrap_or(0)
}

/// Every check of one document.
pub fn check_document(document: &Document) -> Vec<Diagnostic> {
    let mut report = Report {
        document,
        diagnostics: Vec::new(),
    };
    check_metadata(&mut report, document.manifest.metadata());
    match &document.manifest {
        Manifest::Balancer(balancer) => check_balancer(&mut report, balancer),
        Manifest::NodeConfig(config) => check_node_config(&mut report, &config.spec),
    }
    report.diagnostics
}

/// Collects diagnostics at field paths of one document.
struct Report<'a> {
    document: &'a Document,
    diagnostics: Vec<Diagnostic>,
}

impl Report<'_> {
    fn error(&mut self, field: &str, message: impl Into<String>) {
        let position = self.document.positions.at(field);
        self.diagnostics
            .push(Diagnostic::error(&self.document.path, position, message));
    }

    /// An error about a field being there at all: points at its key.
    fn error_at_key(&mut self, field: &str, message: impl Into<String>) {
        let position = self.document.positions.key(field);
        self.diagnostics
            .push(Diagnostic::error(&self.document.path, position, message));
    }

    fn warning_at_key(&mut self, field: &str, message: impl Into<String>) {
        let position = self.document.positions.key(field);
        self.diagnostics
            .push(Diagnostic::warning(&self.document.path, position, message));
    }

    fn warning(&mut self, field: &str, message: impl Into<String>) {
        let position = self.document.positions.at(field);
        self.diagnostics
            .push(Diagnostic::warning(&self.document.path, position, message));
    }
}

fn check_metadata(report: &mut Report, metadata: &v1::Metadata) {
    let name = &metadata.name;
    if name.is_empty() {
        report.error("metadata.name", "metadata.name must not be empty");
    } else if !is_dns_name(name) {
        report.error(
            "metadata.name",
            format!(
                "metadata.name {name:?} is not a DNS-style name: lowercase letters, digits, '-' \
                 and '.', starting and ending with a letter or digit, at most 253 characters"
            ),
        );
    }
    if let Some(source) = &metadata.source
        && !is_valid_source(source)
    {
        report.error(
            "metadata.source",
            format!(
                "metadata.source {source:?} must be \"manual\" or \
                 \"kubernetes/<namespace>/<name>\""
            ),
        );
    }
}

/// An RFC 1123 subdomain, as Kubernetes names objects.
pub fn is_dns_name(name: &str) -> bool {
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let bytes = name.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            bytes.len() <= 253
                && alnum(first)
                && alnum(last)
                && bytes.iter().all(|&c| alnum(c) || c == b'-' || c == b'.')
                && !name.contains("..")
        }
        _ => false,
    }
}

fn is_valid_source(source: &str) -> bool {
    if source == "manual" {
        return true;
    }
    match source
        .strip_prefix("kubernetes/")
        .map(|rest| rest.split('/'))
    {
        Some(mut parts) => {
            let namespace = parts.next().unwrap_or_default();
            let name = parts.next().unwrap_or_default();
            parts.next().is_none() && is_dns_name(namespace) && is_dns_name(name)
        }
        None => false,
    }
}

fn check_balancer(report: &mut Report, balancer: &v1::Balancer) {
    let vip = balancer.spec.vip;
    if let Some(why) = unusable_address(vip, true) {
        report.error(
            "spec.vip",
            format!("VIP {vip} is not a usable address ({why})"),
        );
    }
    if balancer.spec.services.is_empty() {
        report.warning(
            "spec.services",
            format!(
                "Balancer {:?} has no services, so its VIP {vip} is not held",
                balancer.metadata.name
            ),
        );
    }
    let mut seen = FirstSeen::default();
    for (i, service) in balancer.spec.services.iter().enumerate() {
        let field = format!("spec.services[{i}]");
        let name = service_name(vip, service);
        if let Some(key) = service_key(vip, service)
            && let Some(first) = seen.note(key, i)
        {
            let first_field = format!("spec.services[{first}]");
            report.error(
                &field,
                format!(
                    "service {name} is defined twice: also at {}",
                    report.document.place(&first_field)
                ),
            );
        }
        check_service(report, vip, service, &field, &name);
    }
}

/// Where each key was first seen: a list while short, a hash map past that. Most services have
/// a few backends, and hashing those cost more than comparing them.
struct FirstSeen<K> {
    list: Vec<(K, usize)>,
    map: HashMap<K, usize>,
}

impl<K> Default for FirstSeen<K> {
    fn default() -> Self {
        FirstSeen {
            list: Vec::new(),
            map: HashMap::new(),
        }
    }
}

impl<K: Copy + Eq + std::hash::Hash> FirstSeen<K> {
    const LIST: usize = 16;

    /// Where `key` was first seen; `None` when this, `index`, is the first time.
    fn note(&mut self, key: K, index: usize) -> Option<usize> {
        if let Some(&(_, first)) = self.list.iter().find(|(k, _)| *k == key) {
            return Some(first);
        }
        if let Some(&first) = self.map.get(&key) {
            return Some(first);
        }
        if self.list.len() < Self::LIST {
            self.list.push((key, index));
        } else {
            self.map.insert(key, index);
        }
        None
    }
}

/// Why an address cannot be a VIP or a backend, if it cannot.
fn unusable_address(address: IpAddr, is_vip: bool) -> Option<&'static str> {
    if address.is_unspecified() {
        return Some("unspecified");
    }
    if address.is_multicast() {
        return Some("multicast");
    }
    if let IpAddr::V4(v4) = address
        && v4.is_broadcast()
    {
        return Some("broadcast");
    }
    if is_vip && address.is_loopback() {
        return Some("loopback");
    }
    None
}

fn check_service(
    report: &mut Report,
    vip: IpAddr,
    service: &VirtualService,
    field: &str,
    name: &str,
) {
    check_identity(report, service, field, name);
    check_scheduler_flags(report, service, field, name);
    if let Some(persistence) = &service.persistence {
        check_persistence(report, vip, persistence, field, name);
    }
    if service.one_packet && matches!(service.protocol, Some(Protocol::Tcp | Protocol::Sctp)) {
        report.error(
            &format!("{field}.onePacket"),
            format!("service {name}: onePacket is for UDP services only"),
        );
    }
    check_forwarding(report, &service.forwarding, field, name);
    check_backends(report, vip, service, field, name);
}

/// `protocol` + `port`, or `fwmark`, never both.
fn check_identity(report: &mut Report, service: &VirtualService, field: &str, name: &str) {
    match service.fwmark {
        Some(mark) => {
            if mark == 0 {
                report.error(
                    &format!("{field}.fwmark"),
                    format!("service {name}: fwmark 0 means \"no mark\": use a mark from 1"),
                );
            }
            if service.protocol.is_some() {
                report.error(
                    &format!("{field}.protocol"),
                    format!(
                        "service {name}: a fwmark service has no protocol (it takes marked \
                         packets of every protocol): remove protocol or fwmark"
                    ),
                );
            }
            if service.port.is_some() {
                report.error(
                    &format!("{field}.port"),
                    format!(
                        "service {name}: a fwmark service has no port (it takes marked packets \
                         to every port): remove port or fwmark"
                    ),
                );
            }
        }
        None => match (service.protocol, service.port) {
            (None, _) => report.error(
                field,
                format!("{field}: a service needs protocol and port, or fwmark"),
            ),
            (Some(protocol), None) => report.error(
                field,
                format!("service {name}: a {protocol} service needs a port"),
            ),
            (Some(_), Some(0)) => report.error(
                &format!("{field}.port"),
                format!("service {name}: port 0 is not a service port"),
            ),
            (Some(_), Some(_)) => {}
        },
    }
}

/// Scheduler flags must belong to the scheduler; `mh-port`/`sh-port` hash the source port,
/// which TCP, UDP and SCTP all carry (fwmark services: their TCP, UDP and SCTP packets).
fn check_scheduler_flags(report: &mut Report, service: &VirtualService, field: &str, name: &str) {
    let scheduler = service.scheduler;
    let mut seen: HashMap<SchedulerFlag, usize> = HashMap::new();
    for (j, flag) in service.scheduler_flags.iter().copied().enumerate() {
        let flag_field = format!("{field}.schedulerFlags[{j}]");
        if let Some(first) = seen.insert(flag, j) {
            report.error(
                &flag_field,
                format!(
                    "service {name}: scheduler flag {flag} is listed twice (also \
                     schedulerFlags[{first}])"
                ),
            );
            continue;
        }
        match (flag, scheduler) {
            (SchedulerFlag::MhFallback | SchedulerFlag::MhPort, Scheduler::Mh)
            | (SchedulerFlag::ShFallback | SchedulerFlag::ShPort, Scheduler::Sh) => {}
            (SchedulerFlag::MhFallback | SchedulerFlag::MhPort, _) => report.error(
                &flag_field,
                format!(
                    "service {name}: scheduler flag {flag} is for the mh scheduler, not \
                     {scheduler}"
                ),
            ),
            (SchedulerFlag::ShFallback | SchedulerFlag::ShPort, _) => report.error(
                &flag_field,
                format!(
                    "service {name}: scheduler flag {flag} is for the sh scheduler, not \
                     {scheduler}"
                ),
            ),
            (SchedulerFlag::Flag1 | SchedulerFlag::Flag2 | SchedulerFlag::Flag3, _) => {
                match named_flag(scheduler, flag.bit()) {
                    Some(named) => report.error(
                        &flag_field,
                        format!(
                            "service {name}: {flag} is {named} for the {scheduler} scheduler: \
                             write {named}"
                        ),
                    ),
                    None => report.warning(
                        &flag_field,
                        format!(
                            "service {name}: scheduler flag {flag} has no meaning for the \
                             {scheduler} scheduler"
                        ),
                    ),
                }
            }
        }
    }
}

/// The named flag that sets `bit` for `scheduler`, if it defines one.
fn named_flag(scheduler: Scheduler, bit: u32) -> Option<SchedulerFlag> {
    let named: &[SchedulerFlag] = match scheduler {
        Scheduler::Mh => &[SchedulerFlag::MhFallback, SchedulerFlag::MhPort],
        Scheduler::Sh => &[SchedulerFlag::ShFallback, SchedulerFlag::ShPort],
        _ => &[],
    };
    named.iter().copied().find(|f| f.bit() == bit)
}

fn check_persistence(
    report: &mut Report,
    vip: IpAddr,
    persistence: &v1::Persistence,
    field: &str,
    name: &str,
) {
    if persistence.timeout == 0 {
        report.error(
            &format!("{field}.persistence.timeout"),
            format!(
                "service {name}: persistence timeout 0 turns persistence off: remove persistence \
                 instead"
            ),
        );
    } else if u64::from(persistence.timeout) > MAX_IPVS_TIMEOUT_SECS {
        report.error(
            &format!("{field}.persistence.timeout"),
            format!(
                "service {name}: persistence timeout {} is above the kernel's limit of \
                 {MAX_IPVS_TIMEOUT_SECS} seconds",
                persistence.timeout
            ),
        );
    }
    let Some(netmask) = &persistence.netmask else {
        return;
    };
    let netmask_field = format!("{field}.persistence.netmask");
    match (netmask, vip) {
        (Netmask::Dotted(_), IpAddr::V6(_)) => report.error(
            &netmask_field,
            format!(
                "service {name}: a dotted netmask is for IPv4 VIPs: write a prefix length \
                 (e.g. 64) for IPv6"
            ),
        ),
        (Netmask::Dotted(mask), IpAddr::V4(_)) if netmask.prefix_len().is_none() => report.error(
            &netmask_field,
            format!("service {name}: netmask {mask} is not contiguous"),
        ),
        (Netmask::Prefix(p), IpAddr::V4(_)) if *p > 32 => report.error(
            &netmask_field,
            format!("service {name}: netmask /{p} is longer than an IPv4 address"),
        ),
        _ => {}
    }
}

/// `encapsulation`, `port` and `checksum` are tunnel options; GUE needs its port;
/// `remcsum` is GUE only, and `ipip` has no checksum at all.
fn check_forwarding(report: &mut Report, forwarding: &v1::Forwarding, field: &str, name: &str) {
    let method = forwarding.method;
    let f = format!("{field}.forwarding");
    if method != ForwardingMethod::Tunnel {
        for (option, set) in [
            ("encapsulation", forwarding.encapsulation.is_some()),
            ("port", forwarding.port.is_some()),
            ("checksum", forwarding.checksum.is_some()),
        ] {
            if set {
                report.error_at_key(
                    &format!("{f}.{option}"),
                    format!(
                        "service {name}: forwarding.{option} is a tunnel option, not for {method} \
                         forwarding"
                    ),
                );
            }
        }
        return;
    }
    let encapsulation = forwarding.encapsulation.unwrap_or_default();
    match (encapsulation, forwarding.port) {
        (Encapsulation::Gue, None) => report.error(
            &f,
            format!("service {name}: gue encapsulation needs forwarding.port, the backends' GUE UDP port"),
        ),
        (Encapsulation::Gue, Some(0)) => report.error(
            &format!("{f}.port"),
            format!("service {name}: GUE port 0 is not a UDP port"),
        ),
        (Encapsulation::Ipip | Encapsulation::Gre, Some(_)) => report.error(
            &format!("{f}.port"),
            format!(
                "service {name}: forwarding.port is the GUE port; {encapsulation} encapsulation \
                 has none"
            ),
        ),
        _ => {}
    }
    match (encapsulation, forwarding.checksum.unwrap_or_default()) {
        (Encapsulation::Ipip, TunnelChecksum::Csum | TunnelChecksum::Remcsum) => report.error(
            &format!("{f}.checksum"),
            format!("service {name}: ipip encapsulation has no checksum option (gue and gre do)"),
        ),
        (Encapsulation::Gre, TunnelChecksum::Remcsum) => report.error(
            &format!("{f}.checksum"),
            format!("service {name}: remcsum is for gue encapsulation only"),
        ),
        _ => {}
    }
}

fn check_backends(
    report: &mut Report,
    vip: IpAddr,
    service: &VirtualService,
    field: &str,
    name: &str,
) {
    let method = service.forwarding.method;
    let mut seen = FirstSeen::default();
    for (j, backend) in service.backends.iter().enumerate() {
        // The field path and the subject are formatted only for a message: a valid backend
        // (a hundred thousand of them on a large node) needs neither.
        let b = || format!("{field}.backends[{j}]");
        let port = backend_port(service, backend);
        let subject = || format!("service {name}: backend {}", socket(backend.address, port));
        if let Some(first) = seen.note((backend.address, port), j) {
            let first_field = format!("{field}.backends[{first}]");
            report.error(
                &b(),
                format!(
                    "{} is listed twice: also at {}",
                    subject(),
                    report.document.place(&first_field)
                ),
            );
        }
        if let Some(why) = unusable_address(backend.address, false) {
            report.error(
                &format!("{}.address", b()),
                format!("{}: not a usable address ({why})", subject()),
            );
        }
        if Family::of(backend.address) != Family::of(vip) && method != ForwardingMethod::Tunnel {
            report.error(
                &format!("{}.address", b()),
                format!(
                    "{}: an {} backend behind the {} VIP {vip} needs tunnel forwarding, \
                     not {method}",
                    subject(),
                    Family::of(backend.address).as_str(),
                    Family::of(vip).as_str()
                ),
            );
        }
        check_backend_port(report, service, backend, &b, &subject);
        if backend.weight > v1::MAX_WEIGHT {
            report.error(
                &format!("{}.weight", b()),
                format!(
                    "{}: weight {} is above the kernel's maximum {}",
                    subject(),
                    backend.weight,
                    v1::MAX_WEIGHT
                ),
            );
        }
        match (
            backend.lower_threshold.filter(|&l| l > 0),
            backend.upper_threshold.filter(|&u| u > 0),
        ) {
            (Some(lower), Some(upper)) if lower > upper => report.error(
                &format!("{}.lowerThreshold", b()),
                format!(
                    "{}: lowerThreshold {lower} is above upperThreshold {upper}",
                    subject()
                ),
            ),
            (Some(_), None) => report.warning(
                &format!("{}.lowerThreshold", b()),
                format!(
                    "{}: lowerThreshold has no effect without upperThreshold",
                    subject()
                ),
            ),
            _ => {}
        }
        if backend.state == BackendState::Draining {
            let fallback = match service.scheduler {
                Scheduler::Mh => Some(SchedulerFlag::MhFallback),
                Scheduler::Sh => Some(SchedulerFlag::ShFallback),
                _ => None,
            };
            if let Some(fallback) = fallback.filter(|f| !service.scheduler_flags.contains(f)) {
                report.warning(
                    &format!("{}.state", b()),
                    format!(
                        "{} is draining on {} without {fallback}: new connections that \
                         hash to it are dropped",
                        subject(),
                        service.scheduler
                    ),
                );
            }
        }
    }
    let count = service.backends.len();
    if service.scheduler == Scheduler::Mh {
        if count > MH_TABLE_SIZE {
            report.error(
                &format!("{field}.backends"),
                format!(
                    "service {name}: {count} backends on mh, more than the {MH_TABLE_SIZE} slots \
                     of the kernel's lookup table: the extra ones would get no traffic"
                ),
            );
        } else if count > MH_BALANCED_BACKENDS {
            report.warning(
                &format!("{field}.backends"),
                format!(
                    "service {name}: {count} backends on mh, more than 1% of its \
                     {MH_TABLE_SIZE}-slot table ({MH_BALANCED_BACKENDS}): the load spreads less \
                     evenly"
                ),
            );
        }
    }
}

/// Tunnel and direct forwarding deliver to the port the client used; only masquerade
/// rewrites it, and only fwmark services under masquerade may keep the client's port (0).
fn check_backend_port(
    report: &mut Report,
    service: &VirtualService,
    backend: &Backend,
    b: &impl Fn() -> String,
    subject: &impl Fn() -> String,
) {
    let method = service.forwarding.method;
    let port_field = || format!("{}.port", b());
    match (service.fwmark.is_some(), service.port, backend.port) {
        (true, _, Some(_)) if method != ForwardingMethod::Masquerade => report.error(
            &port_field(),
            format!(
                "{}: {method} forwarding cannot rewrite ports: remove the port (the backend \
                 receives the client's destination port)",
                subject()
            ),
        ),
        (false, _, Some(0)) => report.error(
            &port_field(),
            format!(
                "{}: port 0 (keep the client's port) is only for fwmark services under \
                 masquerade",
                subject()
            ),
        ),
        (false, Some(service_port), Some(port))
            if port != service_port && method != ForwardingMethod::Masquerade =>
        {
            report.error(
                &port_field(),
                format!(
                    "{}: port differs from service port {service_port}, which {method} \
                     forwarding cannot rewrite",
                    subject()
                ),
            );
        }
        _ => {}
    }
}

fn check_node_config(report: &mut Report, spec: &v1::NodeConfigSpec) {
    if let Some(why) = invalid_interface_name(&spec.interface) {
        report.error(
            "spec.interface",
            format!(
                "interface {:?} is not a valid Linux interface name: {why}",
                spec.interface
            ),
        );
    }
    if !(1..=v1::MAX_VIP_LINKS).contains(&spec.vip_links) {
        report.error(
            "spec.vipLinks",
            format!(
                "vipLinks is {}; it must be 1 to {}",
                spec.vip_links,
                v1::MAX_VIP_LINKS
            ),
        );
    } else if spec.vip_links > 1 {
        let last = v1::vip_link_name(&spec.interface, spec.vip_links - 1);
        if let Some(why) = invalid_interface_name(&last) {
            report.error(
                "spec.vipLinks",
                format!(
                    "the last VIP link would be named {last:?}, not a valid Linux interface \
                     name: {why}; use a shorter interface name or fewer links"
                ),
            );
        }
    }
    check_vip_ranges(report, &spec.vip_ranges);
    check_fwmark_ranges(report, &spec.fwmark_ranges);
    for (name, value) in &spec.sysctls {
        check_sysctl(report, name, value);
    }
    check_durations(report, spec);
}

/// Linux's `dev_valid_name`: 1 to 15 bytes, not `.` or `..`, no `/`, `:` or whitespace.
fn invalid_interface_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("it is empty".to_owned());
    }
    if name.len() > MAX_INTERFACE_NAME {
        return Some(format!(
            "it is {} bytes long, the limit is {MAX_INTERFACE_NAME}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Some("it is a path component".to_owned());
    }
    name.chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace())
        .map(|c| format!("it contains {c:?}"))
}

/// CIDR blocks overlap exactly when one holds the other; sorted by network then prefix, an
/// overlapping block follows the one holding it.
fn check_vip_ranges(report: &mut Report, ranges: &[ipnet::IpNet]) {
    for (i, range) in ranges.iter().enumerate() {
        if range.addr() != range.network() {
            report.error(
                &format!("spec.vipRanges[{i}]"),
                format!(
                    "vipRanges entry {range} has host bits set: write {}",
                    range.trunc()
                ),
            );
        }
    }
    let mut sorted: Vec<(ipnet::IpNet, usize)> =
        ranges.iter().map(|r| r.trunc()).zip(0..).collect();
    sorted.sort();
    let mut holder: Option<(ipnet::IpNet, usize)> = None;
    for (range, i) in sorted {
        match holder {
            Some((outer, k)) if outer.contains(&range) => report.error(
                &format!("spec.vipRanges[{i}]"),
                format!(
                    "vipRanges entry {} overlaps {} (vipRanges[{k}])",
                    ranges[i], ranges[k]
                ),
            ),
            _ => holder = Some((range, i)),
        }
    }
}

fn check_fwmark_ranges(report: &mut Report, ranges: &[v1::FwmarkRange]) {
    for (i, range) in ranges.iter().enumerate() {
        if range.first == 0 {
            report.error(
                &format!("spec.fwmarkRanges[{i}]"),
                format!("fwmarkRanges entry {range} includes 0, which means \"no mark\""),
            );
        }
    }
    let mut sorted: Vec<(v1::FwmarkRange, usize)> = ranges.iter().copied().zip(0..).collect();
    sorted.sort();
    let mut reach: Option<(v1::FwmarkRange, usize)> = None;
    for (range, i) in sorted {
        match reach {
            Some((outer, k)) if range.first <= outer.last => {
                report.error(
                    &format!("spec.fwmarkRanges[{i}]"),
                    format!("fwmarkRanges entry {range} overlaps {outer} (fwmarkRanges[{k}])"),
                );
                if range.last > outer.last {
                    reach = Some((range, i));
                }
            }
            _ => reach = Some((range, i)),
        }
    }
}

fn check_sysctl(report: &mut Report, name: &str, value: &str) {
    let field = format!("spec.sysctls.{name}");
    let Some(short) = name.strip_prefix(SYSCTL_PREFIX) else {
        report.error_at_key(
            &field,
            format!(
                "sysctl {name:?} is not under {SYSCTL_PREFIX}*, the only sysctls balanced sets"
            ),
        );
        return;
    };
    let well_formed = !short.is_empty()
        && short
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_');
    if !well_formed {
        report.error_at_key(&field, format!("sysctl name {name:?} is malformed"));
        return;
    }
    if !KNOWN_SYSCTLS.contains(&short) {
        report.warning_at_key(
            &field,
            format!("sysctl {name} is not one mainline Linux documents; is it spelled right?"),
        );
    }
    let value_ok = !value.trim().is_empty()
        && value.len() <= 256
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() || c == ' ' || c == '\t');
    if !value_ok {
        report.error(
            &field,
            format!("sysctl {name}: value {value:?} is not a single-line setting"),
        );
    }
}

fn check_durations(report: &mut Report, spec: &v1::NodeConfigSpec) {
    use std::time::Duration as D;
    let timeouts = [
        ("spec.timeouts.tcp", spec.timeouts.tcp),
        ("spec.timeouts.tcpFin", spec.timeouts.tcp_fin),
        ("spec.timeouts.udp", spec.timeouts.udp),
    ];
    for (field, timeout) in timeouts {
        let Some(timeout) = timeout else { continue };
        let d = timeout.as_std();
        if d.subsec_nanos() != 0 || d.as_secs() == 0 || d.as_secs() > MAX_IPVS_TIMEOUT_SECS {
            report.error(
                field,
                format!(
                    "{} {timeout} must be whole seconds from 1s to {MAX_IPVS_TIMEOUT_SECS}s (the \
                     kernel counts seconds; 0 would mean \"unchanged\")",
                    field.trim_start_matches("spec.")
                ),
            );
        }
    }
    let bounded = [
        (
            "spec.resyncInterval",
            spec.resync_interval,
            D::from_secs(1),
            D::from_secs(3600),
        ),
        (
            "spec.drainTimeout",
            spec.drain_timeout,
            D::ZERO,
            D::from_secs(7 * 24 * 3600),
        ),
        (
            "spec.withdrawDelay",
            spec.withdraw_delay,
            D::ZERO,
            D::from_secs(600),
        ),
    ];
    for (field, value, min, max) in bounded {
        if value.as_std() < min || value.as_std() > max {
            report.error(
                field,
                format!(
                    "{} {value} is outside {} to {}",
                    field.trim_start_matches("spec."),
                    v1::Duration(min),
                    v1::Duration(max)
                ),
            );
        }
    }
    if let Some(after) = spec.withdraw_on_failure
        && after.as_std() < spec.resync_interval.as_std()
    {
        report.error(
            "spec.withdrawOnFailure",
            format!(
                "withdrawOnFailure {after} is shorter than resyncInterval {}: one failed \
                 converge would withdraw every VIP",
                spec.resync_interval
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    //! Each rule both ways: the case it refuses and the nearby case it must let through.

    use std::path::Path;

    use super::FirstSeen;
    use crate::document::parse_file;

    /// The same answers as a map's first insertion, in the list and past it.
    #[test]
    fn first_seen_answers_as_a_map_does() {
        let keys: Vec<u32> = (0..100).map(|i| (i * 7919) % 37).collect();
        let mut seen = FirstSeen::default();
        let mut map = std::collections::HashMap::new();
        for (index, key) in keys.into_iter().enumerate() {
            let expected = match map.entry(key) {
                std::collections::hash_map::Entry::Occupied(first) => Some(*first.get()),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(index);
                    None
                }
            };
            assert_eq!(seen.note(key, index), expected, "key {key} at {index}");
        }
        assert_eq!((seen.list.len(), seen.map.len()), (16, 21));
    }

    /// Every diagnostic of one text, as `line:col: [warning: ]message` without the path.
    fn check(text: &str) -> Vec<String> {
        parse_file(Path::new("t.yaml"), text)
            .diagnostics
            .iter()
            .map(|d| d.to_string().trim_start_matches("t.yaml:").to_owned())
            .collect()
    }

    /// A Balancer on `vip` with one service per line of `services` (flow mappings).
    fn balancer(vip: &str, services: &[&str]) -> Vec<String> {
        let mut text = format!(
            "apiVersion: balanced.io/v1\nkind: Balancer\nmetadata:\n  name: t\nspec:\n  vip: \
             \"{vip}\"\n  services:\n"
        );
        for service in services {
            text.push_str(&format!("    - {service}\n"));
        }
        if services.is_empty() {
            text = text.replace("services:\n", "services: []\n");
        }
        check(&text)
    }

    fn v4(services: &[&str]) -> Vec<String> {
        balancer("198.51.100.10", services)
    }

    /// Asserts exactly one diagnostic containing `needle`.
    #[track_caller]
    fn one(diagnostics: Vec<String>, needle: &str) {
        assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
        assert!(diagnostics[0].contains(needle), "{diagnostics:#?}");
    }

    #[track_caller]
    fn clean(diagnostics: Vec<String>) {
        assert_eq!(diagnostics, Vec::<String>::new());
    }

    fn node(spec: &str) -> Vec<String> {
        check(&format!(
            "apiVersion: balanced.io/v1\nkind: NodeConfig\nmetadata:\n  name: n\nspec:\n{spec}"
        ))
    }

    #[test]
    fn backends_of_the_other_family_need_tunnel_forwarding() {
        let v6_backend = "backends: [{address: 2001:db8::1}]";
        clean(v4(&[&format!(
            "{{protocol: TCP, port: 80, forwarding: {{method: tunnel}}, {v6_backend}}}"
        )]));
        for method in ["direct", "masquerade"] {
            one(
                v4(&[&format!(
                    "{{protocol: TCP, port: 80, forwarding: {{method: {method}}}, {v6_backend}}}"
                )]),
                &format!("needs tunnel forwarding, not {method}"),
            );
        }
    }

    #[test]
    fn only_masquerade_rewrites_ports() {
        let backend = "backends: [{address: 10.0.0.1, port: 8080}]";
        clean(v4(&[&format!(
            "{{protocol: TCP, port: 80, forwarding: {{method: masquerade}}, {backend}}}"
        )]));
        for method in ["direct", "tunnel"] {
            one(
                v4(&[&format!(
                    "{{protocol: TCP, port: 80, forwarding: {{method: {method}}}, {backend}}}"
                )]),
                &format!("port differs from service port 80, which {method} forwarding cannot"),
            );
        }
        clean(v4(&[
            "{protocol: TCP, port: 80, backends: [{address: 10.0.0.1, port: 80}, {address: 10.0.0.2}]}",
        ]));
    }

    #[test]
    fn port_zero_is_only_for_fwmark_services_under_masquerade() {
        clean(v4(&[
            "{fwmark: 1, forwarding: {method: masquerade}, backends: [{address: 10.0.0.1, port: 0}, {address: 10.0.0.2}, {address: 10.0.0.3, port: 8080}]}",
        ]));
        one(
            v4(&[
                "{protocol: TCP, port: 80, forwarding: {method: masquerade}, backends: [{address: 10.0.0.1, port: 0}]}",
            ]),
            "port 0 (keep the client's port) is only for fwmark services under masquerade",
        );
        one(
            v4(&[
                "{fwmark: 1, forwarding: {method: tunnel}, backends: [{address: 10.0.0.1, port: 0}]}",
            ]),
            "tunnel forwarding cannot rewrite ports: remove the port",
        );
        clean(v4(&["{fwmark: 1, backends: [{address: 10.0.0.1}]}"]));
    }

    #[test]
    fn a_service_is_protocol_and_port_or_fwmark() {
        clean(v4(&["{protocol: SCTP, port: 9}", "{fwmark: 7}"]));
        one(
            v4(&["{fwmark: 7, protocol: TCP}"]),
            "a fwmark service has no protocol",
        );
        one(
            v4(&["{fwmark: 7, port: 80}"]),
            "a fwmark service has no port",
        );
        one(v4(&["{port: 80}"]), "needs protocol and port, or fwmark");
        one(v4(&["{protocol: TCP}"]), "a TCP service needs a port");
        one(
            v4(&["{protocol: TCP, port: 0}"]),
            "port 0 is not a service port",
        );
        one(v4(&["{fwmark: 0}"]), "fwmark 0 means");
    }

    #[test]
    fn scheduler_flags_belong_to_their_scheduler() {
        clean(v4(&[
            "{protocol: TCP, port: 80, scheduler: mh, schedulerFlags: [mh-fallback, mh-port]}",
            "{protocol: TCP, port: 81, scheduler: sh, schedulerFlags: [sh-fallback, sh-port]}",
            "{fwmark: 3, scheduler: mh, schedulerFlags: [mh-port]}",
        ]));
        one(
            v4(&["{protocol: TCP, port: 80, scheduler: sh, schedulerFlags: [mh-port]}"]),
            "mh-port is for the mh scheduler, not sh",
        );
        one(
            v4(&["{protocol: TCP, port: 80, scheduler: mh, schedulerFlags: [sh-fallback]}"]),
            "sh-fallback is for the sh scheduler, not mh",
        );
        one(
            v4(&["{protocol: TCP, port: 80, scheduler: sh, schedulerFlags: [flag-2]}"]),
            "flag-2 is sh-port for the sh scheduler: write sh-port",
        );
        one(
            v4(&["{protocol: TCP, port: 80, scheduler: wlc, schedulerFlags: [flag-1]}"]),
            "warning: service TCP 198.51.100.10:80: scheduler flag flag-1 has no meaning for the wlc",
        );
        one(
            v4(&["{protocol: TCP, port: 80, scheduler: mh, schedulerFlags: [mh-port, mh-port]}"]),
            "mh-port is listed twice",
        );
    }

    #[test]
    fn one_packet_scheduling_is_for_udp() {
        clean(v4(&[
            "{protocol: UDP, port: 53, onePacket: true}",
            "{fwmark: 4, onePacket: true}",
        ]));
        one(
            v4(&["{protocol: TCP, port: 53, onePacket: true}"]),
            "onePacket is for UDP",
        );
        one(
            v4(&["{protocol: SCTP, port: 53, onePacket: true}"]),
            "onePacket is for UDP",
        );
    }

    #[test]
    fn tunnel_options_fit_their_encapsulation() {
        clean(v4(&[
            "{protocol: TCP, port: 80, forwarding: {method: tunnel, encapsulation: gue, port: 6080, checksum: remcsum}}",
            "{protocol: TCP, port: 81, forwarding: {method: tunnel, encapsulation: gre, checksum: csum}}",
            "{protocol: TCP, port: 82, forwarding: {method: tunnel, encapsulation: ipip, checksum: none}}",
        ]));
        one(
            v4(&["{protocol: TCP, port: 80, forwarding: {method: masquerade, checksum: csum}}"]),
            "forwarding.checksum is a tunnel option, not for masquerade",
        );
        one(
            v4(&["{protocol: TCP, port: 80, forwarding: {method: tunnel, encapsulation: gue}}"]),
            "gue encapsulation needs forwarding.port",
        );
        one(
            v4(&[
                "{protocol: TCP, port: 80, forwarding: {method: tunnel, encapsulation: gue, port: 0}}",
            ]),
            "GUE port 0",
        );
        one(
            v4(&[
                "{protocol: TCP, port: 80, forwarding: {method: tunnel, encapsulation: gre, port: 1}}",
            ]),
            "gre encapsulation has none",
        );
        one(
            v4(&[
                "{protocol: TCP, port: 80, forwarding: {method: tunnel, encapsulation: gre, checksum: remcsum}}",
            ]),
            "remcsum is for gue encapsulation only",
        );
        one(
            v4(&["{protocol: TCP, port: 80, forwarding: {method: tunnel, checksum: csum}}"]),
            "ipip encapsulation has no checksum option",
        );
    }

    #[test]
    fn weights_and_thresholds_stay_in_the_kernels_range() {
        clean(v4(&[
            "{protocol: TCP, port: 80, backends: [{address: 10.0.0.1, weight: 2147483647}, {address: 10.0.0.2, weight: 0, upperThreshold: 10, lowerThreshold: 10}]}",
        ]));
        one(
            v4(&["{protocol: TCP, port: 80, backends: [{address: 10.0.0.1, weight: 2147483648}]}"]),
            "weight 2147483648 is above the kernel's maximum 2147483647",
        );
        one(
            v4(&[
                "{protocol: TCP, port: 80, backends: [{address: 10.0.0.1, upperThreshold: 5, lowerThreshold: 6}]}",
            ]),
            "lowerThreshold 6 is above upperThreshold 5",
        );
        one(
            v4(&[
                "{protocol: TCP, port: 80, backends: [{address: 10.0.0.1, upperThreshold: 0, lowerThreshold: 6}]}",
            ]),
            "warning: service TCP 198.51.100.10:80: backend 10.0.0.1:80: lowerThreshold has no effect",
        );
    }

    #[test]
    fn persistence_netmasks_fit_the_vip_family() {
        clean(v4(&[
            "{protocol: TCP, port: 80, persistence: {timeout: 60, netmask: 255.255.255.0}}",
            "{protocol: TCP, port: 81, persistence: {timeout: 60, netmask: 32}}",
            "{protocol: TCP, port: 82, persistence: {timeout: 60}}",
        ]));
        clean(balancer(
            "2001:db8::1",
            &["{protocol: TCP, port: 80, persistence: {timeout: 60, netmask: /64}}"],
        ));
        one(
            balancer(
                "2001:db8::1",
                &["{protocol: TCP, port: 80, persistence: {timeout: 60, netmask: 255.255.0.0}}"],
            ),
            "a dotted netmask is for IPv4 VIPs",
        );
        one(
            v4(&["{protocol: TCP, port: 80, persistence: {timeout: 60, netmask: 33}}"]),
            "netmask /33 is longer than an IPv4 address",
        );
        one(
            v4(&["{protocol: TCP, port: 80, persistence: {timeout: 60, netmask: 255.0.255.0}}"]),
            "not contiguous",
        );
        one(
            v4(&["{protocol: TCP, port: 80, persistence: {timeout: 0}}"]),
            "persistence timeout 0 turns persistence off",
        );
        one(
            v4(&["{protocol: TCP, port: 80, persistence: {timeout: 4000000}}"]),
            "above the kernel's limit",
        );
    }

    #[test]
    fn services_and_backends_are_unique_within_a_manifest() {
        clean(v4(&[
            "{protocol: TCP, port: 80}",
            "{protocol: UDP, port: 80}",
            "{fwmark: 80}",
        ]));
        one(
            v4(&["{protocol: TCP, port: 80}", "{protocol: TCP, port: 80}"]),
            "9:7: service TCP 198.51.100.10:80 is defined twice: also at t.yaml:8:7",
        );
        one(
            v4(&["{fwmark: 9}", "{fwmark: 9}"]),
            "service fwmark 9 (IPv4) is defined twice",
        );
        clean(v4(&[
            "{protocol: TCP, port: 80, forwarding: {method: masquerade}, backends: [{address: 10.0.0.1}, {address: 10.0.0.1, port: 81}]}",
        ]));
        one(
            v4(&[
                "{protocol: TCP, port: 80, backends: [{address: 10.0.0.1}, {address: 10.0.0.1, port: 80}]}",
            ]),
            "backend 10.0.0.1:80 is listed twice",
        );
    }

    #[test]
    fn mh_tables_hold_at_most_4093_backends_and_balance_best_below_41() {
        let service = |n: usize| {
            let backends: Vec<String> = (0..n)
                .map(|i| format!("{{address: 10.{}.{}.1}}", i / 256, i % 256))
                .collect();
            format!(
                "{{protocol: TCP, port: 80, scheduler: mh, backends: [{}]}}",
                backends.join(", ")
            )
        };
        clean(v4(&[&service(40)]));
        one(
            v4(&[&service(41)]),
            "warning: service TCP 198.51.100.10:80: 41 backends on mh",
        );
        one(
            v4(&[&service(4093)]),
            "warning: service TCP 198.51.100.10:80: 4093 backends",
        );
        let too_many = v4(&[&service(4094)]);
        one(
            too_many.clone(),
            "4094 backends on mh, more than the 4093 slots",
        );
        assert!(!too_many[0].contains("warning"), "{too_many:?}");
        clean(v4(&[
            &service(4094).replace("scheduler: mh", "scheduler: wrr")
        ]));
    }

    #[test]
    fn draining_on_hashing_schedulers_wants_the_fallback_flag() {
        let draining = "backends: [{address: 10.0.0.1, state: draining}, {address: 10.0.0.2}]";
        clean(v4(&[
            &format!(
                "{{protocol: TCP, port: 80, scheduler: mh, schedulerFlags: [mh-fallback], {draining}}}"
            ),
            &format!(
                "{{protocol: TCP, port: 81, scheduler: sh, schedulerFlags: [sh-fallback], {draining}}}"
            ),
            &format!("{{protocol: TCP, port: 82, scheduler: wlc, {draining}}}"),
        ]));
        one(
            v4(&[&format!(
                "{{protocol: TCP, port: 80, scheduler: mh, {draining}}}"
            )]),
            "warning: service TCP 198.51.100.10:80: backend 10.0.0.1:80 is draining on mh without mh-fallback",
        );
        one(
            v4(&[&format!(
                "{{protocol: TCP, port: 80, scheduler: sh, schedulerFlags: [sh-port], {draining}}}"
            )]),
            "is draining on sh without sh-fallback",
        );
    }

    #[test]
    fn vips_and_backends_are_usable_addresses() {
        for vip in [
            "127.0.0.1",
            "::1",
            "255.255.255.255",
            "0.0.0.0",
            "::",
            "ff02::1",
        ] {
            let diagnostics = balancer(vip, &["{protocol: TCP, port: 80}"]);
            one(diagnostics, "is not a usable address");
        }
        clean(v4(&[
            "{protocol: TCP, port: 80, backends: [{address: 127.0.0.1}]}",
        ]));
        one(
            v4(&["{protocol: TCP, port: 80, backends: [{address: 0.0.0.0}]}"]),
            "not a usable address (unspecified)",
        );
        one(
            balancer("198.51.100.10", &[]),
            "warning: Balancer \"t\" has no services",
        );
    }

    #[test]
    fn names_are_dns_style_and_sources_are_known_forms() {
        for good in ["web", "default.web", "web-1", "a", "default.web.ipv6"] {
            assert!(super::is_dns_name(good), "{good}");
        }
        let long = "a".repeat(254);
        for bad in [
            "",
            "Web",
            "-web",
            "web-",
            "a..b",
            "web_1",
            "wéb",
            long.as_str(),
        ] {
            assert!(!super::is_dns_name(bad), "{bad}");
        }
        for good in ["manual", "kubernetes/default/web"] {
            assert!(super::is_valid_source(good), "{good}");
        }
        for bad in [
            "",
            "kubernetes/default",
            "kubernetes/default/web/x",
            "helm",
            "kubernetes//web",
        ] {
            assert!(!super::is_valid_source(bad), "{bad}");
        }
        let text = "apiVersion: balanced.io/v1\nkind: Balancer\nmetadata:\n  name: Web\nspec:\n  \
                    vip: 198.51.100.10\n  services: [{protocol: TCP, port: 80}]\n";
        one(
            check(text),
            "4:9: metadata.name \"Web\" is not a DNS-style name",
        );
    }

    #[test]
    fn node_interface_names_follow_linux_rules() {
        clean(node("  interface: lvs-vips.dummy0\n"));
        clean(node("  interface: abcdefghijklmno\n"));
        one(
            node("  interface: abcdefghijklmnop\n"),
            "16 bytes long, the limit is 15",
        );
        one(node("  interface: \"\"\n"), "it is empty");
        one(node("  interface: a/b\n"), "it contains '/'");
        one(node("  interface: \"a b\"\n"), "it contains ' '");
        one(node("  interface: ..\n"), "path component");
    }

    #[test]
    fn vip_links_are_counted_and_named_within_linux_limits() {
        clean(node("  vipLinks: 16\n"));
        clean(node("  interface: abcdefghijkl\n  vipLinks: 64\n"));
        one(node("  vipLinks: 0\n"), "vipLinks is 0; it must be 1 to 64");
        one(
            node("  vipLinks: 65\n"),
            "vipLinks is 65; it must be 1 to 64",
        );
        one(
            node("  interface: abcdefghijklmn\n  vipLinks: 2\n"),
            "the last VIP link would be named \"abcdefghijklmn-1\"",
        );
    }

    #[test]
    fn node_ranges_do_not_overlap() {
        clean(node(
            "  vipRanges: [198.51.100.0/25, 198.51.100.128/25, 2001:db8::/32]\n  fwmarkRanges: [1-10, 11-20, 0x100]\n",
        ));
        one(
            node("  vipRanges: [198.51.100.0/24, 198.51.100.64/26]\n"),
            "vipRanges entry 198.51.100.64/26 overlaps 198.51.100.0/24",
        );
        one(
            node("  vipRanges: [2001:db8::/48, 2001:db8::/32]\n"),
            "overlaps",
        );
        one(node("  vipRanges: [10.0.0.0/8, 10.0.0.0/8]\n"), "overlaps");
        one(
            node("  vipRanges: [10.0.0.1/8]\n"),
            "has host bits set: write 10.0.0.0/8",
        );
        one(
            node("  fwmarkRanges: [1-10, 10-20]\n"),
            "fwmarkRanges entry 10-20 overlaps 1-10",
        );
        one(
            node("  fwmarkRanges: [1-100, 5, 200]\n"),
            "fwmarkRanges entry 5 overlaps 1-100",
        );
        one(node("  fwmarkRanges: [0]\n"), "includes 0");
        let three = node("  fwmarkRanges: [1-100, 5, 50-60]\n");
        assert_eq!(three.len(), 2, "{three:#?}");
    }

    #[test]
    fn node_sysctls_are_ipvs_ones() {
        clean(node(
            "  sysctls:\n    net.ipv4.vs.sloppy_tcp: 1\n    net.ipv4.vs.sync_threshold: 3 50\n",
        ));
        one(
            node("  sysctls:\n    net.ipv4.vs.new_knob: 1\n"),
            "7:5: warning: sysctl net.ipv4.vs.new_knob is not one",
        );
        one(
            node("  sysctls:\n    net.core.somaxconn: 1\n"),
            "7:5: sysctl \"net.core.somaxconn\" is not under net.ipv4.vs.*",
        );
        one(node("  sysctls:\n    net.ipv4.vs.Sloppy: 1\n"), "malformed");
        one(
            node("  sysctls:\n    net.ipv4.vs.sloppy_tcp: \"\"\n"),
            "is not a single-line setting",
        );
        one(
            node("  sysctls:\n    net.ipv4.vs.sloppy_tcp: \"1\\n2\"\n"),
            "is not a single-line setting",
        );
    }

    #[test]
    fn node_durations_are_sane() {
        clean(node(
            "  timeouts: {tcp: 1s, tcpFin: 2m, udp: 2147483s}\n  resyncInterval: 1s\n  withdrawDelay: 10m\n  drainTimeout: 0s\n  withdrawOnFailure: 1s\n",
        ));
        one(
            node("  timeouts: {tcp: 0}\n"),
            "timeouts.tcp 0s must be whole seconds",
        );
        one(
            node("  timeouts: {udp: 1500ms}\n"),
            "timeouts.udp 1s500ms must be whole seconds",
        );
        one(node("  timeouts: {tcpFin: 2147484s}\n"), "timeouts.tcpFin");
        one(
            node("  resyncInterval: 0s\n"),
            "resyncInterval 0s is outside 1s to 1h",
        );
        one(
            node("  withdrawDelay: 11m\n"),
            "withdrawDelay 11m is outside 0s to 10m",
        );
        one(
            node("  drainTimeout: 169h\n"),
            "drainTimeout 169h is outside 0s to 168h",
        );
        one(
            node("  withdrawOnFailure: 10s\n"),
            "withdrawOnFailure 10s is shorter than resyncInterval 30s",
        );
    }
}
