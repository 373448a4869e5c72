//! Builders for Kubernetes objects in their real shapes, for tests and benchmarks (as
//! controller-rs keeps its fixtures beside the code). No I/O.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, ObjectReference, Pod, Service, ServicePort,
    ServiceSpec, ServiceStatus,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::core::PartialObjectMeta;

use crate::config::DEFAULT_CLASS;
use crate::render::SERVICE_NAME_LABEL;

/// A `type: LoadBalancer` Service of class `balanced.io/ipvs` with one TCP port per entry of
/// `ports` (named `p<port>`, targetPort = port), created at `created` seconds after the epoch.
pub fn service(namespace: &str, name: &str, ports: &[u16], created: i64) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some(namespace.to_owned()),
            name: Some(name.to_owned()),
            uid: Some(format!("uid-{namespace}-{name}")),
            resource_version: Some("1".to_owned()),
            creation_timestamp: Timestamp::from_second(created).ok().map(Time),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".to_owned()),
            load_balancer_class: Some(DEFAULT_CLASS.to_owned()),
            ip_families: Some(vec!["IPv4".to_owned()]),
            ports: Some(
                ports
                    .iter()
                    .map(|p| ServicePort {
                        name: Some(format!("p{p}")),
                        port: i32::from(*p),
                        protocol: Some("TCP".to_owned()),
                        target_port: Some(IntOrString::Int(i32::from(*p))),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        status: Some(ServiceStatus::default()),
    }
}

/// Sets the Service's `status.loadBalancer.ingress` addresses.
pub fn with_ingress(mut service: Service, ips: &[&str]) -> Service {
    service.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(
                ips.iter()
                    .map(|ip| LoadBalancerIngress {
                        ip: Some((*ip).to_owned()),
                        ip_mode: Some("Proxy".to_owned()),
                        ..LoadBalancerIngress::default()
                    })
                    .collect(),
            ),
        }),
        ..ServiceStatus::default()
    });
    service
}

/// Sets one annotation.
pub fn with_annotation(mut service: Service, key: &str, value: &str) -> Service {
    service
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(key.to_owned(), value.to_owned());
    service
}

/// Sets `spec.ipFamilies`.
pub fn with_families(mut service: Service, families: &[&str]) -> Service {
    if let Some(spec) = service.spec.as_mut() {
        spec.ip_families = Some(families.iter().map(|f| (*f).to_owned()).collect());
    }
    service
}

/// An IPv4 EndpointSlice of a Service whose ports are `p<port>`, with ready endpoints at
/// `addresses`.
pub fn slice(
    namespace: &str,
    service: &str,
    suffix: &str,
    ports: &[u16],
    addresses: &[String],
) -> EndpointSlice {
    EndpointSlice {
        address_type: "IPv4".to_owned(),
        metadata: ObjectMeta {
            namespace: Some(namespace.to_owned()),
            name: Some(format!("{service}-{suffix}")),
            resource_version: Some("1".to_owned()),
            labels: Some(BTreeMap::from([(
                SERVICE_NAME_LABEL.to_owned(),
                service.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        ports: Some(
            ports
                .iter()
                .map(|p| EndpointPort {
                    name: Some(format!("p{p}")),
                    port: Some(i32::from(*p)),
                    protocol: Some("TCP".to_owned()),
                    ..EndpointPort::default()
                })
                .collect(),
        ),
        endpoints: addresses
            .iter()
            .map(|a| Endpoint {
                addresses: vec![a.clone()],
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    serving: Some(true),
                    terminating: Some(false),
                }),
                node_name: Some("node-a".to_owned()),
                ..Endpoint::default()
            })
            .collect(),
    }
}

/// Names a pod as each endpoint's `targetRef`, as the EndpointSlice controller does: the pod
/// behind address `a` is `pod-<a>` with UID `uid-<a>` (dots become dashes).
pub fn with_pod_refs(mut slice: EndpointSlice) -> EndpointSlice {
    let namespace = slice.metadata.namespace.clone();
    for endpoint in &mut slice.endpoints {
        let Some(address) = endpoint.addresses.first() else {
            continue;
        };
        let id = address.replace(['.', ':'], "-");
        endpoint.target_ref = Some(ObjectReference {
            kind: Some("Pod".to_owned()),
            namespace: namespace.clone(),
            name: Some(format!("pod-{id}")),
            uid: Some(format!("uid-{id}")),
            ..ObjectReference::default()
        });
    }
    slice
}

/// The metadata of the pod [`with_pod_refs`] names for `address`, with these annotations, as a
/// metadata watch delivers it.
pub fn pod_meta(
    namespace: &str,
    address: &str,
    annotations: &[(&str, &str)],
) -> PartialObjectMeta<Pod> {
    let id = address.replace(['.', ':'], "-");
    PartialObjectMeta {
        types: None,
        metadata: ObjectMeta {
            namespace: Some(namespace.to_owned()),
            name: Some(format!("pod-{id}")),
            uid: Some(format!("uid-{id}")),
            resource_version: Some("1".to_owned()),
            annotations: (!annotations.is_empty()).then(|| {
                annotations
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect()
            }),
            ..ObjectMeta::default()
        },
        _phantom: std::marker::PhantomData,
    }
}
