//! The example files an operator copies — BIRD configuration, Kubernetes deployment YAML, the
//! systemd unit's node config — are checked by the tools that will read them, so they cannot
//! rot unnoticed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use balanced_schemas::{Manifest, NodeConfigDoc, load_node_config, parse_file};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn bird_accepts_the_example_configuration() {
    let conf = repo().join("examples/bird/bird.conf");
    let out = Command::new("bird")
        .arg("-p")
        .arg("-c")
        .arg(&conf)
        .output()
        .expect("`bird` (Debian's bird2) must be installed: tests/run installs it");
    assert!(
        out.status.success(),
        "bird -p -c {} failed:\n{}",
        conf.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The BIRD filters must announce exactly the VIP ranges the example node owns: a range
/// missing there would never be announced, an extra one could announce a stray address.
#[test]
fn bird_announces_exactly_the_example_nodes_vip_ranges() {
    let bird = std::fs::read_to_string(repo().join("examples/bird/bird.conf")).unwrap();
    let mut announced = BTreeSet::new();
    for line in bird
        .lines()
        .filter(|l| l.trim_start().starts_with("define VIP"))
    {
        let list = line
            .split_once('[')
            .and_then(|(_, rest)| rest.split_once(']'));
        let (entries, _) = list.unwrap_or_else(|| panic!("cannot read BIRD set in {line:?}"));
        // `198.51.100.0/24{32,32}`: the length range has a comma of its own.
        for entry in entries.split(',').filter(|piece| piece.contains('/')) {
            let prefix = entry.split('{').next().unwrap().trim();
            let net = prefix.parse::<ipnet::IpNet>();
            announced.insert(net.unwrap_or_else(|e| panic!("BIRD prefix {prefix:?}: {e}")));
        }
    }
    let node = load_node_config(&repo().join("examples/node.yaml")).expect("examples/node.yaml");
    let Manifest::NodeConfig(config) = &node.document.manifest else {
        panic!("examples/node.yaml is not a NodeConfig");
    };
    let owned: BTreeSet<_> = config.spec.vip_ranges.iter().copied().collect();
    assert_eq!(
        announced, owned,
        "BIRD's VIP sets vs examples/node.yaml vipRanges"
    );
}

/// Deserializes `value` into the Kubernetes type `T` and back: any field that does not survive
/// the round trip is unknown to Kubernetes (k8s-openapi itself ignores unknown fields).
fn unknown_fields<T: DeserializeOwned + Serialize>(value: &Value) -> Vec<String> {
    let typed: T = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("does not deserialize as a Kubernetes object: {e}"));
    let back = serde_json::to_value(&typed).unwrap();
    let mut missing = Vec::new();
    missing_paths(value, &back, String::new(), &mut missing);
    missing
}

fn missing_paths(original: &Value, round_trip: &Value, at: String, out: &mut Vec<String>) {
    match (original, round_trip) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let path = format!("{at}.{key}");
                match b.get(key) {
                    Some(other) => missing_paths(value, other, path, out),
                    None if value.is_null() => {}
                    None => out.push(path),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                missing_paths(x, y, format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn check_kubernetes_object(value: &Value) -> Vec<String> {
    use k8s_openapi::api::{apps, coordination, core, rbac};
    let kind = value["kind"].as_str().unwrap_or_default();
    match kind {
        "Namespace" => unknown_fields::<core::v1::Namespace>(value),
        "ServiceAccount" => unknown_fields::<core::v1::ServiceAccount>(value),
        "ConfigMap" => unknown_fields::<core::v1::ConfigMap>(value),
        "Service" => unknown_fields::<core::v1::Service>(value),
        "ClusterRole" => unknown_fields::<rbac::v1::ClusterRole>(value),
        "ClusterRoleBinding" => unknown_fields::<rbac::v1::ClusterRoleBinding>(value),
        "Role" => unknown_fields::<rbac::v1::Role>(value),
        "RoleBinding" => unknown_fields::<rbac::v1::RoleBinding>(value),
        "DaemonSet" => unknown_fields::<apps::v1::DaemonSet>(value),
        "Deployment" => unknown_fields::<apps::v1::Deployment>(value),
        "Lease" => unknown_fields::<coordination::v1::Lease>(value),
        other => panic!("no Kubernetes type known to this test for kind {other:?}"),
    }
}

#[test]
fn every_kubernetes_example_is_a_valid_object_without_unknown_fields() {
    let dir = repo().join("examples/deploy");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no YAML in {}", dir.display());
    let mut problems = Vec::new();
    let mut objects = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for doc in docs.iter().filter(|d| !d.is_null()) {
            objects += 1;
            let name = doc["metadata"]["name"].as_str().unwrap_or("?");
            for field in check_kubernetes_object(doc) {
                problems.push(format!(
                    "{}: {} {name}: unknown field {field}",
                    file.display(),
                    doc["kind"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    assert!(objects >= 5, "only {objects} objects found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The unknown-field check must itself catch a misspelt field, or the test above proves nothing.
#[test]
fn the_unknown_field_check_catches_a_typo() {
    let daemonset: Value = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "x"},
        "spec": {"selector": {}, "template": {"spec": {"hostNetwrok": true, "containers": []}}}
    });
    assert_eq!(
        check_kubernetes_object(&daemonset),
        vec![".spec.template.spec.hostNetwrok".to_owned()]
    );
}

/// The node config shipped inside the engine's ConfigMap is a valid NodeConfig.
#[test]
fn the_deployed_node_config_is_valid() {
    let path = repo().join("examples/deploy/engine-daemonset.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    let config_map = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "balanced-node-config")
        .expect("the engine's ConfigMap");
    let node_yaml = config_map["data"]["node.yaml"].as_str().unwrap();
    let parsed = parse_file(Path::new("engine-daemonset.yaml#node.yaml"), node_yaml);
    if let Err(diagnostics) = NodeConfigDoc::from_file(parsed) {
        let lines: Vec<_> = diagnostics.iter().map(ToString::to_string).collect();
        panic!(
            "the ConfigMap's node.yaml is invalid:\n{}",
            lines.join("\n")
        );
    }
}
