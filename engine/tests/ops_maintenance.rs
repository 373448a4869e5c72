//! Maintenance on a simulated node: `balanced maintenance on|off` (with `apply`, and with a
//! running daemon that acts at once) and `maintenance: true` in the node config withdraw exactly
//! the VIP addresses and restore exactly them; services and destinations stay identical.

mod cli_support;
mod ops_support;

use std::time::Duration;

use balanced_engine::model::NodeState;
use cli_support::*;
use ops_support::*;

const WEB: &str = "198.51.100.10";
const DNS: &str = "198.51.100.53";

/// Two VIPs, one of them with two ports (one address serves two services).
fn populate(node: &Node) {
    node.write(
        "web.yaml",
        &balancer("web", WEB, 80, &[("10.0.0.1", 1), ("10.0.0.2", 2)]),
    );
    node.write(
        "web-tls.yaml",
        &balancer("web-tls", WEB, 443, &[("10.0.0.1", 1)]),
    );
    node.write("dns.yaml", &balancer("dns", DNS, 53, &[("10.0.1.1", 1)]));
}

fn addresses(state: &NodeState) -> Vec<String> {
    state
        .interface
        .addresses
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Everything but the addresses.
fn without_addresses(state: &NodeState) -> NodeState {
    let mut state = state.clone();
    state.interface.addresses.clear();
    state
}

fn maintenance(node: &Node, args: &[&str]) {
    let out = node.balanced("maintenance", args);
    assert_eq!(code(&out), 0, "maintenance {args:?}: {}", stderr(&out));
}

#[test]
fn maintenance_with_apply_withdraws_and_restores_exactly_the_addresses() {
    let node = Node::new("");
    populate(&node);
    assert_eq!(code(&node.run("apply", &[])), 0);
    let before = node.observed();
    assert_eq!(addresses(&before), [WEB, DNS]);
    assert_eq!(before.services.len(), 3);

    maintenance(&node, &["on", "--reason", "kernel upgrade"]);
    let plan = node.run("plan", &["--output", "json"]);
    assert_eq!(code(&plan), 2, "{}", stderr(&plan));
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan json");
    let kinds: Vec<&str> = plan["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| a["action"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["delAddress", "delAddress"], "{plan}");

    let status = node.status_json();
    assert_eq!(status["maintenance"]["withdrawn"], true, "{status}");
    assert_eq!(
        status["maintenance"]["operator"]["reason"], "kernel upgrade",
        "status shows the flag before any converge"
    );

    assert_eq!(code(&node.run("apply", &[])), 0);
    let during = node.observed();
    assert!(addresses(&during).is_empty(), "{:?}", addresses(&during));
    assert_eq!(
        without_addresses(&during),
        without_addresses(&before),
        "services, destinations and the link stay"
    );
    let text = node.balanced("status", &[]);
    assert!(
        stdout(&text).contains("MAINTENANCE: every VIP address withdrawn"),
        "{}",
        stdout(&text)
    );
    assert_eq!(
        code(&node.run("plan", &[])),
        0,
        "nothing left to do in maintenance"
    );

    maintenance(&node, &["off"]);
    assert_eq!(code(&node.run("apply", &[])), 0);
    assert_eq!(
        node.observed(),
        before,
        "announced again, nothing else changed"
    );
    let status = node.status_json();
    assert_eq!(status["maintenance"]["withdrawn"], false, "{status}");
}

#[test]
fn the_node_config_switch_withdraws_too() {
    let node = Node::new("  maintenance: true\n");
    populate(&node);
    assert_eq!(code(&node.run("apply", &[])), 0);
    let state = node.observed();
    assert!(addresses(&state).is_empty());
    assert_eq!(state.services.len(), 3, "services are built in maintenance");
    let status = node.status_json();
    assert_eq!(status["maintenance"]["nodeConfig"], true, "{status}");
}

#[test]
fn a_running_daemon_acts_on_the_flag_at_once() {
    // resyncInterval stays at its 30 s default: the change must come from the flag, not a
    // resync.
    let node = Node::new("");
    populate(&node);
    let log = node.root.path().join("run.log");
    let run = Running::start(&node, &[], &log);
    run.metrics_until("both addresses announced", |t| {
        sample(t, "balanced_announced_addresses") == Some(2.0)
    });
    let before = node.observed();
    assert_eq!(addresses(&before), [WEB, DNS]);

    maintenance(&node, &["on"]);
    let during = run.metrics_until("withdrawn", |t| {
        sample(t, "balanced_announced_addresses") == Some(0.0)
            && sample(t, "balanced_maintenance{switch=\"operator\"}") == Some(1.0)
    });
    assert_eq!(
        sample(
            &during,
            "balanced_actions_total{kind=\"delAddress\",result=\"ok\"}"
        ),
        Some(2.0),
        "{during}"
    );
    let state = node.observed();
    assert!(addresses(&state).is_empty());
    assert_eq!(without_addresses(&state), without_addresses(&before));
    let (_, status) = run.get("/status");
    let status: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    assert_eq!(status["maintenance"]["withdrawn"], true, "{status}");
    assert_eq!(
        run.get("/readyz").0,
        200,
        "maintenance is not a failure: the node still converges"
    );

    maintenance(&node, &["off"]);
    run.metrics_until("announced again", |t| {
        sample(t, "balanced_announced_addresses") == Some(2.0)
            && sample(t, "balanced_maintenance{switch=\"operator\"}") == Some(0.0)
    });
    assert_eq!(node.observed(), before);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(node.observed(), before, "and stays so");
}

#[test]
fn withdraw_on_failure_withdraws_while_converging_fails_and_announces_after_a_success() {
    let node = Node::new("  resyncInterval: 1s\n  withdrawOnFailure: 2s\n");
    populate(&node);
    let log = node.root.path().join("run.log");
    let run = Running::start(&node, &[], &log);
    run.metrics_until("both addresses announced", |t| {
        sample(t, "balanced_announced_addresses") == Some(2.0)
    });
    run.until_code("/readyz", 200);

    // The simulated node cannot be written any more: a directory where the simulated
    // dataplane's temporary file goes makes every commit fail (as root too).
    let blocker = node
        .root
        .path()
        .join(format!(".node.json.{}.tmp", run.pid()));
    std::fs::create_dir(&blocker).expect("block the sim commit");
    node.write(
        "dns.yaml",
        &balancer("dns", DNS, 53, &[("10.0.1.1", 1), ("10.0.1.2", 1)]),
    );
    let failing = run.metrics_until("withdrawn on failure", |t| {
        sample(t, "balanced_maintenance{switch=\"failure\"}") == Some(1.0)
            && sample(t, "balanced_announced_addresses") == Some(0.0)
    });
    assert!(
        sample(&failing, "balanced_converges_total{result=\"failed\"}").is_some_and(|n| n >= 2.0),
        "{failing}"
    );
    assert_eq!(run.get("/readyz").0, 503);
    let (_, status) = run.get("/status");
    let status: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    assert_eq!(
        status["maintenance"]["withdrawnOnFailure"], true,
        "{status}"
    );
    assert!(status["maintenance"]["failingSince"].is_u64(), "{status}");

    std::fs::remove_dir(&blocker).expect("unblock");
    run.metrics_until("announced again", |t| {
        sample(t, "balanced_maintenance{switch=\"failure\"}") == Some(0.0)
            && sample(t, "balanced_announced_addresses") == Some(2.0)
    });
    run.until_code("/readyz", 200);
    let state = node.observed();
    assert_eq!(addresses(&state), [WEB, DNS], "the file has them again");
    assert_eq!(
        destinations(&state, &tcp(DNS, 53)).len(),
        2,
        "the edit that failed converged"
    );
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(log.contains("withdrawing every VIP address"), "{log}");
    assert!(log.contains("announcing the VIP addresses again"), "{log}");
}
