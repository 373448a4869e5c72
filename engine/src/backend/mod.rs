//! The backend role (`balanced run --role backend --node-name NODE`): the pod side of direct
//! server return with tunnel forwarding. On every Kubernetes node, for each local pod that
//! backs a tunnel-forwarded service, inside the pod's network namespace: the tunnel device of
//! the encapsulation up (`tunl0` for IPIP, `gre0` for GRE, a FOU port in GUE mode feeding
//! `tunl0` for GUE; `sit0`/`ip6tnl0`/`ip6gre0` for IPv6) with its MTU from the pod's primary
//! interface, each VIP as /32 or /128 on it, `rp_filter` 0 on it and on `all` so decapsulated
//! packets are accepted, and the TCP MSS clamped for replies from the VIP — without iptables:
//! a rule `from VIP lookup 4177` and, in table 4177, a copy of the pod's default route with
//! `advmss` = tunnel MTU − 40 (IPv6: − 60), which the kernel puts in the SYN-ACK.
//!
//! Which pods: the manifests' backends whose `node` is this node and that name a `pod`, in
//! services with `forwarding.method: tunnel`, whether `active` or `draining` (a terminating
//! pod keeps the VIP so its established flows finish); a pod no longer listed (not ready,
//! deleted, service gone) loses the VIPs. The manifests cannot see pod annotations: the
//! exporter leaves `pod` unset for pods that opted out and for host-network pods, and a pod
//! whose namespace is the host's is skipped here as well.
//!
//! Safety: only what balanced made is ever changed or removed — rules and routes carry
//! protocol 177, addresses and FOU ports are in a record in the state directory, tunnel
//! devices are brought up but never down, `rp_filter` is set but never restored. A pod in a
//! new namespace (restarted) is configured again; a namespace that vanishes is a logged skip.
//! When a manifest cannot be read, nothing is removed in that pass.
//!
//! Modules: [`model`] and [`plan`] (pure), [`codec`] (pure bytes), [`namespace`] (finding and
//! entering namespaces) with [`cri`] (its container-runtime fallback), [`kernel`] (netlink
//! inside one namespace), [`converge`] (the pass and the commands), [`status`] (what a pass
//! left, per pod) and [`metrics`] (`/metrics`, `/healthz`, `/readyz`, `/status` of `run`).

pub mod codec;
pub mod converge;
pub mod cri;
pub mod kernel;
pub mod metrics;
pub mod model;
pub mod namespace;
pub mod plan;
pub mod status;
