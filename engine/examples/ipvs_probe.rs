//! Exercises the kernel dataplane against a real kernel (run it inside the QEMU guest of
//! `tests/vm/`, as root, with the ip_vs modules loaded).
//!
//! - `ipvs_probe check`: a sequence of actions — successes and refusals — applied to the kernel
//!   and to the pure kernel simulation (`kernel_sim::apply_action`); the errnos and the observed
//!   states must agree, destination order included. Prints `CHECK PASS|FAIL: …` lines.
//! - `ipvs_probe bench SERVICES DESTS`: converges that many services (one VIP each) from the
//!   current state, then times two full observations. Prints `BENCH …` lines.
//! - `ipvs_probe unprivileged`: drops to uid 65534 and expects the CAP_NET_ADMIN error.

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Instant;

use balanced_engine::dataplane::{Action, ActionError, Dataplane, Errno, ObserveRequest};
use balanced_engine::kernel::KernelDataplane;
use balanced_engine::kernel_sim::apply_action;
use balanced_engine::model::{
    DestinationConfig, DestinationKey, Family, Forward, IpvsTimeouts, NodeState, ServiceConfig,
    ServiceKey, Stats,
};
use balanced_schemas::v1::{Encapsulation, Protocol, Scheduler, TunnelChecksum};

const LINK: &str = "balanced0";

struct Report {
    failed: usize,
}

impl Report {
    fn check(&mut self, ok: bool, what: &str) {
        if ok {
            println!("CHECK PASS: {what}");
        } else {
            println!("CHECK FAIL: {what}");
            self.failed += 1;
        }
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("probe address literal")
}

fn tcp(vip: &str, port: u16) -> ServiceKey {
    ServiceKey::Inet {
        protocol: Protocol::Tcp,
        vip: ip(vip),
        port,
    }
}

fn service(scheduler: Scheduler, flags: u32, family: Family) -> ServiceConfig {
    ServiceConfig {
        scheduler,
        flags,
        timeout: 0,
        netmask: match family {
            Family::V4 => u32::MAX,
            Family::V6 => 128,
        },
        pe_name: String::new(),
    }
}

fn dest(address: &str, port: u16) -> DestinationKey {
    DestinationKey {
        address: ip(address),
        port,
    }
}

fn config(forwarding: Forward, weight: u32) -> DestinationConfig {
    DestinationConfig {
        forwarding,
        weight,
        upper_threshold: 0,
        lower_threshold: 0,
    }
}

fn add_dest(service: ServiceKey, d: DestinationKey, c: DestinationConfig) -> Action {
    Action::AddDestination {
        service,
        destination: d,
        config: c,
    }
}

/// What the kernel alone knows (counters, connections) is cleared so states compare.
fn comparable(mut s: NodeState) -> NodeState {
    for svc in s.services.values_mut() {
        svc.stats = Stats::default();
        for d in &mut svc.destinations {
            d.stats = Stats::default();
            d.active_connections = 0;
            d.inactive_connections = 0;
        }
    }
    s
}

fn request() -> ObserveRequest {
    ObserveRequest {
        interface: LINK.into(),
        vip_links: 1,
        sysctls: vec![
            "net.ipv4.vs.sloppy_tcp".into(),
            "net.ipv4.vs.expire_nodest_conn".into(),
        ],
    }
}

/// `actions` through the dataplane's pipelined path.
fn apply_all(dp: &mut KernelDataplane, actions: &[Action]) -> Vec<Result<(), ActionError>> {
    let refs: Vec<&Action> = actions.iter().collect();
    dp.apply_all(&refs).into_iter().map(|a| a.result).collect()
}

fn check(dp: &mut KernelDataplane, report: &mut Report) {
    let initial = match dp.observe(&request()) {
        Ok(s) => s,
        Err(e) => {
            report.check(false, &format!("initial observe: {e}"));
            return;
        }
    };
    println!(
        "observed before: {}",
        serde_json::to_string(&initial).unwrap_or_default()
    );
    let web = tcp("198.51.100.10", 80);
    let v6 = ServiceKey::Inet {
        protocol: Protocol::Udp,
        vip: ip("2001:db8::10"),
        port: 53,
    };
    let mark = ServiceKey::Fwmark {
        family: Family::V4,
        mark: 7,
    };
    let gue = Forward::Tunnel {
        encapsulation: Encapsulation::Gue,
        port: 6080,
        checksum: TunnelChecksum::Remcsum,
    };
    let gre = Forward::Tunnel {
        encapsulation: Encapsulation::Gre,
        port: 0,
        checksum: TunnelChecksum::Csum,
    };
    let ipip = Forward::Tunnel {
        encapsulation: Encapsulation::Ipip,
        port: 0,
        checksum: TunnelChecksum::None,
    };
    let mut persistent = service(Scheduler::Sh, 0x1 | 0x8 | 0x10, Family::V6);
    persistent.timeout = 300;
    persistent.netmask = 64;
    let actions = vec![
        Action::EnsureInterface { name: LINK.into() },
        Action::AddAddress {
            interface: LINK.into(),
            address: ip("198.51.100.10"),
        },
        Action::AddAddress {
            interface: LINK.into(),
            address: ip("2001:db8::10"),
        },
        // EEXIST
        Action::AddAddress {
            interface: LINK.into(),
            address: ip("198.51.100.10"),
        },
        // EADDRNOTAVAIL
        Action::DelAddress {
            interface: LINK.into(),
            address: ip("198.51.100.99"),
        },
        Action::AddService {
            key: web,
            config: service(Scheduler::Mh, 0x8 | 0x10, Family::V4),
        },
        // EEXIST
        Action::AddService {
            key: web,
            config: service(Scheduler::Rr, 0, Family::V4),
        },
        add_dest(web, dest("192.0.2.11", 80), config(Forward::Direct, 1)),
        add_dest(
            web,
            dest("192.0.2.12", 8080),
            config(Forward::Masquerade, 2),
        ),
        add_dest(web, dest("192.0.2.13", 80), config(gue, 3)),
        add_dest(web, dest("192.0.2.14", 80), config(gre, 4)),
        add_dest(web, dest("2001:db8:2::15", 80), config(ipip, 5)),
        // EEXIST
        add_dest(web, dest("192.0.2.11", 80), config(Forward::Direct, 1)),
        // ERANGE: lower threshold above upper
        add_dest(
            web,
            dest("192.0.2.16", 80),
            DestinationConfig {
                forwarding: Forward::Direct,
                weight: 1,
                upper_threshold: 5,
                lower_threshold: 10,
            },
        ),
        // EINVAL: another family without tunnel forwarding
        add_dest(web, dest("2001:db8:2::16", 80), config(Forward::Direct, 1)),
        // ESRCH: no such service
        add_dest(
            tcp("198.51.100.11", 80),
            dest("192.0.2.11", 80),
            config(Forward::Direct, 1),
        ),
        Action::SetDestination {
            service: web,
            destination: dest("192.0.2.11", 80),
            config: config(Forward::Direct, 0),
        },
        // ENOENT
        Action::SetDestination {
            service: web,
            destination: dest("192.0.2.99", 80),
            config: config(Forward::Direct, 1),
        },
        // ENOENT
        Action::DelDestination {
            service: web,
            destination: dest("192.0.2.99", 80),
        },
        Action::DelDestination {
            service: web,
            destination: dest("192.0.2.12", 8080),
        },
        Action::AddService {
            key: v6,
            config: persistent.clone(),
        },
        add_dest(
            v6,
            dest("2001:db8:2::11", 5353),
            config(Forward::Masquerade, 1),
        ),
        Action::AddService {
            key: mark,
            config: service(Scheduler::Wrr, 0x4, Family::V4),
        },
        add_dest(mark, dest("192.0.2.21", 0), config(Forward::Direct, 1)),
        add_dest(mark, dest("192.0.2.22", 0), config(Forward::Direct, 2)),
        Action::SetService {
            key: mark,
            config: service(Scheduler::Rr, 0, Family::V4),
        },
        // ESRCH
        Action::DelService {
            key: tcp("198.51.100.12", 80),
        },
        Action::SetTimeouts {
            timeouts: IpvsTimeouts {
                tcp: 900,
                tcp_fin: 120,
                udp: 300,
            },
        },
        Action::SetSysctl {
            name: "net.ipv4.vs.sloppy_tcp".into(),
            value: "1".into(),
        },
    ];
    let started = Instant::now();
    let results = apply_all(dp, &actions);
    println!(
        "applied {} actions in {:?}",
        actions.len(),
        started.elapsed()
    );
    report.check(
        results.len() == actions.len(),
        "one result per action from apply_all",
    );
    let mut sim = initial.clone();
    for (action, result) in actions.iter().zip(&results) {
        let expected = apply_action(&mut sim, action);
        let kernel = result.as_ref().map_err(|e| e.errno);
        let shown = match result {
            Ok(()) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        report.check(
            kernel == expected.as_ref().map_err(|e| *e),
            &format!(
                "{action:?} → kernel {shown}; simulation {:?}",
                expected.map_err(Errno::name)
            ),
        );
    }
    let observed = match dp.observe(&request()) {
        Ok(s) => s,
        Err(e) => {
            report.check(false, &format!("observe after apply: {e}"));
            return;
        }
    };
    println!(
        "observed after: {}",
        serde_json::to_string(&observed).unwrap_or_default()
    );
    let observed = comparable(observed);
    let sim = comparable(sim);
    report.check(
        observed.services == sim.services,
        "observed services equal the simulation's (destination order included)",
    );
    if observed.services != sim.services {
        println!(
            "kernel: {}\nsim:    {}",
            serde_json::to_string(&observed.services).unwrap_or_default(),
            serde_json::to_string(&sim.services).unwrap_or_default()
        );
    }
    report.check(
        observed.interface == sim.interface,
        &format!(
            "observed link equals the simulation's: {:?}",
            observed.interface
        ),
    );
    report.check(
        observed.timeouts == sim.timeouts,
        &format!("timeouts {:?}", observed.timeouts),
    );
    report.check(
        observed
            .sysctls
            .get("net.ipv4.vs.sloppy_tcp")
            .map(String::as_str)
            == Some("1"),
        &format!("sysctls {:?}", observed.sysctls),
    );
    let order: Vec<String> = observed
        .services
        .get(&web)
        .map(|s| s.destinations.iter().map(|d| d.key.to_string()).collect())
        .unwrap_or_default();
    report.check(
        order
            == [
                "[2001:db8:2::15]:80",
                "192.0.2.14:80",
                "192.0.2.13:80",
                "192.0.2.11:80",
            ],
        &format!("destinations newest first: {order:?}"),
    );

    // What the simulation cannot know: which modules and sysctls this kernel has.
    let refused = apply_all(
        dp,
        &[
            Action::AddService {
                key: tcp("198.51.100.10", 81),
                config: service(Scheduler::Lblcr, 0, Family::V4),
            },
            Action::SetSysctl {
                name: "net.ipv4.vs.no_such_sysctl".into(),
                value: "1".into(),
            },
        ],
    );
    let text: Vec<String> = refused
        .iter()
        .map(|r| match r {
            Ok(()) => "ok".into(),
            Err(e) => e.to_string(),
        })
        .collect();
    report.check(
        matches!(&refused[0], Err(e) if e.errno == Errno::ENOENT
            && e.message.contains("scheduler lblcr is not available: load ip_vs_lblcr")),
        &format!("missing scheduler module: {}", text[0]),
    );
    report.check(
        matches!(&refused[1], Err(e) if e.errno == Errno::ENOENT),
        &format!("missing sysctl: {}", text[1]),
    );

    // Leave the node as found: delete what this run added (pipelined too).
    let cleanup = vec![
        Action::DelService { key: web },
        Action::DelService { key: v6 },
        Action::DelService { key: mark },
        Action::DelAddress {
            interface: LINK.into(),
            address: ip("198.51.100.10"),
        },
        Action::DelAddress {
            interface: LINK.into(),
            address: ip("2001:db8::10"),
        },
    ];
    let cleaned = apply_all(dp, &cleanup);
    report.check(
        cleaned.iter().all(Result::is_ok),
        &format!("cleanup: {cleaned:?}"),
    );
    match dp.observe(&request()) {
        Ok(after) => report.check(
            comparable(after.clone()).services == comparable(initial.clone()).services
                && after.interface.addresses == initial.interface.addresses,
            "after cleanup the node is as it was found",
        ),
        Err(e) => report.check(false, &format!("observe after cleanup: {e}")),
    }
}

fn bench(dp: &mut KernelDataplane, services: usize, dests: usize, report: &mut Report) {
    let mut actions = vec![Action::EnsureInterface { name: LINK.into() }];
    let vip = |i: usize| IpAddr::from([10, 100 + (i >> 16) as u8, (i >> 8) as u8, i as u8]);
    for i in 0..services {
        actions.push(Action::AddAddress {
            interface: LINK.into(),
            address: vip(i),
        });
    }
    for i in 0..services {
        actions.push(Action::AddService {
            key: ServiceKey::Inet {
                protocol: Protocol::Tcp,
                vip: vip(i),
                port: 80,
            },
            config: service(Scheduler::Rr, 0, Family::V4),
        });
    }
    for i in 0..services {
        for d in 0..dests {
            actions.push(add_dest(
                ServiceKey::Inet {
                    protocol: Protocol::Tcp,
                    vip: vip(i),
                    port: 80,
                },
                DestinationKey {
                    address: IpAddr::from([172, 16 + d as u8, (i >> 8) as u8, i as u8]),
                    port: 80,
                },
                config(Forward::Direct, 1),
            ));
        }
    }
    // Three runs, so the time of each kind of change shows (the kernel's cost of an IPv4
    // address add grows with the addresses already on the link).
    let phases = [
        ("link+addresses", 0..1 + services),
        ("services", 1 + services..1 + 2 * services),
        ("destinations", 1 + 2 * services..actions.len()),
    ];
    let mut failed = 0;
    let total = Instant::now();
    for (name, range) in phases {
        let (user, system) = cpu_seconds();
        let started = Instant::now();
        let count = range.len();
        let results = apply_all(dp, &actions[range]);
        let (user_after, system_after) = cpu_seconds();
        failed += results.iter().filter(|r| r.is_err()).count();
        println!(
            "BENCH phase={name} actions={count} seconds={:.3} user={:.3} sys={:.3}",
            started.elapsed().as_secs_f64(),
            user_after - user,
            system_after - system
        );
    }
    println!(
        "BENCH converge services={services} dests={dests} actions={} seconds={:.3} failed={failed}",
        actions.len(),
        total.elapsed().as_secs_f64()
    );
    report.check(failed == 0, "bench: every action succeeded");
    for round in 1..=2 {
        let started = Instant::now();
        match dp.observe(&request()) {
            Ok(s) => {
                let seconds = started.elapsed().as_secs_f64();
                let n: usize = s.services.values().map(|s| s.destinations.len()).sum();
                println!(
                    "BENCH observe round={round} services={} dests={n} addresses={} seconds={seconds:.3}",
                    s.services.len(),
                    s.interface.addresses.len()
                );
            }
            Err(e) => report.check(false, &format!("bench observe: {e}")),
        }
    }
}

/// User and system CPU seconds of this process so far (system time includes the kernel's work
/// on our requests, which netlink does synchronously in `sendmsg`).
fn cpu_seconds() -> (f64, f64) {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (seconds(usage.ru_utime), seconds(usage.ru_stime))
}

fn unprivileged(report: &mut Report) {
    // SAFETY: plain syscalls with no memory arguments.
    let dropped = unsafe { libc::setgid(65534) == 0 && libc::setuid(65534) == 0 };
    report.check(dropped, "dropped to uid 65534");
    match KernelDataplane::connect() {
        Ok(_) => report.check(false, "connect as nobody succeeded"),
        Err(e) => {
            let text = e.to_string();
            report.check(
                text.contains("needs CAP_NET_ADMIN") && text.contains("EPERM"),
                &format!("connect as nobody: {text}"),
            );
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let mut report = Report { failed: 0 };
    let mode = args.get(1).map(String::as_str).unwrap_or("check");
    if mode == "unprivileged" {
        unprivileged(&mut report);
    } else {
        let mut dp = match KernelDataplane::connect() {
            Ok(dp) => dp,
            Err(e) => {
                println!("CHECK FAIL: connect: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("IPVS version {:#x}", dp.ipvs_version());
        match mode {
            "bench" => {
                let n = |i: usize, d: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
                bench(&mut dp, n(2, 10_000), n(3, 10), &mut report);
            }
            _ => check(&mut dp, &mut report),
        }
    }
    if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
