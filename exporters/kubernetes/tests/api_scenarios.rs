//! Mock API scenarios (tower-test): the exact requests the exporter makes and how it reacts to
//! the answers — initial lists, watch events, `410 Gone` → relist, Pods watched by metadata
//! only (the `PartialObjectMetadata` Accept headers) with their opt-out annotation, the status
//! PATCH on the subresource with a conflict → re-read → retry, and Lease
//! acquire/renew/lose/take-over.

use std::collections::BTreeMap;
use std::time::Duration;

use balanced_exporter::config::RenderConfig;
use balanced_exporter::fixtures::{pod_meta, service, slice, with_ingress, with_pod_refs};
use balanced_exporter::lease::{Leadership, LeaseLock};
use balanced_exporter::manifest::ServiceKey;
use balanced_exporter::pods::TUNNEL_IGNORE;
use balanced_exporter::run::Renderer;
use balanced_exporter::status::{Written, write_ingress};
use balanced_exporter::watch::{Cache, streams};
use balanced_exporter::writer::{ChangeKind, Writer};
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;
use kube::{Api, Client};
use serde_json::{Value, json};
use tower_test::mock::{Handle, SendResponse};

type MockHandle = Handle<Request<Body>, Response<Body>>;

fn mock() -> (Client, MockHandle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

fn respond(send: SendResponse<Response<Body>>, status: StatusCode, body: Vec<u8>) {
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(body))
            .unwrap(),
    );
}

fn json_response(send: SendResponse<Response<Body>>, status: StatusCode, body: &Value) {
    respond(send, status, serde_json::to_vec(body).unwrap());
}

fn status_body(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": reason})
}

/// The next request, which must be `method uri`; returns its body and the responder.
async fn expect(
    handle: &mut MockHandle,
    method: &str,
    uri: &str,
) -> (Vec<u8>, SendResponse<Response<Body>>) {
    let (request, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .unwrap_or_else(|_| panic!("no request; expected {method} {uri}"))
        .expect("the client is gone");
    assert_eq!(
        format!("{} {}", request.method(), request.uri()),
        format!("{method} {uri}")
    );
    let body = request.into_body().collect_bytes().await.unwrap().to_vec();
    (body, send)
}

fn list(kind: &str, rv: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": rv}, "items": items})
}

fn events(events: &[(&str, Value)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (kind, object) in events {
        out.extend(serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap());
        out.push(b'\n');
    }
    out
}

fn with_rv(mut object: Value, rv: &str) -> Value {
    object["metadata"]["resourceVersion"] = json!(rv);
    object
}

fn svc_json(name: &str, ip: &str, rv: &str) -> Value {
    let mut v = serde_json::to_value(with_ingress(service("shop", name, &[80], 1), &[ip])).unwrap();
    v["apiVersion"] = json!("v1");
    v["kind"] = json!("Service");
    with_rv(v, rv)
}

fn slice_json(service_name: &str, addresses: &[&str], rv: &str) -> Value {
    let addresses: Vec<String> = addresses.iter().map(|a| (*a).to_owned()).collect();
    let mut v = serde_json::to_value(slice("shop", service_name, "x1", &[80], &addresses)).unwrap();
    v["apiVersion"] = json!("discovery.k8s.io/v1");
    v["kind"] = json!("EndpointSlice");
    with_rv(v, rv)
}

const SERVICES: &str = "/api/v1/services";
const SLICES: &str = "/apis/discovery.k8s.io/v1/endpointslices";
const PODS: &str = "/api/v1/pods";

/// The Accept headers of kube's metadata-only list and watch.
const METADATA_LIST: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
const METADATA: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";

fn pod_json(address: &str, annotations: &[(&str, &str)], rv: &str) -> Value {
    let mut v = serde_json::to_value(pod_meta("shop", address, annotations)).unwrap();
    v["apiVersion"] = json!("meta.k8s.io/v1");
    v["kind"] = json!("PartialObjectMetadata");
    with_rv(v, rv)
}

fn pod_list(rv: &str, items: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                               "metadata": {"resourceVersion": rv}, "items": items}),
    )
    .unwrap()
}

fn watch_uri(path: &str, rv: &str) -> String {
    format!("{path}?&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion={rv}")
}

/// One expected request URI and its answer (`None`: a watch left open).
type Step = (String, Option<(StatusCode, Vec<u8>)>);

/// Serves the watch streams from one mock, in whatever order their requests come, following
/// a script per path; returns every request line seen (with its Accept header), per path.
async fn serve_watches(
    mut handle: MockHandle,
    mut scripts: BTreeMap<&'static str, Vec<Step>>,
) -> BTreeMap<&'static str, Vec<String>> {
    let mut seen: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut parked = Vec::new();
    while scripts.values().any(|s| !s.is_empty()) {
        let (request, send) = tokio::time::timeout(Duration::from_secs(20), handle.next_request())
            .await
            .expect("the exporter stopped asking")
            .expect("the client is gone");
        let uri = request.uri().to_string();
        let accept = request
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let path = *scripts
            .keys()
            .find(|p| uri.starts_with(&format!("{p}?")))
            .expect("an unexpected path");
        seen.entry(path)
            .or_default()
            .push(format!("{} {uri} accept={accept}", request.method()));
        let script = scripts.get_mut(path).unwrap();
        assert!(
            !script.is_empty(),
            "{path}: no more requests expected, got {uri}"
        );
        let (expected_uri, answer) = script.remove(0);
        assert_eq!(uri, expected_uri, "{path}: request out of script");
        match answer {
            Some((status, body)) => respond(send, status, body),
            // Never answered: a watch that stays open.
            None => parked.push(send),
        }
    }
    // Keep open watches open until the caller has seen the effects.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(parked);
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_lists_events_and_410_relist_drive_the_files() {
    let (client, handle) = mock();
    let out = tempfile::tempdir().unwrap();
    let writer = Writer::open(out.path(), None).unwrap();
    let mut renderer = Renderer::new(RenderConfig::default(), Cache::new(&[]), writer);
    let mut stream = streams(&client, renderer.cache.scopes()).boxed();

    let ok = StatusCode::OK;
    let web = svc_json("web", "198.51.100.10", "100");
    let api = svc_json("api", "198.51.100.11", "101");
    let web_slice = slice_json("web", &["10.244.1.1"], "100");
    let api_slice = slice_json("api", &["10.244.2.1"], "102");
    let gone = json!({"type": "ERROR", "object": status_body(410, "Expired")});
    let mut gone_body = serde_json::to_vec(&gone).unwrap();
    gone_body.push(b'\n');
    let scripts = BTreeMap::from([
        (
            SERVICES,
            vec![
                (
                    format!("{SERVICES}?&limit=500"),
                    Some((
                        ok,
                        serde_json::to_vec(&list("ServiceList", "100", vec![web.clone()])).unwrap(),
                    )),
                ),
                (
                    watch_uri(SERVICES, "100"),
                    Some((ok, events(&[("ADDED", api.clone())]))),
                ),
                // The watch lost its place; api was deleted meanwhile and only the relist shows it.
                (watch_uri(SERVICES, "101"), Some((ok, gone_body))),
                (
                    format!("{SERVICES}?&limit=500"),
                    Some((
                        ok,
                        serde_json::to_vec(&list(
                            "ServiceList",
                            "200",
                            vec![with_rv(web.clone(), "150")],
                        ))
                        .unwrap(),
                    )),
                ),
                (watch_uri(SERVICES, "200"), None),
            ],
        ),
        (
            SLICES,
            vec![
                (
                    format!("{SLICES}?&limit=500"),
                    Some((
                        ok,
                        serde_json::to_vec(&list(
                            "EndpointSliceList",
                            "100",
                            vec![web_slice.clone()],
                        ))
                        .unwrap(),
                    )),
                ),
                (
                    watch_uri(SLICES, "100"),
                    Some((
                        ok,
                        events(&[
                            ("ADDED", api_slice.clone()),
                            (
                                "MODIFIED",
                                slice_json("web", &["10.244.1.1", "10.244.1.2"], "104"),
                            ),
                            ("DELETED", with_rv(api_slice, "105")),
                        ]),
                    )),
                ),
                (watch_uri(SLICES, "105"), None),
            ],
        ),
        (
            PODS,
            vec![
                (
                    format!("{PODS}?&limit=500"),
                    Some((ok, pod_list("100", Vec::new()))),
                ),
                (watch_uri(PODS, "100"), None),
            ],
        ),
    ]);
    let server = tokio::spawn(serve_watches(handle, scripts));

    let mut changes = Vec::new();
    let mut flushes_before_sync = 0;
    while !server.is_finished() {
        let Ok(Some(input)) = tokio::time::timeout(Duration::from_millis(50), stream.next()).await
        else {
            continue;
        };
        let was_synced = renderer.cache.synced();
        renderer.apply(input);
        let flush = renderer.flush();
        if !was_synced && !renderer.cache.synced() {
            assert!(
                flush.batch.changes.is_empty(),
                "rendered from a half-synced cache"
            );
            flushes_before_sync += 1;
        }
        changes.extend(flush.batch.changes);
    }
    let seen = server.await.unwrap();
    assert!(flushes_before_sync > 0);
    assert_eq!(seen[SERVICES].len(), 5, "{seen:?}");
    assert_eq!(seen[SLICES].len(), 3, "{seen:?}");
    assert_eq!(seen[PODS].len(), 2, "{seen:?}");

    let summary: Vec<String> = changes
        .iter()
        .map(|c| match c.kind {
            ChangeKind::Created { generation } => format!("{} created {generation}", c.path),
            ChangeKind::Updated { generation } => format!("{} updated {generation}", c.path),
            ChangeKind::Deleted => format!("{} deleted", c.path),
        })
        .collect();
    // web appears once both lists are in and is rewritten once, when its slice grows; api
    // appears (perhaps twice, as its slice may come after it) and goes with the relist.
    let of = |path: &str| -> Vec<&str> {
        summary
            .iter()
            .filter(|s| s.starts_with(path))
            .map(String::as_str)
            .collect()
    };
    assert_eq!(
        of("shop/web.yaml"),
        vec!["shop/web.yaml created 1", "shop/web.yaml updated 2"],
        "{summary:?}"
    );
    let api_changes = of("shop/api.yaml");
    assert_eq!(
        api_changes.first(),
        Some(&"shop/api.yaml created 1"),
        "{summary:?}"
    );
    assert_eq!(
        api_changes.last(),
        Some(&"shop/api.yaml deleted"),
        "{summary:?}"
    );
    let web_file = std::fs::read_to_string(out.path().join("shop/web.yaml")).unwrap();
    assert!(web_file.contains("10.244.1.2"), "{web_file}");
    assert!(!out.path().join("shop/api.yaml").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_watched_by_metadata_and_their_opt_out_drives_the_files() {
    let (client, handle) = mock();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("shop/web.yaml");
    let writer = Writer::open(out.path(), None).unwrap();
    let mut renderer = Renderer::new(RenderConfig::default(), Cache::new(&[]), writer);
    let mut stream = streams(&client, renderer.cache.scopes()).boxed();

    let ok = StatusCode::OK;
    let addresses = vec!["10.244.1.1".to_owned(), "10.244.1.2".to_owned()];
    let mut web_slice =
        serde_json::to_value(with_pod_refs(slice("shop", "web", "x1", &[80], &addresses))).unwrap();
    web_slice["apiVersion"] = json!("discovery.k8s.io/v1");
    web_slice["kind"] = json!("EndpointSlice");
    let mut gone_body =
        serde_json::to_vec(&json!({"type": "ERROR", "object": status_body(410, "Expired")}))
            .unwrap();
    gone_body.push(b'\n');
    let scripts = BTreeMap::from([
        (
            SERVICES,
            vec![
                (
                    format!("{SERVICES}?&limit=500"),
                    Some((
                        ok,
                        serde_json::to_vec(&list(
                            "ServiceList",
                            "100",
                            vec![svc_json("web", "198.51.100.10", "100")],
                        ))
                        .unwrap(),
                    )),
                ),
                (watch_uri(SERVICES, "100"), None),
            ],
        ),
        (
            SLICES,
            vec![
                (
                    format!("{SLICES}?&limit=500"),
                    Some((
                        ok,
                        serde_json::to_vec(&list(
                            "EndpointSliceList",
                            "100",
                            vec![with_rv(web_slice, "100")],
                        ))
                        .unwrap(),
                    )),
                ),
                (watch_uri(SLICES, "100"), None),
            ],
        ),
        (
            PODS,
            vec![
                (
                    format!("{PODS}?&limit=500"),
                    Some((
                        ok,
                        pod_list(
                            "100",
                            vec![
                                pod_json("10.244.1.1", &[], "90"),
                                pod_json("10.244.1.2", &[], "91"),
                            ],
                        ),
                    )),
                ),
                // The pod opts out.
                (
                    watch_uri(PODS, "100"),
                    Some((
                        ok,
                        events(&[(
                            "MODIFIED",
                            pod_json("10.244.1.1", &[(TUNNEL_IGNORE, "true")], "101"),
                        )]),
                    )),
                ),
                // The watch lost its place; meanwhile the annotation went away.
                (watch_uri(PODS, "101"), Some((ok, gone_body))),
                (
                    format!("{PODS}?&limit=500"),
                    Some((
                        ok,
                        pod_list(
                            "200",
                            vec![
                                pod_json("10.244.1.1", &[], "150"),
                                pod_json("10.244.1.2", &[], "91"),
                            ],
                        ),
                    )),
                ),
                (watch_uri(PODS, "200"), None),
            ],
        ),
    ]);
    let server = tokio::spawn(serve_watches(handle, scripts));

    // Whether the opting-out pod is named, each time web's file is written.
    let mut named = Vec::new();
    let mut generations = Vec::new();
    while !server.is_finished() {
        let Ok(Some(input)) = tokio::time::timeout(Duration::from_millis(50), stream.next()).await
        else {
            continue;
        };
        renderer.apply(input);
        let flush = renderer.flush();
        for change in &flush.batch.changes {
            generations.push(match change.kind {
                ChangeKind::Created { generation } | ChangeKind::Updated { generation } => {
                    generation
                }
                ChangeKind::Deleted => 0,
            });
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(text.contains("uid: uid-10-244-1-2"), "{text}");
            named.push(text.contains("uid: uid-10-244-1-1"));
        }
    }
    let seen = server.await.unwrap();
    assert_eq!(named, vec![true, false, true]);
    assert_eq!(generations, vec![1, 2, 3]);
    assert_eq!(
        seen[PODS],
        vec![
            format!("GET {PODS}?&limit=500 accept={METADATA_LIST}"),
            format!("GET {} accept={METADATA}", watch_uri(PODS, "100")),
            format!("GET {} accept={METADATA}", watch_uri(PODS, "101")),
            format!("GET {PODS}?&limit=500 accept={METADATA_LIST}"),
            format!("GET {} accept={METADATA}", watch_uri(PODS, "200")),
        ]
    );
    // Services and EndpointSlices are read whole, not as metadata.
    for line in seen[SERVICES].iter().chain(&seen[SLICES]) {
        assert!(!line.contains("PartialObjectMetadata"), "{line}");
    }
}

#[tokio::test]
async fn status_patch_goes_to_the_subresource_and_retries_after_a_conflict() {
    let (client, mut handle) = mock();
    let api: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client, "shop");
    let key = ServiceKey::new("shop", "web");
    let mut stale = service("shop", "web", &[80], 1);
    stale.metadata.resource_version = Some("5".to_owned());
    let new = ["198.51.100.7".parse().unwrap()];

    let server = tokio::spawn(async move {
        let path = "/api/v1/namespaces/shop/services/web";
        let (body, send) = expect(
            &mut handle,
            "PATCH",
            &format!("{path}/status?&fieldManager=balanced-exporter"),
        )
        .await;
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            json!({"metadata": {"resourceVersion": "5"},
                   "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.7", "ipMode": "Proxy"}]}}})
        );
        json_response(send, StatusCode::CONFLICT, &status_body(409, "Conflict"));

        let (_, send) = expect(&mut handle, "GET", path).await;
        let mut fresh = serde_json::to_value(service("shop", "web", &[80], 1)).unwrap();
        fresh["metadata"]["resourceVersion"] = json!("6");
        json_response(send, StatusCode::OK, &fresh);

        let (body, send) = expect(
            &mut handle,
            "PATCH",
            &format!("{path}/status?&fieldManager=balanced-exporter"),
        )
        .await;
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["metadata"]["resourceVersion"], json!("6"));
        let mut done = fresh.clone();
        done["status"] = body["status"].clone();
        json_response(send, StatusCode::OK, &done);
    });
    let written = write_ingress(&api, &key, &stale, &new, Some("Proxy"))
        .await
        .unwrap();
    server.await.unwrap();
    assert_eq!(written, Written::Done);
}

#[tokio::test]
async fn a_conflict_with_an_address_already_set_is_not_overwritten() {
    let (client, mut handle) = mock();
    let api: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client, "shop");
    let key = ServiceKey::new("shop", "web");
    let stale = service("shop", "web", &[80], 1);
    let server = tokio::spawn(async move {
        let path = "/api/v1/namespaces/shop/services/web";
        let (_, send) = expect(
            &mut handle,
            "PATCH",
            &format!("{path}/status?&fieldManager=balanced-exporter"),
        )
        .await;
        json_response(send, StatusCode::CONFLICT, &status_body(409, "Conflict"));
        let (_, send) = expect(&mut handle, "GET", path).await;
        let fresh = serde_json::to_value(with_ingress(
            service("shop", "web", &[80], 1),
            &["198.51.100.99"],
        ))
        .unwrap();
        json_response(send, StatusCode::OK, &fresh);
        // No further request: the address someone else wrote stays.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), handle.next_request())
                .await
                .is_err()
        );
    });
    let written = write_ingress(
        &api,
        &key,
        &stale,
        &["198.51.100.7".parse().unwrap()],
        Some("Proxy"),
    )
    .await
    .unwrap();
    assert_eq!(written, Written::Superseded);
    server.await.unwrap();
}

fn lease_json(holder: &str, renewed: &str, transitions: i32, rv: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "balanced-exporter", "namespace": "balanced", "resourceVersion": rv},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                 "acquireTime": "2026-11-27T10:00:00.000000Z", "renewTime": renewed,
                 "leaseTransitions": transitions}
    })
}

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/balanced/leases";

#[tokio::test]
async fn lease_acquire_renew_lose_and_take_over() {
    let (client, mut handle) = mock();
    let lock = LeaseLock::new(
        Api::namespaced(client, "balanced"),
        "balanced-exporter",
        "me",
        Duration::from_secs(15),
    );
    let now: Timestamp = "2026-11-27T10:00:10Z".parse().unwrap();

    let server = tokio::spawn(async move {
        // 1. No Lease yet: create it.
        let (_, send) = expect(&mut handle, "GET", &format!("{LEASE}/balanced-exporter")).await;
        json_response(send, StatusCode::NOT_FOUND, &status_body(404, "NotFound"));
        let (body, send) = expect(
            &mut handle,
            "POST",
            &format!("{LEASE}?&fieldManager=balanced-exporter"),
        )
        .await;
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["spec"]["holderIdentity"], json!("me"));
        assert_eq!(body["spec"]["leaseDurationSeconds"], json!(15));
        json_response(send, StatusCode::CREATED, &body);

        // 2. Ours: renew with the version read.
        let (_, send) = expect(&mut handle, "GET", &format!("{LEASE}/balanced-exporter")).await;
        json_response(
            send,
            StatusCode::OK,
            &lease_json("me", "2026-11-27T10:00:05.000000Z", 0, "7"),
        );
        let (body, send) = expect(
            &mut handle,
            "PUT",
            &format!("{LEASE}/balanced-exporter?&fieldManager=balanced-exporter"),
        )
        .await;
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["metadata"]["resourceVersion"], json!("7"));
        assert_eq!(
            body["spec"]["renewTime"],
            json!("2026-11-27T10:00:10.000000Z")
        );
        assert_eq!(
            body["spec"]["acquireTime"],
            json!("2026-11-27T10:00:00.000000Z")
        );
        assert_eq!(body["spec"]["leaseTransitions"], json!(0));
        json_response(send, StatusCode::OK, &body);

        // 3. Someone else renewed recently: follow, write nothing.
        let (_, send) = expect(&mut handle, "GET", &format!("{LEASE}/balanced-exporter")).await;
        json_response(
            send,
            StatusCode::OK,
            &lease_json("other", "2026-11-27T10:00:05.000000Z", 1, "8"),
        );

        // 4. The other holder stopped renewing: take over, counting a transition.
        let (_, send) = expect(&mut handle, "GET", &format!("{LEASE}/balanced-exporter")).await;
        json_response(
            send,
            StatusCode::OK,
            &lease_json("other", "2026-11-27T09:59:00.000000Z", 1, "9"),
        );
        let (body, send) = expect(
            &mut handle,
            "PUT",
            &format!("{LEASE}/balanced-exporter?&fieldManager=balanced-exporter"),
        )
        .await;
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["spec"]["holderIdentity"], json!("me"));
        assert_eq!(body["spec"]["leaseTransitions"], json!(2));
        assert_eq!(body["metadata"]["resourceVersion"], json!("9"));
        json_response(send, StatusCode::OK, &body);

        // 5. Renewing loses a race (409): follow.
        let (_, send) = expect(&mut handle, "GET", &format!("{LEASE}/balanced-exporter")).await;
        json_response(
            send,
            StatusCode::OK,
            &lease_json("me", "2026-11-27T10:00:05.000000Z", 2, "10"),
        );
        let (_, send) = expect(
            &mut handle,
            "PUT",
            &format!("{LEASE}/balanced-exporter?&fieldManager=balanced-exporter"),
        )
        .await;
        json_response(send, StatusCode::CONFLICT, &status_body(409, "Conflict"));
    });
    assert_eq!(
        lock.try_acquire_or_renew(now).await.unwrap(),
        Leadership::Leading
    );
    assert_eq!(
        lock.try_acquire_or_renew(now).await.unwrap(),
        Leadership::Leading
    );
    assert_eq!(
        lock.try_acquire_or_renew(now).await.unwrap(),
        Leadership::Following {
            holder: Some("other".to_owned())
        }
    );
    assert_eq!(
        lock.try_acquire_or_renew(now).await.unwrap(),
        Leadership::Leading
    );
    assert!(matches!(
        lock.try_acquire_or_renew(now).await.unwrap(),
        Leadership::Following { .. }
    ));
    server.await.unwrap();
}
