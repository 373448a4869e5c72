//! Differential test of the two dataplanes: the same action sequences — including actions the
//! kernel refuses — applied to the simulated dataplane and to the real kernel must give the same
//! result per action (the same errno), the same observed state and the same destination order.
//!
//! It needs a real kernel with IPVS and CAP_NET_ADMIN, and it flushes IPVS: it is `#[ignore]`d
//! and runs only inside the QEMU guest of the real-kernel lane (`tests/vm/run`, scenario h),
//! which calls the test binary with `--ignored`.

use std::net::IpAddr;
use std::process::Command;

use balanced_engine::dataplane::{Action, Dataplane, ObserveRequest};
use balanced_engine::display::describe_action;
use balanced_engine::kernel::KernelDataplane;
use balanced_engine::model::{
    DestinationConfig, DestinationKey, FLAG_HASHED, Family, Forward, IpvsTimeouts, NodeState,
    ServiceConfig, ServiceKey,
};
use balanced_engine::sim::SimDataplane;
use balanced_schemas::v1::{Encapsulation, Protocol, Scheduler, TunnelChecksum};

const LINK: &str = "bal-diff";
const SYSCTL: &str = "net.ipv4.vs.sloppy_tcp";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test addresses are valid")
}

fn tcp(vip: &str, port: u16) -> ServiceKey {
    ServiceKey::Inet {
        protocol: Protocol::Tcp,
        vip: ip(vip),
        port,
    }
}

fn fwmark(family: Family, mark: u32) -> ServiceKey {
    ServiceKey::Fwmark { family, mark }
}

fn sched(scheduler: Scheduler, flags: u32, family: Family) -> ServiceConfig {
    ServiceConfig {
        scheduler,
        flags,
        timeout: 0,
        netmask: match family {
            Family::V4 => 0xffff_ffff,
            Family::V6 => 128,
        },
        pe_name: String::new(),
    }
}

fn add_svc(key: ServiceKey, config: ServiceConfig) -> Action {
    Action::AddService { key, config }
}

fn rr(key: ServiceKey) -> Action {
    add_svc(key, sched(Scheduler::Rr, 0, key.family()))
}

fn dest(address: &str, port: u16) -> DestinationKey {
    DestinationKey {
        address: ip(address),
        port,
    }
}

fn fwd(forwarding: Forward, weight: u32) -> DestinationConfig {
    DestinationConfig {
        forwarding,
        weight,
        upper_threshold: 0,
        lower_threshold: 0,
    }
}

fn add_dst(service: ServiceKey, address: &str, port: u16, config: DestinationConfig) -> Action {
    Action::AddDestination {
        service,
        destination: dest(address, port),
        config,
    }
}

fn set_dst(service: ServiceKey, address: &str, port: u16, config: DestinationConfig) -> Action {
    Action::SetDestination {
        service,
        destination: dest(address, port),
        config,
    }
}

fn del_dst(service: ServiceKey, address: &str, port: u16) -> Action {
    Action::DelDestination {
        service,
        destination: dest(address, port),
    }
}

fn masq(weight: u32) -> DestinationConfig {
    fwd(Forward::Masquerade, weight)
}

fn tunnel(encapsulation: Encapsulation, port: u16, checksum: TunnelChecksum) -> DestinationConfig {
    fwd(
        Forward::Tunnel {
            encapsulation,
            port,
            checksum,
        },
        1,
    )
}

fn timeouts(tcp: u32, tcp_fin: u32, udp: u32) -> Action {
    Action::SetTimeouts {
        timeouts: IpvsTimeouts { tcp, tcp_fin, udp },
    }
}

fn address(add: bool, a: &str) -> Action {
    let (interface, address) = (LINK.to_owned(), ip(a));
    if add {
        Action::AddAddress { interface, address }
    } else {
        Action::DelAddress { interface, address }
    }
}

/// The sequences: each starts from an empty IPVS and no link; [`baseline`] actions come first.
fn sequences() -> Vec<(&'static str, Vec<Action>)> {
    let web = tcp("198.51.100.70", 80);
    let v6 = tcp("2001:db8:100::70", 443);
    let mh = tcp("198.51.100.71", 80);
    let fw4 = fwmark(Family::V4, 150);
    let fw6 = fwmark(Family::V6, 151);
    let missing = tcp("198.51.100.79", 80);
    let mut out = vec![
        (
            "build, edit and delete; new destinations go to the head",
            vec![
                timeouts(900, 120, 300),
                rr(web),
                add_dst(web, "192.0.2.12", 80, masq(1)),
                add_dst(web, "192.0.2.11", 80, masq(2)),
                add_dst(web, "192.0.2.13", 8080, fwd(Forward::Direct, 3)),
                set_dst(web, "192.0.2.12", 80, fwd(Forward::Direct, 0)),
                Action::SetService {
                    key: web,
                    config: sched(Scheduler::Wlc, 0, Family::V4),
                },
                del_dst(web, "192.0.2.11", 80),
                add_dst(web, "192.0.2.11", 80, masq(1)),
                add_svc(v6, {
                    let mut c = sched(Scheduler::Sh, 0x08 | 0x10, Family::V6);
                    c.flags |= 0x1;
                    c.timeout = 300;
                    c.netmask = 64;
                    c
                }),
                add_dst(v6, "2001:db8:2::11", 443, masq(1)),
                add_dst(v6, "2001:db8:2::12", 443, {
                    let mut c = masq(5);
                    c.upper_threshold = 100;
                    c.lower_threshold = 50;
                    c
                }),
                add_svc(fw4, sched(Scheduler::Wrr, 0, Family::V4)),
                add_dst(fw4, "192.0.2.11", 0, masq(1)),
                add_svc(fw6, sched(Scheduler::Rr, 0, Family::V6)),
                add_dst(fw6, "2001:db8:2::13", 0, fwd(Forward::Direct, 1)),
                Action::DelService { key: fw4 },
                Action::SetSysctl {
                    name: SYSCTL.into(),
                    value: "1".into(),
                },
            ],
        ),
        (
            "tunnels: ipip, gue, gre, another family",
            vec![
                rr(web),
                add_dst(
                    web,
                    "192.0.2.21",
                    80,
                    tunnel(Encapsulation::Ipip, 0, TunnelChecksum::None),
                ),
                add_dst(
                    web,
                    "192.0.2.22",
                    80,
                    tunnel(Encapsulation::Gue, 6080, TunnelChecksum::None),
                ),
                add_dst(
                    web,
                    "192.0.2.23",
                    80,
                    tunnel(Encapsulation::Gue, 6080, TunnelChecksum::Csum),
                ),
                add_dst(
                    web,
                    "192.0.2.24",
                    80,
                    tunnel(Encapsulation::Gue, 6081, TunnelChecksum::Remcsum),
                ),
                add_dst(
                    web,
                    "192.0.2.25",
                    80,
                    tunnel(Encapsulation::Gre, 0, TunnelChecksum::Csum),
                ),
                add_dst(
                    web,
                    "2001:db8:2::26",
                    80,
                    tunnel(Encapsulation::Ipip, 0, TunnelChecksum::None),
                ),
                set_dst(
                    web,
                    "192.0.2.22",
                    80,
                    tunnel(Encapsulation::Gue, 6090, TunnelChecksum::Csum),
                ),
            ],
        ),
        (
            "refused actions: the kernel's errnos",
            vec![
                rr(web),
                rr(web), // EEXIST
                Action::SetService {
                    key: missing,
                    config: sched(Scheduler::Rr, 0, Family::V4),
                }, // ESRCH
                Action::DelService { key: missing }, // ESRCH
                add_dst(missing, "192.0.2.11", 80, masq(1)), // ESRCH
                del_dst(missing, "192.0.2.11", 80), // ESRCH
                add_dst(web, "192.0.2.11", 80, masq(1)),
                add_dst(web, "192.0.2.11", 80, masq(1)), // EEXIST
                set_dst(web, "192.0.2.99", 80, masq(1)), // ENOENT
                del_dst(web, "192.0.2.99", 80),          // ENOENT
                add_dst(web, "192.0.2.12", 80, masq(1 << 31)), // ERANGE
                add_dst(web, "192.0.2.12", 80, {
                    let mut c = masq(1);
                    c.upper_threshold = 10;
                    c.lower_threshold = 20;
                    c
                }), // ERANGE
                add_dst(
                    web,
                    "192.0.2.13",
                    80,
                    tunnel(Encapsulation::Gue, 0, TunnelChecksum::None),
                ), // EINVAL
                add_dst(web, "2001:db8:2::11", 80, masq(1)), // EINVAL: other family, not tunnel
                add_dst(web, "224.0.0.1", 80, masq(1)),  // EINVAL: not unicast
                add_svc(v6, {
                    let mut c = sched(Scheduler::Rr, 0x1, Family::V6);
                    c.timeout = 60;
                    c.netmask = 129;
                    c
                }), // EINVAL
                timeouts(u32::MAX / 2, 0, 0),            // EINVAL
                timeouts(0, 7, 0),                       // tcp and udp unchanged
                address(true, "198.51.100.70"),          // ENODEV: no link yet
                Action::EnsureInterface { name: LINK.into() },
                address(true, "198.51.100.70"),
                address(true, "198.51.100.70"),  // EEXIST
                address(false, "198.51.100.77"), // EADDRNOTAVAIL
                address(true, "2001:db8:100::70"),
                address(false, "198.51.100.70"),
            ],
        ),
    ];
    // mh: the list order is the table; weight 0 keeps the slots; a delete and re-add moves a
    // destination to the head.
    let mut mh_actions = vec![add_svc(mh, sched(Scheduler::Mh, 0x08, Family::V4))];
    for last in [14, 11, 13, 12, 15] {
        mh_actions.push(add_dst(
            mh,
            &format!("192.0.2.{last}"),
            80,
            fwd(Forward::Direct, 1),
        ));
    }
    mh_actions.push(set_dst(mh, "192.0.2.13", 80, fwd(Forward::Direct, 0)));
    mh_actions.push(del_dst(mh, "192.0.2.11", 80));
    mh_actions.push(add_dst(mh, "192.0.2.11", 80, fwd(Forward::Direct, 1)));
    out.push(("mh: list order through edits", mh_actions));
    // More destinations than the mh table (M = 4093) under rr, then binding mh: EINVAL.
    let big = tcp("198.51.100.72", 80);
    let mut big_actions = vec![rr(big)];
    for n in 0..4094u32 {
        let a = format!("10.{}.{}.{}", 1 + n / 65536, (n / 256) % 256, n % 256);
        big_actions.push(add_dst(big, &a, 80, fwd(Forward::Direct, 1)));
    }
    big_actions.push(Action::SetService {
        key: big,
        config: sched(Scheduler::Mh, 0, Family::V4),
    });
    out.push((
        "binding mh to more destinations than its table",
        big_actions,
    ));
    out
}

/// Set first in every sequence, so that both sides start from the same timeouts and sysctl
/// (the kernel keeps them across sequences; a fresh simulation knows none).
fn baseline() -> Vec<Action> {
    vec![
        timeouts(60, 2, 5),
        Action::SetSysctl {
            name: SYSCTL.into(),
            value: "0".into(),
        },
    ]
}

/// The first line where two renderings differ, with a few lines of context from each.
fn first_difference(kernel: &str, sim: &str) -> String {
    let (k, s): (Vec<&str>, Vec<&str>) = (kernel.lines().collect(), sim.lines().collect());
    let at = k
        .iter()
        .zip(&s)
        .position(|(a, b)| a != b)
        .unwrap_or(k.len().min(s.len()));
    let window = |lines: &[&str]| {
        lines
            .iter()
            .skip(at)
            .take(6)
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    format!(
        "first difference at line {}:\n  kernel:\n{}  simulation:\n{}",
        at + 1,
        window(&k),
        window(&s)
    )
}

/// What both sides must agree on: services without counters and the kernel-internal HASHED
/// flag, destinations in list order without connection counts, the link, timeouts, sysctls.
fn comparable(state: &NodeState) -> String {
    let mut out = String::new();
    let i = &state.interface;
    out += &format!(
        "link {} exists={} up={} addresses={:?}\n",
        i.name, i.exists, i.up, i.addresses
    );
    out += &format!("timeouts {:?}\n", state.timeouts);
    out += &format!("sysctls {:?}\n", state.sysctls);
    for (key, service) in &state.services {
        let mut config = service.config.clone();
        config.flags &= !FLAG_HASHED;
        out += &format!("service {key} {config:?}\n");
        for d in &service.destinations {
            out += &format!("  dest {} {:?}\n", d.key, d.config);
        }
    }
    out
}

fn run(cmd: &str, args: &[&str]) {
    // Best effort: the link may not exist yet.
    let _ = Command::new(cmd)
        .args(args)
        .stderr(std::process::Stdio::null())
        .status();
}

fn reset_kernel() {
    run("ipvsadm", &["-C"]);
    run("/usr/sbin/ip", &["link", "del", LINK]);
}

fn errno_of(result: &Result<(), balanced_engine::dataplane::ActionError>) -> String {
    match result {
        Ok(()) => "ok".to_owned(),
        Err(e) => e.errno.name(),
    }
}

#[test]
#[ignore = "needs a real kernel with IPVS and flushes it: run by tests/vm/run in the QEMU guest"]
fn simulated_and_kernel_dataplanes_agree() {
    let request = ObserveRequest {
        interface: LINK.to_owned(),
        vip_links: 1,
        sysctls: vec![SYSCTL.to_owned()],
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut differences = Vec::new();
    for (index, (name, actions)) in sequences().into_iter().enumerate() {
        reset_kernel();
        let mut kernel = KernelDataplane::connect().expect("IPVS is available in the guest");
        let mut sim = SimDataplane::open(&dir.path().join(format!("sim-{index}.json")), false)
            .expect("a fresh simulated node");
        let actions: Vec<Action> = baseline().into_iter().chain(actions).collect();
        let refs: Vec<&Action> = actions.iter().collect();
        let before = std::time::SystemTime::now();
        let kernel_results = kernel.apply_all(&refs);
        let after = std::time::SystemTime::now();
        let sim_results = sim.apply_all(&refs);
        // Each result is timed by the answer that carried it: within the call, in order.
        let times: Vec<_> = kernel_results.iter().map(|a| a.at).collect();
        if times.first() < Some(&before) || times.last() > Some(&after) || !times.is_sorted() {
            differences.push(format!(
                "{name}: the kernel's results are not timed in order within the call"
            ));
        }
        let mut errnos = 0;
        for (n, action) in actions.iter().enumerate() {
            let (k, s) = (
                errno_of(&kernel_results[n].result),
                errno_of(&sim_results[n].result),
            );
            if k != "ok" {
                errnos += 1;
                if actions.len() < 100 {
                    println!("  kernel refused {}: {k}", describe_action(action));
                }
            }
            if k != s {
                differences.push(format!(
                    "{name}: action {n} {action:?}: kernel {k}, simulation {s}"
                ));
            }
        }
        let k = comparable(&kernel.observe(&request).expect("observing the kernel"));
        let s = comparable(&sim.observe(&request).expect("observing the simulation"));
        if k != s {
            differences.push(format!(
                "{name}: observed states differ, {}",
                first_difference(&k, &s)
            ));
        }
        println!(
            "sequence {name:?}: {} actions, {errnos} refused by the kernel, {}",
            actions.len(),
            if k == s {
                "same observed state"
            } else {
                "DIFFERENT observed state"
            }
        );
        if actions.len() < 100 {
            print!("{k}");
        }
    }
    reset_kernel();
    assert!(
        differences.is_empty(),
        "{} differences between the kernel and the simulation:\n{}",
        differences.len(),
        differences.join("\n")
    );
}
