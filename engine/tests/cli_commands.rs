//! Exit codes of every command (0 success/no changes, 1 runtime failure, 2 plan: changes
//! pending, 3 held by a safety limit, 65 invalid input), through the compiled binary on a
//! simulated dataplane.

mod cli_support;

use std::process::Command;

use cli_support::*;

#[test]
fn validate_exits_0_on_valid_and_65_on_any_invalid_manifest_with_positions() {
    let node = Node::new("");
    node.write(
        "web.yaml",
        &balancer("web", "198.51.100.10", 80, &[("10.0.0.1", 1)]),
    );
    let mut cmd = Command::new(BIN);
    cmd.args(["validate", path_str(&node.manifests)]);
    clean_env(&mut cmd);
    let out = cmd.output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    node.write(
        "broken.yaml",
        &balancer("broken", "198.51.100.11", 80, &[("10.0.0.1", 1)]).replace("rr", "fastest"),
    );
    let out = cmd.output().unwrap();
    assert_eq!(code(&out), 65);
    let printed = stdout(&out);
    let broken = node.manifests.join("broken.yaml");
    assert!(
        printed.starts_with(&format!("{}:11:18: ", broken.display())),
        "diagnostic names the scheduler's position: {printed}"
    );
}

#[test]
fn schema_prints_the_json_schema_of_each_kind() {
    for kind in ["Balancer", "NodeConfig"] {
        let out = Command::new(BIN)
            .args(["schema", "--kind", kind])
            .output()
            .unwrap();
        assert_eq!(code(&out), 0);
        let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(schema["properties"]["spec"].is_object(), "{kind}: {schema}");
    }
    let out = Command::new(BIN)
        .args(["schema", "--kind", "Nope"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 65, "a bad command line is invalid input");
}

#[test]
fn plan_exits_2_then_apply_converges_and_plan_exits_0() {
    let node = Node::new("");
    node.write(
        "web.yaml",
        &balancer(
            "web",
            "198.51.100.10",
            80,
            &[("10.0.0.2", 1), ("10.0.0.1", 3)],
        ),
    );
    let out = node.run("plan", &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stdout(&out).contains("198.51.100.10"), "{}", stdout(&out));
    assert!(!node.sim.exists(), "plan never writes the simulated node");

    let out = node.run("apply", &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let logs = stderr(&out);
    assert!(
        logs.contains("+ address 198.51.100.10"),
        "each change is logged: {logs}"
    );
    let state = node.observed();
    assert_eq!(
        destinations(&state, &tcp("198.51.100.10", 80)),
        vec![("10.0.0.1".into(), 3), ("10.0.0.2".into(), 1)],
        "canonical destination order in the kernel's list"
    );
    assert!(
        state
            .interface
            .addresses
            .contains(&"198.51.100.10".parse().unwrap())
    );

    let out = node.run("plan", &[]);
    assert_eq!(
        code(&out),
        0,
        "apply then plan = no changes: {}",
        stdout(&out)
    );
    let out = node.run("plan", &["--output", "json"]);
    assert_eq!(code(&out), 0);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["actions"], serde_json::json!([]));
}

#[test]
fn plan_exits_65_when_any_manifest_is_invalid_even_with_other_changes() {
    let node = Node::new("");
    node.write(
        "web.yaml",
        &balancer("web", "198.51.100.10", 80, &[("10.0.0.1", 1)]),
    );
    node.write(
        "bad.yaml",
        "apiVersion: balanced.io/v1\nkind: Balancer\nmetadata: [\n",
    );
    let out = node.run("plan", &[]);
    assert_eq!(code(&out), 65);
    assert!(
        stdout(&out).contains("198.51.100.10"),
        "the valid rest is still planned"
    );
    assert!(stderr(&out).contains("bad.yaml:"), "{}", stderr(&out));
}

#[test]
fn plan_reads_an_exported_status_document_as_a_simulated_node() {
    let node = Node::new("");
    node.write(
        "web.yaml",
        &balancer("web", "198.51.100.10", 80, &[("10.0.0.1", 1)]),
    );
    assert_eq!(code(&node.run("apply", &[])), 0);
    let exported = node.root.path().join("node-a.json");
    std::fs::write(&exported, serde_json::to_vec(&node.status_json()).unwrap()).unwrap();
    let before = std::fs::read(&exported).unwrap();

    node.write(
        "web.yaml",
        &balancer("web", "198.51.100.10", 80, &[("10.0.0.1", 5)]),
    );
    let out = Command::new(BIN)
        .args(["plan", path_str(&node.manifests), "--config"])
        .arg(&node.config)
        .arg("--state-dir")
        .arg(&node.state)
        .arg("--dataplane")
        .arg(format!("sim:{}", exported.display()))
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stdout(&out).contains("weight 1 → 5"), "{}", stdout(&out));
    assert_eq!(std::fs::read(&exported).unwrap(), before, "read-only");
}

#[test]
fn missing_config_or_bad_dataplane_is_invalid_input_and_a_dataplane_failure_is_1() {
    let node = Node::new("");
    let out = Command::new(BIN)
        .args(["plan", path_str(&node.manifests)])
        .env_remove("BALANCED_CONFIG")
        .output()
        .unwrap();
    assert_eq!(code(&out), 65, "{}", stderr(&out));

    let out = node.run("plan", &["--dataplane", "floppy"]);
    assert_eq!(code(&out), 65);

    std::fs::write(&node.sim, "not json").unwrap();
    let out = node.run("apply", &[]);
    assert_eq!(
        code(&out),
        1,
        "an unreadable dataplane is a runtime failure"
    );
}

#[test]
fn environment_variables_stand_in_for_options() {
    let node = Node::new("");
    node.write(
        "web.yaml",
        &balancer("web", "198.51.100.10", 80, &[("10.0.0.1", 1)]),
    );
    let mut cmd = Command::new(BIN);
    clean_env(&mut cmd);
    let out = cmd
        .arg("apply")
        .env("BALANCED_MANIFESTS", &node.manifests)
        .env("BALANCED_CONFIG", &node.config)
        .env("BALANCED_STATE_DIR", &node.state)
        .env("BALANCED_DATAPLANE", format!("sim:{}", node.sim.display()))
        .env("BALANCED_LOG_FORMAT", "json")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let first = stderr(&out).lines().next().unwrap_or_default().to_owned();
    let line: serde_json::Value = serde_json::from_str(&first).expect("JSON log lines");
    assert!(line["level"].is_string(), "{line}");
    assert!(
        node.observed()
            .services
            .contains_key(&tcp("198.51.100.10", 80))
    );
}

#[test]
fn status_shows_manifests_in_force_with_their_generation() {
    let node = Node::new("");
    node.write(
        "web.yaml",
        &balancer("web", "198.51.100.10", 80, &[("10.0.0.1", 1)]),
    );
    assert_eq!(code(&node.run("apply", &[])), 0);
    let status = node.status_json();
    let web = &status["manifests"][0];
    assert_eq!(web["name"], "web");
    assert_eq!(web["generation"], 1);
    assert_eq!(web["state"], "inForce");
    let observed: balanced_engine::model::NodeState =
        serde_json::from_value(status["observed"].clone()).unwrap();
    assert_eq!(observed, node.observed());

    let out = node.balanced("status", &[]);
    assert_eq!(code(&out), 0);
    let text = stdout(&out);
    assert!(text.contains("VIP 198.51.100.10  announced"), "{text}");
    assert!(text.contains("in force"), "{text}");
}
