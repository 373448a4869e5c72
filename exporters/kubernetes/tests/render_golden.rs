//! Golden tests: realistic API objects (a `kubectl get services,endpointslices -A -o yaml`
//! dump per case under `tests/fixtures/render/<case>/input.yaml`) rendered and written exactly
//! as the exporter does; the files and problems must match `expected/` and `problems.txt`
//! byte for byte. `BLESS=1 cargo test -p balanced-exporter --test render_golden` rewrites them.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use balanced_exporter::config::RenderConfig;
use balanced_exporter::pods::OptedOut;
use balanced_exporter::writer::Writer;
use balanced_exporter::{dump, render};

fn files_under(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_owned();
                out.insert(relative, fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    if root.exists() {
        walk(root, root, &mut out);
    }
    out
}

fn check_case(case: &str, config: &RenderConfig) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/render")
        .join(case);
    let input = dir.join("input.yaml");
    let dump = dump::parse(&input, &fs::read_to_string(&input).unwrap()).unwrap();
    let (opted_out, pod_warnings) = OptedOut::from_pods(&dump.pods);
    let rendered = render::render(
        &dump.services,
        &dump.slices,
        &opted_out,
        config,
        &BTreeMap::new(),
    );
    let out = tempfile::tempdir().unwrap();
    let mut writer = Writer::open(out.path(), None).unwrap();
    writer.sync(rendered.manifests).into_result().unwrap();
    let actual = files_under(out.path());
    let problems: String = rendered
        .problems
        .iter()
        .map(|p| format!("{}: {}\n", p.reason.as_str(), p.message))
        .chain(
            pod_warnings
                .iter()
                .map(|w| format!("InvalidAnnotation: {w}\n")),
        )
        .collect();

    let expected_dir = dir.join("expected");
    let problems_file = dir.join("problems.txt");
    if std::env::var_os("BLESS").is_some() {
        let _ = fs::remove_dir_all(&expected_dir);
        for (path, text) in &actual {
            let target = expected_dir.join(path);
            fs::create_dir_all(target.parent().unwrap()).unwrap();
            fs::write(target, text).unwrap();
        }
        fs::write(&problems_file, &problems).unwrap();
        return;
    }
    let expected = files_under(&expected_dir);
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{case}: the set of files differs (BLESS=1 to regenerate)"
    );
    for (path, text) in &actual {
        assert_eq!(
            text, &expected[path],
            "{case}: {path} differs (BLESS=1 to regenerate)"
        );
    }
    assert_eq!(
        problems,
        fs::read_to_string(&problems_file).unwrap_or_default(),
        "{case}: problems differ (BLESS=1 to regenerate)"
    );
}

#[test]
fn cluster_renders_as_golden() {
    let config = RenderConfig {
        accept_without_class: true,
        ..RenderConfig::default()
    };
    check_case("cluster", &config);
}

#[test]
fn rendering_does_not_depend_on_object_order() {
    let input =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/render/cluster/input.yaml");
    let mut dump = dump::parse(&input, &fs::read_to_string(&input).unwrap()).unwrap();
    let config = RenderConfig::default();
    let (opted_out, _) = OptedOut::from_pods(&dump.pods);
    let forward = render::render(
        &dump.services,
        &dump.slices,
        &opted_out,
        &config,
        &BTreeMap::new(),
    );
    dump.services.reverse();
    dump.slices.reverse();
    for slice in &mut dump.slices {
        slice.endpoints.reverse();
    }
    let backward = render::render(
        &dump.services,
        &dump.slices,
        &opted_out,
        &config,
        &BTreeMap::new(),
    );
    assert_eq!(forward, backward);
    assert!(!forward.manifests.is_empty());
}
