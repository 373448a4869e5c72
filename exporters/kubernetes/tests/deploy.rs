//! The deployment examples grant what the exporter's API calls need: every call the code makes
//! (see `watch`, `status`, `lease`, `events`) must be allowed by examples/deploy/exporter-rbac.yaml
//! for the ServiceAccount exporter-deployment.yaml runs as, and the watches by the role of the
//! render-only exporter in engine-daemonset.yaml.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

fn documents(file: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/deploy")
        .join(file);
    serde_saphyr::from_multiple(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// The (apiGroup, resource, verb) triples the roles in `rbac` grant the ServiceAccount
/// `account` of `namespace` through their bindings.
fn granted(rbac: &[Value], account: &str, namespace: &str) -> BTreeSet<(String, String, String)> {
    let bound: BTreeSet<(String, String)> = rbac
        .iter()
        .filter(|d| d["kind"] == "ClusterRoleBinding" || d["kind"] == "RoleBinding")
        .filter(|d| {
            d["subjects"].as_array().into_iter().flatten().any(|s| {
                s["kind"] == "ServiceAccount" && s["name"] == account && s["namespace"] == namespace
            })
        })
        .map(|d| {
            (
                d["roleRef"]["kind"].as_str().unwrap().to_owned(),
                d["roleRef"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut granted = BTreeSet::new();
    for role in rbac
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
    {
        let id = (
            role["kind"].as_str().unwrap().to_owned(),
            role["metadata"]["name"].as_str().unwrap().to_owned(),
        );
        if !bound.contains(&id) {
            continue;
        }
        if role["kind"] == "Role" {
            assert_eq!(
                role["metadata"]["namespace"], namespace,
                "the Lease Role lives where the Lease is"
            );
        }
        for rule in role["rules"].as_array().unwrap() {
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        granted.insert((group.clone(), resource.clone(), verb));
                    }
                }
            }
        }
    }
    granted
}

/// The ServiceAccount (and its namespace) the workload of `kind` in `documents` runs as.
fn account_of(documents: &[Value], kind: &str) -> (String, String) {
    let workload = documents.iter().find(|d| d["kind"] == kind).unwrap();
    (
        workload
            .pointer("/spec/template/spec/serviceAccountName")
            .and_then(Value::as_str)
            .unwrap()
            .to_owned(),
        workload["metadata"]["namespace"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

/// The exporter's watches: Services, EndpointSlices and Pods' metadata.
const WATCHES: [(&str, &str, &str); 6] = [
    ("", "services", "list"),
    ("", "services", "watch"),
    ("discovery.k8s.io", "endpointslices", "list"),
    ("discovery.k8s.io", "endpointslices", "watch"),
    ("", "pods", "list"),
    ("", "pods", "watch"),
];

#[test]
fn rbac_covers_the_watches_of_the_render_only_exporter_beside_each_engine() {
    let documents = documents("engine-daemonset.yaml");
    let (account, namespace) = account_of(&documents, "DaemonSet");
    let granted = granted(&documents, &account, &namespace);
    for (group, resource, verb) in WATCHES {
        assert!(
            granted.contains(&(group.to_owned(), resource.to_owned(), verb.to_owned())),
            "{account} may not {verb} {group}/{resource}; granted: {granted:?}"
        );
    }
}

#[test]
fn rbac_covers_every_call_of_the_allocating_exporter() {
    let rbac = documents("exporter-rbac.yaml");
    let deployment = documents("exporter-deployment.yaml");
    let (account, namespace) = account_of(&deployment, "Deployment");
    let granted = granted(&rbac, &account, &namespace);
    let needed = WATCHES.into_iter().chain([
        ("", "services", "get"),
        ("", "services/status", "patch"),
        ("events.k8s.io", "events", "create"),
        ("events.k8s.io", "events", "patch"),
        ("coordination.k8s.io", "leases", "get"),
        ("coordination.k8s.io", "leases", "create"),
        ("coordination.k8s.io", "leases", "update"),
    ]);
    for (group, resource, verb) in needed {
        assert!(
            granted.contains(&(group.to_owned(), resource.to_owned(), verb.to_owned())),
            "{account} may not {verb} {group}/{resource}; granted: {granted:?}"
        );
    }
}
