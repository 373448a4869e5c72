//! Shared by the CLI and daemon tests: a node in a temporary directory (manifests, node
//! config, state directory and a simulated dataplane file) driven through the compiled
//! `balanced` binary, and small manifest builders.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use balanced_engine::model::{NodeState, ServiceKey};
use balanced_schemas::v1::Protocol;

pub const BIN: &str = env!("CARGO_BIN_EXE_balanced");

/// A node in a temporary directory.
pub struct Node {
    pub root: tempfile::TempDir,
    pub manifests: PathBuf,
    pub config: PathBuf,
    pub state: PathBuf,
    pub sim: PathBuf,
}

impl Node {
    /// A node owning 198.51.100.0/24 with the given extra `spec` lines (YAML, two-space
    /// indented under `spec:`).
    pub fn new(extra_spec: &str) -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        let manifests = root.path().join("manifests");
        fs::create_dir_all(&manifests).expect("manifests dir");
        let config = root.path().join("node.yaml");
        fs::write(
            &config,
            format!(
                "apiVersion: balanced.io/v1\nkind: NodeConfig\nmetadata:\n  name: test-node\nspec:\n  \
                 interface: balanced0\n  vipRanges:\n    - 198.51.100.0/24\n{extra_spec}"
            ),
        )
        .expect("node config");
        Node {
            state: root.path().join("state"),
            sim: root.path().join("node.json"),
            manifests,
            config,
            root,
        }
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.manifests.join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, text).expect("write manifest");
    }

    pub fn remove(&self, rel: &str) {
        fs::remove_file(self.manifests.join(rel)).expect("remove manifest");
    }

    /// Runs `balanced COMMAND [ARGS] --config … --dataplane sim:… --state-dir …`.
    pub fn balanced(&self, command: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.arg(command)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .arg("--dataplane")
            .arg(format!("sim:{}", self.sim.display()))
            .arg("--state-dir")
            .arg(&self.state);
        clean_env(&mut cmd);
        cmd.output().expect("run balanced")
    }

    /// `plan`/`apply` over the manifests directory.
    pub fn run(&self, command: &str, extra: &[&str]) -> Output {
        let dir = self.manifests.to_str().expect("utf-8 path").to_owned();
        let mut args = vec![dir.as_str()];
        args.extend_from_slice(extra);
        self.balanced(command, &args)
    }

    /// The simulated node's state.
    pub fn observed(&self) -> NodeState {
        let document: serde_json::Value =
            serde_json::from_slice(&fs::read(&self.sim).expect("sim file")).expect("sim json");
        serde_json::from_value(document["observed"].clone()).expect("observed state")
    }

    /// Edits the simulated node's file (as a test would set connection counts).
    pub fn edit_sim(&self, edit: impl FnOnce(&mut NodeState)) {
        let mut document: serde_json::Value =
            serde_json::from_slice(&fs::read(&self.sim).expect("sim file")).expect("sim json");
        let mut state: NodeState =
            serde_json::from_value(document["observed"].clone()).expect("observed state");
        edit(&mut state);
        document["observed"] = serde_json::to_value(&state).expect("state json");
        fs::write(
            &self.sim,
            serde_json::to_vec_pretty(&document).expect("json"),
        )
        .expect("write");
    }

    pub fn status_json(&self) -> serde_json::Value {
        let out = self.balanced("status", &["--output", "json"]);
        assert_eq!(code(&out), 0, "status failed: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).expect("status json")
    }
}

/// The environment must not leak into the tests (BALANCED_* would change defaults).
pub fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars() {
        if key.starts_with("BALANCED_") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd.env("BALANCED_LOG", "info");
}

pub fn code(out: &Output) -> i32 {
    out.status.code().expect("exited normally")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn tcp(vip: &str, port: u16) -> ServiceKey {
    ServiceKey::Inet {
        protocol: Protocol::Tcp,
        vip: vip.parse().expect("vip"),
        port,
    }
}

/// A Balancer with one TCP service on `port` (rr, direct) and `backends` (address, weight).
pub fn balancer(name: &str, vip: &str, port: u16, backends: &[(&str, u32)]) -> String {
    let mut text = format!(
        "apiVersion: balanced.io/v1\nkind: Balancer\nmetadata:\n  name: {name}\n  generation: 1\nspec:\n  \
         vip: {vip}\n  services:\n    - protocol: TCP\n      port: {port}\n      scheduler: rr\n      \
         forwarding:\n        method: direct\n      backends:\n"
    );
    for (address, weight) in backends {
        text.push_str(&format!(
            "        - address: {address}\n          weight: {weight}\n"
        ));
    }
    text
}

/// The (address, weight) list of a service in the simulated kernel's list order.
pub fn destinations(state: &NodeState, key: &ServiceKey) -> Vec<(String, u32)> {
    state
        .services
        .get(key)
        .map(|s| {
            s.destinations
                .iter()
                .map(|d| (d.key.address.to_string(), d.config.weight))
                .collect()
        })
        .unwrap_or_default()
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}
