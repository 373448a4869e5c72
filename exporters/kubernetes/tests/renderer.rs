//! The render loop's core without an API server: last good configuration across invalid
//! annotations and restarts, Warning Events raised once, only the touched Service's file
//! rewritten when one EndpointSlice changes, and pods' opt-out of the backend role re-rendering
//! only the Services that name the pod.

use balanced_exporter::config::RenderConfig;
use balanced_exporter::fixtures::{
    pod_meta, service, slice, with_annotation, with_ingress, with_pod_refs,
};
use balanced_exporter::pods::{LEGACY_TUNNEL_IGNORE, TUNNEL_IGNORE};
use balanced_exporter::run::Renderer;
use balanced_exporter::watch::{Cache, Input};
use balanced_exporter::writer::Writer;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::Event;

fn synced(dir: &std::path::Path, services: Vec<Service>, slices: Vec<EndpointSlice>) -> Renderer {
    synced_with_pods(dir, services, slices, Vec::new())
}

fn synced_with_pods(
    dir: &std::path::Path,
    services: Vec<Service>,
    slices: Vec<EndpointSlice>,
    pods: Vec<PartialObjectMeta<Pod>>,
) -> Renderer {
    let mut renderer = Renderer::new(
        RenderConfig::default(),
        Cache::new(&[]),
        Writer::open(dir, None).unwrap(),
    );
    renderer.apply(Input::Service(0, Box::new(Event::Init)));
    for s in services {
        renderer.apply(Input::Service(0, Box::new(Event::InitApply(s))));
    }
    renderer.apply(Input::Service(0, Box::new(Event::InitDone)));
    assert!(
        renderer.flush().batch.changes.is_empty(),
        "rendered before the EndpointSlices were listed"
    );
    renderer.apply(Input::Slice(0, Box::new(Event::Init)));
    for s in slices {
        renderer.apply(Input::Slice(0, Box::new(Event::InitApply(s))));
    }
    renderer.apply(Input::Slice(0, Box::new(Event::InitDone)));
    assert!(
        renderer.flush().batch.changes.is_empty(),
        "rendered before the Pods were listed"
    );
    renderer.apply(Input::Pod(0, Box::new(Event::Init)));
    for p in pods {
        renderer.apply(Input::Pod(0, Box::new(Event::InitApply(p))));
    }
    renderer.apply(Input::Pod(0, Box::new(Event::InitDone)));
    renderer
}

fn web(annotation: Option<&str>) -> Service {
    let svc = with_ingress(service("shop", "web", &[80], 1), &["198.51.100.10"]);
    match annotation {
        Some(scheduler) => with_annotation(svc, "balanced.io/scheduler", scheduler),
        None => svc,
    }
}

fn backends(n: usize) -> EndpointSlice {
    let addresses: Vec<String> = (1..=n).map(|i| format!("10.244.0.{i}")).collect();
    slice("shop", "web", "a", &[80], &addresses)
}

#[test]
fn an_invalid_annotation_keeps_the_last_good_configuration_while_backends_follow() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shop/web.yaml");
    let mut renderer = synced(dir.path(), vec![web(Some("rr"))], vec![backends(1)]);
    let flush = renderer.flush();
    assert_eq!(flush.batch.changes.len(), 1);
    assert!(flush.notices.is_empty());

    renderer.apply(Input::Service(0, Box::new(Event::Apply(web(Some("hrw"))))));
    let flush = renderer.flush();
    assert!(
        flush.batch.changes.is_empty(),
        "the configuration must not change"
    );
    assert_eq!(flush.notices.len(), 1);
    assert_eq!(flush.notices[0].reason, "InvalidAnnotation");
    assert!(
        flush.notices[0]
            .note
            .contains("the last good configuration stays in force"),
        "{}",
        flush.notices[0].note
    );

    // Backends still follow; the problem is not reported again.
    renderer.apply(Input::Slice(0, Box::new(Event::Apply(backends(2)))));
    let flush = renderer.flush();
    assert_eq!(flush.batch.changes.len(), 1);
    assert!(flush.notices.is_empty());
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("scheduler: rr") && text.contains("10.244.0.2"),
        "{text}"
    );

    // After a restart the last good configuration comes from the file on disk.
    drop(renderer);
    let mut renderer = synced(dir.path(), vec![web(Some("hrw"))], vec![backends(3)]);
    let flush = renderer.flush();
    assert_eq!(flush.notices.len(), 1);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("scheduler: rr") && text.contains("10.244.0.3"),
        "{text}"
    );
    assert!(text.contains("generation: 3"), "{text}");
}

#[test]
fn one_slice_change_rewrites_only_its_services_file() {
    let dir = tempfile::tempdir().unwrap();
    let services: Vec<Service> = (0..20)
        .map(|i| {
            with_ingress(
                service("shop", &format!("s{i}"), &[80], i),
                &[&format!("198.51.100.{i}")],
            )
        })
        .collect();
    let slices: Vec<EndpointSlice> = (0..20)
        .map(|i| {
            slice(
                "shop",
                &format!("s{i}"),
                "a",
                &[80],
                &[format!("10.244.{i}.1")],
            )
        })
        .collect();
    let mut renderer = synced(dir.path(), services, slices);
    let flush = renderer.flush();
    assert_eq!(flush.batch.changes.len(), 20);
    assert_eq!(flush.services_rendered, 20);
    let modified = |name: &str| {
        std::fs::metadata(dir.path().join(format!("shop/{name}.yaml")))
            .unwrap()
            .modified()
            .unwrap()
    };
    let before = modified("s3");

    let grown = slice(
        "shop",
        "s7",
        "a",
        &[80],
        &["10.244.7.1".to_owned(), "10.244.7.2".to_owned()],
    );
    renderer.apply(Input::Slice(0, Box::new(Event::Apply(grown))));
    let flush = renderer.flush();
    assert_eq!(flush.services_rendered, 1);
    let paths: Vec<&str> = flush
        .batch
        .changes
        .iter()
        .map(|c| c.path.as_str())
        .collect();
    assert_eq!(paths, vec!["shop/s7.yaml"]);
    assert_eq!(modified("s3"), before);

    // A Service leaving our class loses its manifest.
    let mut other = with_ingress(service("shop", "s5", &[80], 5), &["198.51.100.5"]);
    other.spec.as_mut().unwrap().load_balancer_class = Some("someone/else".to_owned());
    renderer.apply(Input::Service(0, Box::new(Event::Apply(other))));
    let flush = renderer.flush();
    let paths: Vec<&str> = flush
        .batch
        .changes
        .iter()
        .map(|c| c.path.as_str())
        .collect();
    assert_eq!(paths, vec!["shop/s5.yaml"]);
    assert!(!dir.path().join("shop/s5.yaml").exists());
}

#[test]
fn a_service_with_no_known_good_configuration_keeps_its_files_untouched() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("shop")).unwrap();
    // Written by an earlier exporter; no port survived, so no configuration can be read back.
    let earlier = "apiVersion: balanced.io/v1\nkind: Balancer\nmetadata:\n  name: shop.web\n  generation: 7\n  source: kubernetes/shop/web\nspec:\n  vip: 198.51.100.10\n  services: []\n";
    std::fs::write(dir.path().join("shop/web.yaml"), earlier).unwrap();
    let mut renderer = synced(dir.path(), vec![web(Some("hrw"))], vec![backends(1)]);
    let flush = renderer.flush();
    assert!(flush.batch.changes.is_empty(), "{:?}", flush.batch.changes);
    assert!(flush.batch.errors.is_empty(), "{:?}", flush.batch.errors);
    assert_eq!(flush.notices.len(), 1);
    assert!(
        flush.notices[0].note.contains("nothing is rendered"),
        "{}",
        flush.notices[0].note
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("shop/web.yaml")).unwrap(),
        earlier
    );

    // Fixing the annotation renders again, continuing the generation.
    renderer.apply(Input::Service(0, Box::new(Event::Apply(web(Some("rr"))))));
    let flush = renderer.flush();
    assert_eq!(flush.batch.changes.len(), 1);
    let text = std::fs::read_to_string(dir.path().join("shop/web.yaml")).unwrap();
    assert!(
        text.contains("generation: 8") && text.contains("scheduler: rr"),
        "{text}"
    );
}

fn pod_slice(service: &str, addresses: &[&str]) -> EndpointSlice {
    let addresses: Vec<String> = addresses.iter().map(|a| (*a).to_owned()).collect();
    with_pod_refs(slice("shop", service, "a", &[80], &addresses))
}

fn pod_event(address: &str, annotations: &[(&str, &str)]) -> Input {
    Input::Pod(
        0,
        Box::new(Event::Apply(pod_meta("shop", address, annotations))),
    )
}

#[test]
fn an_opted_out_pod_in_the_initial_list_is_never_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut renderer = synced_with_pods(
        dir.path(),
        vec![web(None)],
        vec![pod_slice("web", &["10.244.0.1", "10.244.0.2"])],
        vec![
            pod_meta("shop", "10.244.0.1", &[(LEGACY_TUNNEL_IGNORE, "TRUE")]),
            pod_meta("shop", "10.244.0.2", &[]),
        ],
    );
    let flush = renderer.flush();
    assert_eq!(flush.batch.changes.len(), 1);
    let text = std::fs::read_to_string(dir.path().join("shop/web.yaml")).unwrap();
    assert!(text.contains("address: \"10.244.0.1\""), "{text}");
    assert!(!text.contains("uid-10-244-0-1"), "{text}");
    assert!(text.contains("uid: uid-10-244-0-2"), "{text}");
}

#[test]
fn a_pod_opting_out_rerenders_only_the_services_that_name_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shop/web.yaml");
    let api = with_ingress(service("shop", "api", &[80], 2), &["198.51.100.11"]);
    let mut renderer = synced(
        dir.path(),
        vec![web(None), api],
        vec![
            pod_slice("web", &["10.244.0.1", "10.244.0.2"]),
            pod_slice("api", &["10.244.1.1"]),
        ],
    );
    assert_eq!(renderer.flush().batch.changes.len(), 2);
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("uid: uid-10-244-0-1")
    );

    renderer.apply(pod_event("10.244.0.1", &[(TUNNEL_IGNORE, "true")]));
    let flush = renderer.flush();
    assert_eq!(flush.services_rendered, 1, "only web names the pod");
    let paths: Vec<&str> = flush
        .batch
        .changes
        .iter()
        .map(|c| c.path.as_str())
        .collect();
    assert_eq!(paths, vec!["shop/web.yaml"]);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("address: \"10.244.0.1\""),
        "still a backend: {text}"
    );
    assert!(!text.contains("uid-10-244-0-1"), "{text}");
    assert!(text.contains("uid: uid-10-244-0-2"), "{text}");

    // The same annotation again, or a pod no slice names: nothing is rendered.
    renderer.apply(pod_event("10.244.0.1", &[(TUNNEL_IGNORE, "True")]));
    renderer.apply(pod_event("10.244.9.9", &[(TUNNEL_IGNORE, "true")]));
    let flush = renderer.flush();
    assert_eq!(flush.services_rendered, 0);
    assert!(flush.batch.changes.is_empty());

    // Taking the annotation away names the pod again.
    renderer.apply(pod_event("10.244.0.1", &[]));
    let flush = renderer.flush();
    assert_eq!(flush.services_rendered, 1);
    assert_eq!(flush.batch.changes.len(), 1);
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("uid: uid-10-244-0-1")
    );

    // Deleting an opted-out pod re-renders its Service (whose slice will drop it anyway).
    renderer.apply(pod_event("10.244.1.1", &[(TUNNEL_IGNORE, "true")]));
    assert_eq!(renderer.flush().services_rendered, 1);
    renderer.apply(Input::Pod(
        0,
        Box::new(Event::Delete(pod_meta("shop", "10.244.1.1", &[]))),
    ));
    assert_eq!(renderer.flush().services_rendered, 1);
}

#[test]
fn an_invalid_opt_out_value_is_warned_about_once_per_value_and_names_the_pod() {
    let dir = tempfile::tempdir().unwrap();
    let mut renderer = synced(
        dir.path(),
        vec![web(None)],
        vec![pod_slice("web", &["10.244.0.1"])],
    );
    renderer.flush();
    renderer.apply(pod_event("10.244.0.1", &[(TUNNEL_IGNORE, "yes")]));
    let flush = renderer.flush();
    assert!(flush.batch.changes.is_empty(), "the pod stays named");
    assert_eq!(flush.notices.len(), 1);
    let notice = &flush.notices[0];
    assert!(notice.warning);
    assert_eq!(notice.reason, "InvalidAnnotation");
    assert_eq!(notice.reference.kind.as_deref(), Some("Pod"));
    assert_eq!(notice.reference.name.as_deref(), Some("pod-10-244-0-1"));
    assert!(
        notice.note.contains("balanced.io/tunnel-ignore \"yes\""),
        "{}",
        notice.note
    );

    renderer.apply(pod_event("10.244.0.1", &[(TUNNEL_IGNORE, "yes")]));
    assert!(renderer.flush().notices.is_empty(), "reported once");
    renderer.apply(pod_event("10.244.0.1", &[(TUNNEL_IGNORE, "ture")]));
    assert_eq!(renderer.flush().notices.len(), 1, "a new value is new");
    renderer.apply(pod_event("10.244.0.1", &[]));
    renderer.apply(pod_event("10.244.0.1", &[(TUNNEL_IGNORE, "ture")]));
    assert_eq!(
        renderer.flush().notices.len(),
        1,
        "fixed, then broken again: reported again"
    );
}
