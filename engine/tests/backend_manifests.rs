//! The backend role reads the same manifest files as the directors: a backend's `node` and
//! `pod` as written in YAML select this node's pods, and an unreadable file makes the pass
//! keep everything (no removals) instead of stripping pods of their VIPs.

use std::net::IpAddr;

use balanced_engine::backend::converge::{PodReport, intents, render};
use balanced_engine::backend::model::TunnelDevice;
use balanced_engine::backend::plan::PodAction;

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
    - address: 10.244.2.11
      node: node-2
      pod: {namespace: default, name: web-1, uid: 0a1b2c3d-0000-4000-8000-00000000000b}
      state: draining
"#;

#[test]
fn the_manifests_backend_node_and_pod_select_this_nodes_pods() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("web.yaml"), WEB).expect("write");
    let (pods, complete) = intents(&[dir.path().to_owned()], "node-1");
    assert!(complete);
    let names: Vec<_> = pods.keys().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["web-0"]);
    let (pods, _) = intents(&[dir.path().to_owned()], "node-2");
    assert_eq!(
        pods.values()
            .flat_map(|i| i.vips.keys().copied())
            .collect::<Vec<IpAddr>>(),
        ["198.51.100.10".parse::<IpAddr>().expect("ip")],
        "a draining backend keeps its VIP"
    );
    assert!(intents(&[dir.path().to_owned()], "node-3").0.is_empty());
}

#[test]
fn an_unreadable_manifest_marks_the_pass_incomplete() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("web.yaml"), WEB).expect("write");
    std::fs::write(
        dir.path().join("broken.yaml"),
        "apiVersion: balanced.io/v1\nkind: [",
    )
    .expect("write");
    let (pods, complete) = intents(&[dir.path().to_owned()], "node-1");
    assert!(!complete, "removals must be held");
    assert_eq!(pods.len(), 1, "the readable file still counts");
}

#[test]
fn the_plan_text_is_a_diff_per_pod() {
    let reports = vec![
        PodReport {
            uid: "u1".into(),
            namespace: Some("/run/netns/u1".into()),
            actions: vec![PodAction::AddAddress {
                device: TunnelDevice::Tunl0,
                vip: "198.51.100.10".parse().expect("ip"),
            }],
            ..PodReport::default()
        },
        PodReport {
            uid: "u2".into(),
            skipped: Some("no network namespace found on this node".into()),
            ..PodReport::default()
        },
    ];
    assert_eq!(
        render(&reports),
        "pod u1 (/run/netns/u1):\n  + address 198.51.100.10/32 dev tunl0\n\
         pod u2:\n  skipped: no network namespace found on this node\n"
    );
    assert_eq!(
        render(&[]),
        "no pods of tunnel-forwarded services on this node\n"
    );
}

#[test]
fn a_pass_exits_like_the_director() {
    use balanced_engine::backend::converge::Pass;
    use balanced_engine::error::ExitStatus;
    let clean = Pass {
        reports: vec![PodReport::default()],
        complete: true,
    };
    assert_eq!(clean.outcome(), ExitStatus::Success);
    let unreadable = Pass {
        complete: false,
        ..clean.clone()
    };
    assert_eq!(unreadable.outcome(), ExitStatus::InvalidInput);
    let failed = Pass {
        reports: vec![PodReport {
            problems: vec!["+ address 198.51.100.10/32 dev tunl0: no tunl0".into()],
            ..PodReport::default()
        }],
        complete: false,
    };
    assert_eq!(
        failed.outcome(),
        ExitStatus::Failure,
        "a failure outranks bad input"
    );
}
