//! Executing a plan — "one attempt": every action is tried, each one logged with its one-line
//! diff; a failing action is reported with the kernel's errno and does not stop the independent
//! ones. Only actions that cannot succeed or must not run after a failure are skipped, and
//! reported as such:
//! - after a failed `AddService`, the destination and service changes of that service, and the
//!   announcement (`AddAddress`) of its VIP — a VIP is announced only once its services exist;
//! - after a failed `EnsureInterface`, every address on that link;
//! - after a failed withdrawal (`DelAddress`), the deletion of that VIP's services — a VIP is
//!   never left announced without its services.
//!
//! Those are the only orderings between actions the kernel cares about, so the plan runs in
//! **waves**: an action goes in the wave after the latest one holding an action it depends on
//! (wave 0 when none), and each wave reaches the dataplane in one `apply_all`, which the kernel
//! dataplane pipelines many requests per `sendmsg`. Within a wave, and so for everything that
//! touches one service, the plan's order is kept. From empty that is four round trips' worth of
//! waiting — the link, every service, every destination, every address — instead of one per
//! service.
//!
//! A wave's lines are written once the dataplane has answered the whole wave, and each carries
//! the time its own answer came ([`crate::dataplane::Applied`]): the log says when a change was
//! made, not how long the hundred thousand lines before it took to write.
//!
//! Then [`verify`]: observe again and plan again; any action left is a difference.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::dataplane::{Action, ActionError, Applied, Dataplane, Errno};
use crate::display::Described;
use crate::kernel_sim;
use crate::model::{NodeState, ServiceKey};
use crate::plan::{DrainRecord, Plan, PlanOptions, plan};

/// One action that did not happen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub action: Action,
    /// `None` when skipped because an action it depends on failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<Errno>,
    pub message: String,
}

/// What an execution did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub applied: usize,
    pub failures: Vec<Failure>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// What failed so far, for the dependency rules of the module doc.
#[derive(Default)]
struct Blocked {
    services: BTreeSet<ServiceKey>,
    announce: BTreeSet<IpAddr>,
    interfaces: BTreeSet<String>,
    withdraw: BTreeSet<IpAddr>,
}

impl Blocked {
    /// The failed action this one depends on, if any.
    fn blocks(&self, action: &Action) -> Option<String> {
        match action {
            Action::AddDestination { service, .. }
            | Action::SetDestination { service, .. }
            | Action::DelDestination { service, .. }
                if self.services.contains(service) =>
            {
                Some(format!("adding service {service} failed"))
            }
            Action::SetService { key, .. } if self.services.contains(key) => {
                Some(format!("adding service {key} failed"))
            }
            Action::AddAddress { interface, .. } if self.interfaces.contains(interface) => {
                Some(format!("setting up interface {interface} failed"))
            }
            Action::AddAddress { address, .. } if self.announce.contains(address) => {
                Some(format!("a service of VIP {address} could not be added"))
            }
            Action::DelService { key } => key
                .vip()
                .filter(|vip| self.withdraw.contains(vip))
                .map(|vip| format!("withdrawing VIP {vip} failed")),
            _ => None,
        }
    }

    fn record(&mut self, action: &Action) {
        match action {
            Action::AddService { key, .. } => {
                self.services.insert(*key);
                if let Some(vip) = key.vip() {
                    self.announce.insert(vip);
                }
            }
            Action::EnsureInterface { name } => {
                self.interfaces.insert(name.clone());
            }
            Action::DelAddress { address, .. } => {
                self.withdraw.insert(*address);
            }
            _ => {}
        }
    }
}

/// Applies `actions` on `dataplane`, wave by wave (see the module doc). `state` is the
/// observation the plan was made against; each applied action is applied to it too, with the
/// kernel's semantics (the daemon keeps it as its cached observation), and each log line shows
/// what a change replaced.
pub fn execute(
    dataplane: &mut dyn Dataplane,
    actions: &[Action],
    state: &mut NodeState,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut blocked = Blocked::default();
    for wave in waves(actions) {
        let mut send: Vec<(&Action, Line)> = Vec::with_capacity(wave.len());
        for action in wave.iter().map(|&i| &actions[i]) {
            let line = Line {
                action,
                was: previous(action, state),
            };
            if let Some(cause) = blocked.blocks(action) {
                warn!(action = %line, "skipped: {cause}");
                blocked.record(action);
                outcome.failures.push(Failure {
                    action: action.clone(),
                    errno: None,
                    message: format!("skipped: {cause}"),
                });
                continue;
            }
            send.push((action, line));
        }
        let batch: Vec<&Action> = send.iter().map(|(a, _)| *a).collect();
        let results = dataplane.apply_all(&batch);
        crate::logging::held(|| {
            for ((action, line), Applied { result, at }) in send.into_iter().zip(results) {
                // Each line says when the dataplane answered, not when it is written.
                match result {
                    Ok(()) => {
                        crate::logging::stamped(at, || info!("{line}"));
                        outcome.applied += 1;
                        if let Err(errno) = kernel_sim::apply_action(state, action) {
                            warn!(action = %line, errno = %errno.name(), "cached observation disagrees with the dataplane");
                        }
                    }
                    Err(ActionError { errno, message }) => {
                        crate::logging::stamped(at, || {
                            error!(action = %line, errno = %errno.name(), "failed: {message}: {errno}");
                        });
                        blocked.record(action);
                        outcome.failures.push(Failure {
                            action: action.clone(),
                            errno: Some(errno),
                            message: format!("{message}: {errno}"),
                        });
                    }
                }
            }
        });
    }
    outcome
}

/// An action's log line: what it does, and what an in-place change replaced. Written only
/// when logged.
struct Line<'a> {
    action: &'a Action,
    was: Option<String>,
}

impl std::fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Described(self.action).fmt(f)?;
        match &self.was {
            Some(was) => write!(f, " (was {was})"),
            None => Ok(()),
        }
    }
}

/// The plan's action indexes grouped in waves: each action one wave after the latest action
/// before it that it depends on ([`Blocked::blocks`]' relations), in plan order within a wave.
fn waves(actions: &[Action]) -> Vec<Vec<usize>> {
    // The wave of the latest action of each kind that others depend on.
    let mut added: HashMap<ServiceKey, usize> = HashMap::new();
    let mut vip_added: HashMap<IpAddr, usize> = HashMap::new();
    let mut ensured: HashMap<&str, usize> = HashMap::new();
    let mut withdrawn: HashMap<IpAddr, usize> = HashMap::new();
    let mut waves: Vec<Vec<usize>> = Vec::new();
    for (i, action) in actions.iter().enumerate() {
        let after = |wave: Option<&usize>| wave.map_or(0, |w| w + 1);
        let wave = match action {
            Action::AddDestination { service, .. }
            | Action::SetDestination { service, .. }
            | Action::DelDestination { service, .. } => after(added.get(service)),
            Action::SetService { key, .. } => after(added.get(key)),
            Action::AddAddress { interface, address } => {
                after(ensured.get(interface.as_str())).max(after(vip_added.get(address)))
            }
            Action::DelService { key } => after(key.vip().and_then(|vip| withdrawn.get(&vip))),
            _ => 0,
        };
        match action {
            Action::AddService { key, .. } => {
                added.insert(*key, wave);
                if let Some(vip) = key.vip() {
                    let latest = vip_added.entry(vip).or_default();
                    *latest = (*latest).max(wave);
                }
            }
            Action::EnsureInterface { name } => {
                ensured.insert(name, wave);
            }
            Action::DelAddress { address, .. } => {
                withdrawn.insert(*address, wave);
            }
            _ => {}
        }
        if waves.len() <= wave {
            waves.resize_with(wave + 1, Vec::new);
        }
        waves[wave].push(i);
    }
    waves
}

/// What an in-place change replaces, field by field (`weight 2, upper-threshold 0`); `None`
/// for additions and deletions, whose line says it all.
fn previous(action: &Action, state: &NodeState) -> Option<String> {
    let mut fields = Vec::new();
    let mut differs = |name: &str, old: String, new: String| {
        if old != new {
            fields.push(format!("{name} {old}"));
        }
    };
    match action {
        Action::SetService { key, config } => {
            let old = &state.services.get(key)?.config;
            differs(
                "scheduler",
                old.scheduler.to_string(),
                config.scheduler.to_string(),
            );
            differs(
                "flags",
                format!("{:#x}", old.flags),
                format!("{:#x}", config.flags),
            );
            differs(
                "persistence",
                format!("{}s", old.timeout),
                format!("{}s", config.timeout),
            );
            differs(
                "netmask",
                format!("{:#x}", old.netmask),
                format!("{:#x}", config.netmask),
            );
            differs("pe", old.pe_name.clone(), config.pe_name.clone());
        }
        Action::SetDestination {
            service,
            destination,
            config,
        } => {
            let old = &state
                .services
                .get(service)?
                .destinations
                .iter()
                .find(|d| d.key == *destination)?
                .config;
            differs("weight", old.weight.to_string(), config.weight.to_string());
            differs(
                "forwarding",
                crate::status::forwarding(&old.forwarding),
                crate::status::forwarding(&config.forwarding),
            );
            differs(
                "upper-threshold",
                old.upper_threshold.to_string(),
                config.upper_threshold.to_string(),
            );
            differs(
                "lower-threshold",
                old.lower_threshold.to_string(),
                config.lower_threshold.to_string(),
            );
        }
        Action::SetSysctl { name, value } => {
            differs(
                name,
                state.sysctls.get(name)?.trim().to_owned(),
                value.clone(),
            );
        }
        Action::SetTimeouts { timeouts } => {
            let old = state.timeouts;
            for (name, old, new) in [
                ("tcp", old.tcp, timeouts.tcp),
                ("tcpfin", old.tcp_fin, timeouts.tcp_fin),
                ("udp", old.udp, timeouts.udp),
            ] {
                if new != 0 {
                    differs(name, format!("{old}s"), format!("{new}s"));
                }
            }
        }
        _ => {}
    }
    (!fields.is_empty()).then(|| fields.join(", "))
}

/// Plans again against a fresh observation: its actions are the differences left. Not
/// differences: drains and withdraw delays that are not due, held deletions, and the next step
/// of a drain or a withdrawal the record holds — a backend removed with no connections gets
/// weight 0 from the plan and is due for deletion at once, but deleting it is the next
/// converge's step, not something the plan left undone. Its record is the one to persist, its
/// held and waiting lists what status shows.
pub fn verify(
    desired: &NodeState,
    observed: &NodeState,
    now: SystemTime,
    record: &DrainRecord,
    options: &PlanOptions,
) -> Plan {
    let mut check = plan(desired, observed, now, record, options);
    check.actions.retain(|action| !is_next_step(action, record));
    check
}

/// A deletion that completes a drain or a withdrawal the record holds.
fn is_next_step(action: &Action, record: &DrainRecord) -> bool {
    match action {
        Action::DelDestination {
            service,
            destination,
        } => record.destinations.contains_key(&(*service, *destination)),
        Action::DelService { key } => key
            .vip()
            .is_some_and(|vip| record.withdrawals.contains_key(&vip)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::{DataplaneError, ObserveRequest};
    use crate::model::{DestinationConfig, DestinationKey, Forward, ServiceConfig, ServiceKey};
    use balanced_schemas::v1::{Protocol, Scheduler};

    /// A dataplane that refuses the actions in `refuse` and records the others.
    struct Scripted {
        refuse: Vec<Action>,
        applied: Vec<Action>,
    }

    impl Dataplane for Scripted {
        fn observe(&mut self, _: &ObserveRequest) -> Result<NodeState, DataplaneError> {
            Ok(NodeState::default())
        }
        fn apply(&mut self, action: &Action) -> Result<(), ActionError> {
            if self.refuse.contains(action) {
                return Err(ActionError {
                    errno: Errno::EINVAL,
                    message: "refused".into(),
                });
            }
            self.applied.push(action.clone());
            Ok(())
        }
    }

    fn key(vip: &str, port: u16) -> ServiceKey {
        ServiceKey::Inet {
            protocol: Protocol::Tcp,
            vip: vip.parse().unwrap(),
            port,
        }
    }

    fn add_service(key: ServiceKey) -> Action {
        Action::AddService {
            key,
            config: ServiceConfig {
                scheduler: Scheduler::Rr,
                flags: 0,
                timeout: 0,
                netmask: u32::MAX,
                pe_name: String::new(),
            },
        }
    }

    fn add_destination(service: ServiceKey, address: &str) -> Action {
        Action::AddDestination {
            service,
            destination: DestinationKey {
                address: address.parse().unwrap(),
                port: 80,
            },
            config: DestinationConfig {
                forwarding: Forward::Direct,
                weight: 1,
                upper_threshold: 0,
                lower_threshold: 0,
            },
        }
    }

    /// Removing a backend that has no connections sets weight 0, which makes its deletion due
    /// at once: verification leaves that step to the next converge instead of calling it a
    /// difference left — but a destination nobody drains is still one.
    #[test]
    fn verification_leaves_the_next_drain_step_to_the_next_converge() {
        let service = key("198.51.100.1", 80);
        let mut desired = NodeState::default();
        for action in [add_service(service), add_destination(service, "10.0.0.1")] {
            kernel_sim::apply_action(&mut desired, &action).unwrap();
        }
        let mut observed = desired.clone();
        kernel_sim::apply_action(&mut observed, &add_destination(service, "10.0.0.2")).unwrap();
        let options = PlanOptions {
            ownership: crate::ownership::Ownership {
                interface: String::new(),
                vip_ranges: vec!["198.51.100.0/24".parse().unwrap()],
                fwmark_ranges: Vec::new(),
            },
            drain_timeout: std::time::Duration::from_secs(300),
            withdraw_delay: std::time::Duration::from_secs(5),
            limits: Default::default(),
            allow_mass_delete: false,
        };
        let now = SystemTime::now();
        let first = plan(&desired, &observed, now, &DrainRecord::default(), &options);
        let mut after = observed.clone();
        for action in &first.actions {
            kernel_sim::apply_action(&mut after, action).unwrap();
        }
        let check = verify(&desired, &after, now, &first.record, &options);
        assert!(check.actions.is_empty(), "{:?}", check.actions);

        let stranger = verify(&desired, &after, now, &DrainRecord::default(), &options);
        let removed = DestinationKey {
            address: "10.0.0.2".parse().unwrap(),
            port: 80,
        };
        assert_eq!(
            stranger.actions,
            vec![Action::DelDestination {
                service,
                destination: removed
            }]
        );
    }

    #[test]
    fn a_failed_service_blocks_its_destinations_and_its_announcement_only() {
        let broken = key("198.51.100.1", 80);
        let fine = key("198.51.100.2", 80);
        let actions = vec![
            add_service(broken),
            add_service(fine),
            add_destination(broken, "10.0.0.1"),
            add_destination(fine, "10.0.0.2"),
            Action::AddAddress {
                interface: "balanced0".into(),
                address: "198.51.100.1".parse().unwrap(),
            },
            Action::AddAddress {
                interface: "balanced0".into(),
                address: "198.51.100.2".parse().unwrap(),
            },
        ];
        let mut dataplane = Scripted {
            refuse: vec![actions[0].clone()],
            applied: Vec::new(),
        };
        let outcome = execute(&mut dataplane, &actions, &mut NodeState::default());
        assert_eq!(outcome.applied, 3);
        assert_eq!(
            dataplane.applied,
            vec![actions[1].clone(), actions[3].clone(), actions[5].clone()]
        );
        let failed: Vec<_> = outcome
            .failures
            .iter()
            .map(|f| (&f.action, f.errno))
            .collect();
        assert_eq!(
            failed,
            vec![
                (&actions[0], Some(Errno::EINVAL)),
                (&actions[2], None),
                (&actions[4], None),
            ]
        );
    }

    /// Accepts everything and records the size of each `apply_all` call.
    struct Batches(Vec<usize>);

    impl Dataplane for Batches {
        fn observe(&mut self, _: &ObserveRequest) -> Result<NodeState, DataplaneError> {
            Ok(NodeState::default())
        }
        fn apply(&mut self, _: &Action) -> Result<(), ActionError> {
            Ok(())
        }
        fn apply_all(&mut self, actions: &[&Action]) -> Vec<Applied> {
            self.0.push(actions.len());
            actions.iter().map(|_| Applied::now(Ok(()))).collect()
        }
    }

    /// Answers every action at one fixed time: the first refused, the others done.
    struct Answered(std::time::SystemTime);

    impl Dataplane for Answered {
        fn observe(&mut self, _: &ObserveRequest) -> Result<NodeState, DataplaneError> {
            Ok(NodeState::default())
        }
        fn apply(&mut self, _: &Action) -> Result<(), ActionError> {
            unreachable!("the executor applies through apply_all")
        }
        fn apply_all(&mut self, actions: &[&Action]) -> Vec<Applied> {
            let refused = ActionError {
                errno: Errno::EEXIST,
                message: "adding".into(),
            };
            (0..actions.len())
                .map(|i| Applied {
                    result: if i == 0 { Err(refused.clone()) } else { Ok(()) },
                    at: self.0,
                })
                .collect()
        }
    }

    /// A change line and a failure line carry the time the dataplane answered, however
    /// much later they are written.
    #[test]
    fn lines_carry_the_time_of_the_answer() {
        // 2026-11-28T03:47:29.000042Z
        let at = std::time::UNIX_EPOCH + std::time::Duration::new(1_795_837_649, 42_000);
        let a = key("198.51.100.1", 80);
        let actions = vec![
            add_destination(a, "10.0.0.1"),
            add_destination(a, "10.0.0.2"),
        ];
        let log = crate::logging::LogBuffer::default();
        let dispatch = crate::logging::subscriber(
            crate::cli::LogFormat::Text,
            tracing_subscriber::EnvFilter::new("info"),
            log.clone(),
            false,
        );
        let mut state = NodeState::default();
        kernel_sim::apply_action(&mut state, &add_service(a)).unwrap();
        let outcome = tracing::dispatcher::with_default(&dispatch, || {
            // A scoped dispatcher's levels reach callsites already seen only on a rebuild.
            tracing::callsite::rebuild_interest_cache();
            execute(&mut Answered(at), &actions, &mut state)
        });
        assert_eq!((outcome.applied, outcome.failures.len()), (1, 1));
        let text = log.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].contains("ERROR") && lines[1].contains(" INFO + destination"));
        for line in lines {
            assert!(line.starts_with("2026-11-28T03:47:29.000042Z"), "{line}");
        }
    }

    #[test]
    fn independent_actions_reach_the_dataplane_together() {
        let a = key("198.51.100.1", 80);
        let b = key("198.51.100.2", 80);
        let actions = vec![
            add_service(a),
            add_destination(a, "10.0.0.1"),
            add_destination(a, "10.0.0.2"),
            add_service(b),
            add_destination(b, "10.0.0.1"),
            Action::AddAddress {
                interface: "balanced0".into(),
                address: "198.51.100.1".parse().unwrap(),
            },
            Action::AddAddress {
                interface: "balanced0".into(),
                address: "198.51.100.2".parse().unwrap(),
            },
        ];
        let mut dataplane = Batches(Vec::new());
        let outcome = execute(&mut dataplane, &actions, &mut NodeState::default());
        assert_eq!(outcome.applied, 7);
        // Destinations wait for the answer to their AddService, announcements for every
        // service of their VIP: two waves, whatever the number of services.
        assert_eq!(dataplane.0, vec![2, 5]);
    }

    #[test]
    fn a_failed_withdrawal_keeps_the_services_of_that_vip() {
        let actions = vec![
            Action::DelAddress {
                interface: "balanced0".into(),
                address: "198.51.100.1".parse().unwrap(),
            },
            Action::DelService {
                key: key("198.51.100.1", 80),
            },
            Action::DelService {
                key: key("198.51.100.3", 80),
            },
        ];
        let mut dataplane = Scripted {
            refuse: vec![actions[0].clone()],
            applied: Vec::new(),
        };
        let outcome = execute(&mut dataplane, &actions, &mut NodeState::default());
        assert_eq!(dataplane.applied, vec![actions[2].clone()]);
        assert_eq!(outcome.failures.len(), 2);
        assert!(
            outcome.failures[1]
                .message
                .contains("withdrawing VIP 198.51.100.1 failed")
        );
    }
}
