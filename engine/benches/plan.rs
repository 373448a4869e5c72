//! `plan()` at scale: 10,000 VIPs × 2 services × 50 backends (1,000,000 destinations) against an
//! observed state that differs in 1 % of its destinations (weights changed, destinations
//! missing, destinations to drain), and against a converged one (every resync of a quiet node).
//! Target: < 300 ms per plan and < 1 GiB peak memory.
//!
//! `cargo bench -p balanced-engine --bench plan` prints criterion's timing and, at the end, the
//! process's peak resident memory (`VmHWM`), which includes both states, the plan and criterion.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime};

use balanced_engine::model::{
    Destination, DestinationConfig, DestinationKey, FLAG_HASHED, Forward, Interface, IpvsTimeouts,
    NodeState, ServiceConfig, ServiceKey, Stats, VirtualService,
};
use balanced_engine::ownership::Ownership;
use balanced_engine::plan::{DrainRecord, PlanOptions, plan};
use balanced_schemas::v1::{DeletionLimits, Encapsulation, Protocol, Scheduler};
use std::hint::black_box;

use criterion::Criterion;

const VIPS: u32 = 10_000;
const PORTS: [u16; 2] = [80, 443];
const BACKENDS: u32 = 50;

fn vip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a80_0000 + n))
}

fn backend(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
}

/// The desired state: every service `mh` over IPIP, destinations canonical.
fn desired() -> NodeState {
    let mut services = BTreeMap::new();
    for v in 0..VIPS {
        for port in PORTS {
            let key = ServiceKey::Inet {
                protocol: Protocol::Tcp,
                vip: vip(v),
                port,
            };
            let destinations = (0..BACKENDS)
                .map(|b| Destination {
                    key: DestinationKey {
                        address: backend(v * BACKENDS + b),
                        port,
                    },
                    config: DestinationConfig {
                        forwarding: Forward::Tunnel {
                            encapsulation: Encapsulation::Ipip,
                            port: 0,
                            checksum: Default::default(),
                        },
                        weight: 1 + b % 3,
                        upper_threshold: 0,
                        lower_threshold: 0,
                    },
                    active_connections: 0,
                    inactive_connections: 0,
                    stats: Stats::default(),
                    last_weight: 0,
                })
                .collect();
            let config = ServiceConfig {
                scheduler: Scheduler::Mh,
                flags: 0x8,
                timeout: 0,
                netmask: u32::MAX,
                pe_name: String::new(),
            };
            services.insert(
                key,
                VirtualService {
                    key,
                    config,
                    destinations,
                    stats: Stats::default(),
                },
            );
        }
    }
    NodeState {
        interface: Interface {
            name: "balanced0".into(),
            exists: true,
            up: true,
            addresses: (0..VIPS).map(vip).collect(),
        },
        services,
        sysctls: BTreeMap::new(),
        timeouts: IpvsTimeouts::default(),
    }
}

/// The kernel's view: `hashed` on every service, counters, and 1 % of the destinations off —
/// in every 100th destination a third have another weight, a third are missing (to add) and a
/// third are extra (to drain).
fn observed(desired: &NodeState) -> NodeState {
    let mut observed = desired.clone();
    let mut n: u64 = 0;
    for service in observed.services.values_mut() {
        service.config.flags |= FLAG_HASHED;
        let mut extra = Vec::new();
        service.destinations.retain_mut(|d| {
            n += 1;
            d.active_connections = (n % 7) as u32;
            d.inactive_connections = (n % 11) as u32;
            match (n % 100, n / 100 % 3) {
                (0, 0) => {
                    d.config.weight += 10;
                    true
                }
                (0, 1) => false,
                (0, _) => {
                    let mut gone = d.clone();
                    gone.key.port += 1;
                    extra.push(gone);
                    true
                }
                _ => true,
            }
        });
        service.destinations.extend(extra);
    }
    observed
}

fn options() -> PlanOptions {
    PlanOptions {
        ownership: Ownership {
            interface: "balanced0".into(),
            vip_ranges: vec!["10.128.0.0/9".parse().expect("a prefix")],
            fwmark_ranges: Vec::new(),
        },
        drain_timeout: Duration::from_secs(300),
        withdraw_delay: Duration::from_secs(5),
        limits: DeletionLimits::default(),
        allow_mass_delete: false,
    }
}

fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.trim_start_matches("VmHWM:").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn main() {
    let desired = desired();
    let observed = observed(&desired);
    let options = options();
    let record = DrainRecord::default();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let sample = plan(&desired, &observed, now, &record, &options);
    println!(
        "plan: {} actions, {} waiting, {} held over {} services",
        sample.actions.len(),
        sample.waiting.len(),
        sample.held.len(),
        desired.services.len()
    );
    let mut criterion = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .configure_from_args();
    criterion.bench_function("plan 1M destinations, 1% differing", |b| {
        b.iter(|| {
            plan(
                black_box(&desired),
                black_box(&observed),
                now,
                &record,
                &options,
            )
        })
    });
    let converged = {
        let mut state = desired.clone();
        for service in state.services.values_mut() {
            service.config.flags |= FLAG_HASHED;
        }
        state
    };
    criterion.bench_function("plan 1M destinations, converged", |b| {
        b.iter(|| {
            plan(
                black_box(&desired),
                black_box(&converged),
                now,
                &record,
                &options,
            )
        })
    });
    criterion.final_summary();
    println!("peak resident memory (VmHWM): {}", peak_rss());
}
