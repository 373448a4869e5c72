//! VIP allocation: pools of addresses and the plan of which Service gets which address.
//!
//! Pure: the caller passes every Service and the time; the plan is data (addresses to write
//! into `status.loadBalancer.ingress`, problems to publish as Events). Rules: an address in
//! any Service's status is taken, whoever wrote it; an address released by a Service is held
//! back for the quarantine before automatic reuse; an explicit request (`ip-request`,
//! `spec.loadBalancerIP`) is honoured or reported, never replaced by a random pick; otherwise
//! the lowest free address of the Service's pool is taken. Services are served oldest first.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;

use crate::annotations;
use crate::config::RenderConfig;
use crate::manifest::{Family, ServiceKey};
use crate::render::{families, is_ours, service_key};

/// An inclusive range of addresses of one family, written as a CIDR or `FIRST-LAST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IpRange {
    pub first: IpAddr,
    pub last: IpAddr,
}

impl IpRange {
    pub fn family(&self) -> Family {
        Family::of(&self.first)
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        Family::of(ip) == self.family() && (self.first..=self.last).contains(ip)
    }

    /// How many addresses the range holds.
    pub fn size(&self) -> u128 {
        (to_u128(&self.last) - to_u128(&self.first)).saturating_add(1)
    }

    fn overlaps(&self, other: &IpRange) -> bool {
        self.family() == other.family() && self.first <= other.last && other.first <= self.last
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl FromStr for IpRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(IpRange {
                first: net.network(),
                last: net.broadcast(),
            });
        }
        let bad = || format!("invalid address range {s:?}: expected a CIDR or FIRST-LAST");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let first: IpAddr = a.trim().parse().map_err(|_| bad())?;
        let last: IpAddr = b.trim().parse().map_err(|_| bad())?;
        if Family::of(&first) != Family::of(&last) {
            return Err(format!("invalid address range {s:?}: mixes IPv4 and IPv6"));
        }
        if first > last {
            return Err(format!(
                "invalid address range {s:?}: {first} is above {last}"
            ));
        }
        Ok(IpRange { first, last })
    }
}

fn to_u128(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(*v4)),
        IpAddr::V6(v6) => u128::from(*v6),
    }
}

fn from_u128(family: Family, n: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(u32::try_from(n).unwrap_or(u32::MAX))),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

/// The configured pools by name: non-overlapping, checked when built.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pools {
    pools: BTreeMap<String, Vec<IpRange>>,
    default: Option<String>,
}

impl Pools {
    /// Builds the pools; `default` is the pool of Services without `ip-pool` (when absent and
    /// there is exactly one pool, that one).
    pub fn new(
        pools: BTreeMap<String, Vec<IpRange>>,
        default: Option<String>,
    ) -> Result<Pools, String> {
        let all: Vec<(&String, &IpRange)> = pools
            .iter()
            .flat_map(|(name, ranges)| ranges.iter().map(move |r| (name, r)))
            .collect();
        for (i, (name_a, a)) in all.iter().enumerate() {
            for (name_b, b) in &all[i + 1..] {
                if a.overlaps(b) {
                    return Err(format!(
                        "pool {name_a} range {a} overlaps pool {name_b} range {b}"
                    ));
                }
            }
        }
        if let Some(name) = pools.iter().find(|(_, r)| r.is_empty()).map(|(n, _)| n) {
            return Err(format!("pool {name} has no address range"));
        }
        let default = match default {
            Some(d) if !pools.contains_key(&d) => {
                return Err(format!("default pool {d} is not configured"));
            }
            Some(d) => Some(d),
            None if pools.len() == 1 => pools.keys().next().cloned(),
            None => None,
        };
        Ok(Pools { pools, default })
    }

    /// Parses `NAME=RANGE[,RANGE…]` arguments.
    pub fn parse(args: &[String], default: Option<String>) -> Result<Pools, String> {
        let mut pools: BTreeMap<String, Vec<IpRange>> = BTreeMap::new();
        for arg in args {
            let (name, ranges) = arg
                .split_once('=')
                .ok_or_else(|| format!("invalid pool {arg:?}: expected NAME=RANGE[,RANGE…]"))?;
            let name = name.trim();
            if name.is_empty() {
                return Err(format!("invalid pool {arg:?}: the name is empty"));
            }
            let entry = pools.entry(name.to_owned()).or_default();
            for range in ranges.split(',').filter(|r| !r.trim().is_empty()) {
                entry.push(range.parse().map_err(|e| format!("pool {name}: {e}"))?);
            }
        }
        Pools::new(pools, default)
    }

    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pools.keys().map(String::as_str)
    }

    /// The pool holding `ip`.
    pub fn pool_of(&self, ip: &IpAddr) -> Option<&str> {
        self.pools
            .iter()
            .find(|(_, ranges)| ranges.iter().any(|r| r.contains(ip)))
            .map(|(name, _)| name.as_str())
    }

    /// Addresses per pool and family: (size, in use).
    pub fn usage(&self, used: &BTreeSet<IpAddr>) -> Vec<(String, Family, u128, u128)> {
        let mut out = Vec::new();
        for (name, ranges) in &self.pools {
            for family in [Family::V4, Family::V6] {
                let of_family: Vec<&IpRange> =
                    ranges.iter().filter(|r| r.family() == family).collect();
                if of_family.is_empty() {
                    continue;
                }
                let size = of_family
                    .iter()
                    .map(|r| r.size())
                    .fold(0u128, u128::saturating_add);
                let in_use = used
                    .iter()
                    .filter(|ip| of_family.iter().any(|r| r.contains(ip)))
                    .count() as u128;
                out.push((name.clone(), family, size, in_use));
            }
        }
        out
    }
}

/// Why an allocation did not happen as asked; the Event's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AllocReason {
    /// An `ip-request` or `spec.loadBalancerIP` entry is not an address.
    InvalidIPRequest,
    /// No requested address is free and inside a pool.
    IPRequestCriteriaNotMet,
    /// The pool has no free address of the family.
    OutOfLoadBalancerIP,
    /// `ip-pool` names no configured pool, or there is no default pool.
    UnknownIPPool,
    /// The Service's status holds an address another (older) Service holds too.
    DuplicateLoadBalancerIP,
}

impl AllocReason {
    pub fn as_str(self) -> &'static str {
        match self {
            AllocReason::InvalidIPRequest => "InvalidIPRequest",
            AllocReason::IPRequestCriteriaNotMet => "IPRequestCriteriaNotMet",
            AllocReason::OutOfLoadBalancerIP => "OutOfLoadBalancerIP",
            AllocReason::UnknownIPPool => "UnknownIPPool",
            AllocReason::DuplicateLoadBalancerIP => "DuplicateLoadBalancerIP",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AllocProblem {
    pub service: ServiceKey,
    pub reason: AllocReason,
    pub message: String,
}

/// Addresses to write into one Service's status: all its ingress addresses, old and new.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Assignment {
    pub service: ServiceKey,
    /// The addresses newly allocated.
    pub new: Vec<IpAddr>,
    /// The full `status.loadBalancer.ingress` address list to write.
    pub ingress: Vec<IpAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub assignments: Vec<Assignment>,
    pub problems: Vec<AllocProblem>,
    /// Every address in use after the plan (for pool usage metrics).
    pub used: BTreeSet<IpAddr>,
    /// Addresses in quarantine.
    pub quarantined: BTreeSet<IpAddr>,
}

/// The allocator's memory between plans: who held which address, and when addresses were
/// released.
#[derive(Debug, Clone)]
pub struct Allocator {
    pub pools: Pools,
    pub quarantine: Duration,
    held: BTreeMap<IpAddr, ServiceKey>,
    released: BTreeMap<IpAddr, Instant>,
    /// Addresses written into a status but not yet seen through the watch.
    pending: BTreeMap<IpAddr, (ServiceKey, Instant)>,
}

/// How long an address written into a status stays reserved while the watch has not shown it.
const PENDING_TIMEOUT: Duration = Duration::from_secs(300);

impl Allocator {
    pub fn new(pools: Pools, quarantine: Duration) -> Self {
        Allocator {
            pools,
            quarantine,
            held: BTreeMap::new(),
            released: BTreeMap::new(),
            pending: BTreeMap::new(),
        }
    }

    /// Plans the allocations every Service of ours still needs.
    pub fn plan<'a>(
        &mut self,
        services: impl IntoIterator<Item = &'a Service>,
        config: &RenderConfig,
        now: Instant,
    ) -> Plan {
        let mut plan = Plan::default();
        let mut ordered: Vec<(&Service, ServiceKey)> = services
            .into_iter()
            .filter_map(|s| Some((s, service_key(s)?)))
            .collect();
        ordered.sort_by(|(a, ka), (b, kb)| {
            let created = |s: &Service| s.metadata.creation_timestamp.as_ref().map(|t| t.0);
            created(a).cmp(&created(b)).then_with(|| ka.cmp(kb))
        });

        let mut held: BTreeMap<IpAddr, ServiceKey> = BTreeMap::new();
        for (service, key) in &ordered {
            for ip in ingress(service) {
                if let Some(first) = held.get(&ip) {
                    if first != key {
                        plan.problems.push(AllocProblem {
                            service: key.clone(),
                            reason: AllocReason::DuplicateLoadBalancerIP,
                            message: format!(
                                "{key}: address {ip} in its status is held by {first} too"
                            ),
                        });
                    }
                } else {
                    held.insert(ip, key.clone());
                }
            }
        }
        for ip in self.held.keys() {
            if !held.contains_key(ip) {
                self.released.insert(*ip, now);
            }
        }
        let quarantine = self.quarantine;
        self.released.retain(|ip, at| {
            !held.contains_key(ip) && now.saturating_duration_since(*at) < quarantine
        });
        self.held = held;
        let seen = &self.held;
        self.pending.retain(|ip, (_, at)| {
            !seen.contains_key(ip) && now.saturating_duration_since(*at) < PENDING_TIMEOUT
        });
        let mut taken: BTreeSet<IpAddr> = self
            .held
            .keys()
            .chain(self.pending.keys())
            .copied()
            .collect();

        for (service, key) in ordered {
            if !is_ours(service, config) {
                continue;
            }
            let current = ingress(service);
            let missing: Vec<Family> = families(service)
                .into_iter()
                .filter(|f| !current.iter().any(|ip| Family::of(ip) == *f))
                .collect();
            if missing.is_empty() {
                continue;
            }
            let mut problem = |reason, message: String| {
                plan.problems.push(AllocProblem {
                    service: key.clone(),
                    reason,
                    message: format!("{key}: {message}"),
                })
            };
            let requests = match requested(service) {
                Ok(r) => r,
                Err(message) => {
                    problem(AllocReason::InvalidIPRequest, message);
                    continue;
                }
            };
            let empty = BTreeMap::new();
            let service_annotations = service.metadata.annotations.as_ref().unwrap_or(&empty);
            let pool = match annotations::lookup(service_annotations, "ip-pool") {
                Some((annotation, name)) => {
                    if !self.pools.pools.contains_key(name.trim()) {
                        let names: Vec<&str> = self.pools.names().collect();
                        problem(
                            AllocReason::UnknownIPPool,
                            format!(
                                "{annotation} {name:?} is not a configured pool ({})",
                                names.join(", ")
                            ),
                        );
                        continue;
                    }
                    Some(name.trim().to_owned())
                }
                None => self.pools.default.clone(),
            };
            let mut new = Vec::new();
            for family in missing {
                let wanted: Vec<IpAddr> = requests
                    .iter()
                    .copied()
                    .filter(|ip| Family::of(ip) == family)
                    .collect();
                if !wanted.is_empty() {
                    let mut refusals = Vec::new();
                    let mut chosen = None;
                    for ip in wanted {
                        let holder = self.held.get(&ip).or(self.pending.get(&ip).map(|(k, _)| k));
                        match (self.pools.pool_of(&ip), holder) {
                            (_, Some(holder)) => refusals.push(format!("{ip} is held by {holder}")),
                            _ if taken.contains(&ip) => {
                                refusals.push(format!("{ip} was just given to an older Service"))
                            }
                            (None, None) => refusals.push(format!("{ip} is in no pool")),
                            (Some(p), None) if pool.as_deref().is_some_and(|want| want != p) => {
                                refusals.push(format!(
                                    "{ip} is in pool {p}, not {}",
                                    pool.as_deref().unwrap_or_default()
                                ))
                            }
                            (Some(_), None) => {
                                chosen = Some(ip);
                                break;
                            }
                        }
                    }
                    match chosen {
                        Some(ip) => {
                            taken.insert(ip);
                            new.push(ip);
                        }
                        None => problem(
                            AllocReason::IPRequestCriteriaNotMet,
                            format!(
                                "no requested {family} address can be given: {}",
                                refusals.join("; ")
                            ),
                        ),
                    }
                    continue;
                }
                let Some(pool_name) = &pool else {
                    problem(
                        AllocReason::UnknownIPPool,
                        "no balanced.io/ip-pool annotation and no default pool".to_owned(),
                    );
                    break;
                };
                let ranges = &self.pools.pools[pool_name];
                let free = ranges
                    .iter()
                    .filter(|r| r.family() == family)
                    .find_map(|r| lowest_free(r, &taken, &self.released));
                match free {
                    Some(ip) => {
                        taken.insert(ip);
                        new.push(ip);
                    }
                    None => problem(
                        AllocReason::OutOfLoadBalancerIP,
                        format!("pool {pool_name} has no free {family} address"),
                    ),
                }
            }
            if !new.is_empty() {
                let mut ingress = current.clone();
                ingress.extend(&new);
                plan.assignments.push(Assignment {
                    service: key.clone(),
                    new,
                    ingress,
                });
            }
        }
        plan.used = taken;
        plan.quarantined = self.released.keys().copied().collect();
        plan.problems.sort();
        plan
    }

    /// Records that `ip` now belongs to `service` (its status PATCH succeeded), so a plan made
    /// before the watch shows it does not give it away again.
    pub fn confirm(&mut self, service: &ServiceKey, ip: IpAddr, now: Instant) {
        self.pending.insert(ip, (service.clone(), now));
    }
}

/// The lowest address of `range` neither taken nor quarantined. Bounded by the number of
/// taken and quarantined addresses, so an IPv6 /64 costs nothing.
fn lowest_free(
    range: &IpRange,
    taken: &BTreeSet<IpAddr>,
    quarantined: &BTreeMap<IpAddr, Instant>,
) -> Option<IpAddr> {
    let family = range.family();
    let (first, last) = (to_u128(&range.first), to_u128(&range.last));
    let mut candidate = first;
    loop {
        let ip = from_u128(family, candidate);
        if !taken.contains(&ip) && !quarantined.contains_key(&ip) {
            return Some(ip);
        }
        if candidate >= last {
            return None;
        }
        candidate += 1;
    }
}

/// The addresses in a Service's `status.loadBalancer.ingress`.
pub fn ingress(service: &Service) -> Vec<IpAddr> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect()
}

/// The addresses a Service asks for, in preference order: `ip-request` (a comma list), else
/// `spec.loadBalancerIP`. Any unparsable entry makes the whole request an error.
pub fn requested(service: &Service) -> Result<Vec<IpAddr>, String> {
    let empty = BTreeMap::new();
    let service_annotations = service.metadata.annotations.as_ref().unwrap_or(&empty);
    if let Some((annotation, value)) = annotations::lookup(service_annotations, "ip-request") {
        return value
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| {
                e.parse::<IpAddr>().map_err(|_| {
                    format!("{annotation} entry {e:?} is not an IP address; nothing is allocated")
                })
            })
            .collect();
    }
    match service
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_ip.as_deref())
    {
        Some(ip) if !ip.trim().is_empty() => ip.trim().parse().map(|ip| vec![ip]).map_err(|_| {
            format!("spec.loadBalancerIP {ip:?} is not an IP address; nothing is allocated")
        }),
        _ => Ok(Vec::new()),
    }
}
