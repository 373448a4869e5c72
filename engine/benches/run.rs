//! `balanced run` with 10,000 manifest files, one edited: from the debounced event (the list
//! of changed paths) to the plan whose actions are handed to the dataplane — re-reading the one
//! file, re-checking the whole set, compiling and planning against the cached observation.
//! Target: < 20 ms. The debouncer's delay is not part of it (that is its configured timeout).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use balanced_engine::converge::{Converger, NodeConfig};
use balanced_engine::daemon::Daemon;
use balanced_engine::dataplane::{Action, ActionError, Dataplane, DataplaneError, ObserveRequest};
use balanced_engine::model::NodeState;
use balanced_engine::state_dir::StateDir;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

const FILES: usize = 10_000;
const BACKENDS: usize = 4;

/// A dataplane that accepts every action (the bench measures the engine, not a kernel).
struct Accept;

impl Dataplane for Accept {
    fn observe(&mut self, _: &ObserveRequest) -> Result<NodeState, DataplaneError> {
        Ok(NodeState::default())
    }
    fn apply(&mut self, _: &Action) -> Result<(), ActionError> {
        Ok(())
    }
}

fn manifest(i: usize, weight: u32) -> String {
    let vip = format!("10.200.{}.{}", i / 250, i % 250 + 1);
    let mut text = format!(
        "apiVersion: balanced.io/v1\nkind: Balancer\nmetadata:\n  name: svc-{i}\n  generation: 1\n  \
         source: kubernetes/bench/svc-{i}\nspec:\n  vip: {vip}\n  services:\n    - protocol: TCP\n      \
         port: 443\n      scheduler: mh\n      schedulerFlags: [mh-fallback, mh-port]\n      \
         forwarding:\n        method: tunnel\n        encapsulation: ipip\n      backends:\n"
    );
    for b in 0..BACKENDS {
        text.push_str(&format!(
            "        - address: 10.{}.{}.{}\n          weight: {}\n",
            1 + b,
            i / 250,
            i % 250 + 1,
            if b == 0 { weight } else { 1 }
        ));
    }
    text
}

fn setup(root: &Path) -> (Daemon, PathBuf) {
    let dir = root.join("manifests");
    for i in 0..FILES {
        let sub = dir.join(format!("ns-{:02}", i % 50));
        fs::create_dir_all(&sub).unwrap();
        fs::write(sub.join(format!("svc-{i}.yaml")), manifest(i, 1)).unwrap();
    }
    let config = root.join("node.yaml");
    fs::write(
        &config,
        "apiVersion: balanced.io/v1\nkind: NodeConfig\nmetadata:\n  name: bench\nspec:\n  \
         vipRanges: [10.200.0.0/16]\n",
    )
    .unwrap();
    let node = NodeConfig::load(&config).expect("node config");
    let started = Instant::now();
    let converger = Converger::open(
        node,
        std::slice::from_ref(&dir),
        StateDir::new(root.join("state")),
        false,
    )
    .unwrap();
    assert!(
        !converger.resolution.invalid,
        "{:?}",
        converger.resolution.diagnostics.first()
    );
    let loaded = started.elapsed();
    let mut daemon = Daemon::start(converger, Box::new(Accept)).unwrap();
    let first = daemon.plan_now(SystemTime::now());
    let actions = first.actions.len();
    daemon.converge(first);
    eprintln!(
        "run bench: {FILES} files loaded and checked in {loaded:?}; first converge {actions} actions in {:?} total",
        started.elapsed()
    );
    breakdown(&daemon, &dir);
    let edited = dir.join("ns-07").join("svc-4207.yaml");
    (daemon, edited)
}

/// Where the time of one pass goes (printed once): the set checks, compile and plan.
fn breakdown(daemon: &Daemon, dir: &Path) {
    let files = balanced_schemas::load_paths(&[dir.to_path_buf()]);
    let refs: Vec<_> = files.iter().collect();
    let node = daemon.converger().node.document.clone();
    let started = Instant::now();
    let diagnostics = balanced_schemas::check_set(&refs, Some(&node));
    let check = started.elapsed();
    assert!(diagnostics.is_empty());
    let converger = daemon.converger();
    let started = Instant::now();
    let desired = converger.desired();
    let compile = started.elapsed();
    let started = Instant::now();
    let plan = converger.plan(&desired, daemon.cache(), SystemTime::now());
    let planning = started.elapsed();
    assert!(plan.actions.is_empty());
    eprintln!("run bench breakdown: check_set {check:?}, compile {compile:?}, plan {planning:?}");
}

fn bench(c: &mut Criterion) {
    let root = tempfile::tempdir().unwrap();
    let (mut daemon, edited) = setup(root.path());
    let mut weight = 1;
    c.bench_function("run: 10,000 files, one edited → plan", |b| {
        b.iter_batched(
            || {
                weight = if weight == 1 { 2 } else { 1 };
                fs::write(&edited, manifest(4207, weight)).unwrap();
                vec![edited.clone()]
            },
            |paths| {
                let plan = daemon
                    .plan_changes(&paths, SystemTime::now())
                    .expect("the edit is seen");
                assert!(plan.actions.len() <= 1);
                plan
            },
            BatchSize::PerIteration,
        )
    });
}

/// The rest of the daemon's turn for the same edit: applying the plan (to a dataplane that
/// accepts everything), persisting the last known good manifests and publishing the status
/// document and metrics.
fn converge(c: &mut Criterion) {
    let root = tempfile::tempdir().unwrap();
    let (mut daemon, edited) = setup(root.path());
    let mut weight = 1;
    c.bench_function(
        "run: 10,000 files, one edited → converged and published",
        |b| {
            b.iter_custom(|iterations| {
                let mut converging = Duration::ZERO;
                for _ in 0..iterations {
                    weight = if weight == 1 { 2 } else { 1 };
                    fs::write(&edited, manifest(4207, weight)).unwrap();
                    let plan = daemon
                        .plan_changes(std::slice::from_ref(&edited), SystemTime::now())
                        .expect("the edit is seen");
                    let started = Instant::now();
                    daemon.converge(plan);
                    converging += started.elapsed();
                }
                converging
            })
        },
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = bench, converge
}
criterion_main!(benches);
