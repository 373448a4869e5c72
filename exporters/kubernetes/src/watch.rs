//! The exporter's caches of Services and EndpointSlices, fed by kube-runtime watchers.
//!
//! Rules: nothing is rendered from a half-synced cache — [`Cache::synced`] is true only once
//! every stream (each kind, in each watched namespace) finished its initial list; a relist
//! (after `410 Gone` or a reconnect that lost its place) is buffered and swapped in whole at
//! its `InitDone`; every change says which Services it touches, so only their files are
//! rendered again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};

use crate::manifest::ServiceKey;
use crate::render::{service_key, slice_service};

/// One watch event, tagged with the stream it came from.
#[derive(Debug)]
pub enum Input {
    Service(usize, Box<Event<Service>>),
    Slice(usize, Box<Event<EndpointSlice>>),
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

impl Cache {
    /// A cache for streams watching `namespaces` (empty: all namespaces); each namespace has a
    /// Service stream and an EndpointSlice stream with the same index.
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

    /// Every stream of both kinds has finished its initial list.
    pub fn synced(&self) -> bool {
        self.service_synced.len() == self.scopes.len()
            && self.slice_synced.len() == self.scopes.len()
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
            Input::Error(..) => {}
        }
        dirty
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
        self.slices.insert(key, Arc::new(slice));
        service
    }

    fn remove_slice(&mut self, key: &SliceKey) -> Option<ServiceKey> {
        let old = self.slices.remove(key)?;
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

/// The watch streams for the cache's scopes, merged: Services and `discovery.k8s.io/v1`
/// EndpointSlices, with kube-runtime's default backoff between reconnects.
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
        all.push(services);
        all.push(slices);
    }
    futures::stream::select_all(all)
}
