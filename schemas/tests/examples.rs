//! The committed examples and schema files, checked against the code.
//!
//! - `examples/manifests/` with `examples/node.yaml` validate without a single diagnostic, and
//!   every example survives a serialize → parse round trip.
//! - `examples/invalid/<case>/` produce exactly the lines of its `expected.txt`: all `*.yaml`
//!   files of the case are manifests, except `node.yaml`, which is passed as the node config.
//! - `schemas/*.v1.json` equal what the types generate.
//!
//! `BLESS=1 cargo test -p balanced-schemas --test examples` rewrites `expected.txt` and the
//! schema files; review the diff.

use std::fs;
use std::path::{Path, PathBuf};

use balanced_schemas::{
    Manifest, SchemaKind, json_schema_text, load_paths, parse_file, validate_paths, yaml,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the schemas crate lives in the workspace")
        .to_owned()
}

fn bless() -> bool {
    std::env::var_os("BLESS").is_some_and(|v| v == "1")
}

/// Diagnostics as printed, with paths relative to the repository root.
fn render(diagnostics: &[balanced_schemas::Diagnostic]) -> String {
    let prefix = format!("{}/", root().display());
    diagnostics
        .iter()
        .map(|d| format!("{d}\n").replace(&prefix, ""))
        .collect()
}

#[test]
fn example_manifests_and_node_config_are_valid_without_warnings() {
    let root = root();
    let diagnostics = validate_paths(
        &[root.join("examples/manifests")],
        Some(&root.join("examples/node.yaml")),
    );
    assert_eq!(render(&diagnostics), "");
    let files = load_paths(&[root.join("examples/manifests")]);
    let documents: usize = files.iter().map(|f| f.documents.len()).sum();
    assert!(files.len() >= 6 && documents >= 7, "{files:#?}");
}

#[test]
fn every_example_starts_with_its_schema_comment() {
    let root = root();
    let mut files: Vec<PathBuf> = load_paths(&[root.join("examples/manifests")])
        .into_iter()
        .map(|f| f.path)
        .collect();
    files.push(root.join("examples/node.yaml"));
    for path in files {
        let text = fs::read_to_string(&path).unwrap();
        let first = text.lines().next().unwrap_or_default();
        let schema = first
            .strip_prefix("# yaml-language-server: $schema=")
            .unwrap_or_else(|| panic!("{}: first line is {first:?}", path.display()));
        let target = path.parent().unwrap().join(schema);
        assert!(
            target.is_file(),
            "{}: {} is missing",
            path.display(),
            target.display()
        );
    }
}

#[test]
fn examples_survive_a_serialize_parse_round_trip() {
    for file in load_paths(&[
        root().join("examples/manifests"),
        root().join("examples/node.yaml"),
    ]) {
        for document in &file.documents {
            let text = match &document.manifest {
                Manifest::Balancer(b) => yaml::to_string(b).unwrap(),
                Manifest::NodeConfig(n) => yaml::to_string(n).unwrap(),
            };
            let again = parse_file(Path::new("round-trip.yaml"), &text);
            assert_eq!(again.diagnostics, [], "{text}");
            assert_eq!(again.documents.len(), 1, "{text}");
            assert_eq!(again.documents[0].manifest, document.manifest, "{text}");
        }
    }
}

#[test]
fn invalid_examples_give_exactly_the_expected_diagnostics() {
    let dir = root().join("examples/invalid");
    let mut cases: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 20, "only {} invalid cases", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let mut manifests = Vec::new();
        let mut node = None;
        for entry in fs::read_dir(&case).unwrap() {
            let path = entry.unwrap().path();
            match path.file_name().and_then(|n| n.to_str()) {
                Some("node.yaml") => node = Some(path),
                Some(name) if name.ends_with(".yaml") || name.ends_with(".yml") => {
                    manifests.push(path)
                }
                _ => {}
            }
        }
        manifests.sort();
        let actual = render(&validate_paths(&manifests, node.as_deref()));
        let expected_path = case.join("expected.txt");
        if bless() {
            fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if actual != expected {
            failures.push(format!(
                "{}:\n--- expected\n{expected}--- actual\n{actual}",
                case.display()
            ));
        }
        if !actual.lines().any(|l| !l.contains(": warning: ")) && !case.ends_with("warnings") {
            failures.push(format!("{}: no error at all", case.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn committed_json_schemas_are_current() {
    for kind in SchemaKind::ALL {
        let path = root().join("schemas").join(kind.file_name());
        let generated = json_schema_text(kind);
        if bless() {
            fs::write(&path, &generated).unwrap();
            continue;
        }
        let committed = fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is stale: run BLESS=1 cargo test -p balanced-schemas --test examples",
            path.display()
        );
    }
}
