//! The balanced node engine: manifests → desired model → pure plan → dataplane, then observe
//! again and verify.

pub mod backend;
pub mod cli;
pub mod commands;
pub mod compile;
pub mod converge;
pub mod daemon;
pub mod dataplane;
pub mod display;
pub mod error;
pub mod exec;
pub mod http;
pub mod kernel;
pub mod kernel_sim;
pub mod logging;
pub mod maintenance;
pub mod manifests;
pub mod metrics;
pub mod model;
pub mod ownership;
pub mod plan;
pub mod sim;
pub mod state_dir;
pub mod status;
pub mod status_writer;
