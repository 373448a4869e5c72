//! What the exporter renders by default and which Services it takes: the part of the command
//! line the pure modules need, kept apart from the CLI so tests and benches build it directly.

use balanced_schemas::v1::{ForwardingMethod, Scheduler};

/// The `spec.loadBalancerClass` the exporter serves unless told otherwise.
pub const DEFAULT_CLASS: &str = "balanced.io/ipvs";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderConfig {
    /// Services whose `spec.loadBalancerClass` equals this are ours.
    pub class: String,
    /// Also take `type: LoadBalancer` Services without any class (as the original did).
    pub accept_without_class: bool,
    /// Scheduler when the Service has no `balanced.io/scheduler` annotation.
    pub scheduler: Scheduler,
    /// Forwarding when the Service has no `balanced.io/forwarding` annotation.
    pub forwarding: ForwardingMethod,
}

impl Default for RenderConfig {
    fn default() -> Self {
        RenderConfig {
            class: DEFAULT_CLASS.to_owned(),
            accept_without_class: false,
            scheduler: Scheduler::Mh,
            forwarding: ForwardingMethod::Tunnel,
        }
    }
}
