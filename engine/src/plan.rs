//! The planner: `plan(desired, observed, now, record, options) -> Plan`, a pure, deterministic
//! function. A [`Plan`] is data — ordered actions to apply now, deletions held by `maxDeletions`,
//! deletions waiting for a drain or the withdraw delay, and the drain record to persist.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use balanced_schemas::v1::{self, Limit, Scheduler};
use serde::{Deserialize, Serialize};

use crate::dataplane::Action;
use crate::model::{
    Destination, DestinationConfig, DestinationKey, FLAG_HASHED, NodeState, ServiceConfig,
    ServiceKey, VirtualService,
};
use crate::ownership::Ownership;

/// What the planner needs besides the two states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    pub ownership: Ownership,
    pub drain_timeout: Duration,
    pub withdraw_delay: Duration,
    pub limits: v1::DeletionLimits,
    /// `--allow-mass-delete`: apply deletions beyond the limits.
    pub allow_mass_delete: bool,
}

impl PlanOptions {
    pub fn from_node(spec: &v1::NodeConfigSpec, allow_mass_delete: bool) -> Self {
        PlanOptions {
            ownership: Ownership::from_node(spec),
            drain_timeout: spec.drain_timeout.as_std(),
            withdraw_delay: spec.withdraw_delay.as_std(),
            limits: spec.max_deletions.clone(),
            allow_mass_delete,
        }
    }
}

/// When drains started and addresses were withdrawn, in unix seconds. Persisted by the caller
/// in the state directory between plans.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrainRecord {
    /// Drain start (weight 0 set) per destination.
    #[serde(default, with = "drain_entries")]
    pub destinations: BTreeMap<(ServiceKey, DestinationKey), u64>,
    /// When each VIP address was withdrawn; its services are deleted `withdrawDelay` later.
    #[serde(default)]
    pub withdrawals: BTreeMap<IpAddr, u64>,
}

/// JSON maps need string keys: the drain map is written as a list of
/// `{service, destination, since}` entries.
mod drain_entries {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::model::{DestinationKey, ServiceKey};

    #[derive(Serialize, Deserialize)]
    struct Entry {
        service: ServiceKey,
        destination: DestinationKey,
        since: u64,
    }

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<(ServiceKey, DestinationKey), u64>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter().map(|((service, destination), since)| Entry {
            service: *service,
            destination: *destination,
            since: *since,
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<(ServiceKey, DestinationKey), u64>, D::Error> {
        let entries = Vec::<Entry>::deserialize(d)?;
        Ok(entries
            .into_iter()
            .map(|e| ((e.service, e.destination), e.since))
            .collect())
    }
}

/// The two classes of deletion `maxDeletions` limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DeletionClass {
    /// Virtual services, with the withdrawal of their VIP address.
    Services,
    /// Destinations of services that stay (drains and their deletions).
    Destinations,
}

/// Why a deletion is held: its class deletes more than the limit allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HoldReason {
    pub class: DeletionClass,
    /// How many deletions of this class the plan wanted.
    pub deletions: usize,
    /// How many objects of this class the node owns (the base of a percentage).
    pub owned: usize,
    pub limit: Limit,
    /// How many deletions the limit allows.
    pub allowed: usize,
}

/// A deletion the plan did not make because of `maxDeletions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldDeletion {
    pub action: Action,
    pub reason: HoldReason,
}

/// Why a deletion waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum WaitReason {
    /// A draining destination still has active connections.
    Drain { active_connections: u32 },
    /// The service's VIP address was withdrawn; BGP needs `withdrawDelay` to converge.
    WithdrawDelay { address: IpAddr },
}

/// A deletion that is not due yet: a drain or a withdraw delay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Waiting {
    /// The deletion that will be made once due.
    pub action: Action,
    pub reason: WaitReason,
    /// Unix seconds: when the drain or withdrawal started.
    pub since: u64,
    /// Unix seconds: when the deletion is made at the latest.
    pub due: u64,
}

/// A plan: data, rendered by `display` and executed by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// To apply now, in order.
    pub actions: Vec<Action>,
    /// Deletions held by `maxDeletions`.
    pub held: Vec<HeldDeletion>,
    /// Drains and withdraw delays not yet due.
    pub waiting: Vec<Waiting>,
    /// The record to persist once the actions were applied.
    pub record: DrainRecord,
}

impl Plan {
    /// No actions (held and waiting deletions may exist).
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

/// Plans the actions that take `observed` to `desired`, following issue 3 §4:
///
/// 1. `EnsureInterface` when the VIP link is missing or down; sysctls and IPVS timeouts that
///    differ (timeouts: only the non-zero desired fields count).
/// 2. **Withdraw first**: owned addresses on the link that are not desired are deleted before
///    anything else, and the withdrawal time is recorded. A protocol/port service whose VIP
///    address is withdrawn is deleted only once `withdrawDelay` has passed since then (it waits
///    in [`Plan::waiting`]); services of a VIP that keeps its address (another port stays) and
///    fwmark services (no address of their own) are deleted at once.
/// 3. Each desired service in key order: created (`AddService`, then its destinations in
///    *reverse* canonical order so the kernel's head insertion leaves them in canonical order —
///    every director then builds the same `mh` table), or changed in place (`SetService`,
///    `SetDestination`), never deleted and re-added. An `mh` service built from empty with
///    several destinations is created with `rr`, filled, then switched to `mh` (`SetService`):
///    the kernel builds its table once instead of once per destination.
/// 4. A destination that left the manifests drains: weight 0 first (the start is recorded),
///    deleted once it has no **active** connections (inactive ones such as TIME_WAIT do not
///    count) or `drainTimeout` has passed since the start. A destination that is back in the
///    manifests before that gets its desired weight again and leaves the record. A backend
///    marked `draining` in a manifest compiles to a desired destination of weight 0: it stays
///    at weight 0 and is **not** deleted — it is desired, and deleting it would fight the next
///    plan; it drains for real once the manifest drops it.
/// 5. **Announce last**: desired addresses missing from the link are added after every service
///    change. An address is desired exactly while its VIP has a service (see `compile`).
/// 6. `maxDeletions`: the services class counts the owned services to delete (now or after the
///    withdraw delay) against the owned observed services; the destinations class counts the
///    destinations leaving services that stay (drain starts and drain deletions) against the
///    owned observed destinations. A class over its limit is held whole — its deletions, the
///    weight-0 steps of its drains and the withdrawal of the addresses whose services go are
///    listed in [`Plan::held`] — unless `allow_mass_delete`; everything else applies, also
///    the withdrawal of a VIP in maintenance that merely loses some of its services.
///
/// Nothing outside `options.ownership` is created, changed or deleted (desired services or
/// addresses outside it are ignored), and the kernel-internal `hashed` flag is never compared.
/// The output depends only on the inputs: actions come in a fixed order (link, sysctls,
/// timeouts, withdrawals, service deletions, services by key, announcements).
pub fn plan(
    desired: &NodeState,
    observed: &NodeState,
    now: SystemTime,
    record: &DrainRecord,
    options: &PlanOptions,
) -> Plan {
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut planner = Planner {
        desired,
        observed,
        now,
        record,
        options,
        plan: Plan::default(),
    };
    planner.node();
    let observed_addresses = planner.observed_addresses();
    let doomed = planner.doomed_services();
    // The owned totals only matter when something is deleted: a converged node skips them.
    let owned_services = match doomed.len() {
        0 => 0,
        _ => observed
            .services
            .keys()
            .filter(|k| options.ownership.owns_service(k))
            .count(),
    };
    let hold_services = planner.over_limit(DeletionClass::Services, doomed.len(), owned_services);
    let withdrawn_now = planner.withdraw(observed_addresses, &doomed, hold_services.as_ref());
    planner.delete_services(&doomed, &withdrawn_now, hold_services.as_ref());
    let work = planner.service_changes();
    let departures = work.iter().map(|w| w.departures.len()).sum();
    let owned_destinations = match departures {
        0 => 0,
        _ => observed
            .services
            .values()
            .filter(|s| options.ownership.owns_service(&s.key))
            .map(|s| s.destinations.len())
            .sum(),
    };
    let hold_destinations =
        planner.over_limit(DeletionClass::Destinations, departures, owned_destinations);
    for change in work {
        planner.emit(change, hold_destinations.as_ref());
    }
    planner.announce(observed_addresses);
    planner.plan
}

struct Planner<'a> {
    desired: &'a NodeState,
    observed: &'a NodeState,
    now: u64,
    record: &'a DrainRecord,
    options: &'a PlanOptions,
    plan: Plan,
}

/// What one desired service needs, gathered before the destination limit is known.
struct ServiceChange<'a> {
    key: ServiceKey,
    /// `AddService` / `SetService`, then `SetDestination` for destinations that stay.
    head: Vec<Action>,
    /// Observed destinations that left the manifests.
    departures: Vec<&'a Destination>,
    /// `AddDestination`s, already in reverse canonical order, then the `mh` switch if any.
    tail: Vec<Action>,
}

impl<'a> Planner<'a> {
    fn link_name(&self) -> &'a str {
        &self.desired.interface.name
    }

    /// Addresses on the VIP link as observed (none when the link is another or missing).
    fn observed_addresses(&self) -> &'a BTreeSet<IpAddr> {
        static NONE: BTreeSet<IpAddr> = BTreeSet::new();
        let link = &self.observed.interface;
        if link.exists && link.name == self.desired.interface.name {
            &link.addresses
        } else {
            &NONE
        }
    }

    /// The VIP link, sysctls and IPVS timeouts.
    fn node(&mut self) {
        let (desired, observed) = (self.desired, self.observed);
        let link = &observed.interface;
        if desired.interface.exists
            && !(link.name == desired.interface.name && link.exists && link.up)
        {
            self.plan.actions.push(Action::EnsureInterface {
                name: desired.interface.name.clone(),
            });
        }
        for (name, value) in &desired.sysctls {
            let current = observed.sysctls.get(name).map(|v| v.trim());
            if current != Some(value.trim()) {
                self.plan.actions.push(Action::SetSysctl {
                    name: name.clone(),
                    value: value.clone(),
                });
            }
        }
        let (want, have) = (desired.timeouts, observed.timeouts);
        let differs = |w: u32, h: u32| w != 0 && w != h;
        if differs(want.tcp, have.tcp)
            || differs(want.tcp_fin, have.tcp_fin)
            || differs(want.udp, have.udp)
        {
            self.plan
                .actions
                .push(Action::SetTimeouts { timeouts: want });
        }
    }

    /// Owned observed services the manifests no longer ask for.
    fn doomed_services(&self) -> Vec<&'a VirtualService> {
        let own = &self.options.ownership;
        self.observed
            .services
            .values()
            .filter(|s| own.owns_service(&s.key) && !self.desired.services.contains_key(&s.key))
            .collect()
    }

    /// The hold reason when `deletions` of a class exceed its limit (and mass deletion is not
    /// allowed).
    fn over_limit(
        &self,
        class: DeletionClass,
        deletions: usize,
        owned: usize,
    ) -> Option<HoldReason> {
        let limit = match class {
            DeletionClass::Services => self.options.limits.services,
            DeletionClass::Destinations => self.options.limits.destinations,
        };
        let allowed = limit.allowed(owned);
        (!self.options.allow_mass_delete && deletions > allowed).then_some(HoldReason {
            class,
            deletions,
            owned,
            limit,
            allowed,
        })
    }

    /// Withdraws owned addresses that are not desired; returns those withdrawn by this plan.
    /// The address of a VIP whose services are being deleted is held with them.
    fn withdraw(
        &mut self,
        observed_addresses: &BTreeSet<IpAddr>,
        doomed: &[&VirtualService],
        hold: Option<&HoldReason>,
    ) -> BTreeSet<IpAddr> {
        let own = &self.options.ownership;
        // Held: the address of a VIP that loses all its services. A VIP that keeps a service
        // is withdrawn for maintenance, which no deletion limit may stop.
        let held_vips: BTreeSet<IpAddr> = match hold {
            Some(_) => {
                let kept: BTreeSet<IpAddr> = self
                    .desired
                    .services
                    .keys()
                    .filter_map(ServiceKey::vip)
                    .collect();
                doomed
                    .iter()
                    .filter_map(|s| s.key.vip())
                    .filter(|vip| !kept.contains(vip))
                    .collect()
            }
            None => BTreeSet::new(),
        };
        let mut withdrawn = BTreeSet::new();
        for address in observed_addresses {
            if !own.owns_address(address) || self.desired.interface.addresses.contains(address) {
                continue;
            }
            let action = Action::DelAddress {
                interface: self.link_name().to_owned(),
                address: *address,
            };
            match hold {
                Some(reason) if held_vips.contains(address) => {
                    self.plan.held.push(HeldDeletion {
                        action,
                        reason: reason.clone(),
                    });
                }
                _ => {
                    self.plan.actions.push(action);
                    withdrawn.insert(*address);
                }
            }
        }
        withdrawn
    }

    /// Deletes the doomed services that are due; the others wait for the withdraw delay or are
    /// held.
    fn delete_services(
        &mut self,
        doomed: &[&VirtualService],
        withdrawn_now: &BTreeSet<IpAddr>,
        hold: Option<&HoldReason>,
    ) {
        let delay = whole_seconds(self.options.withdraw_delay);
        for service in doomed {
            let action = Action::DelService { key: service.key };
            if let Some(reason) = hold {
                self.plan.held.push(HeldDeletion {
                    action,
                    reason: reason.clone(),
                });
                continue;
            }
            let withdrawal = service.key.vip().and_then(|vip| {
                let at = if withdrawn_now.contains(&vip) {
                    Some(self.now)
                } else {
                    self.record.withdrawals.get(&vip).copied()
                };
                at.map(|at| (vip, at))
            });
            match withdrawal {
                Some((address, since)) if self.now < since.saturating_add(delay) => {
                    self.plan.record.withdrawals.insert(address, since);
                    self.plan.waiting.push(Waiting {
                        action,
                        reason: WaitReason::WithdrawDelay { address },
                        since,
                        due: since.saturating_add(delay),
                    });
                }
                _ => self.plan.actions.push(action),
            }
        }
    }

    /// What each owned desired service needs, in key order; services needing nothing are left
    /// out.
    fn service_changes(&self) -> Vec<ServiceChange<'a>> {
        let own = &self.options.ownership;
        let mut changes = Vec::new();
        for (key, want) in &self.desired.services {
            if !own.owns_service(key) {
                continue;
            }
            let change = match self.observed.services.get(key) {
                None => create_service(want),
                Some(have) => update_service(want, have),
            };
            if !(change.head.is_empty() && change.departures.is_empty() && change.tail.is_empty()) {
                changes.push(change);
            }
        }
        changes
    }

    /// Appends one service's actions; drains start, wait, complete or are held.
    fn emit(&mut self, change: ServiceChange<'a>, hold: Option<&HoldReason>) {
        let ServiceChange {
            key,
            head,
            departures,
            tail,
        } = change;
        self.plan.actions.extend(head);
        let timeout = whole_seconds(self.options.drain_timeout);
        for destination in departures {
            let delete = Action::DelDestination {
                service: key,
                destination: destination.key,
            };
            let since = self
                .record
                .destinations
                .get(&(key, destination.key))
                .copied();
            if let Some(reason) = hold {
                if let Some(since) = since {
                    self.plan
                        .record
                        .destinations
                        .insert((key, destination.key), since);
                }
                self.plan.held.push(HeldDeletion {
                    action: delete,
                    reason: reason.clone(),
                });
                continue;
            }
            let start = since.unwrap_or(self.now);
            let due = start.saturating_add(timeout);
            let quiet = destination.config.weight == 0 && destination.active_connections == 0;
            if quiet || self.now >= due {
                self.plan.actions.push(delete);
                continue;
            }
            if destination.config.weight != 0 {
                self.plan.actions.push(Action::SetDestination {
                    service: key,
                    destination: destination.key,
                    config: DestinationConfig {
                        weight: 0,
                        ..destination.config.clone()
                    },
                });
            }
            self.plan
                .record
                .destinations
                .insert((key, destination.key), start);
            self.plan.waiting.push(Waiting {
                action: delete,
                reason: WaitReason::Drain {
                    active_connections: destination.active_connections,
                },
                since: start,
                due,
            });
        }
        self.plan.actions.extend(tail);
    }

    /// Announces desired owned addresses missing from the link, after everything else.
    fn announce(&mut self, observed_addresses: &BTreeSet<IpAddr>) {
        let own = &self.options.ownership;
        for address in &self.desired.interface.addresses {
            if own.owns_address(address) && !observed_addresses.contains(address) {
                self.plan.actions.push(Action::AddAddress {
                    interface: self.link_name().to_owned(),
                    address: *address,
                });
            }
        }
    }
}

/// A service built from empty: created, then filled in reverse canonical order (the kernel
/// inserts at the head). `mh` with several destinations is filled under `rr` and switched last.
fn create_service(want: &VirtualService) -> ServiceChange<'_> {
    let key = want.key;
    let mut canonical: Vec<&Destination> = want.destinations.iter().collect();
    canonical.sort_by_key(|d| d.key);
    canonical.dedup_by_key(|d| d.key);
    let switch_to_mh = want.config.scheduler == Scheduler::Mh && canonical.len() > 1;
    let mut create = want.config.clone();
    if switch_to_mh {
        // The mh flags mean nothing to rr; they come with the switch.
        create.scheduler = Scheduler::Rr;
        create.flags &= !SCHEDULER_FLAGS;
    }
    let mut tail = add_destinations(key, want.config.scheduler, canonical.iter().rev().copied());
    if switch_to_mh {
        tail.push(Action::SetService {
            key,
            config: want.config.clone(),
        });
    }
    ServiceChange {
        key,
        head: vec![Action::AddService {
            key,
            config: create,
        }],
        departures: Vec::new(),
        tail,
    }
}

/// A service that exists: changed in place; destinations updated, added (reverse canonical
/// order) or departing.
fn update_service<'a>(want: &'a VirtualService, have: &'a VirtualService) -> ServiceChange<'a> {
    let key = want.key;
    let mut change = ServiceChange {
        key,
        head: Vec::new(),
        departures: Vec::new(),
        tail: Vec::new(),
    };
    if !same_service(&want.config, &have.config) {
        change.head.push(Action::SetService {
            key,
            config: want.config.clone(),
        });
    }
    let set = |d: &Destination| Action::SetDestination {
        service: key,
        destination: d.key,
        config: d.config.clone(),
    };
    // Fast path: the kernel's list holds exactly the desired destinations in the same order
    // (the usual case once converged).
    let same_keys = want.destinations.len() == have.destinations.len()
        && want
            .destinations
            .iter()
            .zip(&have.destinations)
            .all(|(w, h)| w.key == h.key);
    if same_keys {
        for (w, h) in want.destinations.iter().zip(&have.destinations) {
            if w.config != h.config {
                change.head.push(set(w));
            }
        }
        return change;
    }
    let mut wanted: Vec<&Destination> = want.destinations.iter().collect();
    if !wanted.is_sorted_by_key(|d| d.key) {
        wanted.sort_by_key(|d| d.key);
    }
    let mut present: Vec<&Destination> = have.destinations.iter().collect();
    present.sort_unstable_by_key(|d| d.key);
    let mut additions = Vec::new();
    let (mut w, mut h) = (wanted.iter().peekable(), present.iter().peekable());
    loop {
        match (w.peek(), h.peek()) {
            (Some(a), Some(b)) if a.key == b.key => {
                if a.config != b.config {
                    change.head.push(set(a));
                }
                w.next();
                h.next();
            }
            (Some(a), Some(b)) if a.key < b.key => {
                additions.push(*a);
                w.next();
            }
            (Some(a), None) => {
                additions.push(*a);
                w.next();
            }
            (_, Some(b)) => {
                change.departures.push(*b);
                h.next();
            }
            (None, None) => break,
        }
    }
    additions.dedup_by_key(|d| d.key);
    change.tail = add_destinations(
        key,
        want.config.scheduler,
        additions.iter().rev().map(|d| **d),
    );
    change
}

/// Adds destinations in the given order (the kernel puts each at the head of its list). On
/// `mh`, a draining destination is added with its manifest weight and then set to 0, so its
/// table slots are those it holds on a node that saw it active (see
/// [`Destination::last_weight`]); the weight-0 steps come after every add, before the table is
/// used.
fn add_destinations<'a>(
    key: ServiceKey,
    scheduler: Scheduler,
    in_order: impl Iterator<Item = &'a Destination>,
) -> Vec<Action> {
    let mut adds = Vec::new();
    let mut quiesce = Vec::new();
    for d in in_order {
        let mut config = d.config.clone();
        if scheduler == Scheduler::Mh && config.weight == 0 && d.last_weight > 0 {
            config.weight = d.last_weight;
            quiesce.push(Action::SetDestination {
                service: key,
                destination: d.key,
                config: d.config.clone(),
            });
        }
        adds.push(Action::AddDestination {
            service: key,
            destination: d.key,
            config,
        });
    }
    adds.extend(quiesce);
    adds
}

/// `IP_VS_SVC_F_SCHED1..3`: their meaning belongs to the scheduler.
const SCHEDULER_FLAGS: u32 = 0x38;

/// Equal as the kernel would report them, ignoring the internal `hashed` flag.
fn same_service(want: &ServiceConfig, have: &ServiceConfig) -> bool {
    want.scheduler == have.scheduler
        && want.flags & !FLAG_HASHED == have.flags & !FLAG_HASHED
        && want.timeout == have.timeout
        && want.netmask == have.netmask
        && want.pe_name == have.pe_name
}

/// Seconds, rounded up: a deadline is never earlier than configured.
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel_sim::apply_action;
    use crate::model::{Forward, Interface, Stats};
    use balanced_schemas::v1::Protocol;

    const NOW: u64 = 1_800_000_000;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn options() -> PlanOptions {
        PlanOptions {
            ownership: Ownership {
                interface: "balanced0".into(),
                vip_ranges: vec!["198.51.100.0/24".parse().unwrap()],
                fwmark_ranges: Vec::new(),
            },
            drain_timeout: Duration::from_secs(300),
            withdraw_delay: Duration::from_secs(5),
            limits: v1::DeletionLimits::default(),
            allow_mass_delete: false,
        }
    }

    fn key(vip: &str) -> ServiceKey {
        ServiceKey::Inet {
            protocol: Protocol::Tcp,
            vip: vip.parse().unwrap(),
            port: 80,
        }
    }

    fn dest(address: &str, weight: u32, active: u32) -> Destination {
        Destination {
            key: DestinationKey {
                address: address.parse().unwrap(),
                port: 80,
            },
            config: DestinationConfig {
                forwarding: Forward::Direct,
                weight,
                upper_threshold: 0,
                lower_threshold: 0,
            },
            active_connections: active,
            inactive_connections: 0,
            stats: Stats::default(),
            last_weight: 0,
        }
    }

    fn service(vip: &str, destinations: Vec<Destination>) -> VirtualService {
        VirtualService {
            key: key(vip),
            config: ServiceConfig {
                scheduler: Scheduler::Wlc,
                flags: 0,
                timeout: 0,
                netmask: u32::MAX,
                pe_name: String::new(),
            },
            destinations,
            stats: Stats::default(),
        }
    }

    fn node(services: Vec<VirtualService>, addresses: &[&str]) -> NodeState {
        NodeState {
            interface: Interface {
                name: "balanced0".into(),
                exists: true,
                up: true,
                addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
            },
            services: services.into_iter().map(|s| (s.key, s)).collect(),
            ..NodeState::default()
        }
    }

    fn name(action: &Action) -> &'static str {
        match action {
            Action::EnsureInterface { .. } => "link",
            Action::AddAddress { .. } => "+address",
            Action::DelAddress { .. } => "-address",
            Action::AddService { .. } => "+service",
            Action::SetService { .. } => "~service",
            Action::DelService { .. } => "-service",
            Action::AddDestination { .. } => "+destination",
            Action::SetDestination { .. } => "~destination",
            Action::DelDestination { .. } => "-destination",
            Action::SetSysctl { .. } => "sysctl",
            Action::SetTimeouts { .. } => "timeouts",
        }
    }

    #[test]
    fn withdraw_first_then_delete_after_the_delay_and_announce_last() {
        let a = "198.51.100.1";
        let b = "198.51.100.2";
        let desired = node(
            vec![
                service(a, vec![dest("10.0.0.1", 1, 0)]),
                service("198.51.100.3", vec![]),
            ],
            &[a, "198.51.100.3"],
        );
        let observed = node(
            vec![
                service(b, vec![dest("10.0.0.1", 1, 0)]),
                service("198.51.100.3", vec![]),
            ],
            &[b, "198.51.100.3"],
        );
        let first = plan(
            &desired,
            &observed,
            at(NOW),
            &DrainRecord::default(),
            &options(),
        );
        let names: Vec<_> = first.actions.iter().map(name).collect();
        assert_eq!(names, ["-address", "+service", "+destination", "+address"]);
        assert_eq!(first.waiting.len(), 1);
        assert_eq!(first.waiting[0].action, Action::DelService { key: key(b) });
        assert_eq!(first.waiting[0].due, NOW + 5);
        assert_eq!(first.record.withdrawals[&b.parse().unwrap()], NOW);

        let mut state = observed.clone();
        for action in &first.actions {
            apply_action(&mut state, action).unwrap();
        }
        let early = plan(&desired, &state, at(NOW + 4), &first.record, &options());
        assert!(early.actions.is_empty(), "{:?}", early.actions);
        assert_eq!(early.record, first.record, "the withdrawal time is kept");
        let due = plan(&desired, &state, at(NOW + 5), &first.record, &options());
        assert_eq!(due.actions, [Action::DelService { key: key(b) }]);
        assert_eq!(due.record, DrainRecord::default());
    }

    /// `mh` keeps a weight-0 destination's table slots from its last non-zero weight. A node
    /// building the service afresh must give a draining backend the same slots, so it adds it
    /// with its manifest weight and quiesces it before the table is switched to `mh`.
    #[test]
    fn a_draining_backend_on_a_fresh_mh_service_keeps_its_table_weight() {
        let mut draining = dest("10.0.0.2", 0, 0);
        draining.last_weight = 3;
        let mut want = service("198.51.100.1", vec![dest("10.0.0.1", 1, 0), draining]);
        want.config.scheduler = Scheduler::Mh;
        let desired = node(vec![want], &["198.51.100.1"]);
        let observed = node(Vec::new(), &[]);
        let plan = plan(
            &desired,
            &observed,
            at(NOW),
            &DrainRecord::default(),
            &options(),
        );

        let weight_of = |action: &Action| match action {
            Action::AddDestination {
                destination,
                config,
                ..
            }
            | Action::SetDestination {
                destination,
                config,
                ..
            } => Some((destination.address.to_string(), config.weight)),
            _ => None,
        };
        let steps: Vec<_> = plan
            .actions
            .iter()
            .map(|a| (name(a), weight_of(a)))
            .collect();
        let d = |a: &str, w| Some((a.to_owned(), w));
        assert_eq!(
            steps,
            vec![
                ("+service", None),
                ("+destination", d("10.0.0.2", 3)),
                ("+destination", d("10.0.0.1", 1)),
                ("~destination", d("10.0.0.2", 0)),
                ("~service", None),
                ("+address", None),
            ]
        );

        let mut state = observed;
        for action in &plan.actions {
            apply_action(&mut state, action).unwrap();
        }
        let again = super::plan(&desired, &state, at(NOW), &plan.record, &options());
        assert!(
            plan_is_converged(&desired, &state, &again),
            "{:?}",
            again.actions
        );
    }

    /// Only `mh` reads the last weight: other schedulers add a draining backend at weight 0.
    #[test]
    fn a_draining_backend_elsewhere_is_added_at_weight_zero() {
        let mut draining = dest("10.0.0.2", 0, 0);
        draining.last_weight = 3;
        let desired = node(
            vec![service("198.51.100.1", vec![draining])],
            &["198.51.100.1"],
        );
        let plan = plan(
            &desired,
            &node(Vec::new(), &[]),
            at(NOW),
            &DrainRecord::default(),
            &options(),
        );
        let weights: Vec<u32> =
            plan.actions
                .iter()
                .filter_map(|a| match a {
                    Action::AddDestination { config, .. }
                    | Action::SetDestination { config, .. } => Some(config.weight),
                    _ => None,
                })
                .collect();
        assert_eq!(weights, vec![0]);
    }

    fn plan_is_converged(desired: &NodeState, observed: &NodeState, again: &Plan) -> bool {
        let weights = |s: &NodeState| -> Vec<u32> {
            s.services
                .values()
                .flat_map(|v| v.destinations.iter().map(|d| d.config.weight))
                .collect()
        };
        again.is_empty() && weights(desired) == weights(observed)
    }

    #[test]
    fn a_re_added_backend_cancels_its_drain() {
        let desired = node(
            vec![service("198.51.100.1", vec![dest("10.0.0.1", 2, 0)])],
            &["198.51.100.1"],
        );
        let observed = node(
            vec![service("198.51.100.1", vec![dest("10.0.0.1", 0, 4)])],
            &["198.51.100.1"],
        );
        let mut record = DrainRecord::default();
        record
            .destinations
            .insert((key("198.51.100.1"), dest("10.0.0.1", 0, 0).key), NOW - 30);
        let p = plan(&desired, &observed, at(NOW), &record, &options());
        assert_eq!(p.actions.len(), 1);
        assert!(
            matches!(&p.actions[0], Action::SetDestination { config, .. } if config.weight == 2)
        );
        assert_eq!(p.record, DrainRecord::default());
    }

    #[test]
    fn a_drain_keeps_its_start_and_repairs_a_restored_weight() {
        let desired = node(vec![service("198.51.100.1", vec![])], &["198.51.100.1"]);
        let observed = node(
            vec![service("198.51.100.1", vec![dest("10.0.0.1", 1, 2)])],
            &["198.51.100.1"],
        );
        let mut record = DrainRecord::default();
        let drain = (key("198.51.100.1"), dest("10.0.0.1", 0, 0).key);
        record.destinations.insert(drain, NOW - 10);
        let p = plan(&desired, &observed, at(NOW), &record, &options());
        assert!(
            matches!(&p.actions[..], [Action::SetDestination { config, .. }] if config.weight == 0)
        );
        assert_eq!(p.waiting[0].since, NOW - 10);
        assert_eq!(p.waiting[0].due, NOW + 290);
        assert_eq!(p.record.destinations[&drain], NOW - 10);
    }

    #[test]
    fn a_backend_draining_in_the_manifests_stays_at_weight_zero() {
        let desired = node(
            vec![service("198.51.100.1", vec![dest("10.0.0.1", 0, 0)])],
            &["198.51.100.1"],
        );
        let observed = node(
            vec![service("198.51.100.1", vec![dest("10.0.0.1", 1, 0)])],
            &["198.51.100.1"],
        );
        let p = plan(
            &desired,
            &observed,
            at(NOW),
            &DrainRecord::default(),
            &options(),
        );
        assert!(
            matches!(&p.actions[..], [Action::SetDestination { config, .. }] if config.weight == 0)
        );
        assert!(p.waiting.is_empty() && p.record == DrainRecord::default());
    }

    #[test]
    fn desired_state_outside_the_ownership_is_ignored() {
        let desired = node(
            vec![service("203.0.113.1", vec![dest("10.0.0.1", 1, 0)])],
            &["203.0.113.1"],
        );
        let observed = node(vec![], &[]);
        let p = plan(
            &desired,
            &observed,
            at(NOW),
            &DrainRecord::default(),
            &options(),
        );
        assert!(p.actions.is_empty(), "{:?}", p.actions);
    }

    #[test]
    fn too_many_departures_hold_the_whole_class_and_nothing_else() {
        let desired = node(
            vec![service("198.51.100.1", vec![dest("10.0.0.9", 1, 0)])],
            &["198.51.100.1"],
        );
        let observed = node(
            vec![service(
                "198.51.100.1",
                vec![dest("10.0.0.1", 1, 0), dest("10.0.0.2", 1, 0)],
            )],
            &["198.51.100.1"],
        );
        let mut options = options();
        options.limits.destinations = Limit::Count(1);
        let p = plan(
            &desired,
            &observed,
            at(NOW),
            &DrainRecord::default(),
            &options,
        );
        let names: Vec<_> = p.actions.iter().map(name).collect();
        assert_eq!(names, ["+destination"], "the addition still applies");
        assert_eq!(p.held.len(), 2);
        assert!(
            p.held
                .iter()
                .all(|h| h.reason.allowed == 1 && h.reason.deletions == 2)
        );
        options.allow_mass_delete = true;
        let p = plan(
            &desired,
            &observed,
            at(NOW),
            &DrainRecord::default(),
            &options,
        );
        let names: Vec<_> = p.actions.iter().map(name).collect();
        assert_eq!(names, ["~destination", "~destination", "+destination"]);
    }

    #[test]
    fn maintenance_withdraws_even_while_service_deletions_are_held() {
        let (a, b, c) = ("198.51.100.1", "198.51.100.2", "198.51.100.3");
        // Maintenance: no address desired. VIP a keeps one of its two services; b and c lose
        // their only one. Three of four services go: over the 50 % limit.
        let mut kept = service(a, vec![]);
        kept.key = ServiceKey::Inet {
            protocol: Protocol::Udp,
            vip: a.parse().unwrap(),
            port: 53,
        };
        let desired = node(vec![kept.clone()], &[]);
        let observed = node(
            vec![
                kept,
                service(a, vec![]),
                service(b, vec![]),
                service(c, vec![]),
            ],
            &[a, b, c],
        );
        let p = plan(
            &desired,
            &observed,
            at(NOW),
            &DrainRecord::default(),
            &options(),
        );
        assert_eq!(
            p.actions,
            [Action::DelAddress {
                interface: "balanced0".into(),
                address: a.parse().unwrap()
            }]
        );
        let held: Vec<_> = p.held.iter().map(|h| name(&h.action)).collect();
        assert_eq!(
            held,
            ["-address", "-address", "-service", "-service", "-service"]
        );
    }

    #[test]
    fn drain_records_round_trip_through_json() {
        let mut record = DrainRecord::default();
        record
            .destinations
            .insert((key("198.51.100.1"), dest("10.0.0.1", 0, 0).key), NOW);
        record
            .withdrawals
            .insert("198.51.100.2".parse().unwrap(), NOW);
        let json = serde_json::to_string(&record).unwrap();
        assert_eq!(serde_json::from_str::<DrainRecord>(&json).unwrap(), record);
    }
}
