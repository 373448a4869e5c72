//! The running exporter: watch events → caches → render the touched Services → write; and,
//! on the Lease holder only, Services → allocation plan → status PATCHes.
//!
//! [`Renderer`] is the synchronous core (no API calls, testable and benchmarked without a
//! cluster); [`render_loop`] and [`allocate_loop`] are the thin async shells around it and
//! around the allocator.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::jiff::Timestamp;
use kube::{Api, Client};
use tokio::sync::watch;

use crate::Error;
use crate::alloc::{AllocProblem, Allocator};
use crate::annotations::ServiceConfig;
use crate::config::RenderConfig;
use crate::events::{Events, Notice};
use crate::http::Health;
use crate::lease::{Leadership, LeaseLock};
use crate::manifest::ServiceKey;
use crate::metrics::{KindLabels, Metrics, ReasonLabels};
use crate::render::{Problem, is_ours, render_service};
use crate::status::{Written, write_ingress};
use crate::watch::{Cache, Dirty, Input};
use crate::writer::{Batch, Writer};

/// The Services the allocator sees: `None` until every cache is synced.
pub type Snapshot = Option<Vec<Arc<Service>>>;

/// What one flush did.
#[derive(Debug, Default)]
pub struct Flush {
    pub batch: Batch,
    /// Problems not reported before, to publish as Warning Events.
    pub notices: Vec<Notice>,
    pub services_rendered: u64,
    /// Whether a Service changed, so allocation should look again.
    pub services_changed: bool,
}

pub struct Renderer {
    pub config: RenderConfig,
    pub cache: Cache,
    writer: Writer,
    last_good: BTreeMap<ServiceKey, ServiceConfig>,
    reported: BTreeMap<ServiceKey, BTreeSet<Problem>>,
    pending: Dirty,
}

impl Renderer {
    /// The last good configurations start from the manifests on disk, so a Service whose
    /// annotations broke while the exporter was down keeps its configuration.
    pub fn new(config: RenderConfig, cache: Cache, writer: Writer) -> Self {
        let last_good = writer.configs();
        Renderer {
            config,
            cache,
            writer,
            last_good,
            reported: BTreeMap::new(),
            pending: Dirty::default(),
        }
    }

    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    pub fn apply(&mut self, input: Input) {
        let dirty = self.cache.apply(input);
        self.pending.merge(dirty);
    }

    /// Renders and writes what the inputs since the last flush touched — nothing until the
    /// caches are synced.
    pub fn flush(&mut self) -> Flush {
        let mut flush = Flush::default();
        if !self.cache.synced() {
            return flush;
        }
        flush.notices = self.cache.take_pod_notices();
        if self.pending.is_empty() {
            return flush;
        }
        let pending = std::mem::take(&mut self.pending);
        flush.services_changed = pending.services_changed;
        let keys: BTreeSet<ServiceKey> = if pending.all {
            self.cache
                .services()
                .map(|(k, _)| k.clone())
                .chain(self.reported.keys().cloned())
                .collect()
        } else {
            pending.services
        };
        let mut all_manifests = BTreeMap::new();
        let mut held = BTreeSet::new();
        for key in keys {
            let service = self
                .cache
                .service(&key)
                .filter(|s| is_ours(s, &self.config))
                .cloned();
            let (manifests, problems) = match &service {
                Some(service) => {
                    let slices = self.cache.slices_of(&key);
                    let one = render_service(
                        &key,
                        service,
                        &slices,
                        self.cache.opted_out(),
                        &self.config,
                        self.last_good.get(&key),
                    );
                    flush.services_rendered += 1;
                    if let Some(config) = one.config {
                        self.last_good.insert(key.clone(), config);
                    }
                    if one.held {
                        held.insert(key.clone());
                    }
                    (one.manifests, one.problems)
                }
                None => {
                    self.last_good.remove(&key);
                    (BTreeMap::new(), Vec::new())
                }
            };
            let now: BTreeSet<Problem> = problems.into_iter().collect();
            let before = self.reported.remove(&key).unwrap_or_default();
            if let Some(service) = &service {
                for problem in now.difference(&before) {
                    flush.notices.push(Notice::new(
                        service,
                        true,
                        "Render",
                        problem.reason.as_str(),
                        problem.message.clone(),
                    ));
                }
            }
            if !now.is_empty() {
                self.reported.insert(key.clone(), now);
            }
            if pending.all {
                all_manifests.extend(manifests);
            } else if !held.contains(&key) {
                let batch = self.writer.sync_service(&key, manifests);
                flush.batch.changes.extend(batch.changes);
                flush.batch.errors.extend(batch.errors);
            }
        }
        if pending.all {
            flush.batch = self.writer.sync_except(all_manifests, &held);
        }
        if let Err(e) = self.writer.commit(&flush.batch.changes) {
            flush.batch.errors.push(e);
        }
        flush
    }

    /// The Services in the cache, for the allocator.
    pub fn services(&self) -> Vec<Arc<Service>> {
        self.cache.services().map(|(_, s)| s.clone()).collect()
    }
}

/// Inputs applied at most before a flush, so a steady stream of events cannot hold writes back.
const MAX_BATCH: usize = 50_000;

/// Applies the inputs already waiting (without waiting for more), so a burst is one flush.
/// Returns false when the streams ended.
fn drain_ready<S: Stream<Item = Input> + Unpin>(
    stream: &mut S,
    renderer: &mut Renderer,
    metrics: &Metrics,
) -> bool {
    for _ in 0..MAX_BATCH {
        match stream.next().now_or_never() {
            Some(Some(input)) => apply_input(input, renderer, metrics),
            Some(None) => return false,
            None => return true,
        }
    }
    true
}

fn apply_input(input: Input, renderer: &mut Renderer, metrics: &Metrics) {
    if let Input::Error(kind, e) = &input {
        tracing::warn!(kind, error = %e, "watch failed; retrying with backoff");
        metrics
            .watch_errors
            .get_or_create(&KindLabels {
                kind: (*kind).to_owned(),
            })
            .inc();
    }
    renderer.apply(input);
}

/// Feeds watch events into the renderer and writes after each burst, until the streams end.
pub async fn render_loop<S: Stream<Item = Input> + Unpin>(
    mut stream: S,
    mut renderer: Renderer,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    events: Events,
    services_tx: watch::Sender<Snapshot>,
) {
    while let Some(input) = stream.next().await {
        apply_input(input, &mut renderer, &metrics);
        let open = drain_ready(&mut stream, &mut renderer, &metrics);
        let flush = tokio::task::block_in_place(|| renderer.flush());
        record_flush(&flush, &renderer, &metrics, &events);
        if renderer.cache.synced() {
            health.synced.store(true, Ordering::Relaxed);
            if flush.services_changed {
                services_tx.send_replace(Some(renderer.services()));
            }
        }
        if !open {
            break;
        }
    }
}

fn record_flush(flush: &Flush, renderer: &Renderer, metrics: &Metrics, events: &Events) {
    metrics
        .objects_watched
        .get_or_create(&KindLabels {
            kind: "Service".to_owned(),
        })
        .set(i64::try_from(renderer.cache.service_count()).unwrap_or(i64::MAX));
    metrics
        .objects_watched
        .get_or_create(&KindLabels {
            kind: "EndpointSlice".to_owned(),
        })
        .set(i64::try_from(renderer.cache.slice_count()).unwrap_or(i64::MAX));
    metrics
        .objects_watched
        .get_or_create(&KindLabels {
            kind: "OptedOutPod".to_owned(),
        })
        .set(i64::try_from(renderer.cache.opted_out().len()).unwrap_or(i64::MAX));
    if flush.services_rendered > 0 {
        metrics.renders.inc();
        metrics.services_rendered.inc_by(flush.services_rendered);
    }
    metrics.record_changes(&flush.batch.changes);
    for change in &flush.batch.changes {
        tracing::info!("{change}");
    }
    for error in &flush.batch.errors {
        tracing::error!("{error}");
    }
    for notice in &flush.notices {
        metrics
            .problems
            .get_or_create(&ReasonLabels {
                reason: notice.reason.clone(),
            })
            .inc();
        events.send(notice.clone());
    }
}

/// How the allocating side runs.
pub struct AllocateOptions {
    pub ip_mode: Option<String>,
    pub lease: LeaseLock,
}

/// Holds or waits for the Lease; while holding it, plans allocations whenever the Services
/// change (and at every renewal) and writes them into the Services' status.
pub async fn allocate_loop(
    client: Client,
    mut allocator: Allocator,
    config: RenderConfig,
    options: AllocateOptions,
    mut services_rx: watch::Receiver<Snapshot>,
    metrics: Arc<Metrics>,
    events: Events,
) {
    let mut ticker =
        tokio::time::interval(options.lease.renew_interval().max(Duration::from_secs(1)));
    let mut leading = false;
    let mut last_renewed: Option<Instant> = None;
    let mut reported: BTreeSet<AllocProblem> = BTreeSet::new();
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                match options.lease.try_acquire_or_renew(Timestamp::now()).await {
                    Ok(Leadership::Leading) => {
                        if !leading {
                            tracing::info!("took the allocation Lease");
                        }
                        leading = true;
                        last_renewed = Some(Instant::now());
                    }
                    Ok(Leadership::Following { holder }) => {
                        if leading {
                            tracing::warn!(?holder, "lost the allocation Lease");
                        }
                        leading = false;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Lease renewal failed");
                        // Stop allocating once the Lease may have expired for the others.
                        if last_renewed.is_none_or(|t| t.elapsed() > options.lease.renew_interval() * 2) {
                            leading = false;
                        }
                    }
                }
                metrics.leader.set(i64::from(leading));
                events.set_publishing(leading);
            }
            changed = services_rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        if !leading {
            continue;
        }
        // None until the caches are synced: never allocate from a partial view.
        let Some(services) = services_rx.borrow_and_update().clone() else {
            continue;
        };
        let now = Instant::now();
        let plan = allocator.plan(services.iter().map(AsRef::as_ref), &config, now);
        metrics.record_plan(&allocator.pools, &plan);
        let by_key: BTreeMap<ServiceKey, &Arc<Service>> = services
            .iter()
            .filter_map(|s| Some((crate::render::service_key(s)?, s)))
            .collect();
        let current: BTreeSet<AllocProblem> = plan.problems.iter().cloned().collect();
        for problem in current.difference(&reported) {
            if let Some(service) = by_key.get(&problem.service) {
                metrics
                    .problems
                    .get_or_create(&ReasonLabels {
                        reason: problem.reason.as_str().to_owned(),
                    })
                    .inc();
                events.send(Notice::new(
                    service,
                    true,
                    "Allocate",
                    problem.reason.as_str(),
                    problem.message.clone(),
                ));
            }
        }
        reported = current;
        for assignment in plan.assignments {
            let Some(service) = by_key.get(&assignment.service) else {
                continue;
            };
            let api: Api<Service> = Api::namespaced(client.clone(), &assignment.service.namespace);
            let written = write_ingress(
                &api,
                &assignment.service,
                service,
                &assignment.new,
                options.ip_mode.as_deref(),
            )
            .await;
            match written {
                Ok(Written::Done) => {
                    for ip in &assignment.new {
                        allocator.confirm(&assignment.service, *ip, now);
                    }
                    metrics.allocations.inc_by(assignment.new.len() as u64);
                    let listed: Vec<String> =
                        assignment.new.iter().map(IpAddr::to_string).collect();
                    events.send(Notice::new(
                        service,
                        false,
                        "Allocate",
                        "AllocatedLoadBalancerIP",
                        format!("{}: allocated {}", assignment.service, listed.join(", ")),
                    ));
                }
                Ok(Written::Superseded | Written::Gone) => {}
                Err(e) => tracing::error!("{e}"),
            }
        }
    }
}

/// Runs the watch + render side until the streams end.
pub async fn run_renderer(
    client: &Client,
    renderer: Renderer,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    events: Events,
    services_tx: watch::Sender<Snapshot>,
) -> Result<(), Error> {
    let stream = crate::watch::streams(client, renderer.cache.scopes());
    render_loop(
        Box::pin(stream),
        renderer,
        metrics,
        health,
        events,
        services_tx,
    )
    .await;
    Err(Error::Config("the watch streams ended".to_owned()))
}
