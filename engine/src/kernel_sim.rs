//! The kernel's IPVS and rtnetlink semantics as a pure function over a [`NodeState`]: what one
//! [`Action`] does to the state and which errno the kernel answers when it refuses it.
//!
//! Shared by the simulated dataplane, the plan display (rendering the state after a plan), the
//! daemon's cached observation and the property tests.

use crate::dataplane::{Action, Errno};
use crate::model::NodeState;

/// Applies one action as the kernel would: on error the state is unchanged.
pub fn apply_action(state: &mut NodeState, action: &Action) -> Result<(), Errno> {
    let _ = (state, action);
    todo!("kernel semantics follow the contract commit")
}
