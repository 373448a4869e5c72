//! The exporter's Prometheus metrics, in one place. Labels are fixed words or pool names,
//! never `Debug` output.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::alloc::Plan;
use crate::alloc::Pools;
use crate::writer::{Change, ChangeKind};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: String,
    pub family: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

pub struct Metrics {
    pub registry: Registry,
    /// Objects in the caches, by kind (Service, EndpointSlice, OptedOutPod: only opted-out
    /// pods are kept).
    pub objects_watched: Family<KindLabels, Gauge>,
    /// Render passes (one per batch of watch events).
    pub renders: Counter,
    /// Services rendered (a full pass renders all of them).
    pub services_rendered: Counter,
    pub files_written: Counter,
    pub files_deleted: Counter,
    pub watch_errors: Family<KindLabels, Counter>,
    /// Problems (Warning Events) raised, by reason.
    pub problems: Family<ReasonLabels, Counter>,
    pub allocations: Counter,
    pub pool_size: Family<PoolLabels, Gauge<f64, AtomicU64>>,
    pub pool_used: Family<PoolLabels, Gauge<f64, AtomicU64>>,
    pub pool_quarantined: Family<PoolLabels, Gauge<f64, AtomicU64>>,
    /// 1 while this instance holds the allocation Lease.
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("balanced_exporter");
        let metrics = Metrics {
            objects_watched: Family::default(),
            renders: Counter::default(),
            services_rendered: Counter::default(),
            files_written: Counter::default(),
            files_deleted: Counter::default(),
            watch_errors: Family::default(),
            problems: Family::default(),
            allocations: Counter::default(),
            pool_size: Family::default(),
            pool_used: Family::default(),
            pool_quarantined: Family::default(),
            leader: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "objects_watched",
            "Objects in the watch caches",
            metrics.objects_watched.clone(),
        );
        registry.register("renders", "Render passes", metrics.renders.clone());
        registry.register(
            "services_rendered",
            "Services rendered",
            metrics.services_rendered.clone(),
        );
        registry.register(
            "files_written",
            "Manifest files written",
            metrics.files_written.clone(),
        );
        registry.register(
            "files_deleted",
            "Manifest files deleted",
            metrics.files_deleted.clone(),
        );
        registry.register(
            "watch_errors",
            "Watch stream errors",
            metrics.watch_errors.clone(),
        );
        registry.register(
            "problems",
            "Problems reported as Warning Events",
            metrics.problems.clone(),
        );
        registry.register(
            "allocations",
            "Addresses allocated",
            metrics.allocations.clone(),
        );
        registry.register(
            "pool_addresses",
            "Addresses in each pool",
            metrics.pool_size.clone(),
        );
        registry.register(
            "pool_used_addresses",
            "Addresses of each pool held by Services",
            metrics.pool_used.clone(),
        );
        registry.register(
            "pool_quarantined_addresses",
            "Released addresses of each pool held back before reuse",
            metrics.pool_quarantined.clone(),
        );
        registry.register(
            "leader",
            "1 while this instance allocates",
            metrics.leader.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    pub fn record_changes(&self, changes: &[Change]) {
        for change in changes {
            match change.kind {
                ChangeKind::Deleted => self.files_deleted.inc(),
                ChangeKind::Created { .. } | ChangeKind::Updated { .. } => self.files_written.inc(),
            };
        }
    }

    pub fn record_plan(&self, pools: &Pools, plan: &Plan) {
        for (pool, family, size, used) in pools.usage(&plan.used) {
            let labels = PoolLabels {
                pool: pool.clone(),
                family: family.to_string(),
            };
            let quarantined = pools.usage(&plan.quarantined);
            let q = quarantined
                .iter()
                .find(|(p, f, _, _)| *p == pool && *f == family)
                .map_or(0, |(_, _, _, n)| *n);
            self.pool_size.get_or_create(&labels).set(size as f64);
            self.pool_used.get_or_create(&labels).set(used as f64);
            self.pool_quarantined.get_or_create(&labels).set(q as f64);
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
