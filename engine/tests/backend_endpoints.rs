//! The backend role's operations endpoint, through the compiled binary: `balanced run --role
//! backend` serves `/readyz` once its first pass is done, `/metrics` counts the pods by state,
//! `/status` names each pod with its namespace and why it was skipped, and `balanced status
//! --role backend` prints the same pods from the state directory. No privileges needed: one
//! pod has no namespace on this node, the other's "namespace" is a plain file that cannot be
//! entered — both are skips, with their reasons.

mod cli_support;
mod ops_support;

use std::fs;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cli_support::{BIN, clean_env, stdout};
use ops_support::{PATIENCE, get, sample};

const ABSENT: &str = "0a1b2c3d-0000-4000-8000-00000000000a";
const PLAIN_FILE: &str = "0a1b2c3d-0000-4000-8000-00000000000b";

const WEB: &str = r#"apiVersion: balanced.io/v1
kind: Balancer
metadata:
  name: default.web
spec:
  vip: 198.51.100.10
  services:
  - protocol: TCP
    port: 80
    forwarding:
      method: tunnel
    backends:
    - address: 10.244.1.11
      node: node-1
      pod: {namespace: default, name: web-0, uid: 0a1b2c3d-0000-4000-8000-00000000000a}
    - address: 10.244.1.12
      node: node-1
      pod: {namespace: default, name: web-1, uid: 0a1b2c3d-0000-4000-8000-00000000000b}
    - address: 10.244.2.11
      node: node-2
      pod: {namespace: default, name: web-2, uid: 0a1b2c3d-0000-4000-8000-00000000000c}
"#;

/// Kills the process when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn run_backend_serves_readiness_metrics_and_the_status_of_each_pod() {
    let root = tempfile::tempdir().expect("tempdir");
    let manifests = root.path().join("manifests");
    let netns = root.path().join("netns");
    let state = root.path().join("state");
    fs::create_dir_all(&manifests).expect("manifests dir");
    fs::create_dir_all(&netns).expect("netns dir");
    fs::write(manifests.join("web.yaml"), WEB).expect("manifest");
    fs::write(netns.join(PLAIN_FILE), "not a namespace").expect("plain file");
    let log = root.path().join("run.log");
    let mut cmd = Command::new(BIN);
    clean_env(&mut cmd);
    let _child = Child(
        cmd.arg("run")
            .arg(&manifests)
            .args(["--role", "backend", "--node-name", "node-1"])
            .args(["--pod-resync", "200ms", "--metrics-addr", "127.0.0.1:0"])
            .arg("--netns-dir")
            .arg(&netns)
            .arg("--state-dir")
            .arg(&state)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start balanced run --role backend"),
    );
    let start = Instant::now();
    let log_text = || fs::read_to_string(&log).unwrap_or_default();
    let addr: SocketAddr = loop {
        if let Ok(text) = fs::read_to_string(state.join("metrics-address"))
            && let Ok(addr) = text.trim().parse()
        {
            break addr;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "no address; log:\n{}",
            log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let ready = loop {
        let (code, body) = get(addr, "/readyz");
        if code == 200 {
            break body;
        }
        assert!(start.elapsed() < PATIENCE, "/readyz still {code}: {body}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(ready, "ok: 0 pod(s) configured, 2 skipped, 0 failed\n");
    assert_eq!(get(addr, "/healthz").0, 200);

    let (code, metrics) = get(addr, "/metrics");
    assert_eq!(code, 200, "{metrics}");
    for (series, value) in [
        ("balanced_backend_pods{state=\"configured\"}", 0.0),
        ("balanced_backend_pods{state=\"skipped\"}", 2.0),
        ("balanced_backend_pods{state=\"failed\"}", 0.0),
        ("balanced_backend_vips", 0.0),
        ("balanced_backend_failures_total", 0.0),
    ] {
        assert_eq!(sample(&metrics, series), Some(value), "{series}: {metrics}");
    }
    assert!(
        sample(&metrics, "balanced_backend_converges_total{result=\"ok\"}") >= Some(1.0),
        "{metrics}"
    );

    let (code, body) = get(addr, "/status");
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
    assert_eq!(status["node"], "node-1");
    let pods = status["pods"].as_array().expect("pods");
    let names: Vec<&str> = pods.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["web-0", "web-1"], "only node-1's pods: {body}");
    assert_eq!(pods[0]["uid"], ABSENT);
    assert_eq!(pods[0]["state"], "skipped");
    assert_eq!(
        pods[0]["skipped"],
        "no network namespace found on this node"
    );
    assert_eq!(pods[0]["netns"], serde_json::Value::Null);
    assert_eq!(pods[1]["state"], "skipped");
    assert_eq!(
        pods[1]["netns"],
        netns.join(PLAIN_FILE).to_str().expect("utf-8 path")
    );
    assert!(pods[1]["netnsId"]["ino"].as_u64().is_some(), "{body}");
    let why = pods[1]["skipped"].as_str().expect("a reason");
    assert!(why.starts_with("cannot enter the namespace"), "{why}");
    assert_eq!(pods[1]["tunnels"][0]["encapsulation"], "ipip");
    assert_eq!(pods[1]["vips"], serde_json::json!([]));

    let mut cmd = Command::new(BIN);
    clean_env(&mut cmd);
    let out = cmd
        .args([
            "status",
            "--role",
            "backend",
            "--output",
            "json",
            "--state-dir",
        ])
        .arg(&state)
        .output()
        .expect("balanced status --role backend");
    assert_eq!(cli_support::code(&out), 0, "{out:?}");
    let written: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(
        written["pods"], status["pods"],
        "the file holds the same pods"
    );

    let mut cmd = Command::new(BIN);
    clean_env(&mut cmd);
    let out = cmd
        .args(["status", "--role", "backend", "--state-dir"])
        .arg(&state)
        .output()
        .expect("balanced status --role backend");
    let text = stdout(&out);
    assert!(
        text.contains(&format!("pod default/web-0 (uid {ABSENT}): skipped")),
        "{text}"
    );
    assert!(
        text.contains("2 pod(s): 0 configured, 2 skipped, 0 failed"),
        "{text}"
    );
}
