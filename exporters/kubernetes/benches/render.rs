//! Rendering at scale and the latency of one EndpointSlice change.
//!
//! - `render_10k_services_100k_endpoints`: the pure render of 10,000 Services (2 ports each)
//!   with 100,000 endpoints (one EndpointSlice of 10 per Service, each endpoint naming its pod,
//!   so the exporter's pod UID index is as large as in a real cluster). Target < 1 s.
//! - `initial_write_10k_tmpfs`: render + writing the 10,000 files into an empty directory on
//!   tmpfs (/dev/shm): the CPU cost, without the disk's fsync latency.
//! - `one_slice_change_to_file_renamed_10k_tmpfs`: a synced exporter with those 10,000 Services
//!   gets one EndpointSlice event; measured from handing the event to the renderer until the
//!   file is renamed into place and its directory fsynced. Only that Service's file is
//!   written. Target < 50 ms.
//! - `one_pod_opt_out_to_file_renamed_10k_tmpfs`: the same exporter gets one Pod metadata event
//!   that flips the pod's `balanced.io/tunnel-ignore`; only the Service naming that pod is
//!   rendered and written (found through the pod UID index, not by rendering everything).
//! - `one_slice_change_to_file_renamed_100_disk`: the same on the disk-backed temporary
//!   directory (real fsync latency), with 100 Services so the setup stays short.
//!
//! Peak memory (VmHWM of the whole bench process, objects + manifests) and the CPU time of a
//! render (immune to other load on the machine) are printed once.

use std::collections::BTreeMap;
use std::hint::black_box;

use balanced_exporter::config::RenderConfig;
use balanced_exporter::fixtures::{pod_meta, service, slice, with_ingress, with_pod_refs};
use balanced_exporter::pods::OptedOut;
use balanced_exporter::pods::TUNNEL_IGNORE;
use balanced_exporter::render::render;
use balanced_exporter::run::Renderer;
use balanced_exporter::watch::{Cache, Input};
use balanced_exporter::writer::Writer;
use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::Event;

const SERVICES: usize = 10_000;
const ENDPOINTS_PER_SERVICE: usize = 10;

fn cluster() -> (Vec<Service>, Vec<EndpointSlice>) {
    let mut services = Vec::with_capacity(SERVICES);
    let mut slices = Vec::with_capacity(SERVICES);
    for i in 0..SERVICES {
        let name = format!("svc-{i:05}");
        let namespace = format!("team-{:02}", i % 50);
        let vip = format!("10.{}.{}.{}", 100 + i / 65_536, (i / 256) % 256, i % 256);
        services.push(with_ingress(
            service(&namespace, &name, &[80, 443], i as i64),
            &[&vip],
        ));
        let addresses: Vec<String> = (0..ENDPOINTS_PER_SERVICE)
            .map(|e| {
                let n = i * ENDPOINTS_PER_SERVICE + e;
                format!("172.{}.{}.{}", 16 + n / 65_536, (n / 256) % 256, n % 256)
            })
            .collect();
        slices.push(with_pod_refs(slice(
            &namespace,
            &name,
            "abcde",
            &[80, 443],
            &addresses,
        )));
    }
    (services, slices)
}

/// CPU time (user + system) this thread used so far, in seconds (clock ticks of 10 ms).
fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn synced(dir: &std::path::Path, services: Vec<Service>, slices: Vec<EndpointSlice>) -> Renderer {
    let mut renderer = Renderer::new(
        RenderConfig::default(),
        Cache::new(&[]),
        Writer::open(dir, None).unwrap(),
    );
    renderer.apply(Input::Service(0, Box::new(Event::Init)));
    for s in services {
        renderer.apply(Input::Service(0, Box::new(Event::InitApply(s))));
    }
    renderer.apply(Input::Service(0, Box::new(Event::InitDone)));
    renderer.apply(Input::Slice(0, Box::new(Event::Init)));
    for s in slices {
        renderer.apply(Input::Slice(0, Box::new(Event::InitApply(s))));
    }
    renderer.apply(Input::Slice(0, Box::new(Event::InitDone)));
    renderer.apply(Input::Pod(0, Box::new(Event::Init)));
    renderer.apply(Input::Pod(0, Box::new(Event::InitDone)));
    renderer
}

fn benches(c: &mut Criterion) {
    let (services, slices) = cluster();
    let config = RenderConfig::default();
    let opted_out = OptedOut::default();
    let rendered = render(&services, &slices, &opted_out, &config, &BTreeMap::new());
    assert_eq!(rendered.manifests.len(), SERVICES);
    let endpoints: usize = rendered
        .manifests
        .values()
        .map(|b| b.spec.services[0].backends.len())
        .sum();
    assert_eq!(endpoints, SERVICES * ENDPOINTS_PER_SERVICE);
    drop(rendered);
    eprintln!(
        "peak RSS after building the cluster and one render: {:.0} MiB",
        peak_rss_mib().unwrap_or(f64::NAN)
    );
    let before = thread_cpu_seconds().unwrap_or(f64::NAN);
    for _ in 0..5 {
        black_box(render(
            &services,
            &slices,
            &opted_out,
            &config,
            &BTreeMap::new(),
        ));
    }
    eprintln!(
        "CPU time of one render of 10k Services / 100k endpoints: {:.0} ms",
        (thread_cpu_seconds().unwrap_or(f64::NAN) - before) / 5.0 * 1000.0
    );

    let mut group = c.benchmark_group("exporter");
    group.sample_size(10);
    group.bench_function("render_10k_services_100k_endpoints", |b| {
        b.iter(|| {
            black_box(render(
                &services,
                &slices,
                &opted_out,
                &config,
                &BTreeMap::new(),
            ))
        })
    });
    group.bench_function("initial_write_10k_tmpfs", |b| {
        b.iter_batched(
            || tempfile::tempdir_in("/dev/shm").unwrap(),
            |dir| {
                let rendered = render(&services, &slices, &opted_out, &config, &BTreeMap::new());
                let mut writer = Writer::open(dir.path(), None).unwrap();
                let changes = writer.sync(rendered.manifests).into_result().unwrap();
                assert_eq!(changes.len(), SERVICES);
                dir
            },
            criterion::BatchSize::PerIteration,
        )
    });

    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let mut renderer = synced(dir.path(), services.clone(), slices.clone());
    assert_eq!(renderer.flush().batch.changes.len(), SERVICES);
    eprintln!(
        "peak RSS with a synced exporter of 10k Services: {:.0} MiB",
        peak_rss_mib().unwrap_or(f64::NAN)
    );
    let base = slices[4_242].clone();
    let mut grown = base.clone();
    grown.endpoints.push(grown.endpoints[0].clone());
    grown.endpoints.last_mut().unwrap().addresses = vec!["192.168.77.77".to_owned()];
    let mut flip = false;
    group.bench_function("one_slice_change_to_file_renamed_10k_tmpfs", |b| {
        b.iter(|| {
            flip = !flip;
            let next = if flip { grown.clone() } else { base.clone() };
            renderer.apply(Input::Slice(0, Box::new(Event::Apply(next))));
            let flush = renderer.flush();
            assert_eq!(flush.batch.changes.len(), 1, "exactly the one file");
            assert_eq!(flush.services_rendered, 1);
        })
    });
    let namespace = format!("team-{:02}", 4_242 % 50);
    let address = base.endpoints[0].addresses[0].clone();
    let mut ignored = false;
    group.bench_function("one_pod_opt_out_to_file_renamed_10k_tmpfs", |b| {
        b.iter(|| {
            ignored = !ignored;
            let annotations: &[(&str, &str)] = if ignored {
                &[(TUNNEL_IGNORE, "true")]
            } else {
                &[]
            };
            let pod = pod_meta(&namespace, &address, annotations);
            renderer.apply(Input::Pod(0, Box::new(Event::Apply(pod))));
            let flush = renderer.flush();
            assert_eq!(flush.batch.changes.len(), 1, "exactly the one file");
            assert_eq!(flush.services_rendered, 1);
        })
    });
    drop(renderer);

    let disk = tempfile::tempdir().unwrap();
    // This renderer starts from `base`: the first iteration must apply `grown`.
    flip = false;
    let mut renderer = synced(
        disk.path(),
        services[..100].to_vec(),
        slices[..100].to_vec(),
    );
    assert_eq!(renderer.flush().batch.changes.len(), 100);
    let base = slices[42].clone();
    let mut grown = base.clone();
    grown.endpoints.push(grown.endpoints[0].clone());
    grown.endpoints.last_mut().unwrap().addresses = vec!["192.168.77.77".to_owned()];
    group.bench_function("one_slice_change_to_file_renamed_100_disk", |b| {
        b.iter(|| {
            flip = !flip;
            let next = if flip { grown.clone() } else { base.clone() };
            renderer.apply(Input::Slice(0, Box::new(Event::Apply(next))));
            let flush = renderer.flush();
            assert_eq!(flush.batch.changes.len(), 1, "exactly the one file");
        })
    });
    group.finish();
    eprintln!(
        "peak RSS at the end: {:.0} MiB",
        peak_rss_mib().unwrap_or(f64::NAN)
    );
}

criterion_group!(exporter, benches);
criterion_main!(exporter);
