//! Allocation planning: requests, exhaustion, IPv6, two Services asking for one address,
//! quarantine, and addresses held by Services the exporter does not serve.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use balanced_exporter::alloc::{AllocReason, Allocator, Pools};
use balanced_exporter::config::RenderConfig;
use balanced_exporter::fixtures::{service, with_annotation, with_families, with_ingress};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn allocator(pools: &[&str], quarantine: u64) -> Allocator {
    let args: Vec<String> = pools.iter().map(|p| (*p).to_owned()).collect();
    Allocator::new(
        Pools::parse(&args, None).unwrap(),
        Duration::from_secs(quarantine),
    )
}

#[test]
fn pools_must_not_overlap_and_must_parse() {
    let overlapping = vec![
        "a=198.51.100.0/24".to_owned(),
        "b=198.51.100.200-198.51.101.5".to_owned(),
    ];
    let err = Pools::parse(&overlapping, None).unwrap_err();
    assert!(err.contains("overlaps"), "{err}");
    assert!(Pools::parse(&["a=198.51.100.9-198.51.100.1".to_owned()], None).is_err());
    assert!(Pools::parse(&["a=198.51.100.1-2001:db8::1".to_owned()], None).is_err());
    assert!(
        Pools::parse(
            &["a=10.0.0.0/24".to_owned(), "b=10.0.1.0/24".to_owned()],
            Some("c".to_owned())
        )
        .is_err()
    );
}

#[test]
fn lowest_free_address_skips_every_held_address_even_foreign_ones() {
    let mut alloc = allocator(&["public=198.51.100.0/30"], 0);
    let mut foreign = with_ingress(service("other", "cloud", &[80], 1), &["198.51.100.0"]);
    foreign.spec.as_mut().unwrap().load_balancer_class = Some("service.k8s.aws/nlb".to_owned());
    let held = with_ingress(service("shop", "old", &[80], 2), &["198.51.100.1"]);
    let new = service("shop", "web", &[80], 3);
    let plan = alloc.plan(
        &[foreign, held, new],
        &RenderConfig::default(),
        Instant::now(),
    );
    assert_eq!(plan.problems, vec![]);
    assert_eq!(plan.assignments.len(), 1);
    assert_eq!(plan.assignments[0].service.to_string(), "shop/web");
    assert_eq!(plan.assignments[0].ingress, vec![ip("198.51.100.2")]);
}

#[test]
fn requests_are_taken_in_preference_order_and_never_replaced_by_a_random_pick() {
    let mut alloc = allocator(&["public=198.51.100.0/28"], 0);
    let holder = with_ingress(service("shop", "a", &[80], 1), &["198.51.100.5"]);
    let asks = with_annotation(
        service("shop", "b", &[80], 2),
        "balanced.io/ip-request",
        "198.51.100.5, 198.51.100.7,198.51.100.3",
    );
    let plan = alloc.plan(
        &[holder.clone(), asks],
        &RenderConfig::default(),
        Instant::now(),
    );
    assert_eq!(plan.assignments[0].new, vec![ip("198.51.100.7")]);

    let unparsable = with_annotation(
        service("shop", "c", &[80], 3),
        "balanced.demonware.net/ip-request",
        "198.51.100.9,banana",
    );
    let outside = with_annotation(
        service("shop", "d", &[80], 4),
        "balanced.io/ip-request",
        "192.0.2.1",
    );
    let taken = with_annotation(
        service("shop", "e", &[80], 5),
        "balanced.io/ip-request",
        "198.51.100.5",
    );
    let plan = alloc.plan(
        &[holder, unparsable, outside, taken],
        &RenderConfig::default(),
        Instant::now(),
    );
    assert!(plan.assignments.is_empty(), "{:?}", plan.assignments);
    let reasons: Vec<(String, AllocReason)> = plan
        .problems
        .iter()
        .map(|p| (p.service.to_string(), p.reason))
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("shop/c".to_owned(), AllocReason::InvalidIPRequest),
            ("shop/d".to_owned(), AllocReason::IPRequestCriteriaNotMet),
            ("shop/e".to_owned(), AllocReason::IPRequestCriteriaNotMet),
        ]
    );
    assert!(
        plan.problems[0].message.contains("\"banana\""),
        "{}",
        plan.problems[0].message
    );
    assert!(
        plan.problems[2]
            .message
            .contains("198.51.100.5 is held by shop/a"),
        "{}",
        plan.problems[2].message
    );
}

#[test]
fn spec_load_balancer_ip_is_a_request() {
    let mut alloc = allocator(&["public=198.51.100.0/28"], 0);
    let mut svc = service("shop", "web", &[80], 1);
    svc.spec.as_mut().unwrap().load_balancer_ip = Some("198.51.100.9".to_owned());
    let plan = alloc.plan(&[svc], &RenderConfig::default(), Instant::now());
    assert_eq!(plan.assignments[0].new, vec![ip("198.51.100.9")]);
}

#[test]
fn two_services_asking_for_one_address_the_older_wins() {
    let mut alloc = allocator(&["public=198.51.100.0/28"], 0);
    let newer = with_annotation(
        service("shop", "newer", &[80], 20),
        "balanced.io/ip-request",
        "198.51.100.4",
    );
    let older = with_annotation(
        service("shop", "older", &[80], 10),
        "balanced.io/ip-request",
        "198.51.100.4",
    );
    let plan = alloc.plan(&[newer, older], &RenderConfig::default(), Instant::now());
    assert_eq!(plan.assignments.len(), 1);
    assert_eq!(plan.assignments[0].service.to_string(), "shop/older");
    assert_eq!(plan.problems.len(), 1);
    assert_eq!(plan.problems[0].service.to_string(), "shop/newer");
    assert_eq!(
        plan.problems[0].reason,
        AllocReason::IPRequestCriteriaNotMet
    );
}

#[test]
fn exhaustion_is_reported_per_service() {
    let mut alloc = allocator(&["small=198.51.100.1-198.51.100.2"], 0);
    let services: Vec<_> = (0..3)
        .map(|i| service("shop", &format!("s{i}"), &[80], i))
        .collect();
    let plan = alloc.plan(&services, &RenderConfig::default(), Instant::now());
    assert_eq!(plan.assignments.len(), 2);
    assert_eq!(plan.problems.len(), 1);
    assert_eq!(plan.problems[0].reason, AllocReason::OutOfLoadBalancerIP);
    assert_eq!(
        plan.problems[0].message,
        "shop/s2: pool small has no free ipv4 address"
    );
}

#[test]
fn ipv6_and_dual_stack_get_one_address_per_family_from_the_named_pool() {
    let mut alloc = allocator(
        &[
            "public=198.51.100.0/24,2001:db8:5::/64",
            "other=203.0.113.0/24",
        ],
        0,
    );
    let dual = with_annotation(
        with_families(service("shop", "dual", &[443], 1), &["IPv6", "IPv4"]),
        "balanced.io/ip-pool",
        "public",
    );
    let plan = alloc.plan(&[dual], &RenderConfig::default(), Instant::now());
    assert_eq!(plan.problems, vec![]);
    assert_eq!(
        plan.assignments[0].ingress,
        vec![ip("2001:db8:5::"), ip("198.51.100.0")]
    );

    let half = with_ingress(
        with_families(service("shop", "half", &[443], 2), &["IPv4", "IPv6"]),
        &["198.51.100.77"],
    );
    let half = with_annotation(half, "balanced.io/ip-pool", "public");
    let plan = alloc.plan(&[half], &RenderConfig::default(), Instant::now());
    assert_eq!(plan.assignments[0].new, vec![ip("2001:db8:5::")]);
    assert_eq!(
        plan.assignments[0].ingress,
        vec![ip("198.51.100.77"), ip("2001:db8:5::")]
    );

    let unknown = with_annotation(
        service("shop", "x", &[80], 3),
        "balanced.io/ip-pool",
        "nope",
    );
    let plan = alloc.plan(&[unknown], &RenderConfig::default(), Instant::now());
    assert_eq!(plan.problems[0].reason, AllocReason::UnknownIPPool);
}

#[test]
fn released_addresses_wait_out_the_quarantine() {
    let mut alloc = allocator(&["public=198.51.100.0/30"], 60);
    let start = Instant::now();
    let old = with_ingress(service("shop", "old", &[80], 1), &["198.51.100.0"]);
    let plan = alloc.plan(&[old], &RenderConfig::default(), start);
    assert!(plan.assignments.is_empty());

    // The Service is deleted: its address is quarantined, the next one is given instead.
    let new = service("shop", "new", &[80], 2);
    let plan = alloc.plan(
        std::slice::from_ref(&new),
        &RenderConfig::default(),
        start + Duration::from_secs(1),
    );
    assert_eq!(plan.assignments[0].new, vec![ip("198.51.100.1")]);
    assert!(plan.quarantined.contains(&ip("198.51.100.0")));

    // After the quarantine the lowest address is free again.
    let plan = alloc.plan(
        &[new],
        &RenderConfig::default(),
        start + Duration::from_secs(62),
    );
    assert_eq!(plan.assignments[0].new, vec![ip("198.51.100.0")]);
    assert!(plan.quarantined.is_empty());
}

#[test]
fn an_address_in_two_statuses_is_reported_on_the_newer_service() {
    let mut alloc = allocator(&["public=198.51.100.0/30"], 0);
    let a = with_ingress(service("shop", "a", &[80], 1), &["198.51.100.1"]);
    let b = with_ingress(service("shop", "b", &[80], 2), &["198.51.100.1"]);
    let plan = alloc.plan(&[b, a], &RenderConfig::default(), Instant::now());
    assert_eq!(plan.problems.len(), 1);
    assert_eq!(plan.problems[0].service.to_string(), "shop/b");
    assert_eq!(
        plan.problems[0].reason,
        AllocReason::DuplicateLoadBalancerIP
    );
}

#[test]
fn an_address_written_but_not_yet_watched_is_not_given_again() {
    let mut alloc = allocator(&["public=198.51.100.0/30"], 0);
    let now = Instant::now();
    let a = service("shop", "a", &[80], 1);
    let plan = alloc.plan(std::slice::from_ref(&a), &RenderConfig::default(), now);
    let given = plan.assignments[0].new[0];
    alloc.confirm(&plan.assignments[0].service, given, now);
    // The watch has not shown a's new status yet; b must not get the same address.
    let b = service("shop", "b", &[80], 2);
    let plan = alloc.plan([&a, &b], &RenderConfig::default(), now);
    let b_plan = plan
        .assignments
        .iter()
        .find(|p| p.service.name == "b")
        .unwrap();
    assert_ne!(b_plan.new[0], given);
}
