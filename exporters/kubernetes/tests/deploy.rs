//! The deployment examples grant what the exporter's API calls need: every call the code makes
//! (see `watch`, `status`, `lease`, `events`) must be allowed by examples/deploy/exporter-rbac.yaml
//! for the ServiceAccount exporter-deployment.yaml runs as.

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

#[test]
fn rbac_covers_every_call_of_the_allocating_exporter() {
    let rbac = documents("exporter-rbac.yaml");
    let deployment = documents("exporter-deployment.yaml");
    let account = deployment
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .and_then(|d| d.pointer("/spec/template/spec/serviceAccountName"))
        .and_then(Value::as_str)
        .unwrap()
        .to_owned();
    let namespace = deployment[0]["metadata"]["namespace"]
        .as_str()
        .unwrap()
        .to_owned();

    // Roles bound to the account.
    let bound: BTreeSet<(String, String)> = rbac
        .iter()
        .filter(|d| d["kind"] == "ClusterRoleBinding" || d["kind"] == "RoleBinding")
        .filter(|d| {
            d["subjects"].as_array().into_iter().flatten().any(|s| {
                s["kind"] == "ServiceAccount"
                    && s["name"] == account.as_str()
                    && s["namespace"] == namespace.as_str()
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
                role["metadata"]["namespace"],
                namespace.as_str(),
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
    let needed = [
        ("", "services", "list"),
        ("", "services", "watch"),
        ("", "services", "get"),
        ("", "services/status", "patch"),
        ("discovery.k8s.io", "endpointslices", "list"),
        ("discovery.k8s.io", "endpointslices", "watch"),
        ("events.k8s.io", "events", "create"),
        ("events.k8s.io", "events", "patch"),
        ("coordination.k8s.io", "leases", "get"),
        ("coordination.k8s.io", "leases", "create"),
        ("coordination.k8s.io", "leases", "update"),
    ];
    for (group, resource, verb) in needed {
        assert!(
            granted.contains(&(group.to_owned(), resource.to_owned(), verb.to_owned())),
            "{account} may not {verb} {group}/{resource}; granted: {granted:?}"
        );
    }
}
