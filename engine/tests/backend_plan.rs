//! The backend role's pure side: which pods the manifests ask for, what each pod namespace
//! must hold (devices, MTU, addresses, rp_filter, the MSS rule and route), and the planner
//! between desired and observed — including the properties `plan(d, d)` is empty and applying
//! `plan(d, o)` to `o` gives `d`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use balanced_engine::backend::model::{
    FouPort, GatewayRoute, PodFacts, PodIntent, PodNet, Tunnel, TunnelDevice, TunnelLink,
    Unsupported, desired, pod_intents,
};
use balanced_engine::backend::plan::{PodAction, plan, simulate};
use balanced_engine::model::Family;
use balanced_schemas::v1::{
    Backend, BackendState, Balancer, BalancerSpec, Encapsulation, Forwarding, ForwardingMethod,
    Metadata, PodRef, Protocol, Scheduler, TunnelChecksum, VirtualService,
};
use proptest::prelude::*;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn pod(name: &str) -> PodRef {
    PodRef {
        namespace: "default".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
    }
}

fn backend(
    address: &str,
    node: Option<&str>,
    pod_name: Option<&str>,
    state: BackendState,
) -> Backend {
    Backend {
        address: ip(address),
        port: None,
        weight: 1,
        upper_threshold: None,
        lower_threshold: None,
        state,
        node: node.map(Into::into),
        pod: pod_name.map(pod),
    }
}

fn balancer(vip: &str, forwarding: Forwarding, backends: Vec<Backend>) -> Balancer {
    Balancer {
        api_version: "balanced.io/v1".into(),
        kind: "Balancer".into(),
        metadata: Metadata {
            name: format!("b-{vip}"),
            ..Metadata::default()
        },
        spec: BalancerSpec {
            vip: ip(vip),
            services: vec![VirtualService {
                protocol: Some(Protocol::Tcp),
                port: Some(80),
                fwmark: None,
                scheduler: Scheduler::Rr,
                scheduler_flags: vec![],
                persistence: None,
                one_packet: false,
                forwarding,
                backends,
            }],
        },
    }
}

fn tunnel(encapsulation: Encapsulation) -> Forwarding {
    Forwarding {
        method: ForwardingMethod::Tunnel,
        encapsulation: Some(encapsulation),
        port: (encapsulation == Encapsulation::Gue).then_some(6080),
        checksum: None,
    }
}

fn ipip_v4() -> Tunnel {
    Tunnel {
        encapsulation: Encapsulation::Ipip,
        outer: Family::V4,
        port: None,
        checksum: TunnelChecksum::None,
    }
}

fn facts(mtu: u32) -> PodFacts {
    PodFacts {
        primary_mtu: Some(mtu),
        default_routes: BTreeMap::from([(
            Family::V4,
            GatewayRoute {
                gateway: Some(ip("10.244.1.1")),
                oif: 2,
                flags: 0,
                advmss: 0,
            },
        )]),
    }
}

fn intent(vips: &[(&str, Tunnel)]) -> PodIntent {
    let mut out = PodIntent::default();
    for (vip, t) in vips {
        out.vips.entry(ip(vip)).or_default().insert(*t);
    }
    out
}

#[test]
fn only_this_nodes_pods_of_tunnel_services_are_asked_for_draining_ones_included() {
    let direct = Forwarding::default();
    let manifests = [
        balancer(
            "198.51.100.1",
            tunnel(Encapsulation::Ipip),
            vec![
                backend("10.244.1.11", Some("n1"), Some("a"), BackendState::Active),
                backend("10.244.1.12", Some("n1"), Some("b"), BackendState::Draining),
                backend("10.244.2.11", Some("n2"), Some("c"), BackendState::Active),
                backend("10.244.1.13", Some("n1"), None, BackendState::Active),
                backend("10.244.1.14", None, Some("d"), BackendState::Active),
            ],
        ),
        balancer(
            "198.51.100.2",
            direct,
            vec![backend(
                "10.244.1.11",
                Some("n1"),
                Some("a"),
                BackendState::Active,
            )],
        ),
        balancer(
            "198.51.100.3",
            tunnel(Encapsulation::Gue),
            vec![backend(
                "10.244.1.11",
                Some("n1"),
                Some("a"),
                BackendState::Active,
            )],
        ),
    ];
    let pods = pod_intents(&manifests, "n1");
    assert_eq!(
        pods.keys().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["a", "b"],
        "pods of n1 with a pod identity; not n2's, not a backend without pod or node"
    );
    let a = &pods[&pod("a")];
    assert_eq!(
        a.vips.keys().copied().collect::<Vec<_>>(),
        [ip("198.51.100.1"), ip("198.51.100.3")],
        "the direct-routing VIP is not the backend role's business"
    );
    assert_eq!(
        a.vips[&ip("198.51.100.3")]
            .iter()
            .map(|t| (t.encapsulation, t.port))
            .collect::<Vec<_>>(),
        [(Encapsulation::Gue, Some(6080))]
    );
    assert!(pods[&pod("b")].vips.contains_key(&ip("198.51.100.1")));
}

#[test]
fn ipip_v4_pod_gets_tunl0_mtu_rp_filter_and_the_mss_clamp() {
    let (net, problems) = desired(&intent(&[("198.51.100.7", ipip_v4())]), &facts(1450));
    assert!(problems.is_empty());
    assert_eq!(
        net.tunnels,
        BTreeMap::from([(
            TunnelDevice::Tunl0,
            TunnelLink {
                up: true,
                mtu: 1430
            }
        )])
    );
    assert_eq!(
        net.addresses,
        BTreeSet::from([(TunnelDevice::Tunl0, ip("198.51.100.7"))])
    );
    assert_eq!(
        net.rp_filter,
        BTreeMap::from([("all".to_owned(), 0), ("tunl0".to_owned(), 0)])
    );
    assert_eq!(net.rules, BTreeSet::from([ip("198.51.100.7")]));
    assert_eq!(
        net.routes[&Family::V4],
        GatewayRoute {
            gateway: Some(ip("10.244.1.1")),
            oif: 2,
            flags: 0,
            advmss: 1390,
        },
        "a copy of the pod's default route with advmss = 1450 - 20 - 40"
    );
    assert!(net.fou_ports.is_empty());
}

#[test]
fn overheads_follow_what_ipvs_adds() {
    let t = |encapsulation, outer, checksum| Tunnel {
        encapsulation,
        outer,
        port: Some(6080),
        checksum,
    };
    use Encapsulation::*;
    use TunnelChecksum as C;
    assert_eq!(t(Ipip, Family::V4, C::None).overhead(), 20);
    assert_eq!(t(Ipip, Family::V6, C::None).overhead(), 40);
    assert_eq!(t(Gre, Family::V4, C::None).overhead(), 24);
    assert_eq!(t(Gre, Family::V4, C::Csum).overhead(), 28);
    assert_eq!(t(Gue, Family::V4, C::None).overhead(), 32);
    assert_eq!(t(Gue, Family::V4, C::Remcsum).overhead(), 40);
    assert_eq!(t(Gue, Family::V6, C::Csum).overhead(), 52);
}

#[test]
fn gue_opens_a_fou_port_feeding_tunl0_and_the_largest_overhead_sets_the_mtu() {
    let gue = Tunnel {
        encapsulation: Encapsulation::Gue,
        outer: Family::V4,
        port: Some(6080),
        checksum: TunnelChecksum::None,
    };
    let (net, problems) = desired(
        &intent(&[("198.51.100.7", ipip_v4()), ("198.51.100.8", gue)]),
        &facts(1500),
    );
    assert!(problems.is_empty());
    assert_eq!(
        net.fou_ports,
        BTreeSet::from([FouPort {
            family: Family::V4,
            port: 6080
        }])
    );
    assert_eq!(net.tunnels[&TunnelDevice::Tunl0].mtu, 1500 - 32);
    assert_eq!(net.routes[&Family::V4].advmss, 1500 - 32 - 40);
    assert_eq!(net.rules.len(), 2);
}

#[test]
fn other_families_and_encapsulations_pick_their_devices() {
    let t = |encapsulation, outer| Tunnel {
        encapsulation,
        outer,
        port: None,
        checksum: TunnelChecksum::None,
    };
    let v4 = ip("198.51.100.7");
    let v6 = ip("2001:db8:100::7");
    assert_eq!(
        t(Encapsulation::Ipip, Family::V4).device(Family::V6, v6),
        Ok(TunnelDevice::Sit0)
    );
    assert_eq!(
        t(Encapsulation::Ipip, Family::V6).device(Family::V6, v6),
        Ok(TunnelDevice::Ip6tnl0)
    );
    assert_eq!(
        t(Encapsulation::Gre, Family::V4).device(Family::V6, v6),
        Ok(TunnelDevice::Gre0)
    );
    assert_eq!(
        t(Encapsulation::Gre, Family::V6).device(Family::V4, v4),
        Ok(TunnelDevice::Ip6gre0)
    );
    assert_eq!(
        t(Encapsulation::Ipip, Family::V6).device(Family::V4, v4),
        Err(Unsupported::Ipv4OverIpv6 { vip: v4 })
    );
    // An IPv6 VIP gets no rp_filter (IPv4 only) and no MSS route without an IPv6 default route.
    let (net, problems) = desired(
        &intent(&[("2001:db8:100::7", t(Encapsulation::Ipip, Family::V4))]),
        &facts(1500),
    );
    assert!(problems.is_empty());
    assert_eq!(net.addresses, BTreeSet::from([(TunnelDevice::Sit0, v6)]));
    assert!(net.rp_filter.is_empty());
    assert!(net.routes.is_empty() && net.rules.is_empty());
    let (net, problems) = desired(
        &intent(&[("198.51.100.7", t(Encapsulation::Ipip, Family::V6))]),
        &facts(1500),
    );
    assert_eq!(problems.len(), 1, "reported, not planned");
    assert!(net.addresses.is_empty());
}

#[test]
fn plan_adds_in_dependency_order_and_removes_only_when_allowed() {
    let (want, _) = desired(&intent(&[("198.51.100.7", ipip_v4())]), &facts(1450));
    let actions = plan(&want, &PodNet::default(), true);
    let lines: Vec<String> = actions.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "~ link tunl0 up mtu 1430",
            "~ sysctl net.ipv4.conf.all.rp_filter = 0",
            "~ sysctl net.ipv4.conf.tunl0.rp_filter = 0",
            "+ address 198.51.100.7/32 dev tunl0",
            "~ route IPv4 default via 10.244.1.1 oif 2 table 4177 advmss 1390",
            "+ rule from 198.51.100.7 lookup 4177",
        ]
    );
    // The pod leaves every service: what balanced added goes, rules before their addresses;
    // the device stays up and rp_filter stays as set.
    let (gone, _) = desired(&PodIntent::default(), &facts(1450));
    let lines: Vec<String> = plan(&gone, &want, true)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        lines,
        [
            "- rule from 198.51.100.7 lookup 4177",
            "- route IPv4 default via 10.244.1.1 oif 2 table 4177 advmss 1390",
            "- address 198.51.100.7/32 dev tunl0",
        ]
    );
    assert!(
        plan(&gone, &want, false).is_empty(),
        "with an unreadable manifest nothing is removed"
    );
}

#[test]
fn a_changed_mtu_updates_device_and_route_only() {
    let (old, _) = desired(&intent(&[("198.51.100.7", ipip_v4())]), &facts(1500));
    let (new, _) = desired(&intent(&[("198.51.100.7", ipip_v4())]), &facts(9000));
    let actions = plan(&new, &old, true);
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert!(matches!(
        actions[0],
        PodAction::SetTunnel {
            link: TunnelLink { mtu: 8980, .. },
            ..
        }
    ));
    assert!(matches!(
        actions[1],
        PodAction::SetMssRoute {
            route: GatewayRoute { advmss: 8940, .. },
            ..
        }
    ));
}

fn arb_net() -> impl Strategy<Value = PodNet> {
    let device = prop_oneof![
        Just(TunnelDevice::Tunl0),
        Just(TunnelDevice::Gre0),
        Just(TunnelDevice::Sit0)
    ];
    let vip = (1u8..6).prop_map(|i| IpAddr::from([198, 51, 100, i]));
    let route = (0u32..3, 1000u32..1500).prop_map(|(oif, advmss)| GatewayRoute {
        gateway: Some(IpAddr::from([10, 244, 1, 1])),
        oif,
        flags: 0,
        advmss,
    });
    (
        prop::collection::btree_map(device.clone(), (any::<bool>(), 1000u32..1500), 0..3),
        prop::collection::btree_set((device, vip.clone()), 0..5),
        prop::collection::btree_set(
            (6000u16..6003).prop_map(|port| FouPort {
                family: Family::V4,
                port,
            }),
            0..3,
        ),
        prop::collection::btree_map(
            prop_oneof![Just("all".to_owned()), Just("tunl0".to_owned())],
            0u32..3,
            0..2,
        ),
        prop::collection::btree_set(vip, 0..4),
        prop::option::of(route),
    )
        .prop_map(
            |(tunnels, addresses, fou_ports, rp_filter, rules, route)| PodNet {
                tunnels: tunnels
                    .into_iter()
                    .map(|(d, (up, mtu))| (d, TunnelLink { up, mtu }))
                    .collect(),
                addresses,
                fou_ports,
                rp_filter,
                rules,
                routes: route.map(|r| (Family::V4, r)).into_iter().collect(),
            },
        )
}

proptest! {
    #[test]
    fn plan_of_a_state_against_itself_is_empty(net in arb_net()) {
        prop_assert!(plan(&net, &net, true).is_empty());
    }

    #[test]
    fn applying_the_plan_reaches_the_desired_state(want in arb_net(), have in arb_net()) {
        let actions = plan(&want, &have, true);
        let mut state = have.clone();
        simulate(&mut state, &actions);
        // Devices balanced no longer needs stay as they were (never set down), as does rp_filter.
        let mut expected = want.clone();
        for (device, link) in &have.tunnels {
            expected.tunnels.entry(*device).or_insert(*link);
        }
        for (conf, value) in &have.rp_filter {
            expected.rp_filter.entry(conf.clone()).or_insert(*value);
        }
        prop_assert_eq!(state, expected);
        let mut held = have.clone();
        simulate(&mut held, &plan(&want, &have, false));
        prop_assert!(have.addresses.iter().all(|a| held.addresses.contains(a)), "nothing removed");
    }
}
