//! The balanced node engine: manifests → desired model → pure plan → dataplane, then observe
//! again and verify.

pub mod dataplane;
pub mod model;
