//! The planner: `plan(desired, observed, now, record, options) -> Plan`, a pure, deterministic
//! function. A [`Plan`] is data — ordered actions to apply now, deletions held by `maxDeletions`,
//! deletions waiting for a drain or the withdraw delay, and the drain record to persist.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use balanced_schemas::v1::{self, Limit};
use serde::{Deserialize, Serialize};

use crate::dataplane::Action;
use crate::model::{DestinationKey, NodeState, ServiceKey};
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

/// Plans the actions that take `observed` to `desired` (rules: issue 3 §4, documented on the
/// helpers below).
pub fn plan(
    desired: &NodeState,
    observed: &NodeState,
    now: SystemTime,
    record: &DrainRecord,
    options: &PlanOptions,
) -> Plan {
    let _ = (desired, observed, now, record, options);
    todo!("planner body follows the contract commit")
}
