//! The exporter's caches of Services, EndpointSlices and opted-out pods, fed by kube-runtime
//! watchers.
//!
//! Rules: nothing is rendered from a half-synced cache — [`Cache::synced`] is true only once
//! every stream (each kind, in each watched namespace) finished its initial list; a relist
//! (after `410 Gone` or a reconnect that lost its place) is buffered and swapped in whole at
//! its `InitDone`; every change says which Services it touches, so only their files are
//! rendered again. Pods are watched by metadata only (no spec or status crosses the wire) and
//! only the opted-out ones are kept ([`crate::pods`]); a pod whose opt-out changes touches the
//! Services whose EndpointSlices name it, found through an index pod UID → EndpointSlices.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};

use crate::events::Notice;
use crate::manifest::ServiceKey;
use crate::pods::{OptedOut, opt_out};
use crate::render::{Reason, service_key, slice_service};

/// One watch event, tagged with the stream it came from.
#[derive(Debug)]
pub enum Input {
    Service(usize, Box<Event<Service>>),
    Slice(usize, Box<Event<EndpointSlice>>),
    /// A pod's metadata.
    Pod(usize, Box<Event<PartialObjectMeta<Pod>>>),
    /// A stream's error (it recovers by itself, with backoff).
    Error(&'static str, watcher::Error),
}

/// What a batch of inputs touched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dirty {
    /// A stream (re)listed: render everything.
    pub all: bool,
    pub services: BTreeSet<ServiceKey>,
    /// Services themselves changed (not only their EndpointSlices): allocation may be needed.
    pub services_changed: bool,
}

impl Dirty {
    pub fn is_empty(&self) -> bool {
        !self.all && self.services.is_empty()
    }

    pub fn merge(&mut self, other: Dirty) {
        self.all |= other.all;
        self.services_changed |= other.services_changed;
        self.services.extend(other.services);
    }
}

type SliceKey = (String, String);

/// What a pod relist keeps until its `InitDone`: only what the cache holds of pods.
#[derive(Default)]
struct PodRelist {
    opted_out: OptedOut,
    /// Pods listed with an invalid annotation value (the others' warnings are forgotten).
    warned: BTreeSet<String>,
}

/// What the cache reads of one pod.
struct PodRead {
    uid: String,
    namespace: String,
    ignored: bool,
    warned: bool,
}

#[derive(Default)]
pub struct Cache {
    /// Which namespace each stream watches (`None`: all); indexes match the stream numbers.
    scopes: Vec<Option<String>>,
    services: BTreeMap<ServiceKey, Arc<Service>>,
    slices: HashMap<SliceKey, Arc<EndpointSlice>>,
    by_service: HashMap<ServiceKey, BTreeSet<SliceKey>>,
    service_buffers: HashMap<usize, Vec<Service>>,
    slice_buffers: HashMap<usize, Vec<EndpointSlice>>,
    service_synced: BTreeSet<usize>,
    slice_synced: BTreeSet<usize>,
    /// Pod UID → the EndpointSlices whose endpoints name that pod as their `targetRef`.
    slices_by_pod: HashMap<String, BTreeSet<SliceKey>>,
    opted_out: OptedOut,
    /// A relist's opted-out pods, swapped in at its `InitDone`.
    pod_buffers: HashMap<usize, PodRelist>,
    pod_synced: BTreeSet<usize>,
    /// Pod UID → (namespace, the warning last raised): each invalid value is reported once.
    pod_warned: HashMap<String, (String, String)>,
    /// Warnings about pods not handed to the caller yet.
    pod_notices: Vec<Notice>,
}

fn slice_key(slice: &EndpointSlice) -> Option<SliceKey> {
    Some((
        slice.metadata.namespace.clone()?,
        slice.metadata.name.clone()?,
    ))
}

fn in_scope(scope: &Option<String>, namespace: &str) -> bool {
    scope.as_deref().is_none_or(|s| s == namespace)
}

/// The UIDs of the pods a slice's endpoints name.
fn slice_pods(slice: &EndpointSlice) -> impl Iterator<Item = &str> {
    slice.endpoints.iter().filter_map(|e| {
        let target = e.target_ref.as_ref()?;
        (target.kind.as_deref() == Some("Pod")).then_some(())?;
        target.uid.as_deref()
    })
}

impl Cache {
    /// A cache for streams watching `namespaces` (empty: all namespaces); each namespace has a
    /// Service stream, an EndpointSlice stream and a Pod stream with the same index.
    pub fn new(namespaces: &[String]) -> Self {
        let scopes = if namespaces.is_empty() {
            vec![None]
        } else {
            namespaces.iter().cloned().map(Some).collect()
        };
        Cache {
            scopes,
            ..Cache::default()
        }
    }

    pub fn scopes(&self) -> &[Option<String>] {
        &self.scopes
    }

    /// Every stream of every kind has finished its initial list.
    pub fn synced(&self) -> bool {
        self.service_synced.len() == self.scopes.len()
            && self.slice_synced.len() == self.scopes.len()
            && self.pod_synced.len() == self.scopes.len()
    }

    /// The pods opted out of the backend role.
    pub fn opted_out(&self) -> &OptedOut {
        &self.opted_out
    }

    /// Warnings about pods' annotations raised since the last call, each once.
    pub fn take_pod_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.pod_notices)
    }

    pub fn services(&self) -> impl Iterator<Item = (&ServiceKey, &Arc<Service>)> {
        self.services.iter()
    }

    pub fn service(&self, key: &ServiceKey) -> Option<&Arc<Service>> {
        self.services.get(key)
    }

    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    pub fn slice_count(&self) -> usize {
        self.slices.len()
    }

    /// The EndpointSlices labelled with the Service's name.
    pub fn slices_of(&self, key: &ServiceKey) -> Vec<&EndpointSlice> {
        self.by_service
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|k| self.slices.get(k).map(Arc::as_ref))
            .collect()
    }

    pub fn apply(&mut self, input: Input) -> Dirty {
        let mut dirty = Dirty::default();
        match input {
            Input::Service(stream, event) => {
                dirty.services_changed = true;
                match *event {
                    Event::Init => {
                        self.service_buffers.insert(stream, Vec::new());
                    }
                    Event::InitApply(s) => self.service_buffers.entry(stream).or_default().push(s),
                    Event::InitDone => {
                        let listed = self.service_buffers.remove(&stream).unwrap_or_default();
                        let scope = self.scopes.get(stream).cloned().flatten();
                        self.services.retain(|k, _| !in_scope(&scope, &k.namespace));
                        for s in listed {
                            if let Some(key) = service_key(&s) {
                                self.services.insert(key, Arc::new(s));
                            }
                        }
                        self.service_synced.insert(stream);
                        dirty.all = true;
                    }
                    Event::Apply(s) => {
                        if let Some(key) = service_key(&s) {
                            self.services.insert(key.clone(), Arc::new(s));
                            dirty.services.insert(key);
                        }
                    }
                    Event::Delete(s) => {
                        if let Some(key) = service_key(&s) {
                            self.services.remove(&key);
                            dirty.services.insert(key);
                        }
                    }
                }
            }
            Input::Slice(stream, event) => match *event {
                Event::Init => {
                    self.slice_buffers.insert(stream, Vec::new());
                }
                Event::InitApply(s) => self.slice_buffers.entry(stream).or_default().push(s),
                Event::InitDone => {
                    let listed = self.slice_buffers.remove(&stream).unwrap_or_default();
                    let scope = self.scopes.get(stream).cloned().flatten();
                    let gone: Vec<SliceKey> = self
                        .slices
                        .keys()
                        .filter(|(ns, _)| in_scope(&scope, ns))
                        .cloned()
                        .collect();
                    for key in gone {
                        self.remove_slice(&key);
                    }
                    for s in listed {
                        self.insert_slice(s);
                    }
                    self.slice_synced.insert(stream);
                    dirty.all = true;
                }
                Event::Apply(s) => {
                    if let Some(key) = slice_key(&s) {
                        dirty.services.extend(self.remove_slice(&key));
                    }
                    dirty.services.extend(self.insert_slice(s));
                }
                Event::Delete(s) => {
                    if let Some(key) = slice_key(&s) {
                        dirty.services.extend(self.remove_slice(&key));
                    }
                }
            },
            Input::Pod(stream, event) => match *event {
                Event::Init => {
                    self.pod_buffers.insert(stream, PodRelist::default());
                }
                Event::InitApply(pod) => {
                    if let Some(read) = self.read_pod(&pod) {
                        let buffer = self.pod_buffers.entry(stream).or_default();
                        if read.ignored {
                            buffer.opted_out.insert(&read.uid, &read.namespace);
                        }
                        if read.warned {
                            buffer.warned.insert(read.uid);
                        }
                    }
                }
                Event::InitDone => {
                    let listed = self.pod_buffers.remove(&stream).unwrap_or_default();
                    let scope = self.scopes.get(stream).cloned().flatten();
                    let changed = self
                        .opted_out
                        .replace_scope(|ns| in_scope(&scope, ns), listed.opted_out);
                    for uid in changed {
                        dirty.services.extend(self.services_of_pod(&uid));
                    }
                    self.pod_warned.retain(|uid, (namespace, _)| {
                        !in_scope(&scope, namespace) || listed.warned.contains(uid)
                    });
                    self.pod_synced.insert(stream);
                }
                Event::Apply(pod) => {
                    if let Some(read) = self.read_pod(&pod) {
                        let changed = if read.ignored {
                            self.opted_out.insert(&read.uid, &read.namespace)
                        } else {
                            self.opted_out.remove(&read.uid)
                        };
                        if changed {
                            dirty.services.extend(self.services_of_pod(&read.uid));
                        }
                    }
                }
                Event::Delete(pod) => {
                    if let Some(uid) = pod.metadata.uid.as_deref() {
                        self.pod_warned.remove(uid);
                        if self.opted_out.remove(uid) {
                            dirty.services.extend(self.services_of_pod(uid));
                        }
                    }
                }
            },
            Input::Error(..) => {}
        }
        dirty
    }

    /// A pod's UID, namespace and whether it opted out; queues a Warning the first time it
    /// carries a given invalid value.
    fn read_pod(&mut self, pod: &PartialObjectMeta<Pod>) -> Option<PodRead> {
        let meta = &pod.metadata;
        let (Some(namespace), Some(name), Some(uid)) = (&meta.namespace, &meta.name, &meta.uid)
        else {
            return None;
        };
        let opt = opt_out(meta.annotations.as_ref());
        let warning = opt.warning(namespace, name);
        let warned = warning.is_some();
        match warning {
            Some(warning) => {
                let seen = self.pod_warned.get(uid).map(|(_, w)| w);
                if seen != Some(&warning) {
                    self.pod_notices.push(Notice {
                        reference: pod.object_ref(&()),
                        warning: true,
                        action: "Render",
                        reason: Reason::InvalidAnnotation.as_str().to_owned(),
                        note: warning.clone(),
                    });
                    self.pod_warned
                        .insert(uid.clone(), (namespace.clone(), warning));
                }
            }
            None => {
                self.pod_warned.remove(uid);
            }
        }
        Some(PodRead {
            uid: uid.clone(),
            namespace: namespace.clone(),
            ignored: opt.ignored,
            warned,
        })
    }

    /// The Services whose EndpointSlices name the pod.
    fn services_of_pod(&self, uid: &str) -> BTreeSet<ServiceKey> {
        self.slices_by_pod
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|k| slice_service(self.slices.get(k)?))
            .collect()
    }

    fn insert_slice(&mut self, slice: EndpointSlice) -> Option<ServiceKey> {
        let key = slice_key(&slice)?;
        let service = slice_service(&slice);
        if let Some(service) = &service {
            self.by_service
                .entry(service.clone())
                .or_default()
                .insert(key.clone());
        }
        for uid in slice_pods(&slice) {
            self.slices_by_pod
                .entry(uid.to_owned())
                .or_default()
                .insert(key.clone());
        }
        self.slices.insert(key, Arc::new(slice));
        service
    }

    fn remove_slice(&mut self, key: &SliceKey) -> Option<ServiceKey> {
        let old = self.slices.remove(key)?;
        for uid in slice_pods(&old) {
            if let Some(set) = self.slices_by_pod.get_mut(uid) {
                set.remove(key);
                if set.is_empty() {
                    self.slices_by_pod.remove(uid);
                }
            }
        }
        let service = slice_service(&old)?;
        if let Some(set) = self.by_service.get_mut(&service) {
            set.remove(key);
            if set.is_empty() {
                self.by_service.remove(&service);
            }
        }
        Some(service)
    }
}

/// The watch streams for the cache's scopes, merged: Services, `discovery.k8s.io/v1`
/// EndpointSlices and the metadata of Pods, with kube-runtime's default backoff between
/// reconnects.
pub fn streams(
    client: &Client,
    scopes: &[Option<String>],
) -> impl Stream<Item = Input> + Send + use<> {
    let mut all = Vec::new();
    for (index, scope) in scopes.iter().enumerate() {
        let services: Api<Service> = match scope {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let slices: Api<EndpointSlice> = match scope {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let services = watcher::watcher(services, watcher::Config::default())
            .default_backoff()
            .map(move |r| match r {
                Ok(e) => Input::Service(index, Box::new(e)),
                Err(e) => Input::Error("Service", e),
            })
            .boxed();
        let slices = watcher::watcher(slices, watcher::Config::default())
            .default_backoff()
            .map(move |r| match r {
                Ok(e) => Input::Slice(index, Box::new(e)),
                Err(e) => Input::Error("EndpointSlice", e),
            })
            .boxed();
        // An Api of PartialObjectMeta: kube asks for metadata only (list and watch).
        let pods: Api<PartialObjectMeta<Pod>> = match scope {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let pods = watcher::watcher(pods, watcher::Config::default())
            .default_backoff()
            .map(move |r| match r {
                Ok(e) => Input::Pod(index, Box::new(e)),
                Err(e) => Input::Error("Pod", e),
            })
            .boxed();
        all.push(services);
        all.push(slices);
        all.push(pods);
    }
    futures::stream::select_all(all)
}
