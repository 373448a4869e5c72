//! Golden plans: each folder under `tests/golden/` holds a node config (`node.yaml`), the
//! desired manifests (`manifests/*.yaml`), the observed state (`observed.json`, the simulated
//! dataplane's document) and optionally the drain record (`record.json`). The plan for them at a
//! fixed `now` is rendered as a reviewer sees it, followed by the record to persist, and
//! compared with `plan.txt`. `BLESS=1 cargo test --test plan_golden` rewrites the files.
//!
//! Each case also checks what the rendering cannot show: applying the plan to the observed
//! state is accepted by the simulated kernel, and planning again leaves no action but due drain
//! deletions.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use balanced_engine::compile::compile;
use balanced_engine::dataplane::Action;
use balanced_engine::display::render_plan;
use balanced_engine::kernel_sim::apply_action;
use balanced_engine::model::NodeState;
use balanced_engine::plan::{DrainRecord, PlanOptions, plan};
use balanced_schemas::{Manifest, load_file, load_node_config};

/// 2027-01-15T08:00:00Z, the clock of every case.
const NOW: u64 = 1_800_000_000;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn load_case(dir: &Path) -> (NodeState, NodeState, DrainRecord, PlanOptions) {
    let node = load_node_config(&dir.join("node.yaml"))
        .unwrap_or_else(|d| panic!("{}: node.yaml: {d:?}", dir.display()));
    let spec = node.spec().expect("a NodeConfig").clone();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("manifests"))
        .map(|entries| entries.map(|e| e.expect("readable dir").path()).collect())
        .unwrap_or_default();
    files.sort();
    let mut balancers = Vec::new();
    for file in &files {
        let parsed = load_file(file);
        assert!(
            !parsed.has_errors(),
            "{}: {:?}",
            file.display(),
            parsed.diagnostics
        );
        for document in parsed.documents {
            if let Manifest::Balancer(b) = document.manifest {
                balancers.push(b);
            }
        }
    }
    let refs: Vec<_> = balancers.iter().collect();
    let desired = compile(&refs, &spec);
    let text = std::fs::read_to_string(dir.join("observed.json")).expect("observed.json");
    let mut document: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let observed: NodeState =
        serde_json::from_value(document["observed"].take()).expect("a NodeState in .observed");
    let record = match std::fs::read_to_string(dir.join("record.json")) {
        Ok(text) => serde_json::from_str(&text).expect("a DrainRecord"),
        Err(_) => DrainRecord::default(),
    };
    (
        desired,
        observed,
        record,
        PlanOptions::from_node(&spec, false),
    )
}

fn render_case(dir: &Path) -> String {
    let (desired, observed, record, options) = load_case(dir);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW);
    let first = plan(&desired, &observed, now, &record, &options);

    let mut after = observed.clone();
    for action in &first.actions {
        apply_action(&mut after, action)
            .unwrap_or_else(|e| panic!("{}: {action:?} refused: {e}", dir.display()));
    }
    let second = plan(&desired, &after, now, &first.record, &options);
    for action in &second.actions {
        assert!(
            matches!(action, Action::DelDestination { service, destination }
                if first.record.destinations.contains_key(&(*service, *destination))),
            "{}: planning again must leave only due drain deletions, got {action:?}",
            dir.display()
        );
    }

    let mut text = render_plan(&first, &observed);
    if first.record != DrainRecord::default() {
        text.push_str("\nrecord to persist:\n");
        for ((service, destination), since) in &first.record.destinations {
            text.push_str(&format!(
                "  drain {destination} of {service} since {since}\n"
            ));
        }
        for (address, at) in &first.record.withdrawals {
            text.push_str(&format!("  {address} withdrawn at {at}\n"));
        }
    }
    text
}

#[test]
fn golden_plans() {
    let bless = std::env::var_os("BLESS").is_some();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("tests/golden")
        .map(|e| e.expect("readable dir").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 12, "golden cases missing: {cases:?}");
    let mut failures = Vec::new();
    for dir in cases {
        let got = render_case(&dir);
        let file = dir.join("plan.txt");
        if bless {
            std::fs::write(&file, &got).expect("write plan.txt");
            continue;
        }
        let want = std::fs::read_to_string(&file).unwrap_or_default();
        if got != want {
            failures.push(format!(
                "{}:\n{}",
                file.display(),
                similar::TextDiff::from_lines(&want, &got)
                    .unified_diff()
                    .header("expected", "got")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "golden plans differ (BLESS=1 to accept):\n{}",
        failures.join("\n")
    );
}
