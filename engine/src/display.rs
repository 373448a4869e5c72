//! Renders plans and states for people: the reviewer-friendly plan (grouped by VIP, `+ - ~`
//! with `old → new` per field), an `ipvsadm -Sn`-like text of a state, and one-line action
//! descriptions for logs. Pure: data in, strings out; the same plan renders to the same bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use balanced_schemas::v1::{Scheduler, TunnelChecksum};
use similar::TextDiff;

use crate::dataplane::Action;
use crate::kernel_sim::apply_action;
use crate::model::{
    DestinationConfig, FLAG_HASHED, FLAG_ONEPACKET, FLAG_PERSISTENT, Family, Forward, IpvsTimeouts,
    NodeState, ServiceConfig, ServiceKey, SocketLike,
};
use crate::ownership::Ownership;
use crate::plan::{HoldReason, Plan, WaitReason};

/// The plan grouped by VIP (node-wide changes first, fwmark services last), then the held and
/// waiting deletions, then a unified diff of the `ipvsadm -Sn`-like rendering of the touched
/// objects before and after the plan.
pub fn render_plan(plan: &Plan, observed: &NodeState) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", summary(plan));
    if plan.actions.is_empty() && plan.held.is_empty() && plan.waiting.is_empty() {
        return out;
    }
    let before = touched(plan, observed);
    let mut after = before.clone();
    render_groups(&mut out, plan, &mut after);
    if !plan.held.is_empty() {
        let _ = writeln!(
            out,
            "\nheld by maxDeletions (release with --allow-mass-delete or raise the limit):"
        );
        let mut reasons: Vec<&HoldReason> = Vec::new();
        for held in &plan.held {
            if !reasons.contains(&&held.reason) {
                reasons.push(&held.reason);
            }
        }
        for reason in reasons {
            let _ = writeln!(out, "  {}", hold_reason(reason));
            for held in plan.held.iter().filter(|h| h.reason == *reason) {
                let _ = writeln!(out, "    {}", describe_action(&held.action));
            }
        }
    }
    if !plan.waiting.is_empty() {
        let _ = writeln!(out, "\nwaiting:");
        for waiting in &plan.waiting {
            let why = match &waiting.reason {
                WaitReason::Drain { active_connections } => format!(
                    "draining since {}, {active_connections} active connection{}",
                    utc(waiting.since),
                    if *active_connections == 1 { "" } else { "s" }
                ),
                WaitReason::WithdrawDelay { address } => {
                    format!("{address} withdrawn at {}", utc(waiting.since))
                }
            };
            let _ = writeln!(
                out,
                "  {}  ({why}; due {})",
                describe_action(&waiting.action),
                utc(waiting.due)
            );
        }
    }
    let (old, new) = (render_ipvsadm(&before, None), render_ipvsadm(&after, None));
    if old != new {
        let diff = TextDiff::from_lines(&old, &new);
        let _ = write!(
            out,
            "\n{}",
            diff.unified_diff()
                .context_radius(3)
                .header("ipvsadm before", "ipvsadm after")
        );
    }
    out
}

fn summary(plan: &Plan) -> String {
    let (mut add, mut change, mut delete) = (0, 0, 0);
    for action in &plan.actions {
        match sign(action) {
            '+' => add += 1,
            '-' => delete += 1,
            _ => change += 1,
        }
    }
    if plan.actions.is_empty() {
        return format!(
            "No changes.{}",
            held_and_waiting(plan).map_or_else(String::new, |s| format!(" ({s})"))
        );
    }
    let mut line = format!("Plan: {add} to add, {change} to change, {delete} to delete");
    if let Some(more) = held_and_waiting(plan) {
        let _ = write!(line, "; {more}");
    }
    line.push('.');
    line
}

fn held_and_waiting(plan: &Plan) -> Option<String> {
    match (plan.held.len(), plan.waiting.len()) {
        (0, 0) => None,
        (held, 0) => Some(format!("{held} held")),
        (0, waiting) => Some(format!("{waiting} waiting")),
        (held, waiting) => Some(format!("{held} held, {waiting} waiting")),
    }
}

/// The part of `observed` a plan touches: the link, the sysctls and timeouts, and every
/// service an action, held or waiting deletion names — so rendering stays small on big nodes.
fn touched(plan: &Plan, observed: &NodeState) -> NodeState {
    let keys: BTreeSet<ServiceKey> = plan
        .actions
        .iter()
        .chain(plan.held.iter().map(|h| &h.action))
        .chain(plan.waiting.iter().map(|w| &w.action))
        .filter_map(service_of)
        .collect();
    NodeState {
        interface: observed.interface.clone(),
        services: keys
            .iter()
            .filter_map(|k| observed.services.get(k).map(|s| (*k, s.clone())))
            .collect(),
        sysctls: observed.sysctls.clone(),
        timeouts: observed.timeouts,
    }
}

fn service_of(action: &Action) -> Option<ServiceKey> {
    match action {
        Action::AddService { key, .. }
        | Action::SetService { key, .. }
        | Action::DelService { key } => Some(*key),
        Action::AddDestination { service, .. }
        | Action::SetDestination { service, .. }
        | Action::DelDestination { service, .. } => Some(*service),
        _ => None,
    }
}

/// Where an action is listed: the node, a VIP, or the fwmark services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    Node,
    Vip(IpAddr),
    Fwmark,
}

fn group_of(action: &Action) -> Group {
    match action {
        Action::EnsureInterface { .. } | Action::SetSysctl { .. } | Action::SetTimeouts { .. } => {
            Group::Node
        }
        Action::AddAddress { address, .. } | Action::DelAddress { address, .. } => {
            Group::Vip(*address)
        }
        _ => match service_of(action).and_then(|k| k.vip()) {
            Some(vip) => Group::Vip(vip),
            None => Group::Fwmark,
        },
    }
}

/// The actions by group, each with its `old → new` taken from the state as the plan goes:
/// `state` is advanced action by action and ends as the state after the plan (a refused action
/// shows as no change there; executing it reports the errno).
fn render_groups(out: &mut String, plan: &Plan, state: &mut NodeState) {
    let mut groups: BTreeMap<Group, Vec<String>> = BTreeMap::new();
    let mut last_service: BTreeMap<Group, ServiceKey> = BTreeMap::new();
    let mut created = BTreeSet::new();
    for action in &plan.actions {
        let group = group_of(action);
        let lines = groups.entry(group).or_default();
        match action {
            Action::AddDestination { service, .. }
            | Action::SetDestination { service, .. }
            | Action::DelDestination { service, .. } => {
                if last_service.get(&group) != Some(service) {
                    lines.push(format!("  service {service}"));
                }
                lines.push(format!("      {}", describe_change(action, state)));
            }
            Action::SetService { key, config }
                if created.contains(key) && config.scheduler == Scheduler::Mh =>
            {
                lines.push(format!(
                    "  {}  (filled first: the mh table is built once)",
                    describe_change(action, state)
                ));
            }
            _ => lines.push(format!("  {}", describe_change(action, state))),
        }
        if let Action::AddService { key, .. } = action {
            created.insert(*key);
        }
        if let Some(key) = service_of(action) {
            last_service.insert(group, key);
        } else {
            last_service.remove(&group);
        }
        let _ = apply_action(state, action);
    }
    for (group, lines) in groups {
        let title = match group {
            Group::Node => "node".to_owned(),
            Group::Vip(vip) => format!("VIP {vip}"),
            Group::Fwmark => "fwmark services".to_owned(),
        };
        let _ = writeln!(out, "\n{title}");
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
    }
}

fn sign(action: &Action) -> char {
    match action {
        Action::EnsureInterface { .. }
        | Action::AddAddress { .. }
        | Action::AddService { .. }
        | Action::AddDestination { .. } => '+',
        Action::DelAddress { .. } | Action::DelService { .. } | Action::DelDestination { .. } => {
            '-'
        }
        Action::SetService { .. }
        | Action::SetDestination { .. }
        | Action::SetSysctl { .. }
        | Action::SetTimeouts { .. } => '~',
    }
}

/// One plan line: like [`describe_action`], but changes show `old → new` per field against
/// `state`, and destinations are listed under their service (so without it).
fn describe_change(action: &Action, state: &NodeState) -> String {
    match action {
        Action::SetService { key, config } => match state.services.get(key) {
            Some(old) => format!(
                "~ service {key}: {}",
                changed_fields(
                    &service_fields(key, &old.config),
                    &service_fields(key, config)
                )
            ),
            None => describe_action(action),
        },
        Action::DelService { key } => {
            let count = state.services.get(key).map_or(0, |s| s.destinations.len());
            format!(
                "- service {key} (with its {count} destination{})",
                if count == 1 { "" } else { "s" }
            )
        }
        Action::AddDestination {
            destination,
            config,
            ..
        } => format!(
            "+ destination {destination} {}",
            destination_fields(config).join(" ")
        ),
        Action::SetDestination {
            service,
            destination,
            config,
        } => {
            let old = state
                .services
                .get(service)
                .and_then(|s| s.destinations.iter().find(|d| d.key == *destination));
            match old {
                Some(old) => {
                    let mut line = format!(
                        "~ destination {destination}: {}",
                        changed_fields(
                            &destination_fields(&old.config),
                            &destination_fields(config)
                        )
                    );
                    if config.weight == 0 && old.config.weight != 0 {
                        line.push_str("  (drain)");
                    }
                    line
                }
                None => format!(
                    "~ destination {destination} {}",
                    destination_fields(config).join(" ")
                ),
            }
        }
        Action::DelDestination {
            service,
            destination,
        } => {
            let old = state
                .services
                .get(service)
                .and_then(|s| s.destinations.iter().find(|d| d.key == *destination));
            match old {
                Some(d) if d.active_connections == 0 => {
                    format!("- destination {destination}  (no active connections)")
                }
                Some(d) => format!(
                    "- destination {destination}  (drain timeout passed with {} active connection{})",
                    d.active_connections,
                    if d.active_connections == 1 { "" } else { "s" }
                ),
                None => format!("- destination {destination}"),
            }
        }
        Action::SetSysctl { name, value } => match state.sysctls.get(name) {
            Some(old) => format!("~ sysctl {name}: {} → {value}", old.trim()),
            None => format!("~ sysctl {name}: (unknown) → {value}"),
        },
        Action::SetTimeouts { timeouts } => {
            let old = state.timeouts;
            let fields = |t: IpvsTimeouts| {
                vec![
                    format!("tcp {}s", t.tcp),
                    format!("tcpfin {}s", t.tcp_fin),
                    format!("udp {}s", t.udp),
                ]
            };
            let new = IpvsTimeouts {
                tcp: if timeouts.tcp == 0 {
                    old.tcp
                } else {
                    timeouts.tcp
                },
                tcp_fin: if timeouts.tcp_fin == 0 {
                    old.tcp_fin
                } else {
                    timeouts.tcp_fin
                },
                udp: if timeouts.udp == 0 {
                    old.udp
                } else {
                    timeouts.udp
                },
            };
            format!("~ timeouts: {}", changed_fields(&fields(old), &fields(new)))
        }
        _ => describe_action(action),
    }
}

/// `scheduler rr → mh, persistence none → 300s` from two field lists of the same shape
/// (`name value` each); unchanged fields are left out.
fn changed_fields(old: &[String], new: &[String]) -> String {
    let split = |f: &String| -> (String, String) {
        match f.split_once(' ') {
            Some((name, value)) => (name.to_owned(), value.to_owned()),
            None => (f.clone(), String::new()),
        }
    };
    let old: BTreeMap<String, String> = old.iter().map(split).collect();
    let new: Vec<(String, String)> = new.iter().map(split).collect();
    let mut changes: Vec<String> = new
        .iter()
        .filter(|(name, value)| old.get(name) != Some(value))
        .map(|(name, value)| {
            let before = old.get(name).map_or("none", String::as_str);
            format!("{name} {before} → {value}")
        })
        .collect();
    for name in old.keys() {
        if !new.iter().any(|(n, _)| n == name) {
            changes.push(format!("{name} {} → none", old[name]));
        }
    }
    if changes.is_empty() {
        "unchanged".to_owned()
    } else {
        changes.join(", ")
    }
}

/// The settable fields of a service as `name value` words, defaults left out.
fn service_fields(key: &ServiceKey, config: &ServiceConfig) -> Vec<String> {
    let mut fields = vec![format!("scheduler {}", config.scheduler)];
    let flags = scheduler_flag_names(config.scheduler, config.flags);
    if !flags.is_empty() {
        fields.push(format!("flags {}", flags.join(",")));
    }
    if config.flags & FLAG_PERSISTENT != 0 {
        fields.push(format!("persistence {}s", config.timeout));
    }
    if config.flags & FLAG_ONEPACKET != 0 {
        fields.push("one-packet yes".to_owned());
    }
    if let Some(mask) = netmask(key.family(), config.netmask) {
        fields.push(format!("netmask {mask}"));
    }
    if !config.pe_name.is_empty() {
        fields.push(format!("pe {}", config.pe_name));
    }
    fields
}

/// The scheduler flags by the names `ipvsadm -b` uses for this scheduler, plus any bit this
/// model does not know as hex.
fn scheduler_flag_names(scheduler: Scheduler, flags: u32) -> Vec<String> {
    let names: [&str; 3] = match scheduler {
        Scheduler::Mh => ["mh-fallback", "mh-port", "flag-3"],
        Scheduler::Sh => ["sh-fallback", "sh-port", "flag-3"],
        _ => ["flag-1", "flag-2", "flag-3"],
    };
    let mut out: Vec<String> = [0x08, 0x10, 0x20]
        .iter()
        .zip(names)
        .filter(|(bit, _)| flags & *bit != 0)
        .map(|(_, name)| name.to_owned())
        .collect();
    let known = FLAG_PERSISTENT | FLAG_HASHED | FLAG_ONEPACKET | 0x38;
    if flags & !known != 0 {
        out.push(format!("{:#x}", flags & !known));
    }
    out
}

/// The persistence netmask as ipvsadm shows it, when not the default (whole address).
fn netmask(family: Family, netmask: u32) -> Option<String> {
    match family {
        Family::V4 => (netmask != u32::MAX).then(|| Ipv4Addr::from(netmask).to_string()),
        Family::V6 => (netmask != 128).then(|| format!("/{netmask}")),
    }
}

/// The settable fields of a destination as `name value` words.
fn destination_fields(config: &DestinationConfig) -> Vec<String> {
    let text = DestinationFields(config).to_string();
    let words: Vec<&str> = text.split(' ').collect();
    words.chunks(2).map(|field| field.join(" ")).collect()
}

/// A destination's fields, `weight 1 forwarding direct`: a name and a one-word value each.
struct DestinationFields<'a>(&'a DestinationConfig);

impl std::fmt::Display for DestinationFields<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let config = self.0;
        write!(
            f,
            "weight {} forwarding {}",
            config.weight,
            Forwarding(&config.forwarding)
        )?;
        if config.upper_threshold != 0 {
            write!(f, " upper-threshold {}", config.upper_threshold)?;
        }
        if config.lower_threshold != 0 {
            write!(f, " lower-threshold {}", config.lower_threshold)?;
        }
        Ok(())
    }
}

/// `direct`, `masquerade`, `tunnel/ipip`, `tunnel/gue:6080/csum` — one word.
struct Forwarding<'a>(&'a Forward);

impl std::fmt::Display for Forwarding<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Forward::Masquerade => f.write_str("masquerade"),
            Forward::Direct => f.write_str("direct"),
            Forward::Local => f.write_str("local"),
            Forward::Bypass => f.write_str("bypass"),
            Forward::Tunnel {
                encapsulation,
                port,
                checksum,
            } => {
                write!(f, "tunnel/{encapsulation}")?;
                if *port != 0 {
                    write!(f, ":{port}")?;
                }
                if *checksum != TunnelChecksum::None {
                    write!(f, "/{checksum}")?;
                }
                Ok(())
            }
        }
    }
}

fn hold_reason(reason: &HoldReason) -> String {
    let what = match reason.class {
        crate::plan::DeletionClass::Services => "services",
        crate::plan::DeletionClass::Destinations => "destinations",
    };
    format!(
        "{} of {} owned {what} would go; maxDeletions.{what} {} allows {}:",
        reason.deletions, reason.owned, reason.limit, reason.allowed
    )
}

/// One line for logs: `+ destination 10.0.0.1:80 → TCP 198.51.100.10:80 weight 1 forwarding
/// tunnel/ipip`.
pub fn describe_action(action: &Action) -> String {
    Described(action).to_string()
}

/// [`describe_action`]'s line, written straight into a formatter: a converge from empty logs
/// one per action, and building each as a string of its own first cost as much as the logging.
pub struct Described<'a>(pub &'a Action);

impl std::fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Action::EnsureInterface { name } => {
                write!(f, "+ link {name} (created if missing, set up)")
            }
            Action::AddAddress { interface, address } => {
                write!(f, "+ address {address} on {interface} (announce)")
            }
            Action::DelAddress { interface, address } => {
                write!(f, "- address {address} on {interface} (withdraw)")
            }
            Action::AddService { key, config } => {
                write!(
                    f,
                    "+ service {key} {}",
                    service_fields(key, config).join(" ")
                )
            }
            Action::SetService { key, config } => {
                write!(
                    f,
                    "~ service {key} {}",
                    service_fields(key, config).join(" ")
                )
            }
            Action::DelService { key } => write!(f, "- service {key}"),
            Action::AddDestination {
                service,
                destination,
                config,
            } => write!(
                f,
                "+ destination {destination} → {service} {}",
                DestinationFields(config)
            ),
            Action::SetDestination {
                service,
                destination,
                config,
            } => write!(
                f,
                "~ destination {destination} → {service} {}",
                DestinationFields(config)
            ),
            Action::DelDestination {
                service,
                destination,
            } => write!(f, "- destination {destination} → {service}"),
            Action::SetSysctl { name, value } => write!(f, "~ sysctl {name} = {value}"),
            Action::SetTimeouts { timeouts } => {
                f.write_str("~ timeouts")?;
                for (name, value) in [
                    ("tcp", timeouts.tcp),
                    ("tcpfin", timeouts.tcp_fin),
                    ("udp", timeouts.udp),
                ] {
                    if value != 0 {
                        write!(f, " {name} {value}s")?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// An `ipvsadm -Sn`-like text of the state, limited to what `ownership` owns when given: the
/// link and its addresses, sysctls and timeouts as comments-free command lines, then each
/// service (`-A`) followed by its destinations (`-a`). Unlike `ipvsadm -Sn`, destinations keep
/// the kernel's list order, which decides the `mh` table.
pub fn render_ipvsadm(state: &NodeState, ownership: Option<&Ownership>) -> String {
    let mut out = String::new();
    let link = &state.interface;
    if link.exists {
        let _ = writeln!(
            out,
            "ip link {} {}",
            link.name,
            if link.up { "up" } else { "down" }
        );
        for address in &link.addresses {
            if ownership.is_none_or(|o| o.owns_address(address)) {
                let prefix = if address.is_ipv4() { 32 } else { 128 };
                let _ = writeln!(out, "ip address {address}/{prefix} dev {}", link.name);
            }
        }
    }
    for (name, value) in &state.sysctls {
        let _ = writeln!(out, "sysctl {name}={}", value.trim());
    }
    let t = state.timeouts;
    if t != IpvsTimeouts::default() {
        let _ = writeln!(out, "--set {} {} {}", t.tcp, t.tcp_fin, t.udp);
    }
    for service in state.services.values() {
        if !ownership.is_none_or(|o| o.owns_service(&service.key)) {
            continue;
        }
        let id = ipvsadm_service(&service.key);
        let _ = writeln!(
            out,
            "-A {id}{}",
            ipvsadm_service_options(&service.key, &service.config)
        );
        for d in &service.destinations {
            let _ = write!(
                out,
                "-a {id} -r {} {} -w {}",
                SocketLike(d.key.address, d.key.port),
                ipvsadm_forwarding(&d.config.forwarding),
                d.config.weight
            );
            if d.config.upper_threshold != 0 {
                let _ = write!(out, " -x {}", d.config.upper_threshold);
            }
            if d.config.lower_threshold != 0 {
                let _ = write!(out, " -y {}", d.config.lower_threshold);
            }
            out.push('\n');
        }
    }
    out
}

fn ipvsadm_service(key: &ServiceKey) -> String {
    match key {
        ServiceKey::Inet {
            protocol,
            vip,
            port,
        } => {
            let flag = match protocol {
                balanced_schemas::v1::Protocol::Tcp => "-t",
                balanced_schemas::v1::Protocol::Udp => "-u",
                balanced_schemas::v1::Protocol::Sctp => "--sctp-service",
            };
            format!("{flag} {}", SocketLike(*vip, *port))
        }
        ServiceKey::Fwmark { family, mark } => match family {
            Family::V4 => format!("-f {mark}"),
            Family::V6 => format!("-f {mark} -6"),
        },
    }
}

fn ipvsadm_service_options(key: &ServiceKey, config: &ServiceConfig) -> String {
    let mut out = format!(" -s {}", config.scheduler);
    let flags = scheduler_flag_names(config.scheduler, config.flags);
    if !flags.is_empty() {
        let _ = write!(out, " -b {}", flags.join(","));
    }
    if config.flags & FLAG_PERSISTENT != 0 {
        let _ = write!(out, " -p {}", config.timeout);
    }
    if let Some(mask) = netmask(key.family(), config.netmask) {
        let _ = write!(out, " -M {}", mask.trim_start_matches('/'));
    }
    if config.flags & FLAG_ONEPACKET != 0 {
        out.push_str(" -o");
    }
    if !config.pe_name.is_empty() {
        let _ = write!(out, " --pe {}", config.pe_name);
    }
    out
}

fn ipvsadm_forwarding(forward: &Forward) -> String {
    match forward {
        Forward::Masquerade => "-m".to_owned(),
        Forward::Direct => "-g".to_owned(),
        Forward::Local => "-g # local".to_owned(),
        Forward::Bypass => "-g # bypass".to_owned(),
        Forward::Tunnel {
            encapsulation,
            port,
            checksum,
        } => {
            let mut out = format!("-i --tun-type {encapsulation}");
            if *port != 0 {
                let _ = write!(out, " --tun-port {port}");
            }
            match checksum {
                TunnelChecksum::None => {}
                TunnelChecksum::Csum => out.push_str(" --tun-csum"),
                TunnelChecksum::Remcsum => out.push_str(" --tun-remcsum"),
            }
            out
        }
    }
}

/// Unix seconds as `2026-01-02T03:04:05Z`.
fn utc(seconds: u64) -> String {
    let days = i64::try_from(seconds / 86_400).unwrap_or(i64::MAX / 2);
    let rest = seconds % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_are_civil() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_798_761_599), "2026-12-31T23:59:59Z");
    }

    #[test]
    fn changed_fields_name_old_and_new() {
        let old = vec!["scheduler wlc".to_owned(), "persistence 300s".to_owned()];
        let new = vec!["scheduler mh".to_owned(), "flags mh-fallback".to_owned()];
        assert_eq!(
            changed_fields(&old, &new),
            "scheduler wlc → mh, flags none → mh-fallback, persistence 300s → none"
        );
    }
}
