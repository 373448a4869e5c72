//! The backend role's planner: `plan(desired, observed)` for one pod namespace, as data, and its
//! display as a diff.
//!
//! Pure and deterministic: same inputs, same actions in the same order — devices, FOU ports and
//! `rp_filter` first (so packets can be decapsulated), then addresses, the MSS route and rules;
//! removals last, rules before the addresses they name. `removals` false (a manifest could not
//! be read) plans additions only, so a bad file never strips a pod of its VIPs.

use std::fmt;

use serde::Serialize;

use crate::backend::model::{
    FouPort, GatewayRoute, MSS_TABLE, PodNet, TunnelDevice, TunnelLink, family_name,
};
use crate::model::Family;
use std::net::IpAddr;

/// One change inside one pod's network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "action")]
pub enum PodAction {
    /// `ip link set DEVICE up mtu MTU` (MTU 0: left as it is).
    SetTunnel {
        device: TunnelDevice,
        link: TunnelLink,
    },
    /// `ip fou add port PORT gue`.
    AddFouPort { port: FouPort },
    /// `sysctl net.ipv4.conf.NAME.rp_filter=VALUE`.
    SetRpFilter { conf: String, value: u32 },
    /// `ip addr add VIP/32 dev DEVICE`.
    AddAddress { device: TunnelDevice, vip: IpAddr },
    /// `ip route replace default via GW dev OIF advmss N table MSS_TABLE`.
    SetMssRoute { family: Family, route: GatewayRoute },
    /// `ip rule add from VIP lookup MSS_TABLE`.
    AddRule { vip: IpAddr },
    /// `ip rule del from VIP lookup MSS_TABLE`.
    DelRule { vip: IpAddr },
    /// `ip route del default table MSS_TABLE`.
    DelMssRoute { family: Family, route: GatewayRoute },
    /// `ip addr del VIP/32 dev DEVICE`.
    DelAddress { device: TunnelDevice, vip: IpAddr },
    /// `ip fou del port PORT`.
    DelFouPort { port: FouPort },
}

impl PodAction {
    pub fn is_removal(&self) -> bool {
        matches!(
            self,
            PodAction::DelRule { .. }
                | PodAction::DelMssRoute { .. }
                | PodAction::DelAddress { .. }
                | PodAction::DelFouPort { .. }
        )
    }
}

/// The changes that turn `observed` into `desired`.
pub fn plan(desired: &PodNet, observed: &PodNet, removals: bool) -> Vec<PodAction> {
    let mut actions = Vec::new();
    for (device, want) in &desired.tunnels {
        let ok = observed
            .tunnels
            .get(device)
            .is_some_and(|have| have.up == want.up && (want.mtu == 0 || have.mtu == want.mtu));
        if !ok {
            actions.push(PodAction::SetTunnel {
                device: *device,
                link: *want,
            });
        }
    }
    for port in desired.fou_ports.difference(&observed.fou_ports) {
        actions.push(PodAction::AddFouPort { port: *port });
    }
    for (conf, value) in &desired.rp_filter {
        if observed.rp_filter.get(conf) != Some(value) {
            actions.push(PodAction::SetRpFilter {
                conf: conf.clone(),
                value: *value,
            });
        }
    }
    for (device, vip) in desired.addresses.difference(&observed.addresses) {
        actions.push(PodAction::AddAddress {
            device: *device,
            vip: *vip,
        });
    }
    for (family, route) in &desired.routes {
        if observed.routes.get(family) != Some(route) {
            actions.push(PodAction::SetMssRoute {
                family: *family,
                route: *route,
            });
        }
    }
    for vip in desired.rules.difference(&observed.rules) {
        actions.push(PodAction::AddRule { vip: *vip });
    }
    if removals {
        for vip in observed.rules.difference(&desired.rules) {
            actions.push(PodAction::DelRule { vip: *vip });
        }
        for (family, route) in &observed.routes {
            if !desired.routes.contains_key(family) {
                actions.push(PodAction::DelMssRoute {
                    family: *family,
                    route: *route,
                });
            }
        }
        for (device, vip) in observed.addresses.difference(&desired.addresses) {
            actions.push(PodAction::DelAddress {
                device: *device,
                vip: *vip,
            });
        }
        for port in observed.fou_ports.difference(&desired.fou_ports) {
            actions.push(PodAction::DelFouPort { port: *port });
        }
    }
    actions
}

/// Applies `actions` to a state as the kernel would: the planner's model of execution, used to
/// check that `apply(plan(d, o), o) == d`.
pub fn simulate(state: &mut PodNet, actions: &[PodAction]) {
    for action in actions {
        match action {
            PodAction::SetTunnel { device, link } => {
                let entry = state.tunnels.entry(*device).or_insert(*link);
                entry.up = link.up;
                if link.mtu != 0 {
                    entry.mtu = link.mtu;
                }
            }
            PodAction::AddFouPort { port } => {
                state.fou_ports.insert(*port);
            }
            PodAction::SetRpFilter { conf, value } => {
                state.rp_filter.insert(conf.clone(), *value);
            }
            PodAction::AddAddress { device, vip } => {
                state.addresses.insert((*device, *vip));
            }
            PodAction::SetMssRoute { family, route } => {
                state.routes.insert(*family, *route);
            }
            PodAction::AddRule { vip } => {
                state.rules.insert(*vip);
            }
            PodAction::DelRule { vip } => {
                state.rules.remove(vip);
            }
            PodAction::DelMssRoute { family, .. } => {
                state.routes.remove(family);
            }
            PodAction::DelAddress { device, vip } => {
                state.addresses.remove(&(*device, *vip));
            }
            PodAction::DelFouPort { port } => {
                state.fou_ports.remove(port);
            }
        }
    }
}

fn prefix(vip: &IpAddr) -> u8 {
    match vip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

struct Route<'a>(&'a GatewayRoute);

impl fmt::Display for Route<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("default")?;
        if let Some(gateway) = self.0.gateway {
            write!(f, " via {gateway}")?;
        }
        write!(f, " oif {} table {MSS_TABLE}", self.0.oif)?;
        if self.0.advmss != 0 {
            write!(f, " advmss {}", self.0.advmss)?;
        }
        Ok(())
    }
}

impl fmt::Display for PodAction {
    /// One diff line: `+` adds, `-` removes, `~` changes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PodAction::SetTunnel { device, link } if link.mtu == 0 => {
                write!(f, "~ link {device} up")
            }
            PodAction::SetTunnel { device, link } => {
                write!(f, "~ link {device} up mtu {}", link.mtu)
            }
            PodAction::AddFouPort { port } => write!(f, "+ {port}"),
            PodAction::SetRpFilter { conf, value } => {
                write!(f, "~ sysctl net.ipv4.conf.{conf}.rp_filter = {value}")
            }
            PodAction::AddAddress { device, vip } => {
                write!(f, "+ address {vip}/{} dev {device}", prefix(vip))
            }
            PodAction::SetMssRoute { family, route } => {
                write!(f, "~ route {} {}", family_name(*family), Route(route))
            }
            PodAction::AddRule { vip } => {
                write!(f, "+ rule from {vip} lookup {MSS_TABLE}")
            }
            PodAction::DelRule { vip } => {
                write!(f, "- rule from {vip} lookup {MSS_TABLE}")
            }
            PodAction::DelMssRoute { family, route } => {
                write!(f, "- route {} {}", family_name(*family), Route(route))
            }
            PodAction::DelAddress { device, vip } => {
                write!(f, "- address {vip}/{} dev {device}", prefix(vip))
            }
            PodAction::DelFouPort { port } => write!(f, "- {port}"),
        }
    }
}
