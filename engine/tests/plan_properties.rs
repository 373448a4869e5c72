//! Properties of the planner over arbitrary desired and observed states, inside and outside the
//! node's ownership:
//!
//! - `plan(d, d)` is empty;
//! - applying `plan(d, o)` to `o` with the simulated kernel never fails, and planning again
//!   leaves nothing but the deletions of drains that became due; once those are applied the
//!   owned state equals the desired one (services built from empty in canonical order) and
//!   everything outside the ownership is exactly as it was;
//! - without `--allow-mass-delete`, no class deletes more than its limit allows;
//! - the executor, which sends a plan in waves of independent actions, ends in exactly the
//!   state (destination order included) that applying the plan one action after another does,
//!   and when the dataplane refuses some actions it skips exactly what the one-by-one rules
//!   skip (the dependents of a failure never travel in the same wave as it).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use balanced_engine::dataplane::{
    Action, ActionError, Dataplane, DataplaneError, Errno, ObserveRequest,
};
use balanced_engine::exec::execute;
use balanced_engine::kernel_sim::apply_action;
use balanced_engine::model::{
    Destination, DestinationConfig, DestinationKey, FLAG_HASHED, Family, Forward, Interface,
    IpvsTimeouts, NodeState, ServiceConfig, ServiceKey, Stats, VirtualService,
};
use balanced_engine::ownership::Ownership;
use balanced_engine::plan::{DrainRecord, PlanOptions, plan};
use balanced_schemas::v1::{DeletionLimits, Encapsulation, Limit, Protocol, Scheduler};
use proptest::prelude::*;
use proptest::sample::{select, subsequence};

const NOW: u64 = 1_800_000_000;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
}

/// VIPs: three owned IPv4, one owned IPv6, one foreign.
const VIPS: [&str; 5] = [
    "198.51.100.1",
    "198.51.100.2",
    "198.51.100.3",
    "2001:db8:100::1",
    "203.0.113.1",
];

fn ownership() -> Ownership {
    Ownership {
        interface: "balanced0".into(),
        vip_ranges: vec![
            "198.51.100.0/24".parse().unwrap(),
            "2001:db8:100::/48".parse().unwrap(),
        ],
        fwmark_ranges: vec!["100-199".parse().unwrap()],
    }
}

fn options(allow_mass_delete: bool, limit: Limit) -> PlanOptions {
    PlanOptions {
        ownership: ownership(),
        drain_timeout: Duration::from_secs(300),
        withdraw_delay: Duration::from_secs(5),
        limits: DeletionLimits {
            services: limit,
            destinations: limit,
        },
        allow_mass_delete,
    }
}

fn service_key() -> impl Strategy<Value = ServiceKey> {
    prop_oneof![
        4 => (select(VIPS.to_vec()), select(vec![Protocol::Tcp, Protocol::Udp]), select(vec![80u16, 443]))
            .prop_map(|(vip, protocol, port)| ServiceKey::Inet {
                protocol,
                vip: vip.parse().unwrap(),
                port,
            }),
        1 => (select(vec![Family::V4, Family::V6]), select(vec![100u32, 7]))
            .prop_map(|(family, mark)| ServiceKey::Fwmark { family, mark }),
    ]
}

fn service_config(family: Family) -> impl Strategy<Value = ServiceConfig> {
    (
        select(vec![
            Scheduler::Wlc,
            Scheduler::Rr,
            Scheduler::Mh,
            Scheduler::Sh,
        ]),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            move |(scheduler, persistent, flag1, narrow)| ServiceConfig {
                scheduler,
                flags: u32::from(persistent) | if flag1 { 0x8 } else { 0 },
                timeout: if persistent { 300 } else { 0 },
                netmask: match (family, narrow) {
                    (Family::V4, false) => u32::MAX,
                    (Family::V4, true) => 0xffff_ff00,
                    (Family::V6, false) => 128,
                    (Family::V6, true) => 64,
                },
                pe_name: String::new(),
            },
        )
}

fn destination(family: Family) -> impl Strategy<Value = Destination> {
    (
        1u8..=6,
        select(vec![80u16, 8080]),
        0u32..4,
        select(vec![0u8, 1, 2]),
        any::<bool>(),
        0u32..3,
        0u32..3,
    )
        .prop_map(
            move |(host, port, weight, method, thresholds, active, inactive)| {
                let address: IpAddr = match family {
                    Family::V4 => format!("10.0.0.{host}").parse().unwrap(),
                    Family::V6 => format!("2001:db8:200::{host}").parse().unwrap(),
                };
                let forwarding = match method {
                    0 => Forward::Direct,
                    1 => Forward::Masquerade,
                    _ => Forward::Tunnel {
                        encapsulation: Encapsulation::Ipip,
                        port: 0,
                        checksum: Default::default(),
                    },
                };
                let (upper, lower) = if thresholds { (10, 5) } else { (0, 0) };
                Destination {
                    key: DestinationKey { address, port },
                    config: DestinationConfig {
                        forwarding,
                        weight,
                        upper_threshold: upper,
                        lower_threshold: lower,
                    },
                    active_connections: active,
                    inactive_connections: inactive,
                    stats: Stats::default(),
                    // Some weight-0 destinations are draining ones with a manifest weight.
                    last_weight: if weight == 0 && thresholds { 2 } else { 0 },
                }
            },
        )
}

/// A service with unique destinations in arbitrary (kernel) order.
fn service() -> impl Strategy<Value = VirtualService> {
    service_key().prop_flat_map(|key| {
        let family = key.family();
        (
            service_config(family),
            proptest::collection::vec(destination(family), 0..6),
        )
            .prop_map(move |(config, destinations)| {
                let mut seen = BTreeSet::new();
                VirtualService {
                    key,
                    config,
                    destinations: destinations
                        .into_iter()
                        .filter(|d| seen.insert(d.key))
                        .collect(),
                    stats: Stats::default(),
                }
            })
    })
}

fn services() -> impl Strategy<Value = BTreeMap<ServiceKey, VirtualService>> {
    proptest::collection::vec(service(), 0..7)
        .prop_map(|list| list.into_iter().map(|s| (s.key, s)).collect())
}

fn sysctls() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map(
        select(vec![
            "net.ipv4.vs.sloppy_tcp",
            "net.ipv4.vs.expire_nodest_conn",
        ]),
        select(vec!["0", "1"]),
        0..3,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    })
}

fn timeouts() -> impl Strategy<Value = IpvsTimeouts> {
    (
        select(vec![0u32, 900]),
        select(vec![0u32, 120]),
        select(vec![0u32, 300]),
    )
        .prop_map(|(tcp, tcp_fin, udp)| IpvsTimeouts { tcp, tcp_fin, udp })
}

/// A desired state as `compile` makes it: destinations canonical, no connection counts, the
/// VIP address of every protocol/port service (maintenance: none).
fn desired() -> impl Strategy<Value = NodeState> {
    (services(), sysctls(), timeouts(), any::<bool>()).prop_map(
        |(mut services, sysctls, timeouts, maintenance)| {
            for service in services.values_mut() {
                service.destinations.sort_by_key(|d| d.key);
                for d in &mut service.destinations {
                    d.active_connections = 0;
                    d.inactive_connections = 0;
                }
            }
            let addresses = if maintenance {
                BTreeSet::new()
            } else {
                services.keys().filter_map(ServiceKey::vip).collect()
            };
            NodeState {
                interface: Interface {
                    name: "balanced0".into(),
                    exists: true,
                    up: true,
                    addresses,
                },
                services,
                sysctls,
                timeouts,
            }
        },
    )
}

/// An observed state: anything, with the kernel's `hashed` flag on every service, addresses
/// owned or not, and a link that may be missing or down.
fn observed() -> impl Strategy<Value = NodeState> {
    let addresses: Vec<IpAddr> = VIPS
        .iter()
        .chain(&["192.0.2.1"])
        .map(|a| a.parse().unwrap())
        .collect();
    (
        services(),
        sysctls(),
        timeouts(),
        any::<bool>(),
        any::<bool>(),
        subsequence(addresses.clone(), 0..=addresses.len()),
    )
        .prop_map(|(mut services, sysctls, timeouts, exists, up, addresses)| {
            for service in services.values_mut() {
                service.config.flags |= FLAG_HASHED;
            }
            NodeState {
                interface: Interface {
                    name: "balanced0".into(),
                    exists,
                    up: exists && up,
                    addresses: if exists {
                        addresses.into_iter().collect()
                    } else {
                        BTreeSet::new()
                    },
                },
                services,
                sysctls,
                timeouts,
            }
        })
}

/// A drain record with some of the observed destinations and VIPs, started up to 600 s ago.
fn record_for(observed: &NodeState) -> impl Strategy<Value = DrainRecord> + use<> {
    let drains: Vec<(ServiceKey, DestinationKey)> = observed
        .services
        .values()
        .flat_map(|s| s.destinations.iter().map(move |d| (s.key, d.key)))
        .collect();
    let vips: Vec<IpAddr> = VIPS.iter().map(|a| a.parse().unwrap()).collect();
    (
        subsequence(drains.clone(), 0..=drains.len()),
        subsequence(vips.clone(), 0..=vips.len()),
        proptest::collection::vec(0u64..600, 16),
    )
        .prop_map(|(drains, vips, ages)| DrainRecord {
            destinations: drains
                .into_iter()
                .zip(ages.iter().cycle())
                .map(|(k, age)| (k, NOW - age))
                .collect(),
            withdrawals: vips
                .into_iter()
                .zip(ages.iter().rev().cycle())
                .map(|(v, age)| (v, NOW - age % 10))
                .collect(),
        })
}

fn apply_all(state: &mut NodeState, actions: &[Action]) -> Result<(), TestCaseError> {
    for action in actions {
        apply_action(state, action)
            .map_err(|e| TestCaseError::fail(format!("{action:?} refused: {e}")))?;
    }
    Ok(())
}

/// The simulated kernel as a dataplane, in memory, refusing the actions whose plan index is in
/// `refuse` (EPERM).
struct InMemory {
    state: NodeState,
    plan: Vec<Action>,
    refuse: BTreeSet<usize>,
}

impl Dataplane for InMemory {
    fn observe(&mut self, _: &ObserveRequest) -> Result<NodeState, DataplaneError> {
        Ok(self.state.clone())
    }
    fn apply(&mut self, action: &Action) -> Result<(), ActionError> {
        let index = self.plan.iter().position(|a| a == action);
        if index.is_some_and(|i| self.refuse.contains(&i)) {
            return Err(ActionError {
                errno: Errno::EPERM,
                message: "refused".into(),
            });
        }
        apply_action(&mut self.state, action).map_err(|errno| ActionError {
            errno,
            message: "refused".into(),
        })
    }
}

/// The actions skipped when `actions` are applied one by one and those in `refuse` fail, by the
/// rules of `exec`'s module doc, written out again here as the reference.
fn skipped_one_by_one(actions: &[Action], refuse: &BTreeSet<usize>) -> Vec<Action> {
    let (mut services, mut vips, mut links, mut withdrawals) = (
        BTreeSet::new(),
        BTreeSet::new(),
        BTreeSet::new(),
        BTreeSet::new(),
    );
    let mut skipped = Vec::new();
    for (i, action) in actions.iter().enumerate() {
        let skip = match action {
            Action::AddDestination { service, .. }
            | Action::SetDestination { service, .. }
            | Action::DelDestination { service, .. }
            | Action::SetService { key: service, .. } => services.contains(service),
            Action::AddAddress { interface, address } => {
                links.contains(interface) || vips.contains(address)
            }
            Action::DelService { key } => key.vip().is_some_and(|v| withdrawals.contains(&v)),
            _ => false,
        };
        if skip {
            skipped.push(action.clone());
        }
        if skip || refuse.contains(&i) {
            match action {
                Action::AddService { key, .. } => {
                    services.insert(*key);
                    vips.extend(key.vip());
                }
                Action::EnsureInterface { name } => {
                    links.insert(name.clone());
                }
                Action::DelAddress { address, .. } => {
                    withdrawals.insert(*address);
                }
                _ => {}
            }
        }
    }
    skipped
}

/// What is outside the ownership: foreign services and addresses.
fn foreign(state: &NodeState) -> (Vec<&VirtualService>, Vec<IpAddr>) {
    let own = ownership();
    (
        state
            .services
            .values()
            .filter(|s| !own.owns_service(&s.key))
            .collect(),
        state
            .interface
            .addresses
            .iter()
            .filter(|a| !own.owns_address(a))
            .copied()
            .collect(),
    )
}

fn without_hashed(config: &ServiceConfig) -> ServiceConfig {
    ServiceConfig {
        flags: config.flags & !FLAG_HASHED,
        ..config.clone()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn planning_the_desired_state_against_itself_is_empty(d in desired()) {
        let p = plan(&d, &d, now(), &DrainRecord::default(), &options(false, Limit::Percent(50)));
        prop_assert!(p.actions.is_empty(), "{:?}", p.actions);
        prop_assert!(p.held.is_empty() && p.waiting.is_empty());
        prop_assert_eq!(p.record, DrainRecord::default());
    }

    #[test]
    fn executing_in_waves_ends_where_applying_in_order_does(
        (d, o, record) in (desired(), observed())
            .prop_flat_map(|(d, o)| { let r = record_for(&o); (Just(d), Just(o), r) })
    ) {
        let first = plan(&d, &o, now(), &record, &options(true, Limit::Percent(50)));
        let mut in_order = o.clone();
        apply_all(&mut in_order, &first.actions)?;
        let mut dataplane = InMemory { state: o.clone(), plan: first.actions.clone(), refuse: BTreeSet::new() };
        let mut cache = o.clone();
        let outcome = execute(&mut dataplane, &first.actions, &mut cache);
        prop_assert!(outcome.ok(), "{:?}", outcome.failures);
        prop_assert_eq!(outcome.applied, first.actions.len());
        prop_assert_eq!(&dataplane.state, &in_order);
        prop_assert_eq!(&cache, &in_order);
    }

    #[test]
    fn executing_in_waves_skips_what_one_by_one_skips(
        (d, o, record) in (desired(), observed())
            .prop_flat_map(|(d, o)| { let r = record_for(&o); (Just(d), Just(o), r) }),
        seed in any::<u64>(),
    ) {
        let first = plan(&d, &o, now(), &record, &options(true, Limit::Percent(50)));
        // Refuse about one action in four, picked by the seed.
        let refuse: BTreeSet<usize> = (0..first.actions.len())
            .filter(|i| (seed.rotate_left(*i as u32 * 7) ^ *i as u64).is_multiple_of(4))
            .collect();
        let mut dataplane = InMemory { state: o.clone(), plan: first.actions.clone(), refuse: refuse.clone() };
        let outcome = execute(&mut dataplane, &first.actions, &mut o.clone());
        let skipped: Vec<Action> = outcome.failures.iter()
            .filter(|f| f.errno.is_none()).map(|f| f.action.clone()).collect();
        let mut want = skipped_one_by_one(&first.actions, &refuse);
        let mut skipped_sorted = skipped;
        skipped_sorted.sort_by_key(|a| format!("{a:?}"));
        want.sort_by_key(|a| format!("{a:?}"));
        prop_assert_eq!(skipped_sorted, want);
        let refused = outcome.failures.iter().filter(|f| f.errno == Some(Errno::EPERM)).count();
        let refused_sent = refuse.iter()
            .filter(|i| !outcome.failures.iter().any(|f| f.errno.is_none() && f.action == first.actions[**i]))
            .count();
        prop_assert_eq!(refused, refused_sent);
    }

    #[test]
    fn applying_a_plan_converges(
        (d, o, record) in (desired(), observed())
            .prop_flat_map(|(d, o)| { let r = record_for(&o); (Just(d), Just(o), r) })
    ) {
        let options = options(true, Limit::Percent(50));
        let own = ownership();
        let first = plan(&d, &o, now(), &record, &options);
        let mut state = o.clone();
        apply_all(&mut state, &first.actions)?;

        let second = plan(&d, &state, now(), &first.record, &options);
        for action in &second.actions {
            let due_drain = matches!(action, Action::DelDestination { service, destination }
                if first.record.destinations.contains_key(&(*service, *destination)));
            prop_assert!(due_drain, "second plan: {:?}", action);
        }
        apply_all(&mut state, &second.actions)?;
        let third = plan(&d, &state, now(), &second.record, &options);
        prop_assert!(third.actions.is_empty(), "third plan: {:?}", third.actions);

        // Outside the ownership nothing changed.
        prop_assert_eq!(foreign(&state), foreign(&o));

        // Inside it, the state is the desired one, but for what still waits.
        let waiting_services: BTreeSet<ServiceKey> = third.waiting.iter().filter_map(|w| match &w.action {
            Action::DelService { key } => Some(*key),
            _ => None,
        }).collect();
        let waiting_drains: BTreeSet<(ServiceKey, DestinationKey)> = third.waiting.iter().filter_map(|w| match &w.action {
            Action::DelDestination { service, destination } => Some((*service, *destination)),
            _ => None,
        }).collect();
        for (key, want) in d.services.iter().filter(|(k, _)| own.owns_service(k)) {
            let have = state.services.get(key);
            prop_assert!(have.is_some(), "{} missing", key);
            let have = have.unwrap();
            prop_assert_eq!(without_hashed(&have.config), want.config.clone());
            let present: Vec<DestinationKey> = have.destinations.iter().map(|d| d.key)
                .filter(|k| !waiting_drains.contains(&(*key, *k))).collect();
            let mut wanted: Vec<DestinationKey> = want.destinations.iter().map(|d| d.key).collect();
            if !o.services.contains_key(key) {
                prop_assert_eq!(&present, &wanted, "{} built from empty is canonical", key);
            }
            let mut present = present;
            present.sort();
            wanted.sort();
            prop_assert_eq!(present, wanted);
            for w in &want.destinations {
                let h = have.destinations.iter().find(|h| h.key == w.key).unwrap();
                prop_assert_eq!(&h.config, &w.config);
            }
        }
        for key in state.services.keys().filter(|k| own.owns_service(k)) {
            prop_assert!(d.services.contains_key(key) || waiting_services.contains(key),
                "{} should be gone", key);
        }
        let owned = |a: &&IpAddr| own.owns_address(a);
        let have: BTreeSet<&IpAddr> = state.interface.addresses.iter().filter(owned).collect();
        let want: BTreeSet<&IpAddr> = d.interface.addresses.iter().filter(owned).collect();
        prop_assert_eq!(have, want);
        prop_assert!(state.interface.exists && state.interface.up);

        // Once every drain timeout and withdraw delay has passed, the owned services are
        // exactly the desired ones and nothing waits.
        let later = now() + Duration::from_secs(301);
        let fourth = plan(&d, &state, later, &third.record, &options);
        apply_all(&mut state, &fourth.actions)?;
        let last = plan(&d, &state, later, &fourth.record, &options);
        prop_assert!(last.actions.is_empty() && last.waiting.is_empty(), "{:?}", last);
        prop_assert_eq!(last.record, DrainRecord::default());
        let owned_keys: Vec<&ServiceKey> =
            state.services.keys().filter(|k| own.owns_service(k)).collect();
        let desired_keys: Vec<&ServiceKey> =
            d.services.keys().filter(|k| own.owns_service(k)).collect();
        prop_assert_eq!(owned_keys, desired_keys);
        for (key, want) in d.services.iter().filter(|(k, _)| own.owns_service(k)) {
            let mut have: Vec<(DestinationKey, &DestinationConfig)> =
                state.services[key].destinations.iter().map(|d| (d.key, &d.config)).collect();
            have.sort_by_key(|(k, _)| *k);
            let want: Vec<(DestinationKey, &DestinationConfig)> =
                want.destinations.iter().map(|d| (d.key, &d.config)).collect();
            prop_assert_eq!(have, want);
        }
        prop_assert_eq!(foreign(&state), foreign(&o));
    }

    #[test]
    fn no_class_deletes_beyond_its_limit(
        d in desired(),
        o in observed(),
        limit in select(vec![Limit::Count(0), Limit::Count(1), Limit::Percent(25), Limit::Percent(50)]),
    ) {
        let own = ownership();
        let p = plan(&d, &o, now(), &DrainRecord::default(), &options(false, limit));
        let owned_services = o.services.keys().filter(|k| own.owns_service(k)).count();
        let owned_destinations: usize = o.services.values()
            .filter(|s| own.owns_service(&s.key)).map(|s| s.destinations.len()).sum();
        let service_deletions = p.actions.iter().chain(p.waiting.iter().map(|w| &w.action))
            .filter(|a| matches!(a, Action::DelService { .. })).count();
        let destination_deletions = p.actions.iter().chain(p.waiting.iter().map(|w| &w.action))
            .filter(|a| matches!(a, Action::DelDestination { .. })).count();
        prop_assert!(service_deletions <= limit.allowed(owned_services));
        prop_assert!(destination_deletions <= limit.allowed(owned_destinations));
        for held in &p.held {
            prop_assert!(!p.actions.contains(&held.action), "held and applied: {:?}", held.action);
        }
    }
}
