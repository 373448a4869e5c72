//! `balanced-exporter`: watches Kubernetes Services and EndpointSlices, allocates their VIPs and
//! renders one `Balancer` manifest per Service and address family into a directory.
//!
//! The deciding is pure and apart from the API calls: [`render`] turns objects into manifests,
//! [`alloc`] plans VIP allocations, [`annotations`] reads the per-Service configuration,
//! [`pods`] the pods' opt-out of the backend role. The
//! effects live in [`writer`] (files, Git), [`status`] (status PATCHes), [`lease`] (leader
//! election), [`watch`] (the caches fed by kube-runtime watchers) and [`run`] (the loops tying
//! them together).

pub mod alloc;
pub mod annotations;
pub mod config;
pub mod dump;
pub mod error;
pub mod events;
pub mod fixtures;
pub mod http;
pub mod lease;
pub mod manifest;
pub mod metrics;
pub mod pods;
pub mod render;
pub mod run;
pub mod status;
pub mod watch;
pub mod writer;

pub use error::Error;
