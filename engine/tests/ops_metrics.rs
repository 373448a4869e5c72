//! The operations endpoint of `balanced run` on a simulated node: `/metrics` moves after a
//! manifest edit and after the (simulated) kernel's counters change, label sets of removed
//! objects disappear, `/status` is what `balanced status --output json` prints, and `/readyz`
//! turns unready while the dataplane cannot be observed and ready again after.

mod cli_support;
mod ops_support;

use std::fs;
use std::time::{Duration, Instant};

use cli_support::*;
use ops_support::*;

const WEB: &str = "198.51.100.10";
const DNS: &str = "198.51.100.53";

fn node() -> Node {
    Node::new("  resyncInterval: 1s\n")
}

/// The `balanced_manifest_generation` of the manifest `name` (its path label is absolute).
fn generation(text: &str, name: &str) -> Option<f64> {
    let prefix = format!("balanced_manifest_generation{{name=\"{name}\",kind=\"Balancer\",path=\"");
    text.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn with_generation(text: &str, generation: u64) -> String {
    text.replace("generation: 1", &format!("generation: {generation}"))
}

#[test]
fn metrics_move_after_an_apply_and_after_the_kernel_counters_change() {
    let node = node();
    node.write(
        "web.yaml",
        &balancer("web", WEB, 80, &[("10.0.0.1", 1), ("10.0.0.2", 1)]),
    );
    node.write("dns.yaml", &balancer("dns", DNS, 53, &[("10.0.1.1", 1)]));
    let log = node.root.path().join("run.log");
    let run = Running::start(&node, &["--metrics-destinations"], &log);

    let web = tcp_labels("web", WEB, 80);
    let dns = tcp_labels("dns", DNS, 53);
    let first = run.metrics_until("both services", |t| {
        sample(t, &format!("balanced_service_connections_total{web}")) == Some(0.0)
            && sample(t, &format!("balanced_service_connections_total{dns}")) == Some(0.0)
    });
    assert_eq!(generation(&first, "web"), Some(1.0), "{first}");
    assert_eq!(generation(&first, "dns"), Some(1.0), "{first}");
    assert_eq!(
        sample(
            &first,
            "balanced_actions_total{kind=\"addDestination\",result=\"ok\"}"
        ),
        Some(3.0),
        "{first}"
    );
    assert_eq!(
        sample(&first, "balanced_announced_addresses"),
        Some(2.0),
        "{first}"
    );
    assert_eq!(
        sample(&first, "balanced_manifests{state=\"in_force\"}"),
        Some(2.0)
    );

    // An apply by file edit: a third backend, generation 2; dns removed.
    node.write(
        "web.yaml",
        &with_generation(
            &balancer(
                "web",
                WEB,
                80,
                &[("10.0.0.1", 1), ("10.0.0.2", 1), ("10.0.0.3", 4)],
            ),
            2,
        ),
    );
    node.remove("dns.yaml");
    let third = backend_labels("web", WEB, 80, "10.0.0.3:80");
    let edited = run.metrics_until("the edit converged", |t| {
        sample(t, &format!("balanced_destination_weight{third}")) == Some(4.0)
            && !t.contains(&dns)
            && generation(t, "web") == Some(2.0)
    });
    assert_eq!(
        sample(
            &edited,
            "balanced_actions_total{kind=\"addDestination\",result=\"ok\"}"
        ),
        Some(4.0),
        "{edited}"
    );
    assert!(
        !edited.contains("name=\"dns\""),
        "label sets of the removed manifest are gone:\n{edited}"
    );
    assert_eq!(
        sample(&edited, "balanced_converges_total{result=\"failed\"}"),
        None
    );

    // The kernel counts connections (here: the simulated node's file is edited).
    node.edit_sim(|state| {
        let service = state.services.get_mut(&tcp(WEB, 80)).expect("web service");
        service.stats.connections = 17;
        service.stats.bytes_in = 4096;
        let first = service
            .destinations
            .iter_mut()
            .find(|d| d.key.address.to_string() == "10.0.0.1")
            .expect("backend");
        first.active_connections = 5;
        first.inactive_connections = 2;
        first.stats.connections = 9;
    });
    let one = backend_labels("web", WEB, 80, "10.0.0.1:80");
    let counted = run.metrics_until("the new counts", |t| {
        sample(t, &format!("balanced_service_connections_total{web}")) == Some(17.0)
            && sample(t, &format!("balanced_destination_active_connections{one}")) == Some(5.0)
    });
    for (series, value) in [
        (format!("balanced_service_bytes_in_total{web}"), 4096.0),
        (
            format!("balanced_destination_inactive_connections{one}"),
            2.0,
        ),
        (format!("balanced_destination_connections_total{one}"), 9.0),
    ] {
        assert_eq!(
            sample(&counted, &series),
            Some(value),
            "{series}\n{counted}"
        );
    }
    assert!(counted.contains("# TYPE balanced_service_connections counter"));
    assert_eq!(
        sample(&counted, "balanced_drift_repairs_total"),
        Some(0.0),
        "counters are not drift"
    );

    // /status is the document `balanced status --output json` prints.
    let (code, body) = run.get("/status");
    assert_eq!(code, 200);
    let served: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
    assert_eq!(served["written"]["by"], "run");
    // status.json follows the converge from the daemon's writer thread, within a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    let printed = loop {
        let printed = node.status_json();
        if printed["written"] == served["written"] || Instant::now() > deadline {
            break printed;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(served, printed, "GET /status differs from balanced status");
    assert_eq!(
        served["observed"]["services"][0]["stats"]["connections"],
        17
    );
    drop(run);
    let log = fs::read_to_string(&log).unwrap_or_default();
    assert!(log.contains("serving /metrics"), "{log}");
}

#[test]
fn readyz_turns_unready_while_the_dataplane_fails_and_ready_after() {
    let node = node();
    node.write("web.yaml", &balancer("web", WEB, 80, &[("10.0.0.1", 1)]));
    let log = node.root.path().join("run.log");
    let run = Running::start(&node, &[], &log);
    run.until_code("/readyz", 200);
    let metrics = run.scrape();
    assert_eq!(sample(&metrics, "balanced_dataplane_up"), Some(1.0));
    assert!(
        !metrics.contains("balanced_destination_"),
        "destinations are opt-in"
    );
    assert!(
        sample(
            &metrics,
            "balanced_last_successful_converge_timestamp_seconds"
        )
        .is_some_and(|t| t > 1.6e9),
        "{metrics}"
    );

    let good = fs::read(&node.sim).expect("sim file");
    fs::write(&node.sim, b"{ this is not a node").expect("break the dataplane");
    let why = run.until_code("/readyz", 503);
    assert!(why.contains("observation"), "{why}");
    assert_eq!(run.get("/healthz").0, 200, "alive: the loop still turns");
    let broken = run.scrape();
    assert_eq!(sample(&broken, "balanced_dataplane_up"), Some(0.0));
    assert!(
        sample(&broken, "balanced_observe_failures_total").is_some_and(|n| n >= 1.0),
        "{broken}"
    );

    fs::write(&node.sim, good).expect("repair the dataplane");
    run.until_code("/readyz", 200);
    assert_eq!(sample(&run.scrape(), "balanced_dataplane_up"), Some(1.0));
    assert_eq!(run.get("/nothing-here").0, 404);
}
