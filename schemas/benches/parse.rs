//! How fast the engine can (re)load manifests: one file re-parsed after an edit, a 4,093-
//! backend mh manifest, and the cross-file checks over 10,000 files.
//!
//! `cargo bench -p balanced-schemas` (not part of the test command).

use std::hint::black_box;
use std::path::{Path, PathBuf};

use balanced_schemas::{ParsedFile, check_set, parse_file};
use criterion::{Criterion, criterion_group, criterion_main};

const WEB: &str = include_str!("../../examples/manifests/web.yaml");

/// A Balancer with one TCP service and `backends` backends, unique by `i`.
fn manifest(i: usize, backends: usize) -> String {
    let mut text = format!(
        "apiVersion: balanced.io/v1\nkind: Balancer\nmetadata:\n  name: svc-{i}\n  generation: \
         3\n  source: kubernetes/default/svc-{i}\nspec:\n  vip: 10.{}.{}.{}\n  services:\n    - \
         protocol: TCP\n      port: 443\n      scheduler: mh\n      schedulerFlags: \
         [mh-fallback]\n      forwarding:\n        method: tunnel\n      backends:\n",
        100 + i / 65536,
        (i / 256) % 256,
        i % 256
    );
    for b in 0..backends {
        text.push_str(&format!(
            "        - address: 172.{}.{}.{}\n          weight: {}\n",
            16 + b / 65536,
            (b / 256) % 256,
            b % 256,
            1 + b % 3
        ));
    }
    text
}

fn benches(c: &mut Criterion) {
    c.bench_function("parse_file web.yaml (2 services, 8 backends)", |b| {
        b.iter(|| parse_file(Path::new("web.yaml"), black_box(WEB)))
    });

    let big = manifest(0, 4093);
    c.bench_function("parse_file mh service with 4093 backends", |b| {
        b.iter(|| parse_file(Path::new("big.yaml"), black_box(&big)))
    });

    let texts: Vec<(PathBuf, String)> = (0..10_000)
        .map(|i| (PathBuf::from(format!("m/svc-{i}.yaml")), manifest(i, 10)))
        .collect();
    let files: Vec<ParsedFile> = texts.iter().map(|(p, t)| parse_file(p, t)).collect();
    let refs: Vec<&ParsedFile> = files.iter().collect();
    let mut group = c.benchmark_group("10,000 files of 10 backends");
    group.sample_size(10);
    group.bench_function("parse_file each", |b| {
        b.iter(|| {
            texts
                .iter()
                .map(|(p, t)| parse_file(p, black_box(t)))
                .filter(ParsedFile::has_errors)
                .count()
        })
    });
    group.bench_function("check_set", |b| {
        b.iter(|| check_set(black_box(&refs), None))
    });
    group.finish();
}

criterion_group!(parse, benches);
criterion_main!(parse);
