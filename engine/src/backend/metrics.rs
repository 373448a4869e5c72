//! The backend role's metrics and health, served by the engine's HTTP endpoint
//! ([`crate::http`], `--metrics-addr`) as the director's are. Names start with
//! `balanced_backend_` and follow the director's (`crate::metrics`):
//!
//! - `balanced_backend_pods{state="configured|skipped|failed"}` and `balanced_backend_vips`
//!   (gauges, from the last pass);
//! - `balanced_backend_converge_duration_seconds` (histogram of one pass over every pod),
//!   `balanced_backend_converges_total{result}`;
//! - `balanced_backend_actions_total{kind,result="ok|failed"}` (kinds as in `plan --output
//!   json`), `balanced_backend_failures_total` (pods whose pass failed);
//! - `balanced_backend_last_successful_converge_timestamp_seconds`.
//!
//! `/healthz`: the loop turned within 2 × `--pod-resync` + [`crate::http::LOOP_GRACE`];
//! `/readyz`: the first pass is done (a pod that fails is in `/status` and the metrics, not a
//! reason to restart the role); `/status`: the [`BackendStatus`] of the last pass.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::backend::converge::Pass;
use crate::backend::plan::PodAction;
use crate::backend::status::{BackendStatus, PodState};
use crate::error::ExitStatus;
use crate::http::Endpoints;
use crate::metrics::{Liveness, gauge};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ActionLabels {
    kind: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug)]
struct Shared {
    status: Arc<BackendStatus>,
    started: Instant,
    last_iteration: Option<Instant>,
    /// Unix seconds of the last pass in which every pod converged.
    last_success: Option<u64>,
    resync_interval: Duration,
}

/// The backend role's registry and the state shared with the HTTP server.
#[derive(Debug)]
pub struct BackendTelemetry {
    registry: Registry,
    shared: Arc<RwLock<Shared>>,
    converge_duration: Histogram,
    converges: Family<ResultLabels, Counter>,
    actions: Family<ActionLabels, Counter>,
    failures: Counter,
}

/// The `kind` label of an action: its name in `plan --role backend --output json`.
pub fn action_kind(action: &PodAction) -> &'static str {
    match action {
        PodAction::SetTunnel { .. } => "setTunnel",
        PodAction::AddFouPort { .. } => "addFouPort",
        PodAction::SetRpFilter { .. } => "setRpFilter",
        PodAction::AddAddress { .. } => "addAddress",
        PodAction::SetMssRoute { .. } => "setMssRoute",
        PodAction::AddRule { .. } => "addRule",
        PodAction::DelRule { .. } => "delRule",
        PodAction::DelMssRoute { .. } => "delMssRoute",
        PodAction::DelAddress { .. } => "delAddress",
        PodAction::DelFouPort { .. } => "delFouPort",
    }
}

impl BackendTelemetry {
    /// The telemetry of the backend role of `node`, which passes every `resync_interval`.
    pub fn new(node: &str, resync_interval: Duration) -> Self {
        let shared = Arc::new(RwLock::new(Shared {
            status: Arc::new(BackendStatus {
                node: node.to_owned(),
                ..BackendStatus::default()
            }),
            started: Instant::now(),
            last_iteration: None,
            last_success: None,
            resync_interval,
        }));
        let mut registry = Registry::with_prefix("balanced_backend");
        let converge_duration = Histogram::new(exponential_buckets(0.001, 3.0, 12));
        let converges = Family::<ResultLabels, Counter>::default();
        let actions = Family::<ActionLabels, Counter>::default();
        let failures = Counter::default();
        registry.register(
            "converge_duration_seconds",
            "Time of one pass: find, observe, plan, apply and verify every pod",
            converge_duration.clone(),
        );
        registry.register(
            "converges",
            "Passes by result (failed: an action failed or a difference is left in a pod)",
            converges.clone(),
        );
        registry.register(
            "actions",
            "Actions inside pods' namespaces by kind and result (ok, failed)",
            actions.clone(),
        );
        registry.register(
            "failures",
            "Pods whose pass failed: an action refused, a combination the pod cannot receive, \
             or a difference left after applying",
            failures.clone(),
        );
        registry.register_collector(Box::new(StatusCollector {
            shared: shared.clone(),
        }));
        BackendTelemetry {
            registry,
            shared,
            converge_duration,
            converges,
            actions,
            failures,
        }
    }

    /// The status of the last pass.
    pub fn status(&self) -> Arc<BackendStatus> {
        self.shared
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .status
            .clone()
    }

    /// One pass ended after `took`: its status document (see [`BackendStatus::after`]) replaces
    /// the last one, and the metrics count it. `now` in unix seconds.
    pub fn passed(&self, pass: &Pass, took: Duration, now: u64) -> Arc<BackendStatus> {
        let previous = self.status();
        let status = Arc::new(BackendStatus::after(&previous, &previous.node, pass, now));
        self.converge_duration.observe(took.as_secs_f64());
        let ok = pass.outcome() != ExitStatus::Failure;
        let result = if ok { "ok" } else { "failed" };
        self.converges.get_or_create(&ResultLabels { result }).inc();
        let mut counts: BTreeMap<(&'static str, &'static str), u64> = BTreeMap::new();
        for report in &pass.reports {
            for action in &report.applied {
                *counts.entry((action_kind(action), "ok")).or_default() += 1;
            }
            for action in &report.failed {
                *counts.entry((action_kind(action), "failed")).or_default() += 1;
            }
        }
        for ((kind, result), n) in counts {
            self.actions
                .get_or_create(&ActionLabels { kind, result })
                .inc_by(n);
        }
        let failed = status.count()[&PodState::Failed];
        self.failures.inc_by(failed as u64);
        let mut shared = self.shared.write().unwrap_or_else(|e| e.into_inner());
        shared.status = status.clone();
        shared.last_iteration = Some(Instant::now());
        if ok {
            shared.last_success = Some(now);
        }
        status
    }

    fn liveness(&self) -> Liveness {
        let shared = self.shared.read().unwrap_or_else(|e| e.into_inner());
        Liveness {
            started: shared.started,
            last_iteration: shared.last_iteration,
            last_observe: None,
            last_converge: None,
            last_success: None,
            last_success_unix: None,
            resync_interval: shared.resync_interval,
        }
    }
}

/// Encodes the gauges of the last pass on each scrape: pods by state, VIPs, the last success.
#[derive(Debug)]
struct StatusCollector {
    shared: Arc<RwLock<Shared>>,
}

impl Collector for StatusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (status, last_success) = {
            let shared = self.shared.read().unwrap_or_else(|e| e.into_inner());
            (shared.status.clone(), shared.last_success)
        };
        gauge(
            &mut encoder,
            "pods",
            "Pods of tunnel-forwarded services on this node by state after the last pass",
            status
                .count()
                .into_iter()
                .map(|(state, n)| (vec![("state", state.as_str())], n as i64)),
        )?;
        gauge(
            &mut encoder,
            "vips",
            "VIP addresses balanced configured inside this node's pods",
            [(Vec::<(&str, &str)>::new(), status.vips() as i64)],
        )?;
        if let Some(at) = last_success {
            gauge(
                &mut encoder,
                "last_successful_converge_timestamp_seconds",
                "Unix time of the last pass in which every pod converged",
                [(Vec::<(&str, &str)>::new(), at as i64)],
            )?;
        }
        Ok(())
    }
}

impl Endpoints for BackendTelemetry {
    fn metrics(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
            let _ = writeln!(out, "# encoding the metrics failed");
        }
        out
    }

    fn health(&self, now: Instant) -> Result<String, String> {
        crate::http::health(&self.liveness(), now)
    }

    fn readiness(&self, _now: Instant) -> Result<String, String> {
        let status = self.status();
        match status.updated {
            None => Err("no pass over the pods yet\n".to_owned()),
            Some(_) => {
                let counts = status.count();
                Ok(format!(
                    "ok: {} pod(s) configured, {} skipped, {} failed\n",
                    counts[&PodState::Configured],
                    counts[&PodState::Skipped],
                    counts[&PodState::Failed]
                ))
            }
        }
    }

    fn status(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(&*BackendTelemetry::status(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::status::tests::round;
    use crate::http::respond;

    #[test]
    fn a_known_round_gives_this_exposition() {
        let telemetry = BackendTelemetry::new("knode", Duration::from_secs(10));
        let text = telemetry.metrics();
        for line in [
            "balanced_backend_pods{state=\"configured\"} 0",
            "balanced_backend_vips 0",
            "balanced_backend_failures_total 0",
        ] {
            assert!(text.contains(line), "{line} missing before a pass: {text}");
        }
        assert!(!text.contains("last_successful"), "{text}");

        telemetry.passed(&round(), Duration::from_millis(20), 1000);
        let text = telemetry.metrics();
        for line in [
            "# TYPE balanced_backend_pods gauge",
            "balanced_backend_pods{state=\"configured\"} 1",
            "balanced_backend_pods{state=\"skipped\"} 1",
            "balanced_backend_pods{state=\"failed\"} 1",
            "balanced_backend_vips 2",
            "balanced_backend_actions_total{kind=\"addAddress\",result=\"ok\"} 1",
            "balanced_backend_actions_total{kind=\"addAddress\",result=\"failed\"} 1",
            "balanced_backend_actions_total{kind=\"setRpFilter\",result=\"ok\"} 1",
            "balanced_backend_failures_total 1",
            "balanced_backend_converges_total{result=\"failed\"} 1",
            "balanced_backend_converge_duration_seconds_count 1",
            "balanced_backend_converge_duration_seconds_sum 0.02",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
        assert!(!text.contains("last_successful"), "the pass failed: {text}");

        let mut healed = round();
        healed.reports[0].problems.clear();
        healed.reports[0].failed.clear();
        healed.reports[0].applied.clear();
        healed.reports[1].applied.clear();
        telemetry.passed(&healed, Duration::from_millis(1), 1010);
        let text = telemetry.metrics();
        for line in [
            "balanced_backend_pods{state=\"configured\"} 2",
            "balanced_backend_pods{state=\"failed\"} 0",
            "balanced_backend_failures_total 1",
            "balanced_backend_actions_total{kind=\"addAddress\",result=\"ok\"} 1",
            "balanced_backend_converges_total{result=\"ok\"} 1",
            "balanced_backend_last_successful_converge_timestamp_seconds 1010",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn ready_after_the_first_pass_and_status_serves_its_document() {
        let telemetry = BackendTelemetry::new("knode", Duration::from_secs(10));
        let now = Instant::now();
        assert_eq!(respond("GET /readyz HTTP/1.1", &telemetry, now).0, 503);
        assert_eq!(respond("GET /healthz HTTP/1.1", &telemetry, now).0, 200);
        telemetry.passed(&round(), Duration::ZERO, 1000);
        let (code, _, body) = respond("GET /readyz HTTP/1.1", &telemetry, now);
        assert_eq!(
            (code, body.as_str()),
            (200, "ok: 1 pod(s) configured, 1 skipped, 1 failed\n")
        );
        let (code, kind, body) = respond("GET /status HTTP/1.1", &telemetry, now);
        assert_eq!((code, kind), (200, "application/json"));
        let document: BackendStatus = serde_json::from_str(&body).unwrap();
        assert_eq!(document, *telemetry.status());
        assert_eq!(document.node, "knode");
        assert_eq!(document.pods.len(), 3);
        let late = Instant::now() + Duration::from_secs(51);
        assert_eq!(
            respond("GET /healthz HTTP/1.1", &telemetry, late).0,
            503,
            "no pass for 2 x 10s + 30s"
        );
    }
}
