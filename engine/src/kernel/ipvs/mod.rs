//! IPVS over generic netlink: the pure codec and the client that speaks it.

pub mod client;
pub mod codec;
