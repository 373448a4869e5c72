//! Manifests → the desired [`NodeState`]: every valid Balancer plus the node config, compiled
//! into kernel terms (service keys, flags, persistence netmask, destinations in canonical order).
//!
//! Pure and total: it never fails. Validation (`balanced_schemas`) runs before and guarantees
//! unique services and backends; should two still collide here, the later one wins.
//!
//! ## The persistence netmask
//! The kernel keeps an IPv4 service's netmask as a `__be32` (`svc->netmask`, compared with
//! `addr & netmask` in network byte order) and moves it over netlink unchanged
//! (`nla_get_be32`/`nla_put_be32` on `IPVS_SVC_ATTR_NETMASK` in `ip_vs_ctl.c`); ipvsadm fills it
//! with `inet_aton()` and prints it with `inet_ntoa()`. So the attribute's four bytes are the
//! dotted mask in network order (`255.255.255.0` → `ff ff ff 00`). [`ServiceConfig::netmask`]
//! holds the **numeric value of those bytes read big-endian** — `u32::from(Ipv4Addr)`,
//! `0xffffff00` for `/24` — so the state files read the same on every machine; the kernel codec
//! writes and reads it with `to_be_bytes`/`from_be_bytes`. `0xffffffff` (the default) is the
//! same either way. For IPv6 the kernel holds a prefix length (1–128, default 128).

use std::collections::BTreeMap;
use std::net::IpAddr;

use balanced_schemas::v1::{self, BackendState, ForwardingMethod, Netmask};

use crate::model::{
    Destination, DestinationConfig, DestinationKey, FLAG_ONEPACKET, FLAG_PERSISTENT, Family,
    Forward, Interface, IpvsTimeouts, NodeState, ServiceConfig, ServiceKey, Stats, VirtualService,
};

/// All valid Balancers + the node config → the desired NodeState: VIP addresses for VIPs that
/// have ≥1 service (none in maintenance), services, destinations in canonical order (by address,
/// then port), draining backends with weight 0, sysctls and timeouts.
pub fn compile(balancers: &[&v1::Balancer], node: &v1::NodeConfigSpec) -> NodeState {
    let mut services = BTreeMap::new();
    let mut addresses = std::collections::BTreeSet::new();
    for balancer in balancers {
        let vip = balancer.spec.vip;
        for service in &balancer.spec.services {
            let Some(key) = service_key(vip, service) else {
                continue;
            };
            services.insert(key, compile_service(key, service));
            if !node.maintenance {
                addresses.insert(vip);
            }
        }
    }
    NodeState {
        interface: Interface {
            name: node.interface.clone(),
            exists: true,
            up: true,
            addresses,
        },
        services,
        sysctls: node.sysctls.clone(),
        timeouts: IpvsTimeouts {
            tcp: seconds(node.timeouts.tcp),
            tcp_fin: seconds(node.timeouts.tcp_fin),
            udp: seconds(node.timeouts.udp),
        },
    }
}

/// The kernel's key of a manifest service: fwmark when one is given, else protocol + port
/// (validation guarantees one or the other; a service with neither compiles to nothing).
pub fn service_key(vip: IpAddr, service: &v1::VirtualService) -> Option<ServiceKey> {
    match (service.fwmark, service.protocol, service.port) {
        (Some(mark), _, _) => Some(ServiceKey::Fwmark {
            family: Family::of(&vip),
            mark,
        }),
        (None, Some(protocol), Some(port)) => Some(ServiceKey::Inet {
            protocol,
            vip,
            port,
        }),
        _ => None,
    }
}

fn compile_service(key: ServiceKey, service: &v1::VirtualService) -> VirtualService {
    let family = key.family();
    let mut flags = service
        .scheduler_flags
        .iter()
        .fold(0, |bits, flag| bits | flag.bit());
    if service.persistence.is_some() {
        flags |= FLAG_PERSISTENT;
    }
    if service.one_packet {
        flags |= FLAG_ONEPACKET;
    }
    let netmask = persistence_netmask(
        family,
        service
            .persistence
            .as_ref()
            .and_then(|p| p.netmask.as_ref()),
    );
    let service_port = match key {
        ServiceKey::Inet { port, .. } => port,
        ServiceKey::Fwmark { .. } => 0,
    };
    let forwarding = forward(&service.forwarding);
    let destinations: BTreeMap<DestinationKey, Destination> = service
        .backends
        .iter()
        .map(|backend| {
            let key = DestinationKey {
                address: backend.address,
                port: backend.port.unwrap_or(service_port),
            };
            let weight = match backend.state {
                BackendState::Active => backend.weight,
                BackendState::Draining => 0,
            };
            let destination = Destination {
                key,
                config: DestinationConfig {
                    forwarding,
                    weight,
                    upper_threshold: backend.upper_threshold.unwrap_or(0),
                    lower_threshold: backend.lower_threshold.unwrap_or(0),
                },
                active_connections: 0,
                inactive_connections: 0,
                stats: Stats::default(),
                last_weight: match backend.state {
                    BackendState::Active => 0,
                    BackendState::Draining => backend.weight,
                },
            };
            (key, destination)
        })
        .collect();
    VirtualService {
        key,
        config: ServiceConfig {
            scheduler: service.scheduler,
            flags,
            timeout: service.persistence.as_ref().map_or(0, |p| p.timeout),
            netmask,
            pe_name: String::new(),
        },
        destinations: destinations.into_values().collect(),
        stats: Stats::default(),
    }
}

/// The persistence netmask as [`ServiceConfig::netmask`] holds it (see the module docs):
/// IPv4 → the mask's numeric value (`0xffffff00` for `/24` or `255.255.255.0`), IPv6 → the
/// prefix length. Without a netmask: `0xffffffff` / 128. A prefix longer than the family
/// allows is clamped (validation refuses it before); a non-contiguous dotted mask on IPv6 has no
/// prefix and counts as the whole address.
pub fn persistence_netmask(family: Family, netmask: Option<&Netmask>) -> u32 {
    match (family, netmask) {
        (Family::V4, None) => u32::MAX,
        (Family::V4, Some(Netmask::Dotted(mask))) => u32::from(*mask),
        (Family::V4, Some(Netmask::Prefix(p))) => {
            let p = u32::from(*p).min(32);
            u32::MAX.checked_shl(32 - p).unwrap_or(0)
        }
        (Family::V6, None) => 128,
        (Family::V6, Some(mask)) => mask.prefix_len().map_or(128, |p| u32::from(p).min(128)),
    }
}

fn forward(forwarding: &v1::Forwarding) -> Forward {
    match forwarding.method {
        ForwardingMethod::Direct => Forward::Direct,
        ForwardingMethod::Masquerade => Forward::Masquerade,
        ForwardingMethod::Tunnel => Forward::Tunnel {
            encapsulation: forwarding.encapsulation.unwrap_or_default(),
            port: forwarding.port.unwrap_or(0),
            checksum: forwarding.checksum.unwrap_or_default(),
        },
    }
}

/// Whole seconds of an optional timeout; absent (or under a second) = 0, "leave unchanged".
fn seconds(duration: Option<v1::Duration>) -> u32 {
    duration.map_or(0, |d| {
        u32::try_from(d.as_std().as_secs()).unwrap_or(u32::MAX)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use balanced_schemas::v1::{Balancer, NodeConfigSpec};

    fn balancer(yaml_spec: serde_json::Value) -> Balancer {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "balanced.io/v1",
            "kind": "Balancer",
            "metadata": {"name": "t"},
            "spec": yaml_spec,
        }))
        .expect("a Balancer")
    }

    #[test]
    fn services_compile_to_kernel_terms() {
        let web = balancer(serde_json::json!({
            "vip": "198.51.100.10",
            "services": [{
                "protocol": "TCP", "port": 443, "scheduler": "mh",
                "schedulerFlags": ["mh-fallback", "mh-port"],
                "persistence": {"timeout": 300, "netmask": "255.255.255.0"},
                "forwarding": {"method": "tunnel", "encapsulation": "gue", "port": 6080},
                "backends": [
                    {"address": "10.0.0.2"},
                    {"address": "10.0.0.1", "weight": 3, "upperThreshold": 10, "lowerThreshold": 5},
                    {"address": "10.0.0.1", "port": 8443, "state": "draining"},
                ],
            }, {
                "fwmark": 120, "forwarding": {"method": "masquerade"},
                "backends": [{"address": "10.0.0.1", "port": 0}],
            }],
        }));
        let node = NodeConfigSpec::default();
        let state = compile(&[&web], &node);
        let key = ServiceKey::Inet {
            protocol: v1::Protocol::Tcp,
            vip: "198.51.100.10".parse().unwrap(),
            port: 443,
        };
        let service = &state.services[&key];
        assert_eq!(service.config.flags, FLAG_PERSISTENT | 0x08 | 0x10);
        assert_eq!(service.config.timeout, 300);
        assert_eq!(service.config.netmask, 0xffff_ff00);
        let order: Vec<String> = service
            .destinations
            .iter()
            .map(|d| format!("{} w{}", d.key, d.config.weight))
            .collect();
        assert_eq!(
            order,
            ["10.0.0.1:443 w3", "10.0.0.1:8443 w0", "10.0.0.2:443 w1"],
            "canonical order, the service port by default, draining at weight 0"
        );
        assert_eq!(service.destinations[0].config.upper_threshold, 10);
        assert_eq!(
            service.destinations[0].config.forwarding,
            Forward::Tunnel {
                encapsulation: v1::Encapsulation::Gue,
                port: 6080,
                checksum: v1::TunnelChecksum::None
            }
        );
        let fwmark = &state.services[&ServiceKey::Fwmark {
            family: Family::V4,
            mark: 120,
        }];
        assert_eq!(fwmark.destinations[0].key.port, 0);
        assert_eq!(fwmark.config.netmask, u32::MAX);
        assert_eq!(
            state.interface.addresses.iter().collect::<Vec<_>>(),
            [&"198.51.100.10".parse::<IpAddr>().unwrap()]
        );
        let maintenance = NodeConfigSpec {
            maintenance: true,
            ..NodeConfigSpec::default()
        };
        let state = compile(&[&web], &maintenance);
        assert!(
            state.interface.addresses.is_empty(),
            "maintenance withdraws every VIP"
        );
        assert_eq!(state.services.len(), 2, "services stay in maintenance");
    }

    #[test]
    fn persistence_netmasks_are_held_as_the_kernel_holds_them() {
        let dotted = Netmask::Dotted("255.255.0.0".parse().unwrap());
        assert_eq!(persistence_netmask(Family::V4, Some(&dotted)), 0xffff_0000);
        assert_eq!(
            persistence_netmask(Family::V4, Some(&Netmask::Prefix(24))),
            0xffff_ff00
        );
        assert_eq!(
            persistence_netmask(Family::V4, Some(&Netmask::Prefix(0))),
            0
        );
        assert_eq!(
            persistence_netmask(Family::V4, Some(&Netmask::Prefix(32))),
            u32::MAX
        );
        assert_eq!(persistence_netmask(Family::V4, None), u32::MAX);
        assert_eq!(
            persistence_netmask(Family::V6, Some(&Netmask::Prefix(64))),
            64
        );
        assert_eq!(persistence_netmask(Family::V6, None), 128);
    }
}
