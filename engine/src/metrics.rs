//! The Prometheus metrics of `balanced run` and the liveness facts `/healthz` and `/readyz`
//! judge ([`crate::http`]). Names start with `balanced_`.
//!
//! Two kinds, on purpose:
//! - **engine events** the daemon reports as they happen ([`Telemetry::converged`],
//!   [`Telemetry::observed`], [`Telemetry::drift`]) go to ordinary prometheus-client metrics:
//!   converge duration (histogram), converges and actions by kind and result, drift repairs,
//!   failed observations;
//! - **per-object state** is not kept in metric families at all: the daemon publishes its latest
//!   [`NodeView`] (the status document plus manifest names) after each converge, and
//!   [`NodeCollector`] encodes it on every scrape — the kernel's counters of each owned service
//!   (and, opt-in, destination) as counters (`ConstCounter`, the pattern for foreign counters),
//!   generations in force, stale and invalid manifests, held deletions, drains, maintenance.
//!   So the label sets of removed objects disappear with them, and a counter that went back to
//!   zero because its service was re-created is reported as the kernel has it (Prometheus
//!   treats the drop as a counter reset).
//!
//! Counters are as fresh as the daemon's last observation (at most `resyncInterval` old).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use balanced_schemas::v1;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::compile::service_key;
use crate::dataplane::Action;
use crate::exec::Failure;
use crate::manifests::FileState;
use crate::model::{ServiceKey, SocketLike, Stats, VirtualService};
use crate::plan::{DeletionClass, WaitReason};
use crate::status::StatusDocument;

/// What the daemon publishes after each converge: the node as `/status` shows it, and which
/// manifest each service comes from (the `name` label).
#[derive(Debug, Clone, Default)]
pub struct NodeView {
    pub status: StatusDocument,
    pub names: BTreeMap<ServiceKey, String>,
}

/// `metadata.name` of the Balancer each service in force comes from.
pub fn service_names(balancers: &[&v1::Balancer]) -> BTreeMap<ServiceKey, String> {
    let mut names = BTreeMap::new();
    for balancer in balancers {
        for service in &balancer.spec.services {
            if let Some(key) = service_key(balancer.spec.vip, service) {
                names.insert(key, balancer.metadata.name.clone());
            }
        }
    }
    names
}

/// When the daemon last did what health is judged on (monotonic clock), and the resync
/// interval those ages are compared with.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub started: Instant,
    /// The event loop's last turn.
    pub last_iteration: Option<Instant>,
    /// The last observation of the dataplane and whether it worked.
    pub last_observe: Option<(Instant, bool)>,
    /// The last converge and whether every action and the commit succeeded.
    pub last_converge: Option<(Instant, bool)>,
    pub last_success: Option<Instant>,
    /// Unix seconds of the last successful converge.
    pub last_success_unix: Option<u64>,
    pub resync_interval: Duration,
}

#[derive(Debug)]
struct Shared {
    view: Arc<NodeView>,
    liveness: Liveness,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ActionLabels {
    kind: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The engine's metrics registry and the state shared with the HTTP server.
#[derive(Debug)]
pub struct Telemetry {
    registry: Registry,
    shared: Arc<RwLock<Shared>>,
    converge_duration: Histogram,
    converges: Family<ResultLabels, Counter>,
    actions: Family<ActionLabels, Counter>,
    drift_repairs: Counter,
    observe_failures: Counter,
}

impl Telemetry {
    /// `destinations`: also export one series set per destination (`--metrics-destinations`;
    /// a node may hold a million).
    pub fn new(destinations: bool) -> Self {
        let shared = Arc::new(RwLock::new(Shared {
            view: Arc::new(NodeView::default()),
            liveness: Liveness {
                started: Instant::now(),
                last_iteration: None,
                last_observe: None,
                last_converge: None,
                last_success: None,
                last_success_unix: None,
                resync_interval: Duration::from_secs(30),
            },
        }));
        let mut registry = Registry::with_prefix("balanced");
        let converge_duration = Histogram::new(exponential_buckets(0.001, 3.0, 12));
        let converges = Family::<ResultLabels, Counter>::default();
        let actions = Family::<ActionLabels, Counter>::default();
        let drift_repairs = Counter::default();
        let observe_failures = Counter::default();
        registry.register(
            "converge_duration_seconds",
            "Time to execute one plan on the dataplane and record its outcome",
            converge_duration.clone(),
        );
        registry.register(
            "converges",
            "Converges by result (failed: an action failed or the dataplane did not commit)",
            converges.clone(),
        );
        registry.register(
            "actions",
            "Dataplane actions by kind and result (ok, failed, skipped after a failure)",
            actions.clone(),
        );
        registry.register(
            "drift_repairs",
            "Differences between the node and what balanced last applied, found at a resync \
             and repaired",
            drift_repairs.clone(),
        );
        registry.register(
            "observe_failures",
            "Observations of the dataplane that failed",
            observe_failures.clone(),
        );
        registry.register_collector(Box::new(NodeCollector {
            shared: shared.clone(),
            destinations,
        }));
        Telemetry {
            registry,
            shared,
            converge_duration,
            converges,
            actions,
            drift_repairs,
            observe_failures,
        }
    }

    fn update(&self, f: impl FnOnce(&mut Shared)) {
        let mut shared = self.shared.write().unwrap_or_else(|e| e.into_inner());
        f(&mut shared);
    }

    pub fn set_resync_interval(&self, interval: Duration) {
        self.update(|s| s.liveness.resync_interval = interval);
    }

    /// The event loop turned (liveness).
    pub fn loop_turned(&self) {
        self.update(|s| s.liveness.last_iteration = Some(Instant::now()));
    }

    /// An observation of the dataplane worked or failed.
    pub fn observed(&self, ok: bool) {
        if !ok {
            self.observe_failures.inc();
        }
        self.update(|s| s.liveness.last_observe = Some((Instant::now(), ok)));
    }

    /// A resync found `differences` drifted objects (and the plan repairs them).
    pub fn drift(&self, differences: usize) {
        self.drift_repairs.inc_by(differences as u64);
    }

    /// One plan was executed: its actions, those that failed or were skipped, whether the whole
    /// converge succeeded and how long it took.
    pub fn converged(&self, actions: &[Action], failures: &[Failure], ok: bool, took: Duration) {
        self.converge_duration.observe(took.as_secs_f64());
        let result = if ok { "ok" } else { "failed" };
        self.converges.get_or_create(&ResultLabels { result }).inc();
        let mut counts: BTreeMap<(&'static str, &'static str), u64> = BTreeMap::new();
        for action in actions {
            *counts.entry((action_kind(action), "ok")).or_default() += 1;
        }
        for failure in failures {
            let kind = action_kind(&failure.action);
            if let Some(ok) = counts.get_mut(&(kind, "ok")) {
                *ok = ok.saturating_sub(1);
            }
            let result = if failure.errno.is_some() {
                "failed"
            } else {
                "skipped"
            };
            *counts.entry((kind, result)).or_default() += 1;
        }
        for ((kind, result), n) in counts {
            if n > 0 {
                self.actions
                    .get_or_create(&ActionLabels { kind, result })
                    .inc_by(n);
            }
        }
        let now = Instant::now();
        self.update(|s| {
            s.liveness.last_converge = Some((now, ok));
            if ok {
                s.liveness.last_success = Some(now);
                s.liveness.last_success_unix =
                    Some(crate::status::unix_seconds(std::time::SystemTime::now()));
            }
        });
    }

    /// Replaces the view the per-object metrics and `/status` are built from.
    pub fn publish(&self, view: impl Into<Arc<NodeView>>) {
        let view = view.into();
        self.update(|s| s.view = view);
    }

    pub fn view(&self) -> Arc<NodeView> {
        self.shared
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .view
            .clone()
    }

    pub fn liveness(&self) -> Liveness {
        self.shared
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .liveness
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
            let _ = writeln!(out, "# encoding the metrics failed");
        }
        out
    }
}

/// The `kind` label of an action: its name in plans' JSON.
pub fn action_kind(action: &Action) -> &'static str {
    match action {
        Action::EnsureInterface { .. } => "ensureInterface",
        Action::AddAddress { .. } => "addAddress",
        Action::DelAddress { .. } => "delAddress",
        Action::AddService { .. } => "addService",
        Action::SetService { .. } => "setService",
        Action::DelService { .. } => "delService",
        Action::AddDestination { .. } => "addDestination",
        Action::SetDestination { .. } => "setDestination",
        Action::DelDestination { .. } => "delDestination",
        Action::SetSysctl { .. } => "setSysctl",
        Action::SetTimeouts { .. } => "setTimeouts",
    }
}

type Labels = Vec<(&'static str, String)>;

/// A service's labels: the manifest `name`, then `vip`, `protocol`, `port` — or `fwmark` and
/// `family` for a firewall-mark service.
fn service_labels(key: &ServiceKey, names: &BTreeMap<ServiceKey, String>) -> Labels {
    let name = names.get(key).cloned().unwrap_or_default();
    match key {
        ServiceKey::Inet {
            protocol,
            vip,
            port,
        } => vec![
            ("name", name),
            ("vip", vip.to_string()),
            ("protocol", protocol.to_string().to_lowercase()),
            ("port", port.to_string()),
        ],
        ServiceKey::Fwmark { family, mark } => vec![
            ("name", name),
            ("fwmark", mark.to_string()),
            ("family", family.to_string()),
        ],
    }
}

/// Encodes the per-object metrics from the latest [`NodeView`] on each scrape.
#[derive(Debug)]
pub struct NodeCollector {
    shared: Arc<RwLock<Shared>>,
    destinations: bool,
}

const STATS: [(&str, &str); 5] = [
    ("connections", "Connections scheduled (kernel counter)"),
    ("packets_in", "Packets in (kernel counter)"),
    ("packets_out", "Packets out (kernel counter)"),
    ("bytes_in", "Bytes in (kernel counter)"),
    ("bytes_out", "Bytes out (kernel counter)"),
];

fn stat(stats: &Stats, index: usize) -> u64 {
    [
        stats.connections,
        stats.packets_in,
        stats.packets_out,
        stats.bytes_in,
        stats.bytes_out,
    ][index]
}

/// One gauge family; `S` borrows where it can (a scrape of a large node encodes millions).
pub(crate) fn gauge<S: EncodeLabelSet, V: prometheus_client::encoding::EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (S, V)>,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(0i64);
    let mut family = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    for (labels, value) in series {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter<S: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (S, u64)>,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(0u64);
    let mut family = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    for (labels, value) in series {
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (view, liveness) = {
            let shared = self.shared.read().unwrap_or_else(|e| e.into_inner());
            (shared.view.clone(), shared.liveness)
        };
        let status = &view.status;
        let owned: Vec<&VirtualService> = status
            .observed
            .services
            .values()
            .filter(|s| {
                status
                    .ownership
                    .as_ref()
                    .is_none_or(|o| o.owns_service(&s.key))
            })
            .collect();
        let labelled: Vec<(Labels, &VirtualService)> = owned
            .iter()
            .map(|s| (service_labels(&s.key, &view.names), *s))
            .collect();
        for (index, (name, help)) in STATS.iter().enumerate() {
            counter(
                &mut encoder,
                &format!("service_{name}"),
                help,
                labelled
                    .iter()
                    .map(|(labels, s)| (labels.as_slice(), stat(&s.stats, index))),
            )?;
        }
        if self.destinations {
            // The service's labels borrowed, then the destination's own.
            let destinations: Vec<_> = labelled
                .iter()
                .flat_map(|(labels, s)| {
                    s.destinations.iter().map(move |d| {
                        let backend = SocketLike(d.key.address, d.key.port).to_string();
                        (labels.as_slice(), [("backend", backend)], d)
                    })
                })
                .collect();
            let series = || {
                destinations
                    .iter()
                    .map(|(s, b, d)| ((*s, b.as_slice()), *d))
            };
            for (index, (name, help)) in STATS.iter().enumerate() {
                counter(
                    &mut encoder,
                    &format!("destination_{name}"),
                    help,
                    series().map(|(labels, d)| (labels, stat(&d.stats, index))),
                )?;
            }
            gauge(
                &mut encoder,
                "destination_active_connections",
                "Active connections of a destination",
                series().map(|(l, d)| (l, i64::from(d.active_connections))),
            )?;
            gauge(
                &mut encoder,
                "destination_inactive_connections",
                "Inactive connections (TIME_WAIT, …) of a destination",
                series().map(|(l, d)| (l, i64::from(d.inactive_connections))),
            )?;
            gauge(
                &mut encoder,
                "destination_weight",
                "Weight of a destination as the kernel holds it (0: draining)",
                series().map(|(l, d)| (l, i64::from(d.config.weight))),
            )?;
        }

        let mut by_state: BTreeMap<&'static str, i64> =
            [("in_force", 0), ("stale", 0), ("invalid", 0)].into();
        for manifest in &status.manifests {
            let state = match manifest.state {
                FileState::InForce => "in_force",
                FileState::Stale => "stale",
                FileState::Invalid => "invalid",
            };
            *by_state.entry(state).or_default() += 1;
        }
        gauge(
            &mut encoder,
            "manifests",
            "Manifest documents by state (stale: the file is broken, its last known good \
             version is in force; invalid: broken and never good)",
            by_state
                .into_iter()
                .map(|(state, n)| (vec![("state", state.to_owned())], n)),
        )?;
        gauge(
            &mut encoder,
            "manifest_generation",
            "metadata.generation in force per manifest",
            status.manifests.iter().filter_map(|m| {
                let generation = i64::try_from(m.generation?).ok()?;
                (m.state != FileState::Invalid).then(|| {
                    (
                        vec![
                            ("name", m.name.clone().unwrap_or_default()),
                            ("kind", m.kind.clone().unwrap_or_default()),
                            ("path", m.path.display().to_string()),
                        ],
                        generation,
                    )
                })
            }),
        )?;
        let held = |class: DeletionClass| {
            status
                .held
                .iter()
                .filter(|h| h.reason.class == class)
                .count() as i64
        };
        gauge(
            &mut encoder,
            "deletions_held",
            "Deletions held by maxDeletions until released",
            [
                (
                    vec![("class", "services".to_owned())],
                    held(DeletionClass::Services),
                ),
                (
                    vec![("class", "destinations".to_owned())],
                    held(DeletionClass::Destinations),
                ),
            ],
        )?;
        let draining = status
            .draining
            .iter()
            .filter(|w| matches!(w.reason, WaitReason::Drain { .. }))
            .count() as i64;
        gauge(
            &mut encoder,
            "draining_destinations",
            "Destinations at weight 0 waiting for their connections to end",
            [(Labels::new(), draining)],
        )?;
        gauge(
            &mut encoder,
            "failed_actions",
            "Actions of the last converge that failed or were skipped",
            [(Labels::new(), status.failures.len() as i64)],
        )?;
        let maintenance = status.maintenance.clone().unwrap_or_default();
        gauge(
            &mut encoder,
            "maintenance",
            "1 while a switch withdraws every VIP address (operator: balanced maintenance on; \
             node_config: maintenance: true; failure: withdrawOnFailure)",
            [
                ("operator", maintenance.operator.is_some()),
                ("node_config", maintenance.node_config),
                ("failure", maintenance.withdrawn_on_failure),
            ]
            .map(|(switch, on)| (vec![("switch", switch.to_owned())], i64::from(on))),
        )?;
        let announced = status
            .observed
            .interface
            .addresses
            .iter()
            .filter(|a| status.ownership.as_ref().is_none_or(|o| o.owns_address(a)))
            .count() as i64;
        gauge(
            &mut encoder,
            "announced_addresses",
            "Owned VIP addresses on the VIP link (announced by BGP)",
            [(Labels::new(), announced)],
        )?;
        gauge(
            &mut encoder,
            "dataplane_up",
            "1 when the last observation of the dataplane worked",
            [(
                Labels::new(),
                i64::from(liveness.last_observe.is_some_and(|(_, ok)| ok)),
            )],
        )?;
        if let Some(at) = liveness.last_success_unix {
            gauge(
                &mut encoder,
                "last_successful_converge_timestamp_seconds",
                "Unix time of the last converge in which every action succeeded",
                [(Labels::new(), at as i64)],
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        Destination, DestinationConfig, DestinationKey, Forward, NodeState, ServiceConfig,
    };
    use crate::ownership::Ownership;
    use balanced_schemas::v1::{Protocol, Scheduler};

    fn key(vip: &str, port: u16) -> ServiceKey {
        ServiceKey::Inet {
            protocol: Protocol::Tcp,
            vip: vip.parse().unwrap(),
            port,
        }
    }

    fn service(key: ServiceKey, connections: u64) -> VirtualService {
        VirtualService {
            key,
            config: ServiceConfig {
                scheduler: Scheduler::Rr,
                flags: 0,
                timeout: 0,
                netmask: u32::MAX,
                pe_name: String::new(),
            },
            destinations: vec![Destination {
                key: DestinationKey {
                    address: "10.0.0.1".parse().unwrap(),
                    port: 8080,
                },
                config: DestinationConfig {
                    forwarding: Forward::Masquerade,
                    weight: 3,
                    upper_threshold: 0,
                    lower_threshold: 0,
                },
                active_connections: 7,
                inactive_connections: 2,
                stats: Stats {
                    connections: 11,
                    ..Stats::default()
                },
                last_weight: 0,
            }],
            stats: Stats {
                connections,
                packets_in: 10,
                packets_out: 9,
                bytes_in: 1000,
                bytes_out: 900,
            },
        }
    }

    fn view(services: &[VirtualService]) -> NodeView {
        let mut observed = NodeState::default();
        for s in services {
            observed.services.insert(s.key, s.clone());
        }
        NodeView {
            status: StatusDocument {
                observed,
                ownership: Some(Ownership {
                    interface: "balanced0".into(),
                    vip_ranges: vec!["198.51.100.0/24".parse().unwrap()],
                    fwmark_ranges: Vec::new(),
                }),
                ..StatusDocument::default()
            },
            names: [(key("198.51.100.1", 80), "web".to_owned())].into(),
        }
    }

    #[test]
    fn kernel_counters_are_counters_of_owned_services_and_removed_ones_disappear() {
        let telemetry = Telemetry::new(false);
        telemetry.publish(view(&[
            service(key("198.51.100.1", 80), 42),
            service(key("198.51.100.2", 443), 5),
            service(key("192.0.2.1", 80), 99),
        ]));
        let text = telemetry.encode();
        assert!(
            text.contains("# TYPE balanced_service_connections counter"),
            "{text}"
        );
        assert!(
            text.contains(
                "balanced_service_connections_total{name=\"web\",vip=\"198.51.100.1\",\
                 protocol=\"tcp\",port=\"80\"} 42"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "balanced_service_bytes_in_total{name=\"\",vip=\"198.51.100.2\",\
                 protocol=\"tcp\",port=\"443\"} 1000"
            ),
            "{text}"
        );
        assert!(!text.contains("192.0.2.1"), "foreign service: {text}");
        assert!(!text.contains("balanced_destination_"), "opt-in: {text}");

        telemetry.publish(view(&[service(key("198.51.100.1", 80), 43)]));
        let text = telemetry.encode();
        assert!(text.contains("port=\"80\"} 43"), "{text}");
        assert!(!text.contains("198.51.100.2"), "removed service: {text}");
    }

    #[test]
    fn destinations_are_opt_in_with_connections_and_weight() {
        let telemetry = Telemetry::new(true);
        telemetry.publish(view(&[service(key("198.51.100.1", 80), 1)]));
        let text = telemetry.encode();
        let labels = "{name=\"web\",vip=\"198.51.100.1\",protocol=\"tcp\",port=\"80\",\
                      backend=\"10.0.0.1:8080\"}";
        for line in [
            format!("balanced_destination_connections_total{labels} 11"),
            format!("balanced_destination_active_connections{labels} 7"),
            format!("balanced_destination_inactive_connections{labels} 2"),
            format!("balanced_destination_weight{labels} 3"),
        ] {
            assert!(text.contains(&line), "{line} missing from {text}");
        }
    }

    #[test]
    fn node_gauges_come_from_the_published_status_and_fwmark_services_have_their_labels() {
        use crate::maintenance::{Flag, MaintenanceStatus};
        use crate::manifests::ManifestStatus;
        use crate::model::Family;
        use crate::plan::{HeldDeletion, HoldReason, Waiting};

        let fwmark = ServiceKey::Fwmark {
            family: Family::V6,
            mark: 7,
        };
        let mut view = view(&[service(key("198.51.100.1", 80), 1)]);
        view.status
            .observed
            .services
            .insert(fwmark, service(fwmark, 4));
        view.status.ownership = None;
        view.names.insert(fwmark, "marked".into());
        let manifest = |name: &str, state: FileState, generation: Option<u64>| ManifestStatus {
            name: Some(name.into()),
            kind: Some("Balancer".into()),
            generation,
            path: format!("/m/{name}.yaml").into(),
            state,
            reason: None,
        };
        view.status.manifests = vec![
            manifest("web", FileState::InForce, Some(3)),
            manifest("dns", FileState::Stale, Some(2)),
            manifest("bad", FileState::Invalid, None),
        ];
        let delete = Action::DelService {
            key: key("198.51.100.9", 80),
        };
        view.status.held = vec![HeldDeletion {
            action: delete.clone(),
            reason: HoldReason {
                class: DeletionClass::Services,
                deletions: 5,
                owned: 6,
                limit: v1::Limit::Count(1),
                allowed: 1,
            },
        }];
        view.status.draining = vec![Waiting {
            action: delete,
            reason: WaitReason::Drain {
                active_connections: 3,
            },
            since: 1,
            due: 2,
        }];
        view.status.maintenance = Some(MaintenanceStatus {
            withdrawn: true,
            operator: Some(Flag {
                since: 1,
                reason: None,
            }),
            ..MaintenanceStatus::default()
        });
        let telemetry = Telemetry::new(false);
        telemetry.publish(view);
        let text = telemetry.encode();
        for line in [
            "balanced_service_connections_total{name=\"marked\",fwmark=\"7\",family=\"IPv6\"} 4",
            "balanced_manifests{state=\"in_force\"} 1",
            "balanced_manifests{state=\"stale\"} 1",
            "balanced_manifests{state=\"invalid\"} 1",
            "balanced_manifest_generation{name=\"web\",kind=\"Balancer\",path=\"/m/web.yaml\"} 3",
            "balanced_manifest_generation{name=\"dns\",kind=\"Balancer\",path=\"/m/dns.yaml\"} 2",
            "balanced_deletions_held{class=\"services\"} 1",
            "balanced_deletions_held{class=\"destinations\"} 0",
            "balanced_draining_destinations 1",
            "balanced_maintenance{switch=\"operator\"} 1",
            "balanced_maintenance{switch=\"failure\"} 0",
            "balanced_dataplane_up 0",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
        assert!(
            !text.contains("name=\"bad\""),
            "nothing of it is in force: {text}"
        );
    }

    #[test]
    fn actions_are_counted_by_kind_and_result() {
        let telemetry = Telemetry::new(false);
        let add = Action::AddService {
            key: key("198.51.100.1", 80),
            config: service(key("198.51.100.1", 80), 0).config,
        };
        let address = Action::AddAddress {
            interface: "balanced0".into(),
            address: "198.51.100.1".parse().unwrap(),
        };
        let failures = vec![
            Failure {
                action: add.clone(),
                errno: Some(crate::dataplane::Errno::EINVAL),
                message: "no".into(),
            },
            Failure {
                action: address.clone(),
                errno: None,
                message: "skipped".into(),
            },
        ];
        telemetry.converged(
            &[add.clone(), add, address],
            &failures,
            false,
            Duration::from_millis(3),
        );
        let text = telemetry.encode();
        for line in [
            "balanced_actions_total{kind=\"addService\",result=\"ok\"} 1",
            "balanced_actions_total{kind=\"addService\",result=\"failed\"} 1",
            "balanced_actions_total{kind=\"addAddress\",result=\"skipped\"} 1",
            "balanced_converges_total{result=\"failed\"} 1",
            "balanced_converge_duration_seconds_count 1",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
        assert!(
            !text.contains("kind=\"addAddress\",result=\"ok\""),
            "{text}"
        );
        assert!(telemetry.liveness().last_success.is_none());
        assert!(!text.contains("last_successful_converge"), "{text}");
        telemetry.converged(&[], &[], true, Duration::ZERO);
        assert!(telemetry.liveness().last_success.is_some());
        assert!(
            telemetry
                .encode()
                .contains("balanced_last_successful_converge_timestamp_seconds ")
        );
    }
}
