//! Walking the file system: what is loaded, in which order, and what becomes a diagnostic.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use balanced_schemas::{load_node_config, load_paths, validate_paths};

fn balancer(name: &str, vip: &str) -> String {
    format!(
        "apiVersion: balanced.io/v1\nkind: Balancer\nmetadata:\n  name: {name}\nspec:\n  vip: \
         {vip}\n  services:\n    - protocol: TCP\n      port: 80\n"
    )
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn names(root: &Path, paths: &[PathBuf]) -> Vec<String> {
    load_paths(paths)
        .iter()
        .map(|f| {
            f.path
                .strip_prefix(root)
                .unwrap_or(&f.path)
                .display()
                .to_string()
        })
        .collect()
}

#[test]
fn directories_are_walked_recursively_sorted_following_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("m/b.yaml"), &balancer("b", "198.51.100.2"));
    write(&root.join("m/a/z.yml"), &balancer("z", "198.51.100.3"));
    write(&root.join("m/a/notes.txt"), "not a manifest");
    write(
        &root.join("m/.hidden/h.yaml"),
        &balancer("h", "198.51.100.4"),
    );
    write(&root.join("m/.h.yaml"), &balancer("h2", "198.51.100.5"));
    write(
        &root.join("elsewhere/c.yaml"),
        &balancer("c", "198.51.100.6"),
    );
    symlink(root.join("elsewhere"), root.join("m/linked")).unwrap();
    // A loop back to the top is walked once, not forever.
    symlink(root.join("m"), root.join("m/a/loop")).unwrap();
    // The directory given may itself be a symlink.
    symlink(root.join("m"), root.join("current")).unwrap();

    let expected = ["m/a/z.yml", "m/b.yaml", "m/linked/c.yaml"];
    assert_eq!(names(root, &[root.join("m")]), expected);
    let via_link = names(root, &[root.join("current")]);
    assert_eq!(
        via_link,
        ["current/a/z.yml", "current/b.yaml", "current/linked/c.yaml"]
    );
    let diagnostics = validate_paths(&[root.join("current")], None);
    assert_eq!(diagnostics, []);
}

#[test]
fn a_kubernetes_configmap_volume_is_loaded_once() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // kubelet's layout: ..2026_01_01/web.yaml, ..data -> ..2026_01_01, web.yaml -> ..data/web.yaml
    write(
        &root.join("..2026_01_01/web.yaml"),
        &balancer("web", "198.51.100.2"),
    );
    symlink("..2026_01_01", root.join("..data")).unwrap();
    symlink("..data/web.yaml", root.join("web.yaml")).unwrap();
    assert_eq!(names(root, &[root.to_owned()]), ["web.yaml"]);
}

#[test]
fn explicit_files_are_read_whatever_their_name_and_once() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("web.conf"), &balancer("web", "198.51.100.2"));
    let paths = [
        root.join("web.conf"),
        root.to_owned(),
        root.join("web.conf"),
    ];
    assert_eq!(names(root, &paths), ["web.conf"]);
}

#[test]
fn io_problems_are_diagnostics_on_their_path() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("bin.yaml"), "");
    fs::write(root.join("bin.yaml"), [b'a', b':', b' ', 0xff, 0xfe, b'\n']).unwrap();
    symlink(root.join("nowhere.yaml"), root.join("dangling.yaml")).unwrap();
    let big = "#".repeat(balanced_schemas::yaml::MAX_FILE_BYTES + 1);
    write(&root.join("big.yaml"), &big);
    let mut lines: Vec<String> = validate_paths(&[root.to_owned(), root.join("missing")], None)
        .iter()
        .map(|d| d.to_string().replace(&format!("{}/", root.display()), ""))
        .collect();
    lines.sort();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(
        lines[0].starts_with("big.yaml: file is larger than"),
        "{lines:#?}"
    );
    assert_eq!(
        lines[1],
        "bin.yaml: not UTF-8 text (invalid byte at offset 3)"
    );
    assert!(
        lines[2].starts_with("dangling.yaml: cannot read:"),
        "{lines:#?}"
    );
    assert!(lines[3].starts_with("missing: cannot read:"), "{lines:#?}");
}

#[test]
fn the_node_config_is_one_nodeconfig_document() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let node = "apiVersion: balanced.io/v1\nkind: NodeConfig\nmetadata:\n  name: lvs-a\n";
    write(&root.join("node.yaml"), node);
    let config = load_node_config(&root.join("node.yaml")).unwrap();
    let spec = config.spec().unwrap();
    assert_eq!(spec.interface, "balanced0");
    assert_eq!(spec.resync_interval.to_string(), "30s");
    assert!(config.warnings.is_empty());

    write(&root.join("two.yaml"), &format!("{node}---\n{node}"));
    let errors = load_node_config(&root.join("two.yaml")).unwrap_err();
    assert!(
        errors[0].message.contains("exactly one NodeConfig"),
        "{errors:?}"
    );
    assert_eq!(errors[0].position.line, 6);

    write(
        &root.join("balancer.yaml"),
        &balancer("web", "198.51.100.2"),
    );
    let errors = load_node_config(&root.join("balancer.yaml")).unwrap_err();
    assert!(errors[0].message.contains("found Balancer"), "{errors:?}");

    write(&root.join("empty.yaml"), "# nothing\n");
    let errors = load_node_config(&root.join("empty.yaml")).unwrap_err();
    assert_eq!(
        errors[0].to_string(),
        format!(
            "{}: no NodeConfig document",
            root.join("empty.yaml").display()
        )
    );
}
