//! Rendering: Services + EndpointSlices + opted-out pods + configuration → one `Balancer` per
//! Service and family.
//!
//! Pure and deterministic: no I/O, no clock, sorted output; the same objects give the same
//! manifests whatever order they arrive in. Problems (invalid annotations, ports the forwarding
//! cannot serve) are returned as data for the caller to publish as Events.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use balanced_schemas::v1::{
    API_VERSION, Backend, BackendState, Balancer, BalancerSpec, ForwardingMethod, Metadata,
    Persistence, PodRef, Protocol, VirtualService,
};
use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::annotations::{self, ServiceConfig};
use crate::config::RenderConfig;
use crate::manifest::{Family, ServiceKey};
use crate::pods::OptedOut;

/// The label EndpointSlices carry to name their Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Kubernetes' default `sessionAffinityConfig.clientIP.timeoutSeconds`.
const DEFAULT_AFFINITY_TIMEOUT: u32 = 10_800;

/// Why a Service's rendering is not what its owner asked for; becomes the Event's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// An annotation value is invalid; the last good configuration stays in force.
    InvalidAnnotation,
    /// A `balanced.io/` annotation this version does not know (probably a typo).
    UnknownAnnotation,
    /// A port whose targetPort differs from its port under tunnel/direct forwarding.
    PortNotRewritable,
    /// A port with a protocol IPVS does not serve.
    UnsupportedProtocol,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidAnnotation => "InvalidAnnotation",
            Reason::UnknownAnnotation => "UnknownAnnotation",
            Reason::PortNotRewritable => "PortNotRewritable",
            Reason::UnsupportedProtocol => "UnsupportedProtocol",
        }
    }
}

/// Something wrong with one Service, worth a Warning Event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Problem {
    pub service: ServiceKey,
    pub reason: Reason,
    pub message: String,
}

/// What rendering one Service gives.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceRender {
    /// Relative path → manifest (generation unset: the writer continues it).
    pub manifests: BTreeMap<String, Balancer>,
    /// The configuration used: the Service's last good configuration from now on.
    pub config: Option<ServiceConfig>,
    pub problems: Vec<Problem>,
    /// Nothing could be rendered (invalid annotations, no good configuration known): the
    /// Service's files, if any, are to be left exactly as they are.
    pub held: bool,
}

/// What rendering every Service gives.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rendered {
    pub manifests: BTreeMap<String, Balancer>,
    pub configs: BTreeMap<ServiceKey, ServiceConfig>,
    pub problems: Vec<Problem>,
    /// Services whose files are to be left as they are (see [`ServiceRender::held`]).
    pub held: Vec<ServiceKey>,
}

/// The key of a Service, when it has the metadata every stored object has.
pub fn service_key(service: &Service) -> Option<ServiceKey> {
    Some(ServiceKey::new(
        service.metadata.namespace.as_deref()?,
        service.metadata.name.as_deref()?,
    ))
}

/// The Service an EndpointSlice belongs to.
pub fn slice_service(slice: &EndpointSlice) -> Option<ServiceKey> {
    let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some(ServiceKey::new(slice.metadata.namespace.as_deref()?, name))
}

/// Whether the exporter serves this Service: `type: LoadBalancer` with our class (or, when
/// configured, no class at all).
pub fn is_ours(service: &Service, config: &RenderConfig) -> bool {
    let Some(spec) = &service.spec else {
        return false;
    };
    if spec.type_.as_deref() != Some("LoadBalancer") {
        return false;
    }
    match spec.load_balancer_class.as_deref() {
        Some(class) => class == config.class,
        None => config.accept_without_class,
    }
}

/// Renders every Service that is ours; `opted_out` are the pods the backend role must leave
/// alone.
pub fn render(
    services: &[Service],
    slices: &[EndpointSlice],
    opted_out: &OptedOut,
    config: &RenderConfig,
    last_good: &BTreeMap<ServiceKey, ServiceConfig>,
) -> Rendered {
    let mut by_service: HashMap<ServiceKey, Vec<&EndpointSlice>> = HashMap::new();
    for slice in slices {
        if let Some(key) = slice_service(slice) {
            by_service.entry(key).or_default().push(slice);
        }
    }
    let mut rendered = Rendered::default();
    for service in services {
        let Some(key) = service_key(service) else {
            continue;
        };
        if !is_ours(service, config) {
            continue;
        }
        let slices = by_service.get(&key).map(Vec::as_slice).unwrap_or_default();
        let one = render_service(
            &key,
            service,
            slices,
            opted_out,
            config,
            last_good.get(&key),
        );
        rendered.manifests.extend(one.manifests);
        if one.held {
            rendered.held.push(key.clone());
        }
        if let Some(c) = one.config {
            rendered.configs.insert(key, c);
        }
        rendered.problems.extend(one.problems);
    }
    rendered.problems.sort();
    rendered
}

/// Renders one Service (which the caller found to be ours) from its EndpointSlices.
pub fn render_service(
    key: &ServiceKey,
    service: &Service,
    slices: &[&EndpointSlice],
    opted_out: &OptedOut,
    config: &RenderConfig,
    last_good: Option<&ServiceConfig>,
) -> ServiceRender {
    let mut out = ServiceRender::default();
    let empty = BTreeMap::new();
    let service_annotations = service.metadata.annotations.as_ref().unwrap_or(&empty);
    for annotation in annotations::unknown(service_annotations) {
        out.problems.push(Problem {
            service: key.clone(),
            reason: Reason::UnknownAnnotation,
            message: format!("{key}: unknown annotation {annotation}; it is ignored"),
        });
    }
    let service_config = match annotations::service_config(service_annotations, config) {
        Ok(c) => c,
        Err(errors) => {
            let kept = if last_good.is_some() {
                "the last good configuration stays in force"
            } else {
                "no good configuration is known, so nothing is rendered"
            };
            for error in errors {
                out.problems.push(Problem {
                    service: key.clone(),
                    reason: Reason::InvalidAnnotation,
                    message: format!("{key}: {error}; {kept}"),
                });
            }
            match last_good {
                Some(c) => c.clone(),
                None => {
                    out.held = true;
                    return out;
                }
            }
        }
    };
    let Some(spec) = &service.spec else {
        return out;
    };

    let persistence_timeout = service_config.persistence_timeout.or_else(|| {
        (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
        })
    });

    let vips = vips(service);
    for (index, (family, vip)) in vips.iter().enumerate() {
        let family_slices: Vec<&EndpointSlice> = slices
            .iter()
            .copied()
            .filter(|s| Family::from_kubernetes(&s.address_type) == Some(*family))
            .collect();
        let mut services = Vec::new();
        for port in spec.ports.iter().flatten() {
            let Some(protocol) = protocol(port) else {
                if index == 0 {
                    out.problems.push(Problem {
                        service: key.clone(),
                        reason: Reason::UnsupportedProtocol,
                        message: format!(
                            "{key}: port {}: protocol {:?} is not TCP, UDP or SCTP; port left out",
                            port_label(port),
                            port.protocol.as_deref().unwrap_or_default()
                        ),
                    });
                }
                continue;
            };
            let Ok(service_port) = u16::try_from(port.port) else {
                continue;
            };
            let backends = backends(port, protocol, &family_slices);
            let method = service_config.forwarding.method;
            let tunnelled = method == ForwardingMethod::Tunnel;
            if method != ForwardingMethod::Masquerade {
                let mut other_ports: Vec<u16> = backends
                    .iter()
                    .map(|e| e.port)
                    .chain(match &port.target_port {
                        Some(IntOrString::Int(t)) => u16::try_from(*t).ok(),
                        _ => None,
                    })
                    .filter(|p| *p != service_port)
                    .collect();
                other_ports.sort_unstable();
                other_ports.dedup();
                if !other_ports.is_empty() {
                    if index == 0 {
                        let listed: Vec<String> = other_ports.iter().map(u16::to_string).collect();
                        out.problems.push(Problem {
                            service: key.clone(),
                            reason: Reason::PortNotRewritable,
                            message: format!(
                                "{key}: port {}: targetPort {} differs from port {service_port}, \
                                 which {method} forwarding cannot rewrite; port left out \
                                 (use masquerade or make them equal)",
                                port_label(port),
                                listed.join(", ")
                            ),
                        });
                    }
                    continue;
                }
            }
            services.push(VirtualService {
                protocol: Some(protocol),
                port: Some(service_port),
                fwmark: None,
                scheduler: service_config.scheduler,
                scheduler_flags: service_config.scheduler_flags.clone(),
                persistence: persistence_timeout.map(|timeout| Persistence {
                    timeout,
                    netmask: None,
                }),
                one_packet: false,
                forwarding: service_config.forwarding.clone(),
                backends: backends
                    .into_iter()
                    .map(|endpoint| {
                        // Only tunnel forwarding needs the backend role inside the pods; an
                        // opted-out pod keeps its node but is not named, so the role skips it.
                        let (node, pod) = if tunnelled {
                            let pod = endpoint.pod.filter(|p| !opted_out.contains(&p.uid));
                            (endpoint.node, pod)
                        } else {
                            (None, None)
                        };
                        Backend {
                            address: endpoint.address,
                            port: (endpoint.port != service_port).then_some(endpoint.port),
                            weight: 1,
                            upper_threshold: None,
                            lower_threshold: None,
                            state: endpoint.state,
                            node,
                            pod,
                        }
                    })
                    .collect(),
            });
        }
        services.sort_by_key(|s| (s.protocol, s.port));
        services.dedup_by_key(|s| (s.protocol, s.port));
        let (path, name) = key.manifest_id(*family, index == 0);
        out.manifests.insert(
            path,
            Balancer {
                api_version: API_VERSION.to_owned(),
                kind: "Balancer".to_owned(),
                metadata: Metadata {
                    name,
                    source: Some(key.source()),
                    ..Metadata::default()
                },
                spec: BalancerSpec {
                    vip: *vip,
                    services,
                },
            },
        );
    }
    out.problems.sort();
    out.config = Some(service_config);
    out
}

/// The Service's VIP per family, in `spec.ipFamilies` order (the first is the primary): the
/// first `status.loadBalancer.ingress` address of each family. Families without one are not
/// rendered yet.
pub fn vips(service: &Service) -> Vec<(Family, IpAddr)> {
    let ingress: Vec<IpAddr> = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect();
    families(service)
        .into_iter()
        .filter_map(|family| {
            let vip = ingress.iter().find(|ip| Family::of(ip) == family)?;
            Some((family, *vip))
        })
        .collect()
}

/// `spec.ipFamilies`, defaulting to IPv4 as the API server does for single-stack clusters.
pub fn families(service: &Service) -> Vec<Family> {
    let mut families: Vec<Family> = service
        .spec
        .as_ref()
        .and_then(|s| s.ip_families.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|f| Family::from_kubernetes(f))
        .collect();
    families.dedup();
    if families.is_empty() {
        families.push(Family::V4);
    }
    families
}

fn protocol(port: &ServicePort) -> Option<Protocol> {
    match port.protocol.as_deref().unwrap_or("TCP") {
        "TCP" => Some(Protocol::Tcp),
        "UDP" => Some(Protocol::Udp),
        "SCTP" => Some(Protocol::Sctp),
        _ => None,
    }
}

fn port_label(port: &ServicePort) -> String {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match port.name.as_deref() {
        Some(name) if !name.is_empty() => format!("{name} ({}/{protocol})", port.port),
        _ => format!("{}/{protocol}", port.port),
    }
}

/// Whether an endpoint takes new connections, may finish old ones, or neither.
fn endpoint_state(endpoint: &Endpoint) -> (bool, bool) {
    let conditions = endpoint.conditions.as_ref();
    // The API says a missing `ready` means ready, and `serving` follows `ready` when absent.
    let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
    let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
    let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
    (ready, serving && terminating)
}

/// One backend address of a Service port, with where it runs: the node and the pod the
/// EndpointSlice names (`nodeName`, `targetRef`), which the backend role of tunnel forwarding
/// needs to find the pod's network namespace.
struct EndpointAddress {
    address: IpAddr,
    port: u16,
    state: BackendState,
    node: Option<String>,
    pod: Option<PodRef>,
}

/// Where an endpoint runs: its node and its pod.
type Placement = (Option<String>, Option<PodRef>);

/// Where an endpoint runs, as its EndpointSlice says; `pod` only for a Pod target with a UID.
fn placement(endpoint: &Endpoint) -> Placement {
    let pod = endpoint.target_ref.as_ref().and_then(|target| {
        (target.kind.as_deref() == Some("Pod")).then_some(())?;
        Some(PodRef {
            namespace: target.namespace.clone()?,
            name: target.name.clone()?,
            uid: target.uid.clone()?,
        })
    });
    (endpoint.node_name.clone(), pod)
}

/// The backends of one Service port in one family: the EndpointSlice port with the same name
/// and protocol gives the backend port. Ready endpoints are active and serving terminating ones
/// draining — unless no endpoint is ready, when the serving terminating ones stay active (as
/// kube-proxy does) rather than leaving nothing. Sorted by address and port, without duplicates.
fn backends(
    port: &ServicePort,
    protocol: Protocol,
    slices: &[&EndpointSlice],
) -> Vec<EndpointAddress> {
    let name = port.name.as_deref().unwrap_or_default();
    let mut ready = BTreeMap::new();
    let mut terminating = BTreeMap::new();
    for slice in slices {
        let slice_port = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or_default() == name
                && p.protocol.as_deref().unwrap_or("TCP") == protocol.as_str()
        });
        let Some(backend_port) = slice_port
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let (is_ready, is_draining) = endpoint_state(endpoint);
            let target = if is_ready {
                &mut ready
            } else if is_draining {
                &mut terminating
            } else {
                continue;
            };
            for address in &endpoint.addresses {
                if let Ok(ip) = address.parse::<IpAddr>() {
                    target.insert((ip, backend_port), placement(endpoint));
                }
            }
        }
    }
    let draining = if ready.is_empty() {
        BackendState::Active
    } else {
        BackendState::Draining
    };
    let mut all: BTreeMap<(IpAddr, u16), (BackendState, Placement)> = terminating
        .into_iter()
        .map(|(k, at)| (k, (draining, at)))
        .collect();
    all.extend(
        ready
            .into_iter()
            .map(|(k, at)| (k, (BackendState::Active, at))),
    );
    all.into_iter()
        .map(|((address, port), (state, (node, pod)))| EndpointAddress {
            address,
            port,
            state,
            node,
            pod,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{pod_meta, service, slice, with_annotation, with_ingress, with_pod_refs};
    use crate::pods::{LEGACY_TUNNEL_IGNORE, TUNNEL_IGNORE};
    use k8s_openapi::api::discovery::v1::EndpointConditions;

    fn conditions(ready: bool, serving: bool, terminating: bool) -> Option<EndpointConditions> {
        Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        })
    }

    fn states(slices: &[EndpointSlice]) -> Vec<(String, BackendState)> {
        let svc = with_ingress(service("shop", "web", &[80], 1), &["198.51.100.1"]);
        let rendered = render(
            &[svc],
            slices,
            &OptedOut::default(),
            &RenderConfig::default(),
            &BTreeMap::new(),
        );
        rendered.manifests["shop/web.yaml"].spec.services[0]
            .backends
            .iter()
            .map(|b| (b.address.to_string(), b.state))
            .collect()
    }

    #[test]
    fn only_our_class_is_ours_unless_classless_services_are_accepted() {
        let mut svc = service("shop", "web", &[80], 1);
        let mut config = RenderConfig::default();
        assert!(is_ours(&svc, &config));
        svc.spec.as_mut().unwrap().load_balancer_class = None;
        assert!(!is_ours(&svc, &config));
        config.accept_without_class = true;
        assert!(is_ours(&svc, &config));
        svc.spec.as_mut().unwrap().type_ = Some("NodePort".to_owned());
        assert!(!is_ours(&svc, &config));
    }

    #[test]
    fn terminating_endpoints_drain_while_others_are_ready_and_serve_when_none_is() {
        let addresses = vec![
            "10.0.0.1".to_owned(),
            "10.0.0.2".to_owned(),
            "10.0.0.3".to_owned(),
        ];
        let mut s = slice("shop", "web", "a", &[80], &addresses);
        s.endpoints[1].conditions = conditions(false, true, true);
        s.endpoints[2].conditions = conditions(false, false, false);
        assert_eq!(
            states(std::slice::from_ref(&s)),
            vec![
                ("10.0.0.1".to_owned(), BackendState::Active),
                ("10.0.0.2".to_owned(), BackendState::Draining)
            ]
        );
        s.endpoints[0].conditions = conditions(false, true, true);
        assert_eq!(
            states(&[s]),
            vec![
                ("10.0.0.1".to_owned(), BackendState::Active),
                ("10.0.0.2".to_owned(), BackendState::Active)
            ]
        );
    }

    #[test]
    fn an_address_in_two_slices_is_one_backend_and_ready_wins() {
        let mut old = slice("shop", "web", "a", &[80], &["10.0.0.1".to_owned()]);
        old.endpoints[0].conditions = conditions(false, true, true);
        let new = slice("shop", "web", "b", &[80], &["10.0.0.1".to_owned()]);
        assert_eq!(
            states(&[old, new]),
            vec![("10.0.0.1".to_owned(), BackendState::Active)]
        );
    }

    #[test]
    fn a_service_without_an_address_renders_nothing_yet() {
        let svc = service("shop", "web", &[80], 1);
        let rendered = render(
            &[svc],
            &[],
            &OptedOut::default(),
            &RenderConfig::default(),
            &BTreeMap::new(),
        );
        assert!(rendered.manifests.is_empty());
    }

    /// The `pod` each backend of shop/web (forwarding as given) is rendered with, when the
    /// pods behind 10.0.0.1 and 10.0.0.2 carry these annotations.
    fn pods_named(
        forwarding: &str,
        first: &[(&str, &str)],
        second: &[(&str, &str)],
    ) -> Vec<(String, Option<String>, Option<String>)> {
        let svc = with_annotation(
            with_ingress(service("shop", "web", &[80], 1), &["198.51.100.1"]),
            "balanced.io/forwarding",
            forwarding,
        );
        let addresses = ["10.0.0.1".to_owned(), "10.0.0.2".to_owned()];
        let slices = [with_pod_refs(slice("shop", "web", "a", &[80], &addresses))];
        let pods = [
            pod_meta("shop", "10.0.0.1", first),
            pod_meta("shop", "10.0.0.2", second),
        ];
        let (opted_out, _) = OptedOut::from_pods(pods.iter().map(|p| &p.metadata));
        let rendered = render(
            &[svc],
            &slices,
            &opted_out,
            &RenderConfig::default(),
            &BTreeMap::new(),
        );
        rendered.manifests["shop/web.yaml"].spec.services[0]
            .backends
            .iter()
            .map(|b| {
                (
                    b.address.to_string(),
                    b.node.clone(),
                    b.pod
                        .as_ref()
                        .map(|p| format!("{}/{} {}", p.namespace, p.name, p.uid)),
                )
            })
            .collect()
    }

    fn named(address: &str, pod: bool) -> (String, Option<String>, Option<String>) {
        let id = address.replace('.', "-");
        (
            address.to_owned(),
            Some("node-a".to_owned()),
            pod.then(|| format!("shop/pod-{id} uid-{id}")),
        )
    }

    #[test]
    fn an_opted_out_pod_is_still_a_backend_but_not_named_under_either_annotation() {
        for annotation in [TUNNEL_IGNORE, LEGACY_TUNNEL_IGNORE] {
            for value in ["true", "True"] {
                assert_eq!(
                    pods_named("tunnel", &[(annotation, value)], &[]),
                    vec![named("10.0.0.1", false), named("10.0.0.2", true)],
                    "{annotation}: {value}"
                );
            }
        }
    }

    #[test]
    fn another_value_keeps_the_pod_named() {
        for value in ["false", "yes", "1", ""] {
            assert_eq!(
                pods_named("tunnel", &[(TUNNEL_IGNORE, value)], &[]),
                vec![named("10.0.0.1", true), named("10.0.0.2", true)],
                "{value:?}"
            );
        }
    }

    #[test]
    fn without_tunnel_forwarding_no_backend_is_placed() {
        let rendered = pods_named("masquerade", &[], &[]);
        assert!(
            rendered
                .iter()
                .all(|(_, node, pod)| node.is_none() && pod.is_none())
        );
    }
}
