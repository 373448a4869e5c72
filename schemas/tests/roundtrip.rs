//! Whatever the types can hold, `yaml::to_string` writes and `parse_file` reads back the same
//! value: the exporter's output and the engine's input agree for every field, including the
//! hand-written formats (netmasks, durations, limits, fwmark ranges) and strings that look
//! like other YAML types ("no", "1", "~", "null", ": x").

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use balanced_schemas::v1::{
    Backend, BackendState, Balancer, BalancerSpec, DeletionLimits, Duration, Encapsulation,
    Forwarding, ForwardingMethod, FwmarkRange, Limit, Metadata, Netmask, NodeConfig,
    NodeConfigSpec, Persistence, Protocol, Scheduler, SchedulerFlag, Timeouts, TunnelChecksum,
    VirtualService,
};
use balanced_schemas::{Manifest, parse_file, yaml};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,12}",
        select(vec![
            "no", "yes", "1", "0x1F", "1.5", "~", "null", "true", ": x", "- a", "#c", "'", "\""
        ])
        .prop_map(str::to_owned),
    ]
}

fn metadata() -> impl Strategy<Value = Metadata> {
    (
        "[a-z][a-z0-9.-]{0,20}",
        btree_map("[a-z][a-z./-]{0,8}", text(), 0..3),
        btree_map("[a-z][a-z./-]{0,8}", text(), 0..3),
        option::of(any::<u64>()),
        option::of(text()),
    )
        .prop_map(|(name, labels, annotations, generation, source)| Metadata {
            name,
            labels,
            annotations,
            generation,
            source,
        })
}

fn netmask() -> impl Strategy<Value = Netmask> {
    prop_oneof![
        (0u8..=128).prop_map(Netmask::Prefix),
        any::<std::net::Ipv4Addr>().prop_map(Netmask::Dotted),
    ]
}

fn backend() -> impl Strategy<Value = Backend> {
    (
        any::<IpAddr>(),
        option::of(any::<u16>()),
        any::<u32>(),
        option::of(any::<u32>()),
        option::of(any::<u32>()),
        prop_oneof![Just(BackendState::Active), Just(BackendState::Draining)],
    )
        .prop_map(|(address, port, weight, upper, lower, state)| Backend {
            address,
            port,
            weight,
            upper_threshold: upper,
            lower_threshold: lower,
            state,
            ..minimal_backend()
        })
}

/// A backend with every optional field at its default, read the way a manifest is.
fn minimal_backend() -> Backend {
    yaml::from_str("address: 10.0.0.1\n").expect("a minimal backend parses")
}

fn forwarding() -> impl Strategy<Value = Forwarding> {
    (
        select(vec![
            ForwardingMethod::Tunnel,
            ForwardingMethod::Direct,
            ForwardingMethod::Masquerade,
        ]),
        option::of(select(vec![
            Encapsulation::Ipip,
            Encapsulation::Gue,
            Encapsulation::Gre,
        ])),
        option::of(any::<u16>()),
        option::of(select(vec![
            TunnelChecksum::None,
            TunnelChecksum::Csum,
            TunnelChecksum::Remcsum,
        ])),
    )
        .prop_map(|(method, encapsulation, port, checksum)| Forwarding {
            method,
            encapsulation,
            port,
            checksum,
        })
}

fn service() -> impl Strategy<Value = VirtualService> {
    (
        option::of(select(vec![Protocol::Tcp, Protocol::Udp, Protocol::Sctp])),
        option::of(any::<u16>()),
        option::of(any::<u32>()),
        select(Scheduler::ALL.to_vec()),
        vec(
            select(vec![
                SchedulerFlag::MhFallback,
                SchedulerFlag::MhPort,
                SchedulerFlag::ShFallback,
                SchedulerFlag::ShPort,
                SchedulerFlag::Flag1,
                SchedulerFlag::Flag2,
                SchedulerFlag::Flag3,
            ]),
            0..3,
        ),
        option::of((any::<u32>(), option::of(netmask()))),
        any::<bool>(),
        forwarding(),
        vec(backend(), 0..4),
    )
        .prop_map(
            |(
                protocol,
                port,
                fwmark,
                scheduler,
                flags,
                persistence,
                one_packet,
                forwarding,
                backends,
            )| {
                VirtualService {
                    protocol,
                    port,
                    fwmark,
                    scheduler,
                    scheduler_flags: flags,
                    persistence: persistence
                        .map(|(timeout, netmask)| Persistence { timeout, netmask }),
                    one_packet,
                    forwarding,
                    backends,
                }
            },
        )
}

fn duration() -> impl Strategy<Value = Duration> {
    (0u64..10_000_000).prop_map(|ms| Duration(std::time::Duration::from_millis(ms)))
}

fn limit() -> impl Strategy<Value = Limit> {
    prop_oneof![
        any::<u64>().prop_map(Limit::Count),
        (0u8..=100).prop_map(Limit::Percent)
    ]
}

fn node_spec() -> impl Strategy<Value = NodeConfigSpec> {
    (
        "[a-z][a-z0-9]{0,14}",
        vec(
            prop_oneof![
                (any::<std::net::Ipv4Addr>(), 0u8..=32).prop_map(|(a, p)| ipnet::IpNet::V4(
                    ipnet::Ipv4Net::new(a, p).unwrap_or_default()
                )),
                (any::<std::net::Ipv6Addr>(), 0u8..=128).prop_map(|(a, p)| ipnet::IpNet::V6(
                    ipnet::Ipv6Net::new(a, p).unwrap_or_default()
                )),
            ],
            0..3,
        ),
        vec((any::<u32>(), any::<u32>()), 0..3),
        btree_map("net\\.ipv4\\.vs\\.[a-z_]{1,12}", text(), 0..3),
        (
            option::of(duration()),
            option::of(duration()),
            option::of(duration()),
        ),
        (duration(), duration(), duration(), option::of(duration())),
        (limit(), limit(), any::<bool>()),
        1u8..=64,
    )
        .prop_map(
            |(
                interface,
                vip_ranges,
                marks,
                sysctls,
                (tcp, tcp_fin, udp),
                (drain, resync, withdraw, on_failure),
                (services, destinations, maintenance),
                vip_links,
            )| {
                NodeConfigSpec {
                    interface,
                    vip_links,
                    vip_ranges,
                    fwmark_ranges: marks
                        .into_iter()
                        .map(|(a, b)| FwmarkRange {
                            first: a.min(b),
                            last: a.max(b),
                        })
                        .collect(),
                    sysctls,
                    timeouts: Timeouts { tcp, tcp_fin, udp },
                    drain_timeout: drain,
                    resync_interval: resync,
                    withdraw_delay: withdraw,
                    max_deletions: DeletionLimits {
                        services,
                        destinations,
                    },
                    maintenance,
                    withdraw_on_failure: on_failure,
                }
            },
        )
}

fn read_back(text: &str) -> Result<Manifest, String> {
    let file = parse_file(Path::new("r.yaml"), text);
    match file.documents.as_slice() {
        [document] => Ok(document.manifest.clone()),
        _ => Err(format!("{:#?}\n{text}", file.diagnostics)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn balancers_round_trip(
        metadata in metadata(),
        vip in any::<IpAddr>(),
        services in vec(service(), 0..4),
    ) {
        let balancer = Balancer {
            api_version: "balanced.io/v1".to_owned(),
            kind: "Balancer".to_owned(),
            metadata,
            spec: BalancerSpec { vip, services },
        };
        let text = yaml::to_string(&balancer).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back = read_back(&text).map_err(TestCaseError::fail)?;
        prop_assert_eq!(back, Manifest::Balancer(balancer), "{}", text);
    }

    #[test]
    fn node_configs_round_trip(metadata in metadata(), spec in node_spec()) {
        let config = NodeConfig {
            api_version: "balanced.io/v1".to_owned(),
            kind: "NodeConfig".to_owned(),
            metadata,
            spec,
        };
        let text = yaml::to_string(&config).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back = read_back(&text).map_err(TestCaseError::fail)?;
        prop_assert_eq!(back, Manifest::NodeConfig(config), "{}", text);
    }
}

#[test]
fn labels_keep_their_exact_strings() {
    let labels: BTreeMap<String, String> = [("a", "no"), ("b", "1"), ("c", "~"), ("d", "")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let metadata = Metadata {
        name: "x".to_owned(),
        labels,
        ..Metadata::default()
    };
    let text = yaml::to_string(&metadata).unwrap();
    let back: Metadata = yaml::from_str(&text).unwrap();
    assert_eq!(back, metadata, "{text}");
}
