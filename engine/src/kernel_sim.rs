//! The kernel's IPVS and rtnetlink semantics as a pure function over a [`NodeState`]: what one
//! [`Action`] does to the state and which errno the kernel answers when it refuses it.
//!
//! Shared by the simulated dataplane, the plan display (rendering the state after a plan), the
//! daemon's cached observation and the property tests. The rules and their order follow
//! `ip_vs_genl_set_cmd()` and its callees in the kernel's `net/netfilter/ipvs/ip_vs_ctl.c`:
//!
//! - any command but NEW_SERVICE on a missing service → `ESRCH` (checked first);
//! - a destination of the other family than its service, unless tunnelled → `EINVAL`;
//! - NEW/SET_DEST: weight above `INT_MAX` (negative as the kernel's `int`) → `ERANGE`, then
//!   lower threshold above upper → `ERANGE`, then GUE with port 0 → `EINVAL`, then
//!   NEW_DEST on an existing destination → `EEXIST`, SET_DEST on a missing one → `ENOENT`;
//!   a new destination's address must be unicast (`EINVAL`);
//! - DEL_DEST on a missing destination → `ENOENT`;
//! - NEW_SERVICE on an existing service → `EEXIST`; an IPv6 netmask outside 1–128 → `EINVAL`;
//!   binding `mh` to a service with more destinations than its table (M = 4093) → `EINVAL`;
//! - a new destination goes to the **head** of its service's list; DEL_SERVICE removes the
//!   service with its destinations;
//! - SET_CONFIG: a timeout above `INT_MAX / HZ` → `EINVAL` (HZ = 250, Debian's), 0 = unchanged;
//! - rtnetlink: an address on a missing link → `ENODEV`, adding an existing one → `EEXIST`,
//!   deleting a missing one → `EADDRNOTAVAIL`.
//!
//! The simulation keeps one VIP link (the one the node config names). It cannot know which
//! sysctls exist, so it accepts any name.

use std::net::IpAddr;

use balanced_schemas::v1::{Encapsulation, Scheduler};

use crate::dataplane::{Action, Errno};
use crate::model::{
    Destination, DestinationConfig, DestinationKey, FLAG_HASHED, Family, Forward, Interface,
    IpvsTimeouts, NodeState, ServiceConfig, ServiceKey, Stats, VirtualService,
};

/// The `mh` lookup table size with the kernel's default `CONFIG_IP_VS_MH_TAB_INDEX` (12).
pub const MH_TABLE_SIZE: usize = 4093;

/// The kernel's `HZ` on the distributions we target; SET_CONFIG refuses timeouts above
/// `INT_MAX / HZ` seconds.
const HZ: u32 = 250;

/// Applies one action as the kernel would: on error the state is unchanged.
pub fn apply_action(state: &mut NodeState, action: &Action) -> Result<(), Errno> {
    match action {
        Action::EnsureInterface { name } => {
            if state.interface.name != *name {
                state.interface = Interface {
                    name: name.clone(),
                    ..Interface::default()
                };
            }
            state.interface.exists = true;
            state.interface.up = true;
            Ok(())
        }
        Action::AddAddress { interface, address } => {
            let link = link(state, interface)?;
            if !link.addresses.insert(*address) {
                return Err(Errno::EEXIST);
            }
            Ok(())
        }
        Action::DelAddress { interface, address } => {
            let link = link(state, interface)?;
            if !link.addresses.remove(address) {
                return Err(Errno::EADDRNOTAVAIL);
            }
            Ok(())
        }
        Action::AddService { key, config } => {
            if state.services.contains_key(key) {
                return Err(Errno::EEXIST);
            }
            check_service(key, config, 0)?;
            state.services.insert(
                *key,
                VirtualService {
                    key: *key,
                    config: without_hashed(config),
                    destinations: Vec::new(),
                    stats: Stats::default(),
                },
            );
            Ok(())
        }
        Action::SetService { key, config } => {
            let service = state.services.get_mut(key).ok_or(Errno::ESRCH)?;
            check_service(key, config, service.destinations.len())?;
            service.config = without_hashed(config);
            Ok(())
        }
        Action::DelService { key } => state.services.remove(key).map(drop).ok_or(Errno::ESRCH),
        Action::AddDestination {
            service,
            destination,
            config,
        } => {
            let service = state.services.get_mut(service).ok_or(Errno::ESRCH)?;
            check_destination(service.key.family(), destination, config)?;
            if position(service, destination).is_some() {
                return Err(Errno::EEXIST);
            }
            if !is_unicast(&destination.address) {
                return Err(Errno::EINVAL);
            }
            service.destinations.insert(
                0,
                Destination {
                    key: *destination,
                    config: config.clone(),
                    active_connections: 0,
                    inactive_connections: 0,
                    stats: Stats::default(),
                    last_weight: 0,
                },
            );
            Ok(())
        }
        Action::SetDestination {
            service,
            destination,
            config,
        } => {
            let service = state.services.get_mut(service).ok_or(Errno::ESRCH)?;
            check_destination(service.key.family(), destination, config)?;
            let index = position(service, destination).ok_or(Errno::ENOENT)?;
            service.destinations[index].config = config.clone();
            Ok(())
        }
        Action::DelDestination {
            service,
            destination,
        } => {
            let service = state.services.get_mut(service).ok_or(Errno::ESRCH)?;
            let index = position(service, destination).ok_or(Errno::ENOENT)?;
            service.destinations.remove(index);
            Ok(())
        }
        Action::SetSysctl { name, value } => {
            state.sysctls.insert(name.clone(), value.clone());
            Ok(())
        }
        Action::SetTimeouts { timeouts } => {
            let limit = i32::MAX as u32 / HZ;
            if [timeouts.tcp, timeouts.tcp_fin, timeouts.udp]
                .iter()
                .any(|t| *t > limit)
            {
                return Err(Errno::EINVAL);
            }
            let keep = |new: u32, old: u32| if new == 0 { old } else { new };
            let old = state.timeouts;
            state.timeouts = IpvsTimeouts {
                tcp: keep(timeouts.tcp, old.tcp),
                tcp_fin: keep(timeouts.tcp_fin, old.tcp_fin),
                udp: keep(timeouts.udp, old.udp),
            };
            Ok(())
        }
    }
}

/// The kernel keeps `hashed` to itself; states never hold it (observers strip it).
fn without_hashed(config: &ServiceConfig) -> ServiceConfig {
    ServiceConfig {
        flags: config.flags & !FLAG_HASHED,
        ..config.clone()
    }
}

/// The VIP link, when it exists under that name.
fn link<'a>(state: &'a mut NodeState, name: &str) -> Result<&'a mut Interface, Errno> {
    if state.interface.exists && state.interface.name == name {
        Ok(&mut state.interface)
    } else {
        Err(Errno::ENODEV)
    }
}

fn check_service(
    key: &ServiceKey,
    config: &ServiceConfig,
    destinations: usize,
) -> Result<(), Errno> {
    if key.family() == Family::V6 && !(1..=128).contains(&config.netmask) {
        return Err(Errno::EINVAL);
    }
    if config.scheduler == Scheduler::Mh && destinations > MH_TABLE_SIZE {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

fn check_destination(
    service_family: Family,
    destination: &DestinationKey,
    config: &DestinationConfig,
) -> Result<(), Errno> {
    let tunnelled = matches!(config.forwarding, Forward::Tunnel { .. });
    if Family::of(&destination.address) != service_family && !tunnelled {
        return Err(Errno::EINVAL);
    }
    if i32::try_from(config.weight).is_err() || config.lower_threshold > config.upper_threshold {
        return Err(Errno::ERANGE);
    }
    if let Forward::Tunnel {
        encapsulation: Encapsulation::Gue,
        port: 0,
        ..
    } = config.forwarding
    {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

fn position(service: &VirtualService, destination: &DestinationKey) -> Option<usize> {
    service
        .destinations
        .iter()
        .position(|d| d.key == *destination)
}

/// The kernel accepts unicast (or local) real-server addresses only.
fn is_unicast(address: &IpAddr) -> bool {
    match address {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_multicast() || a.is_broadcast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use balanced_schemas::v1::Protocol;

    fn service_key() -> ServiceKey {
        ServiceKey::Inet {
            protocol: Protocol::Tcp,
            vip: "198.51.100.10".parse().unwrap(),
            port: 80,
        }
    }

    fn service_config() -> ServiceConfig {
        ServiceConfig {
            scheduler: Scheduler::Wlc,
            flags: 0,
            timeout: 0,
            netmask: u32::MAX,
            pe_name: String::new(),
        }
    }

    fn destination(address: &str) -> DestinationKey {
        DestinationKey {
            address: address.parse().unwrap(),
            port: 80,
        }
    }

    fn direct(weight: u32) -> DestinationConfig {
        DestinationConfig {
            forwarding: Forward::Direct,
            weight,
            upper_threshold: 0,
            lower_threshold: 0,
        }
    }

    fn add_destination(address: &str, config: DestinationConfig) -> Action {
        Action::AddDestination {
            service: service_key(),
            destination: destination(address),
            config,
        }
    }

    fn with_service() -> NodeState {
        let mut state = NodeState::default();
        let add = Action::AddService {
            key: service_key(),
            config: service_config(),
        };
        apply_action(&mut state, &add).unwrap();
        state
    }

    #[test]
    fn new_destinations_go_to_the_head_of_the_list() {
        let mut state = with_service();
        for address in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
            apply_action(&mut state, &add_destination(address, direct(1))).unwrap();
        }
        let order: Vec<_> = state.services[&service_key()]
            .destinations
            .iter()
            .map(|d| d.key.address.to_string())
            .collect();
        assert_eq!(order, ["10.0.0.3", "10.0.0.2", "10.0.0.1"]);
    }

    #[test]
    fn service_commands_answer_like_the_kernel() {
        let mut state = with_service();
        let add = Action::AddService {
            key: service_key(),
            config: service_config(),
        };
        assert_eq!(apply_action(&mut state, &add), Err(Errno::EEXIST));
        apply_action(&mut state, &add_destination("10.0.0.1", direct(1))).unwrap();
        let delete = Action::DelService { key: service_key() };
        apply_action(&mut state, &delete).unwrap();
        assert!(
            state.services.is_empty(),
            "the destinations go with the service"
        );
        assert_eq!(apply_action(&mut state, &delete), Err(Errno::ESRCH));
        assert_eq!(
            apply_action(&mut state, &add_destination("10.0.0.1", direct(1))),
            Err(Errno::ESRCH),
            "a destination of a missing service is ESRCH, before any other check"
        );
        let v6 = ServiceKey::Inet {
            protocol: Protocol::Tcp,
            vip: "2001:db8::10".parse().unwrap(),
            port: 80,
        };
        let bad_mask = Action::AddService {
            key: v6,
            config: ServiceConfig {
                netmask: 0,
                ..service_config()
            },
        };
        assert_eq!(apply_action(&mut state, &bad_mask), Err(Errno::EINVAL));
    }

    #[test]
    fn destination_commands_answer_like_the_kernel() {
        let mut state = with_service();
        apply_action(&mut state, &add_destination("10.0.0.1", direct(1))).unwrap();
        let before = state.clone();
        let refused = [
            (add_destination("10.0.0.1", direct(1)), Errno::EEXIST),
            (add_destination("10.0.0.2", direct(1 << 31)), Errno::ERANGE),
            (
                add_destination(
                    "10.0.0.2",
                    DestinationConfig {
                        lower_threshold: 5,
                        upper_threshold: 4,
                        ..direct(1)
                    },
                ),
                Errno::ERANGE,
            ),
            (
                add_destination(
                    "10.0.0.2",
                    DestinationConfig {
                        forwarding: Forward::Tunnel {
                            encapsulation: Encapsulation::Gue,
                            port: 0,
                            checksum: Default::default(),
                        },
                        ..direct(1)
                    },
                ),
                Errno::EINVAL,
            ),
            (add_destination("2001:db8::1", direct(1)), Errno::EINVAL),
            (add_destination("224.0.0.1", direct(1)), Errno::EINVAL),
            (
                Action::SetDestination {
                    service: service_key(),
                    destination: destination("10.0.0.9"),
                    config: direct(1),
                },
                Errno::ENOENT,
            ),
            (
                Action::DelDestination {
                    service: service_key(),
                    destination: destination("10.0.0.9"),
                },
                Errno::ENOENT,
            ),
        ];
        for (action, errno) in refused {
            assert_eq!(apply_action(&mut state, &action), Err(errno), "{action:?}");
            assert_eq!(
                state, before,
                "a refused action changes nothing: {action:?}"
            );
        }
        let tunnel = DestinationConfig {
            forwarding: Forward::Tunnel {
                encapsulation: Encapsulation::Ipip,
                port: 0,
                checksum: Default::default(),
            },
            ..direct(1)
        };
        apply_action(&mut state, &add_destination("2001:db8::1", tunnel)).unwrap();
    }

    #[test]
    fn mh_refuses_more_destinations_than_its_table() {
        let mut state = with_service();
        let service = state.services.get_mut(&service_key()).unwrap();
        service.destinations = (0..=MH_TABLE_SIZE as u32)
            .map(|n| Destination {
                key: DestinationKey {
                    address: IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n)),
                    port: 80,
                },
                config: direct(1),
                active_connections: 0,
                inactive_connections: 0,
                stats: Stats::default(),
                last_weight: 0,
            })
            .collect();
        let before = state.clone();
        let switch = Action::SetService {
            key: service_key(),
            config: ServiceConfig {
                scheduler: Scheduler::Mh,
                ..service_config()
            },
        };
        assert_eq!(apply_action(&mut state, &switch), Err(Errno::EINVAL));
        assert_eq!(state, before);
    }

    #[test]
    fn addresses_need_the_link() {
        let mut state = NodeState::default();
        let add = Action::AddAddress {
            interface: "balanced0".into(),
            address: "198.51.100.10".parse().unwrap(),
        };
        let del = Action::DelAddress {
            interface: "balanced0".into(),
            address: "198.51.100.10".parse().unwrap(),
        };
        assert_eq!(apply_action(&mut state, &add), Err(Errno::ENODEV));
        let ensure = Action::EnsureInterface {
            name: "balanced0".into(),
        };
        apply_action(&mut state, &ensure).unwrap();
        apply_action(&mut state, &add).unwrap();
        assert_eq!(apply_action(&mut state, &add), Err(Errno::EEXIST));
        apply_action(&mut state, &del).unwrap();
        assert_eq!(apply_action(&mut state, &del), Err(Errno::EADDRNOTAVAIL));
    }

    #[test]
    fn zero_timeouts_are_left_unchanged() {
        let mut state = NodeState::default();
        let set = |tcp, tcp_fin, udp| Action::SetTimeouts {
            timeouts: IpvsTimeouts { tcp, tcp_fin, udp },
        };
        apply_action(&mut state, &set(900, 120, 300)).unwrap();
        apply_action(&mut state, &set(0, 60, 0)).unwrap();
        assert_eq!(
            state.timeouts,
            IpvsTimeouts {
                tcp: 900,
                tcp_fin: 60,
                udp: 300
            }
        );
        assert_eq!(
            apply_action(&mut state, &set(u32::MAX, 0, 0)),
            Err(Errno::EINVAL)
        );
    }
}
