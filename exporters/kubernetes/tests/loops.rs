//! The async shells: the render loop over a finite stream of watch events, and one round of
//! the allocation loop against a mock API (Lease taken, then the status PATCH, then the
//! Allocated Event queued).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use balanced_exporter::alloc::{Allocator, Pools};
use balanced_exporter::config::RenderConfig;
use balanced_exporter::events;
use balanced_exporter::fixtures::{service, slice, with_ingress};
use balanced_exporter::http::Health;
use balanced_exporter::lease::LeaseLock;
use balanced_exporter::metrics::Metrics;
use balanced_exporter::run::{AllocateOptions, Renderer, allocate_loop, render_loop};
use balanced_exporter::watch::{Cache, Input};
use balanced_exporter::writer::Writer;
use http::{Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::watcher::Event;
use kube::{Api, Client};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_render_loop_writes_after_sync_and_hands_the_services_to_the_allocator() {
    let dir = tempfile::tempdir().unwrap();
    let renderer = Renderer::new(
        RenderConfig::default(),
        Cache::new(&[]),
        Writer::open(dir.path(), None).unwrap(),
    );
    let web = with_ingress(service("shop", "web", &[80], 1), &["198.51.100.10"]);
    let inputs = vec![
        Input::Service(0, Box::new(Event::Init)),
        Input::Service(0, Box::new(Event::InitApply(web))),
        Input::Service(0, Box::new(Event::InitDone)),
        Input::Slice(0, Box::new(Event::Init)),
        Input::Slice(
            0,
            Box::new(Event::InitApply(slice(
                "shop",
                "web",
                "a",
                &[80],
                &["10.244.0.1".to_owned()],
            ))),
        ),
        Input::Slice(0, Box::new(Event::InitDone)),
        Input::Pod(0, Box::new(Event::Init)),
        Input::Pod(0, Box::new(Event::InitDone)),
    ];
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let (events, _notices) = events::channel(16);
    let (services_tx, services_rx) = tokio::sync::watch::channel(None);
    render_loop(
        futures::stream::iter(inputs),
        renderer,
        metrics.clone(),
        health.clone(),
        events,
        services_tx,
    )
    .await;
    assert!(dir.path().join("shop/web.yaml").exists());
    assert!(health.synced.load(Ordering::Relaxed));
    assert_eq!(services_rx.borrow().as_ref().map(Vec::len), Some(1));
    assert!(
        metrics
            .encode()
            .contains("balanced_exporter_files_written_total 1"),
        "{}",
        metrics.encode()
    );
}

fn respond(send: tower_test::mock::SendResponse<Response<Body>>, status: StatusCode, body: &Value) {
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

#[tokio::test]
async fn the_allocation_loop_takes_the_lease_then_patches_the_status() {
    let (mock, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(mock, "balanced");
    let lease = LeaseLock::new(
        Api::namespaced(client.clone(), "balanced"),
        "balanced-exporter",
        "me",
        Duration::from_secs(30),
    );
    let pools = Pools::parse(&["public=198.51.100.0/30".to_owned()], None).unwrap();
    let allocator = Allocator::new(pools, Duration::from_secs(600));
    let metrics = Arc::new(Metrics::default());
    let (events, mut notices) = events::channel(16);
    let (services_tx, services_rx) = tokio::sync::watch::channel(None);
    let mut web = service("shop", "web", &[80], 1);
    web.metadata.resource_version = Some("41".to_owned());
    services_tx.send_replace(Some(vec![Arc::new(web)]));

    let server = tokio::spawn(async move {
        let (request, send) = handle.next_request().await.unwrap();
        assert_eq!(
            request.uri().path(),
            "/apis/coordination.k8s.io/v1/namespaces/balanced/leases/balanced-exporter"
        );
        respond(
            send,
            StatusCode::NOT_FOUND,
            &json!({"kind": "Status", "apiVersion": "v1", "code": 404, "reason": "NotFound"}),
        );
        let (request, send) = handle.next_request().await.unwrap();
        assert_eq!(request.method(), "POST");
        let body: Value =
            serde_json::from_slice(&request.into_body().collect_bytes().await.unwrap()).unwrap();
        respond(send, StatusCode::CREATED, &body);

        let (request, send) = handle.next_request().await.unwrap();
        assert_eq!(request.method(), "PATCH");
        assert_eq!(
            request.uri().path(),
            "/api/v1/namespaces/shop/services/web/status"
        );
        assert_eq!(
            request.headers()["content-type"],
            "application/merge-patch+json"
        );
        let body: Value =
            serde_json::from_slice(&request.into_body().collect_bytes().await.unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"metadata": {"resourceVersion": "41"},
                   "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.0", "ipMode": "Proxy"}]}}})
        );
        let mut done = serde_json::to_value(service("shop", "web", &[80], 1)).unwrap();
        done["status"] = body["status"].clone();
        respond(send, StatusCode::OK, &done);
        drop(services_tx);
    });
    let options = AllocateOptions {
        ip_mode: Some("Proxy".to_owned()),
        lease,
    };
    tokio::time::timeout(
        Duration::from_secs(10),
        allocate_loop(
            client,
            allocator,
            RenderConfig::default(),
            options,
            services_rx,
            metrics.clone(),
            events,
        ),
    )
    .await
    .expect("the loop ends when the renderer goes away");
    server.await.unwrap();
    let notice = notices.try_recv().expect("an Allocated Event is queued");
    assert_eq!(notice.reason, "AllocatedLoadBalancerIP");
    assert_eq!(notice.note, "shop/web: allocated 198.51.100.0");
    assert!(metrics.encode().contains("balanced_exporter_leader 1"));
    assert!(
        metrics
            .encode()
            .contains("balanced_exporter_allocations_total 1")
    );
}
