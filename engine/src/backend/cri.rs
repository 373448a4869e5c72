//! The containerd CRI fallback for finding a pod's network namespace: the last way
//! [`super::namespace::Discovery`] tries, only when `--cri-endpoint` is given and neither a named
//! namespace nor a process under `/proc` showed the pod (a DaemonSet without hostPID, or a
//! runtime whose cgroup paths are not recognised).
//!
//! Two unary calls of CRI v1 (`runtime.v1.RuntimeService`) over the runtime's Unix socket:
//! `ListPodSandbox` filtered by the label `io.kubernetes.pod.uid` and state READY, then
//! `PodSandboxStatus` with `verbose` for the newest such sandbox. containerd's verbose answer
//! holds, under `info["info"]`, a JSON document with the sandbox's `pid` and its OCI
//! `runtimeSpec.linux.namespaces`; the `network` entry's `path` (the CNI's named namespace) is
//! the pod's namespace, else `/proc/<pid>/ns/net`. A sandbox whose `netNamespaceClosed` is true
//! has none.
//!
//! The messages are written by hand with only the fields used (protobuf skips the rest), with
//! the field numbers of `k8s.io/cri-api/pkg/apis/runtime/v1/api.proto`: no protoc, no generated
//! code. The converge loop is blocking, so each lookup runs on a small current-thread runtime of
//! its own, dials the socket, and is bounded by one timeout; nothing stays open between passes.
//! Every error names the endpoint, the call and the pod.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use balanced_schemas::v1::PodRef;
use http::uri::PathAndQuery;
use serde::Deserialize;
use tonic::transport::Endpoint;
use tonic_prost::ProstCodec;

/// The label the kubelet puts on every sandbox: the pod's UID.
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";

/// How long one lookup (dial and both calls) may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

const LIST_POD_SANDBOX: &str = "/runtime.v1.RuntimeService/ListPodSandbox";
const POD_SANDBOX_STATUS: &str = "/runtime.v1.RuntimeService/PodSandboxStatus";

/// `PodSandboxState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum PodSandboxState {
    SandboxReady = 0,
    SandboxNotready = 1,
}

/// `ListPodSandboxRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListPodSandboxRequest {
    #[prost(message, optional, tag = "1")]
    pub filter: Option<PodSandboxFilter>,
}

/// `PodSandboxFilter` (without `id`, field 1).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxFilter {
    #[prost(message, optional, tag = "2")]
    pub state: Option<PodSandboxStateValue>,
    #[prost(btree_map = "string, string", tag = "3")]
    pub label_selector: BTreeMap<String, String>,
}

/// `PodSandboxStateValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStateValue {
    #[prost(enumeration = "PodSandboxState", tag = "1")]
    pub state: i32,
}

/// `ListPodSandboxResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListPodSandboxResponse {
    #[prost(message, repeated, tag = "1")]
    pub items: Vec<PodSandbox>,
}

/// `PodSandbox` (without labels, annotations and runtime handler).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandbox {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<PodSandboxMetadata>,
    #[prost(enumeration = "PodSandboxState", tag = "3")]
    pub state: i32,
    #[prost(int64, tag = "4")]
    pub created_at: i64,
}

/// `PodSandboxMetadata`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxMetadata {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub uid: String,
    #[prost(string, tag = "3")]
    pub namespace: String,
    #[prost(uint32, tag = "4")]
    pub attempt: u32,
}

/// `PodSandboxStatusRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStatusRequest {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
    #[prost(bool, tag = "2")]
    pub verbose: bool,
}

/// `PodSandboxStatusResponse` (without the status, container statuses and timestamp).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStatusResponse {
    #[prost(btree_map = "string, string", tag = "2")]
    pub info: BTreeMap<String, String>,
}

/// The request for the READY sandboxes of pod `uid`.
pub fn list_request(uid: &str) -> ListPodSandboxRequest {
    ListPodSandboxRequest {
        filter: Some(PodSandboxFilter {
            state: Some(PodSandboxStateValue {
                state: PodSandboxState::SandboxReady as i32,
            }),
            label_selector: BTreeMap::from([(POD_UID_LABEL.to_owned(), uid.to_owned())]),
        }),
    }
}

/// The sandbox to ask about: the newest READY one of pod `uid` (there is one, except briefly
/// while a pod's sandbox is replaced). The filter is checked again here, in case a runtime
/// ignores part of it.
pub fn pick_sandbox<'a>(items: &'a [PodSandbox], uid: &str) -> Option<&'a PodSandbox> {
    items
        .iter()
        .filter(|s| s.state == PodSandboxState::SandboxReady as i32)
        .filter(|s| s.metadata.as_ref().is_none_or(|m| m.uid == uid))
        .max_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)))
}

/// Where a sandbox's network namespace is, as the runtime says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxNetns {
    pub sandbox: String,
    /// The `network` namespace's path in the runtime spec (a CNI-named namespace).
    pub path: Option<PathBuf>,
    /// The sandbox's process, whose `/proc/<pid>/ns/net` it is when there is no path.
    pub pid: Option<u32>,
}

impl SandboxNetns {
    /// The files to try, in order: the path, then the process's namespace under `proc_root`.
    pub fn candidates(&self, proc_root: &Path) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self.path.iter().cloned().collect();
        out.extend(
            self.pid
                .map(|pid| proc_root.join(pid.to_string()).join("ns/net")),
        );
        out
    }
}

/// The parts of containerd's verbose sandbox info that are used.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SandboxInfo {
    #[serde(default)]
    pid: u32,
    #[serde(default)]
    net_namespace_closed: bool,
    #[serde(default)]
    runtime_spec: Option<RuntimeSpec>,
}

#[derive(Debug, Deserialize)]
struct RuntimeSpec {
    #[serde(default)]
    linux: Option<LinuxSpec>,
}

#[derive(Debug, Deserialize)]
struct LinuxSpec {
    #[serde(default)]
    namespaces: Vec<NamespaceSpec>,
}

#[derive(Debug, Deserialize)]
struct NamespaceSpec {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

/// Reads the verbose `info` map of `PodSandboxStatus`: `Ok(None)` when the sandbox's network
/// namespace is closed (the pod is stopping), an error when the answer says nowhere.
pub fn sandbox_netns(
    sandbox: &str,
    info: &BTreeMap<String, String>,
) -> Result<Option<SandboxNetns>, String> {
    let text = info
        .get("info")
        .ok_or("the verbose answer has no \"info\" (a runtime other than containerd?)")?;
    let parsed: SandboxInfo = serde_json::from_str(text)
        .map_err(|e| format!("the verbose \"info\" is not the JSON expected: {e}"))?;
    if parsed.net_namespace_closed {
        return Ok(None);
    }
    let path = parsed
        .runtime_spec
        .and_then(|spec| spec.linux)
        .and_then(|linux| linux.namespaces.into_iter().find(|ns| ns.kind == "network"))
        .map(|ns| ns.path)
        .filter(|path| !path.is_empty())
        .map(PathBuf::from);
    let pid = Some(parsed.pid).filter(|pid| *pid > 0);
    if path.is_none() && pid.is_none() {
        return Err(format!(
            "sandbox {sandbox}: neither a network namespace path nor a pid"
        ));
    }
    Ok(Some(SandboxNetns {
        sandbox: sandbox.to_owned(),
        path,
        pid,
    }))
}

/// A CRI endpoint: a Unix socket, written `unix:///run/containerd/containerd.sock` (or as a bare
/// absolute path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriEndpoint {
    pub socket: PathBuf,
}

impl FromStr for CriEndpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let path = s.strip_prefix("unix://").unwrap_or(s);
        if path.starts_with('/') {
            Ok(CriEndpoint {
                socket: PathBuf::from(path),
            })
        } else {
            Err(format!(
                "{s:?}: a CRI endpoint is a Unix socket, unix:///PATH (e.g. unix:///run/containerd/containerd.sock)"
            ))
        }
    }
}

impl fmt::Display for CriEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unix://{}", self.socket.display())
    }
}

/// A failed lookup: which endpoint, which call, which pod, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CRI at {endpoint}: {call} for pod {pod}: {reason}")]
pub struct CriError {
    pub endpoint: String,
    pub call: &'static str,
    /// `namespace/name (uid …)`, or `uid …` for a pod known only by its record.
    pub pod: String,
    pub reason: String,
}

/// A pod as error messages name it.
pub fn pod_label(uid: &str, pod: Option<&PodRef>) -> String {
    match pod {
        Some(p) => format!("{}/{} (uid {uid})", p.namespace, p.name),
        None => format!("uid {uid}"),
    }
}

/// Asks a container runtime over CRI where pods' network namespaces are.
#[derive(Debug, Clone)]
pub struct CriClient {
    pub endpoint: CriEndpoint,
    /// The bound of one lookup.
    pub timeout: Duration,
}

impl CriClient {
    pub fn new(endpoint: CriEndpoint) -> CriClient {
        CriClient {
            endpoint,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The network namespace of pod `uid`'s READY sandbox; `Ok(None)` when it has none on this
    /// node (no READY sandbox, or its namespace closed).
    pub fn sandbox_netns(
        &self,
        uid: &str,
        pod: Option<&PodRef>,
    ) -> Result<Option<SandboxNetns>, CriError> {
        let fail = |call: &'static str, reason: String| CriError {
            endpoint: self.endpoint.to_string(),
            call,
            pod: pod_label(uid, pod),
            reason,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail("ListPodSandbox", format!("cannot start a runtime: {e}")))?;
        runtime.block_on(async {
            let bounded = tokio::time::timeout(self.timeout, self.lookup(uid, &fail));
            bounded.await.unwrap_or_else(|_| {
                Err(fail(
                    "ListPodSandbox",
                    format!("no answer within {:?}", self.timeout),
                ))
            })
        })
    }

    async fn lookup(
        &self,
        uid: &str,
        fail: &impl Fn(&'static str, String) -> CriError,
    ) -> Result<Option<SandboxNetns>, CriError> {
        let endpoint = Endpoint::from_shared(self.endpoint.to_string())
            .map_err(|e| fail("ListPodSandbox", error_chain(&e)))?
            .connect_timeout(self.timeout)
            .timeout(self.timeout);
        let channel = endpoint.connect().await.map_err(|e| {
            fail(
                "ListPodSandbox",
                format!("cannot connect: {}", error_chain(&e)),
            )
        })?;
        let mut grpc = tonic::client::Grpc::new(channel);
        let list: ListPodSandboxResponse = unary(&mut grpc, LIST_POD_SANDBOX, list_request(uid))
            .await
            .map_err(|e| fail("ListPodSandbox", e))?;
        let Some(sandbox) = pick_sandbox(&list.items, uid) else {
            return Ok(None);
        };
        let request = PodSandboxStatusRequest {
            pod_sandbox_id: sandbox.id.clone(),
            verbose: true,
        };
        let status: PodSandboxStatusResponse = unary(&mut grpc, POD_SANDBOX_STATUS, request)
            .await
            .map_err(|e| fail("PodSandboxStatus", e))?;
        sandbox_netns(&sandbox.id, &status.info).map_err(|e| fail("PodSandboxStatus", e))
    }
}

/// One unary call; the error is the gRPC status code and message.
async fn unary<Req, Resp>(
    grpc: &mut tonic::client::Grpc<tonic::transport::Channel>,
    path: &'static str,
    request: Req,
) -> Result<Resp, String>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    grpc.ready().await.map_err(|e| error_chain(&e))?;
    let codec = ProstCodec::<Req, Resp>::default();
    grpc.unary(
        tonic::Request::new(request),
        PathAndQuery::from_static(path),
        codec,
    )
    .await
    .map(tonic::Response::into_inner)
    .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
}

/// An error and its sources, `: `-separated (tonic's transport errors say little alone).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let more = e.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::{Arc, Mutex};

    use prost::Message;
    use tonic::server::UnaryService;

    use super::*;
    use crate::backend::converge::{BackendRole, PodRecord, Record};
    use crate::backend::namespace::{Discovery, Lookup, NetnsId, PodProcesses};

    const UID: &str = "0a1b2c3d-0000-4000-8000-00000000000a";

    /// A protobuf varint, written independently of prost.
    fn varint(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        while v >= 0x80 {
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
        out
    }

    /// A length-delimited field (wire type 2).
    fn ld(field: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = varint(field << 3 | 2);
        out.extend(varint(bytes.len() as u64));
        out.extend(bytes);
        out
    }

    /// A varint field (wire type 0).
    fn vi(field: u64, value: u64) -> Vec<u8> {
        let mut out = varint(field << 3);
        out.extend(varint(value));
        out
    }

    fn pod() -> PodRef {
        PodRef {
            namespace: "default".into(),
            name: "web-0".into(),
            uid: UID.into(),
        }
    }

    #[test]
    fn requests_encode_with_the_cri_field_numbers() {
        // ListPodSandboxRequest.filter = 1; PodSandboxFilter.state = 2 (a PodSandboxStateValue
        // whose state SANDBOX_READY = 0 is the default, so the value is an empty message, and
        // its presence is the filter), label_selector = 3 (map entry: key 1, value 2).
        let mut want = vec![0x0a, 0x41, 0x12, 0x00, 0x1a, 0x3d, 0x0a, 0x15];
        want.extend(b"io.kubernetes.pod.uid");
        want.extend([0x12, 0x24]);
        want.extend(UID.as_bytes());
        assert_eq!(list_request(UID).encode_to_vec(), want);

        // PodSandboxStatusRequest: pod_sandbox_id = 1, verbose = 2.
        let status = PodSandboxStatusRequest {
            pod_sandbox_id: "abc".into(),
            verbose: true,
        };
        assert_eq!(
            status.encode_to_vec(),
            [0x0a, 0x03, b'a', b'b', b'c', 0x10, 0x01]
        );
    }

    #[test]
    fn containerd_style_answers_decode_and_unknown_fields_are_skipped() {
        let metadata = [
            ld(1, b"web-0"),
            ld(2, UID.as_bytes()),
            ld(3, b"default"),
            vi(4, 1),
        ]
        .concat();
        let label = [ld(1, POD_UID_LABEL.as_bytes()), ld(2, UID.as_bytes())].concat();
        let item = [
            ld(1, b"f00d"),
            ld(2, &metadata),
            vi(3, 1),
            vi(4, 1_700_000_000_123_456_789),
            ld(5, &label),
            ld(7, b"runc"),
        ]
        .concat();
        let list = ListPodSandboxResponse::decode(ld(1, &item).as_slice()).expect("decodes");
        assert_eq!(list.items.len(), 1);
        let sandbox = &list.items[0];
        assert_eq!(sandbox.id, "f00d");
        assert_eq!(sandbox.state, PodSandboxState::SandboxNotready as i32);
        assert_eq!(sandbox.created_at, 1_700_000_000_123_456_789);
        let meta = sandbox.metadata.as_ref().expect("metadata");
        assert_eq!(
            (
                meta.name.as_str(),
                meta.uid.as_str(),
                meta.namespace.as_str()
            ),
            ("web-0", UID, "default")
        );
        assert_eq!(meta.attempt, 1);

        let json = r#"{"pid":4242,"processStatus":"running","netNamespaceClosed":false}"#;
        let status = [
            ld(1, &[ld(1, b"f00d"), vi(3, 0)].concat()),
            ld(2, &[ld(1, b"info"), ld(2, json.as_bytes())].concat()),
            vi(4, 1_700_000_000),
        ]
        .concat();
        let status = PodSandboxStatusResponse::decode(status.as_slice()).expect("decodes");
        assert_eq!(status.info.get("info").map(String::as_str), Some(json));
    }

    const INFO_WITH_PATH: &str = r#"{
        "pid": 4242, "processStatus": "running", "netNamespaceClosed": false,
        "image": "registry.k8s.io/pause:3.10", "snapshotter": "overlayfs",
        "runtimeSpec": {"ociVersion": "1.2.0", "linux": {"namespaces": [
            {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
            {"type": "network", "path": "/var/run/netns/cni-5e0a9c1d-17b2-4c55-8b8e-6e1f4c3b9a01"}
        ]}}
    }"#;

    #[test]
    fn the_verbose_info_names_the_netns_path_else_the_pid() {
        let info = |json: &str| BTreeMap::from([("info".to_owned(), json.to_owned())]);
        assert_eq!(
            sandbox_netns("s", &info(INFO_WITH_PATH)),
            Ok(Some(SandboxNetns {
                sandbox: "s".into(),
                path: Some("/var/run/netns/cni-5e0a9c1d-17b2-4c55-8b8e-6e1f4c3b9a01".into()),
                pid: Some(4242),
            }))
        );
        let no_path =
            r#"{"pid": 77, "runtimeSpec": {"linux": {"namespaces": [{"type": "network"}]}}}"#;
        let found = sandbox_netns("s", &info(no_path))
            .expect("ok")
            .expect("some");
        assert_eq!((found.path, found.pid), (None, Some(77)));
        assert_eq!(
            found_candidates(77, Path::new("/proc")),
            [PathBuf::from("/proc/77/ns/net")]
        );
        let closed = r#"{"pid": 0, "netNamespaceClosed": true}"#;
        assert_eq!(sandbox_netns("s", &info(closed)), Ok(None));
        assert!(sandbox_netns("s", &info(r#"{"pid": 0}"#)).is_err());
        assert!(sandbox_netns("s", &info("not json")).is_err());
        assert!(sandbox_netns("s", &BTreeMap::new()).is_err());
    }

    fn found_candidates(pid: u32, proc_root: &Path) -> Vec<PathBuf> {
        SandboxNetns {
            sandbox: "s".into(),
            path: None,
            pid: Some(pid),
        }
        .candidates(proc_root)
    }

    #[test]
    fn the_newest_ready_sandbox_of_the_pod_is_asked_about() {
        let sandbox = |id: &str, uid: &str, state: PodSandboxState, created_at: i64| PodSandbox {
            id: id.into(),
            metadata: Some(PodSandboxMetadata {
                uid: uid.into(),
                ..PodSandboxMetadata::default()
            }),
            state: state as i32,
            created_at,
        };
        let items = [
            sandbox("old", UID, PodSandboxState::SandboxReady, 1),
            sandbox("new", UID, PodSandboxState::SandboxReady, 2),
            sandbox("stopped", UID, PodSandboxState::SandboxNotready, 3),
            sandbox("other", "another-uid", PodSandboxState::SandboxReady, 4),
        ];
        assert_eq!(
            pick_sandbox(&items, UID).map(|s| s.id.as_str()),
            Some("new")
        );
        assert!(pick_sandbox(&items[2..3], UID).is_none());
    }

    #[test]
    fn endpoints_are_unix_sockets() {
        let e: CriEndpoint = "unix:///run/containerd/containerd.sock"
            .parse()
            .expect("ok");
        assert_eq!(e.socket, Path::new("/run/containerd/containerd.sock"));
        assert_eq!(e.to_string(), "unix:///run/containerd/containerd.sock");
        let bare: CriEndpoint = "/run/crio/crio.sock".parse().expect("ok");
        assert_eq!(bare.to_string(), "unix:///run/crio/crio.sock");
        assert!("tcp://127.0.0.1:10010".parse::<CriEndpoint>().is_err());
        assert!("unix://relative.sock".parse::<CriEndpoint>().is_err());
    }

    // --- An in-process CRI server answering as containerd does. ---

    /// containerd's `PodSandbox`, with the fields this client does not read.
    #[derive(Clone, PartialEq, prost::Message)]
    struct FullPodSandbox {
        #[prost(string, tag = "1")]
        id: String,
        #[prost(message, optional, tag = "2")]
        metadata: Option<PodSandboxMetadata>,
        #[prost(enumeration = "PodSandboxState", tag = "3")]
        state: i32,
        #[prost(int64, tag = "4")]
        created_at: i64,
        #[prost(btree_map = "string, string", tag = "5")]
        labels: BTreeMap<String, String>,
        #[prost(string, tag = "7")]
        runtime_handler: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct FullListResponse {
        #[prost(message, repeated, tag = "1")]
        items: Vec<FullPodSandbox>,
    }

    /// `PodSandboxStatus`'s first fields.
    #[derive(Clone, PartialEq, prost::Message)]
    struct FullStatus {
        #[prost(string, tag = "1")]
        id: String,
        #[prost(message, optional, tag = "2")]
        metadata: Option<PodSandboxMetadata>,
        #[prost(enumeration = "PodSandboxState", tag = "3")]
        state: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct FullStatusResponse {
        #[prost(message, optional, tag = "1")]
        status: Option<FullStatus>,
        #[prost(btree_map = "string, string", tag = "2")]
        info: BTreeMap<String, String>,
        #[prost(int64, tag = "4")]
        timestamp: i64,
    }

    struct FakeSandbox {
        id: &'static str,
        uid: &'static str,
        state: PodSandboxState,
        info: String,
    }

    /// The sandboxes it knows, those removed between a list and a status call, and every
    /// request it got.
    #[derive(Clone, Default)]
    struct FakeCri {
        sandboxes: Arc<Vec<FakeSandbox>>,
        removed: Arc<Vec<&'static str>>,
        lists: Arc<Mutex<Vec<ListPodSandboxRequest>>>,
        statuses: Arc<Mutex<Vec<PodSandboxStatusRequest>>>,
    }

    impl FakeCri {
        fn list(&self, request: ListPodSandboxRequest) -> FullListResponse {
            let filter = request.filter.clone().unwrap_or_default();
            let uid = filter.label_selector.get(POD_UID_LABEL).cloned();
            let state = filter.state.map(|s| s.state);
            self.lists.lock().expect("lock").push(request);
            let items = self
                .sandboxes
                .iter()
                .filter(|s| uid.as_deref().is_none_or(|u| u == s.uid))
                .filter(|s| state.is_none_or(|st| st == s.state as i32))
                .map(|s| FullPodSandbox {
                    id: s.id.into(),
                    metadata: Some(PodSandboxMetadata {
                        name: "web-0".into(),
                        uid: s.uid.into(),
                        namespace: "default".into(),
                        attempt: 0,
                    }),
                    state: s.state as i32,
                    created_at: 1_700_000_000_000_000_000,
                    labels: BTreeMap::from([(POD_UID_LABEL.into(), s.uid.into())]),
                    runtime_handler: "runc".into(),
                })
                .collect();
            FullListResponse { items }
        }

        fn status(&self, request: PodSandboxStatusRequest) -> Result<FullStatusResponse, Status> {
            self.statuses.lock().expect("lock").push(request.clone());
            let sandbox = self
                .sandboxes
                .iter()
                .find(|s| s.id == request.pod_sandbox_id && !self.removed.contains(&s.id))
                .ok_or_else(|| Status::not_found("an error occurred when try to find sandbox"))?;
            Ok(FullStatusResponse {
                status: Some(FullStatus {
                    id: sandbox.id.into(),
                    metadata: None,
                    state: sandbox.state as i32,
                }),
                info: if request.verbose {
                    BTreeMap::from([("info".to_owned(), sandbox.info.clone())])
                } else {
                    BTreeMap::new()
                },
                timestamp: 1_700_000_000,
            })
        }
    }

    use tonic::Status;

    struct List(FakeCri);
    impl UnaryService<ListPodSandboxRequest> for List {
        type Response = FullListResponse;
        type Future = std::future::Ready<Result<tonic::Response<FullListResponse>, Status>>;
        fn call(&mut self, request: tonic::Request<ListPodSandboxRequest>) -> Self::Future {
            std::future::ready(Ok(tonic::Response::new(self.0.list(request.into_inner()))))
        }
    }

    struct SandboxStatus(FakeCri);
    impl UnaryService<PodSandboxStatusRequest> for SandboxStatus {
        type Response = FullStatusResponse;
        type Future = std::future::Ready<Result<tonic::Response<FullStatusResponse>, Status>>;
        fn call(&mut self, request: tonic::Request<PodSandboxStatusRequest>) -> Self::Future {
            std::future::ready(
                self.0
                    .status(request.into_inner())
                    .map(tonic::Response::new),
            )
        }
    }

    /// Serves `fake` on `socket` until the returned runtime is dropped.
    fn serve(fake: FakeCri, socket: &Path) -> tokio::runtime::Runtime {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = {
            let _inside = runtime.enter();
            tokio::net::UnixListener::bind(socket).expect("bind")
        };
        let service = tower::service_fn(move |request: http::Request<tonic::body::Body>| {
            let fake = fake.clone();
            async move {
                let response = match request.uri().path() {
                    LIST_POD_SANDBOX => {
                        let codec =
                            ProstCodec::<FullListResponse, ListPodSandboxRequest>::default();
                        tonic::server::Grpc::new(codec)
                            .unary(List(fake), request)
                            .await
                    }
                    POD_SANDBOX_STATUS => {
                        let codec =
                            ProstCodec::<FullStatusResponse, PodSandboxStatusRequest>::default();
                        tonic::server::Grpc::new(codec)
                            .unary(SandboxStatus(fake), request)
                            .await
                    }
                    other => Status::unimplemented(format!("unknown method {other}")).into_http(),
                };
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        runtime.spawn(tonic::transport::Server::builder().serve_with_incoming(service, incoming));
        runtime
    }

    fn info_with_path(path: &Path) -> String {
        format!(
            r#"{{"pid": 0, "processStatus": "running", "netNamespaceClosed": false,
                "runtimeSpec": {{"linux": {{"namespaces": [{{"type": "pid"}},
                {{"type": "network", "path": "{}"}}]}}}}}}"#,
            path.display()
        )
    }

    fn discovery(socket: &Path, proc_root: &Path) -> Discovery {
        Discovery {
            proc_root: proc_root.to_owned(),
            netns_dir: None,
            cri: Some(CriClient::new(CriEndpoint {
                socket: socket.to_owned(),
            })),
        }
    }

    fn own_netns() -> NetnsId {
        NetnsId::of(&std::fs::File::open("/proc/self/ns/net").expect("open")).expect("stat")
    }

    #[test]
    fn a_pod_missing_from_proc_is_found_through_the_runtime() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("containerd.sock");
        let by_pid = "1b2c3d4e-0000-4000-8000-00000000000b";
        let fake = FakeCri {
            sandboxes: Arc::new(vec![
                FakeSandbox {
                    id: "stopped",
                    uid: UID,
                    state: PodSandboxState::SandboxNotready,
                    info: r#"{"pid": 0, "netNamespaceClosed": true}"#.into(),
                },
                FakeSandbox {
                    id: "ready",
                    uid: UID,
                    state: PodSandboxState::SandboxReady,
                    info: info_with_path(Path::new("/proc/self/ns/net")),
                },
                FakeSandbox {
                    id: "by-pid",
                    uid: by_pid,
                    state: PodSandboxState::SandboxReady,
                    info: format!(r#"{{"pid": {}}}"#, std::process::id()),
                },
            ]),
            ..FakeCri::default()
        };
        let _server = serve(fake.clone(), &socket);
        // An empty /proc: only the runtime can tell.
        let discovery = discovery(&socket, dir.path());
        let none = PodProcesses::new();

        let Lookup::Found(ns) = discovery.open(UID, Some(&pod()), &none) else {
            panic!("found through CRI");
        };
        assert_eq!(ns.path, Path::new("/proc/self/ns/net"));
        assert_eq!(ns.id, own_netns());
        let lists = fake.lists.lock().expect("lock").clone();
        assert_eq!(lists, [list_request(UID)], "filtered by pod UID and READY");
        let statuses = fake.statuses.lock().expect("lock").clone();
        assert_eq!(
            statuses,
            [PodSandboxStatusRequest {
                pod_sandbox_id: "ready".into(),
                verbose: true
            }]
        );

        // No netns path: the sandbox's process, under the discovery's /proc.
        let real_proc = super::super::namespace::Discovery {
            proc_root: PathBuf::from("/proc"),
            ..discovery.clone()
        };
        let Lookup::Found(ns) = real_proc.open(by_pid, None, &none) else {
            panic!("found by pid");
        };
        assert_eq!(
            ns.path,
            Path::new(&format!("/proc/{}/ns/net", std::process::id()))
        );
        assert_eq!(ns.id, own_netns());

        // The runtime knows no such pod: absent, not a failure.
        let unknown = "2c3d4e5f-0000-4000-8000-00000000000c";
        assert!(matches!(
            discovery.open(unknown, None, &none),
            Lookup::Absent
        ));
    }

    #[test]
    fn runtime_failures_name_the_endpoint_the_call_and_the_pod() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("containerd.sock");
        let endpoint = format!("unix://{}", socket.display());
        let none = PodProcesses::new();

        // Nothing listens: a failed lookup, not a crash.
        let Lookup::Failed(why) = discovery(&socket, dir.path()).open(UID, Some(&pod()), &none)
        else {
            panic!("an unreachable runtime is a failure");
        };
        let head = format!("CRI at {endpoint}: ListPodSandbox for pod default/web-0 (uid {UID}): ");
        assert!(why.starts_with(&head), "{why}");

        // The listed sandbox is unknown to PodSandboxStatus; the pod is known by UID only.
        let fake = FakeCri {
            sandboxes: Arc::new(vec![FakeSandbox {
                id: "vanished",
                uid: UID,
                state: PodSandboxState::SandboxReady,
                info: String::new(),
            }]),
            removed: Arc::new(vec!["vanished"]),
            ..FakeCri::default()
        };
        let _server = serve(fake, &socket);
        let client = CriClient::new(CriEndpoint {
            socket: socket.clone(),
        });
        let err = client.sandbox_netns(UID, None).expect_err("status fails");
        assert_eq!(err.endpoint, endpoint);
        assert_eq!(err.call, "PodSandboxStatus");
        assert_eq!(err.pod, format!("uid {UID}"));
        assert!(err.reason.starts_with("NotFound: "), "{}", err.reason);
    }

    #[test]
    fn a_namespace_path_that_cannot_be_opened_is_a_failure_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("containerd.sock");
        let missing = dir.path().join("netns/cni-gone");
        let fake = FakeCri {
            sandboxes: Arc::new(vec![FakeSandbox {
                id: "ready",
                uid: UID,
                state: PodSandboxState::SandboxReady,
                info: info_with_path(&missing),
            }]),
            ..FakeCri::default()
        };
        let _server = serve(fake, &socket);
        let Lookup::Failed(why) =
            discovery(&socket, dir.path()).open(UID, Some(&pod()), &PodProcesses::new())
        else {
            panic!("a failure");
        };
        assert!(why.contains("sandbox ready"), "{why}");
        assert!(why.contains(&missing.display().to_string()), "{why}");
    }

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
"#;

    #[test]
    fn the_backend_role_finds_a_pod_through_the_runtime_and_keeps_its_record_when_it_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let manifests = dir.path().join("manifests");
        std::fs::create_dir(&manifests).expect("mkdir");
        std::fs::write(manifests.join("web.yaml"), WEB).expect("write");
        let socket = dir.path().join("containerd.sock");
        let role = BackendRole {
            node_name: "node-1".into(),
            dirs: vec![manifests.clone()],
            discovery: discovery(&socket, dir.path()),
            state_dir: dir.path().join("state"),
        };

        // The runtime is down: the pod is skipped with the reason, and its record is kept.
        let recorded = || {
            Record::from([(
                UID.to_owned(),
                PodRecord {
                    pod: Some(pod()),
                    netns: Some(NetnsId { dev: 1, ino: 1 }),
                    ..PodRecord::default()
                },
            )])
        };
        let mut record = recorded();
        let pass = role.pass(&mut record, false);
        assert_eq!(pass.reports.len(), 1);
        let skipped = pass.reports[0].skipped.as_deref().unwrap_or_default();
        assert!(skipped.starts_with("CRI at unix://"), "{skipped}");
        assert!(skipped.contains("default/web-0"), "{skipped}");
        assert_eq!(record, recorded(), "kept while the runtime cannot answer");

        // The runtime answers: the pod's namespace is the one it names.
        let fake = FakeCri {
            sandboxes: Arc::new(vec![FakeSandbox {
                id: "ready",
                uid: UID,
                state: PodSandboxState::SandboxReady,
                info: info_with_path(Path::new("/proc/self/ns/net")),
            }]),
            ..FakeCri::default()
        };
        let _server = serve(fake, &socket);
        let pass = role.pass(&mut Record::new(), false);
        assert_eq!(
            pass.reports[0].namespace.as_deref(),
            Some(Path::new("/proc/self/ns/net"))
        );

        // Gone from the manifests and from the runtime: the record goes too.
        std::fs::remove_file(manifests.join("web.yaml")).expect("rm");
        let mut record = recorded();
        let gone = "3d4e5f60-0000-4000-8000-00000000000d";
        record.insert(gone.to_owned(), PodRecord::default());
        role.pass(&mut record, false);
        assert!(!record.contains_key(gone), "the runtime says it is gone");
    }
}
