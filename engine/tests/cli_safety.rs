//! Nothing is lost on bad input: last known good manifests (also across a restart), an
//! emptied or missing directory, deletions held by `maxDeletions`, and drain-then-delete by
//! connection count and by timeout — through the compiled binary on a simulated dataplane.

mod cli_support;

use cli_support::*;

const WEB: &str = "198.51.100.10";
const API: &str = "198.51.100.20";

fn two_balancers(node: &Node) {
    node.write("web.yaml", &balancer("web", WEB, 80, &[("10.0.0.1", 1)]));
    node.write(
        "team/api.yaml",
        &balancer("api", API, 80, &[("10.0.1.1", 1)]),
    );
    let out = node.run("apply", &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[test]
fn a_broken_manifest_keeps_its_last_known_good_version_while_others_converge() {
    let node = Node::new("");
    two_balancers(&node);
    node.write(
        "web.yaml",
        "apiVersion: balanced.io/v1\nkind: Balancer\nspec: {vip: nope\n",
    );
    node.write(
        "team/api.yaml",
        &balancer("api", API, 80, &[("10.0.1.1", 7)]),
    );
    let before = node.observed().services[&tcp(WEB, 80)].clone();

    let out = node.run("apply", &[]);
    assert_eq!(code(&out), 65, "the input was invalid: {}", stderr(&out));
    assert!(
        stderr(&out).contains("web.yaml"),
        "the broken file is reported"
    );
    let state = node.observed();
    assert_eq!(state.services[&tcp(WEB, 80)], before, "web unchanged");
    assert_eq!(
        destinations(&state, &tcp(API, 80)),
        vec![("10.0.1.1".into(), 7)]
    );

    let status = node.status_json();
    let web = status["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["path"].as_str().unwrap().ends_with("web.yaml"))
        .unwrap()
        .clone();
    assert_eq!(web["state"], "stale");
    assert_eq!(web["name"], "web", "the version in force is named");
}

#[test]
fn last_known_good_survives_a_restart() {
    let node = Node::new("");
    two_balancers(&node);
    node.write("web.yaml", "this is: [not a manifest\n");
    // A reboot: the kernel comes back empty; a new process has only the state directory.
    std::fs::remove_file(&node.sim).unwrap();
    let out = node.run("apply", &[]);
    assert_eq!(code(&out), 65);
    let state = node.observed();
    assert_eq!(
        destinations(&state, &tcp(WEB, 80)),
        vec![("10.0.0.1".into(), 1)]
    );
    assert_eq!(
        destinations(&state, &tcp(API, 80)),
        vec![("10.0.1.1".into(), 1)]
    );

    node.write("web.yaml", &balancer("web", WEB, 80, &[("10.0.0.1", 4)]));
    let out = node.run("apply", &[]);
    assert_eq!(code(&out), 0, "fixed: {}", stderr(&out));
    assert_eq!(
        destinations(&node.observed(), &tcp(WEB, 80)),
        vec![("10.0.0.1".into(), 4)]
    );
}

#[test]
fn a_new_file_conflicting_with_the_set_is_refused_and_the_set_stays() {
    let node = Node::new("");
    two_balancers(&node);
    // Same name as web.yaml's manifest: a cross-file error at the new file.
    node.write(
        "zz-copy.yaml",
        &balancer("web", "198.51.100.30", 80, &[("10.0.2.1", 1)]),
    );
    let out = node.run("apply", &[]);
    assert_eq!(code(&out), 65);
    assert!(
        stderr(&out).contains("duplicate metadata.name"),
        "{}",
        stderr(&out)
    );
    let state = node.observed();
    assert!(!state.services.contains_key(&tcp("198.51.100.30", 80)));
    assert!(state.services.contains_key(&tcp(WEB, 80)));

    // Sorting first, the new file makes check_set flag the unchanged web.yaml instead: the
    // change is still the one refused.
    node.remove("zz-copy.yaml");
    node.write(
        "aa-copy.yaml",
        &balancer("web", "198.51.100.31", 80, &[("10.0.2.1", 1)]),
    );
    let out = node.run("apply", &[]);
    assert_eq!(code(&out), 65, "{}", stderr(&out));
    let state = node.observed();
    assert!(!state.services.contains_key(&tcp("198.51.100.31", 80)));
    assert_eq!(
        destinations(&state, &tcp(WEB, 80)),
        vec![("10.0.0.1".into(), 1)]
    );
    let status = node.status_json();
    let states: Vec<(String, String)> = status["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let path = m["path"].as_str().unwrap();
            let file = path.rsplit('/').next().unwrap().to_owned();
            (file, m["state"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(
        states,
        vec![
            ("aa-copy.yaml".into(), "invalid".into()),
            ("api.yaml".into(), "inForce".into()),
            ("web.yaml".into(), "inForce".into()),
        ]
    );
}

#[test]
fn an_emptied_or_missing_directory_never_wipes_the_node() {
    let node = Node::new("  withdrawDelay: 0s\n");
    two_balancers(&node);
    node.remove("web.yaml");
    node.remove("team/api.yaml");
    let out = node.run("apply", &[]);
    assert_eq!(code(&out), 65, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("holds no manifest"),
        "{}",
        stderr(&out)
    );
    assert_eq!(node.observed().services.len(), 2);

    std::fs::remove_dir_all(&node.manifests).unwrap();
    let out = node.run("apply", &[]);
    assert_eq!(code(&out), 65);
    assert_eq!(
        node.observed().services.len(),
        2,
        "a missing directory neither"
    );

    std::fs::create_dir_all(&node.manifests).unwrap();
    let out = node.run("apply", &["--allow-mass-delete"]);
    assert_eq!(code(&out), 0, "accepted explicitly: {}", stderr(&out));
    let state = node.observed();
    assert!(state.interface.addresses.is_empty(), "withdrawn first");
    settle(&node, &["--allow-mass-delete"]);
    assert!(node.observed().services.is_empty());
}

/// Applies again until nothing waits for the withdraw delay (0 s here).
fn settle(node: &Node, extra: &[&str]) {
    for _ in 0..3 {
        let out = node.run("apply", extra);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        if node.status_json()["draining"]
            .as_array()
            .unwrap()
            .is_empty()
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
}

#[test]
fn mass_deletions_are_held_with_exit_3_until_released() {
    let node = Node::new("  withdrawDelay: 0s\n  maxDeletions:\n    services: 1\n");
    for (i, vip) in ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
        .iter()
        .enumerate()
    {
        node.write(
            &format!("b{i}.yaml"),
            &balancer(&format!("b{i}"), vip, 80, &[("10.0.0.1", 1)]),
        );
    }
    assert_eq!(code(&node.run("apply", &[])), 0);
    node.remove("b0.yaml");
    node.remove("b1.yaml");

    let out = node.run("plan", &[]);
    assert_eq!(code(&out), 3, "plan shows what apply would refuse");
    let out = node.run("apply", &[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("held"), "{}", stderr(&out));
    assert_eq!(node.observed().services.len(), 3, "nothing deleted");
    assert!(!node.status_json()["held"].as_array().unwrap().is_empty());

    let out = node.run("apply", &["--allow-mass-delete"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    settle(&node, &["--allow-mass-delete"]);
    let state = node.observed();
    assert_eq!(
        state.services.keys().copied().collect::<Vec<_>>(),
        vec![tcp("198.51.100.3", 80)]
    );
}

fn set_active(node: &Node, backend: &str, active: u32) {
    node.edit_sim(|state| {
        for service in state.services.values_mut() {
            for destination in &mut service.destinations {
                if destination.key.address.to_string() == backend {
                    destination.active_connections = active;
                    destination.inactive_connections = 40;
                }
            }
        }
    });
}

#[test]
fn a_removed_backend_drains_then_goes_when_its_connections_end() {
    let node = Node::new("  drainTimeout: 1h\n");
    node.write(
        "web.yaml",
        &balancer("web", WEB, 80, &[("10.0.0.1", 1), ("10.0.0.2", 1)]),
    );
    assert_eq!(code(&node.run("apply", &[])), 0);
    set_active(&node, "10.0.0.2", 5);
    node.write("web.yaml", &balancer("web", WEB, 80, &[("10.0.0.1", 1)]));

    assert_eq!(code(&node.run("apply", &[])), 0);
    assert_eq!(
        destinations(&node.observed(), &tcp(WEB, 80)),
        vec![("10.0.0.1".into(), 1), ("10.0.0.2".into(), 0)],
        "weight 0 first"
    );
    assert_eq!(code(&node.run("apply", &[])), 0);
    assert_eq!(
        destinations(&node.observed(), &tcp(WEB, 80)).len(),
        2,
        "still draining"
    );
    let draining = node.status_json()["draining"].clone();
    assert_eq!(draining.as_array().unwrap().len(), 1, "{draining}");

    set_active(&node, "10.0.0.2", 0);
    assert_eq!(code(&node.run("apply", &[])), 0);
    assert_eq!(
        destinations(&node.observed(), &tcp(WEB, 80)),
        vec![("10.0.0.1".into(), 1)],
        "inactive connections do not count"
    );
}

#[test]
fn a_draining_backend_goes_after_the_drain_timeout() {
    let node = Node::new("  drainTimeout: 1m\n");
    node.write(
        "web.yaml",
        &balancer("web", WEB, 80, &[("10.0.0.1", 1), ("10.0.0.2", 1)]),
    );
    assert_eq!(code(&node.run("apply", &[])), 0);
    set_active(&node, "10.0.0.2", 5);
    node.write("web.yaml", &balancer("web", WEB, 80, &[("10.0.0.1", 1)]));
    assert_eq!(code(&node.run("apply", &[])), 0);
    assert_eq!(destinations(&node.observed(), &tcp(WEB, 80)).len(), 2);

    // Move the recorded drain start back by more than the timeout.
    let record_path = node.state.join("drain-record.json");
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
    let entries = record["destinations"].as_array_mut().unwrap();
    assert_eq!(
        entries.len(),
        1,
        "the drain start was persisted: {entries:?}"
    );
    let since = entries[0]["since"].as_u64().unwrap();
    entries[0]["since"] = (since - 120).into();
    std::fs::write(&record_path, serde_json::to_vec(&record).unwrap()).unwrap();

    assert_eq!(code(&node.run("apply", &[])), 0);
    assert_eq!(
        destinations(&node.observed(), &tcp(WEB, 80)),
        vec![("10.0.0.1".into(), 1)],
        "deleted despite 5 active connections"
    );
}
