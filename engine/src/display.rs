//! Renders plans and states for people: the reviewer-friendly plan (grouped by VIP, `+ - ~`
//! with `old → new`), an `ipvsadm -Sn`-like text of a state, and one-line action descriptions
//! for logs. Pure: strings in, strings out.

use crate::dataplane::Action;
use crate::model::NodeState;
use crate::ownership::Ownership;
use crate::plan::Plan;

/// The plan grouped by VIP, then held and waiting deletions, then a unified diff of the
/// `ipvsadm -Sn`-like rendering before and after.
pub fn render_plan(plan: &Plan, observed: &NodeState) -> String {
    let _ = (plan, observed);
    todo!("display follows the contract commit")
}

/// An `ipvsadm -Sn`-like text of the state (destinations in the kernel's list order), limited to
/// what `ownership` owns when given.
pub fn render_ipvsadm(state: &NodeState, ownership: Option<&Ownership>) -> String {
    let _ = (state, ownership);
    todo!("display follows the contract commit")
}

/// One line for logs: `+ destination 10.0.0.1:80 → TCP 198.51.100.10:80 weight 1 tunnel ipip`.
pub fn describe_action(action: &Action) -> String {
    let _ = action;
    todo!("display follows the contract commit")
}
