//! The offline path end to end: `balanced-exporter render --from DUMP --output DIR` on a
//! realistic dump, then the schemas crate's `validate_paths` (what `balanced validate` runs)
//! must accept every file with no error and no warning.

use std::path::Path;
use std::process::Command;

use balanced_schemas::{Severity, validate_paths};

#[test]
fn an_offline_render_of_a_realistic_dump_validates() {
    let dump =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/render/cluster/input.yaml");
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_balanced-exporter"))
        .args(["render", "--accept-without-class", "--from"])
        .arg(&dump)
        .arg("--output")
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success());
    let files = std::fs::read_dir(out.path().join("shop")).unwrap().count();
    assert!(files >= 6, "expected the shop manifests, found {files}");
    let diagnostics = validate_paths(&[out.path().to_path_buf()], None);
    let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    assert!(
        diagnostics.iter().all(|d| d.severity != Severity::Error),
        "validate rejects the render:\n{}",
        text.join("\n")
    );
    assert!(text.is_empty(), "warnings:\n{}", text.join("\n"));

    // Rendering again changes nothing, byte for byte.
    let before = std::fs::read(out.path().join("shop/web.yaml")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_balanced-exporter"))
        .args(["render", "--accept-without-class", "--from"])
        .arg(&dump)
        .arg("--output")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(
        output.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert_eq!(
        std::fs::read(out.path().join("shop/web.yaml")).unwrap(),
        before
    );
}

#[test]
fn an_unreadable_dump_is_bad_data() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("dump.yaml");
    std::fs::write(
        &dump,
        "apiVersion: v1\nkind: List\nitems: [{kind: Service, apiVersion: v1, spec: {ports: 7}}]\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_balanced-exporter"))
        .args(["render", "--from"])
        .arg(&dump)
        .arg("--output")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(65));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("dump.yaml: document 1 item 0 (Service ?)"),
        "{stderr}"
    );
}
