//! The writer: atomic replacement, byte-stable rewrites, generations that survive restarts,
//! foreign files left alone, one Git commit per batch pushed to a (local bare) remote.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use balanced_exporter::Error;
use balanced_exporter::config::RenderConfig;
use balanced_exporter::fixtures::{service, slice, with_ingress};
use balanced_exporter::manifest::{ServiceKey, from_yaml};
use balanced_exporter::pods::OptedOut;
use balanced_exporter::render::render;
use balanced_exporter::writer::{ChangeKind, GitConfig, Writer};
use balanced_schemas::v1::Balancer;

/// The manifests of `shop/web` with `n` backends.
fn web(n: usize) -> BTreeMap<String, Balancer> {
    let svc = with_ingress(service("shop", "web", &[80], 1), &["198.51.100.10"]);
    let addresses: Vec<String> = (0..n)
        .map(|i| format!("10.244.{}.{}", i / 250, i % 250 + 1))
        .collect();
    let slices = vec![slice("shop", "web", "a", &[80], &addresses)];
    render(
        &[svc],
        &slices,
        &OptedOut::default(),
        &RenderConfig::default(),
        &BTreeMap::new(),
    )
    .manifests
}

fn generation(path: &Path) -> Option<u64> {
    from_yaml(&fs::read_to_string(path).unwrap())
        .unwrap()
        .metadata
        .generation
}

#[test]
fn unchanged_manifests_are_not_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Writer::open(dir.path(), None).unwrap();
    let changes = writer.sync(web(3)).into_result().unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].kind, ChangeKind::Created { generation: 1 });
    let file = dir.path().join("shop/web.yaml");
    let before = fs::read(&file).unwrap();
    let modified = fs::metadata(&file).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));

    assert_eq!(writer.sync(web(3)).into_result().unwrap(), vec![]);
    assert_eq!(fs::read(&file).unwrap(), before);
    assert_eq!(fs::metadata(&file).unwrap().modified().unwrap(), modified);

    // A fresh writer (a restart) does not rewrite it either.
    let mut writer = Writer::open(dir.path(), None).unwrap();
    assert_eq!(writer.sync(web(3)).into_result().unwrap(), vec![]);
    assert_eq!(fs::metadata(&file).unwrap().modified().unwrap(), modified);
}

#[test]
fn generation_continues_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shop/web.yaml");
    let mut writer = Writer::open(dir.path(), None).unwrap();
    writer.sync(web(1)).into_result().unwrap();
    writer.sync(web(2)).into_result().unwrap();
    assert_eq!(generation(&file), Some(2));
    drop(writer);
    let mut writer = Writer::open(dir.path(), None).unwrap();
    let changes = writer.sync(web(3)).into_result().unwrap();
    assert_eq!(changes[0].kind, ChangeKind::Updated { generation: 3 });
    assert_eq!(generation(&file), Some(3));
}

#[test]
fn foreign_files_survive_and_are_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("shop")).unwrap();
    let manual = "apiVersion: balanced.io/v1\nkind: Balancer\nmetadata:\n  name: by-hand\n  source: manual\nspec:\n  vip: 203.0.113.1\n  services: []\n";
    fs::write(dir.path().join("by-hand.yaml"), manual).unwrap();
    fs::write(dir.path().join("notes.yaml"), "just: [some, notes").unwrap();
    let mut writer = Writer::open(dir.path(), None).unwrap();
    writer.sync(web(1)).into_result().unwrap();
    // A sync without any manifest deletes only the exporter's file.
    let changes = writer.sync(BTreeMap::new()).into_result().unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].kind, ChangeKind::Deleted);
    assert!(!dir.path().join("shop/web.yaml").exists());
    assert_eq!(
        fs::read_to_string(dir.path().join("by-hand.yaml")).unwrap(),
        manual
    );
    assert!(dir.path().join("notes.yaml").exists());

    // A hand-written file where the exporter wants to write is an error and stays as it was.
    fs::create_dir_all(dir.path().join("shop")).unwrap();
    let taken = manual.replace("by-hand", "shop.web");
    fs::write(dir.path().join("shop/web.yaml"), &taken).unwrap();
    let mut writer = Writer::open(dir.path(), None).unwrap();
    let err = writer.sync(web(1)).into_result().unwrap_err();
    assert!(matches!(err, Error::Foreign { .. }), "{err}");
    assert!(err.to_string().contains("shop/web.yaml"), "{err}");
    assert_eq!(
        fs::read_to_string(dir.path().join("shop/web.yaml")).unwrap(),
        taken
    );
}

#[test]
fn a_gone_family_loses_only_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Writer::open(dir.path(), None).unwrap();
    let key = ServiceKey::new("shop", "web");
    let mut both = web(1);
    let mut v6 = both["shop/web.yaml"].clone();
    v6.metadata.name = "shop.web.ipv6".to_owned();
    v6.spec.vip = "2001:db8::10".parse().unwrap();
    both.insert("shop/web.ipv6.yaml".to_owned(), v6);
    writer.sync_service(&key, both).into_result().unwrap();
    assert!(dir.path().join("shop/web.ipv6.yaml").exists());
    let changes = writer.sync_service(&key, web(1)).into_result().unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].path, "shop/web.ipv6.yaml");
    assert!(dir.path().join("shop/web.yaml").exists());
    assert!(!dir.path().join("shop/web.ipv6.yaml").exists());
}

#[test]
fn a_concurrent_reader_never_sees_a_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shop/web.yaml");
    let mut writer = Writer::open(dir.path(), None).unwrap();
    writer.sync(web(2)).into_result().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        let file = file.clone();
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !done.load(Ordering::Relaxed) {
                let text = fs::read_to_string(&file).expect("the file is always there");
                let balancer =
                    from_yaml(&text).unwrap_or_else(|e| panic!("partial read: {e}\n{text}"));
                let backends = balancer.spec.services[0].backends.len();
                assert!(
                    backends == 400 || backends == 2,
                    "torn file with {backends} backends"
                );
                reads += 1;
            }
            reads
        })
    };
    for round in 0..200 {
        // Sizes alternate between small and large so a torn write would show.
        writer
            .sync(web(if round % 2 == 0 { 400 } else { 2 }))
            .into_result()
            .unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let reads = reader.join().unwrap();
    assert!(reads > 0);
    assert_eq!(generation(&file), Some(201));
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn each_batch_is_one_commit_pushed_to_the_remote() {
    let root = tempfile::tempdir().unwrap();
    let remote = root.path().join("remote.git");
    let work = root.path().join("work");
    fs::create_dir_all(&work).unwrap();
    git(root.path(), &["init", "--quiet", "--bare", "remote.git"]);
    git(&work, &["init", "--quiet", "-b", "main"]);
    git(
        &work,
        &["remote", "add", "origin", remote.to_str().unwrap()],
    );
    let config = GitConfig {
        push: Some("origin".to_owned()),
        author_name: "balanced-exporter".to_owned(),
        author_email: "exporter@example.invalid".to_owned(),
    };
    let mut writer = Writer::open(&work, Some(config)).unwrap();
    let changes = writer.sync(web(2)).into_result().unwrap();
    assert!(writer.commit(&changes).unwrap());
    let changes = writer.sync(web(3)).into_result().unwrap();
    assert!(writer.commit(&changes).unwrap());
    // Nothing changed: no commit.
    let changes = writer.sync(web(3)).into_result().unwrap();
    assert!(!writer.commit(&changes).unwrap());

    let log = git(&remote, &["log", "--format=%an|%s|%b", "main"]);
    let commits: Vec<&str> = log
        .split("balanced-exporter|")
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(commits.len(), 2, "{log}");
    assert!(
        commits[0].starts_with(
            "balanced-exporter: 1 Service changed|shop/web: updated shop/web.yaml (generation 2)"
        ),
        "{log}"
    );
    assert!(
        commits[1].contains("shop/web: created shop/web.yaml (generation 1)"),
        "{log}"
    );
    let pushed = git(&remote, &["show", "main:shop/web.yaml"]);
    assert_eq!(
        pushed,
        fs::read_to_string(work.join("shop/web.yaml")).unwrap()
    );
}
