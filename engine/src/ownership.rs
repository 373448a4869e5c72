//! What this node owns: its VIP link, the VIP ranges and the fwmark ranges of its node config.
//!
//! The rule: the engine creates, changes and deletes only what it owns. Services and addresses
//! outside these ranges belong to someone else (another tool, an operator) and are never touched,
//! whatever the manifests say. Pure: no I/O here.

use std::net::IpAddr;

use balanced_schemas::v1::{FwmarkRange, NodeConfigSpec};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::model::ServiceKey;

/// The node's ownership, from its node config.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ownership {
    /// The VIP link; addresses on other links are never touched.
    pub interface: String,
    pub vip_ranges: Vec<IpNet>,
    pub fwmark_ranges: Vec<FwmarkRange>,
}

impl Ownership {
    pub fn from_node(spec: &NodeConfigSpec) -> Self {
        Ownership {
            interface: spec.interface.clone(),
            vip_ranges: spec.vip_ranges.clone(),
            fwmark_ranges: spec.fwmark_ranges.clone(),
        }
    }

    /// A protocol/port service is owned when its VIP is in a VIP range; a fwmark service when
    /// its mark is in a fwmark range (for either address family).
    pub fn owns_service(&self, key: &ServiceKey) -> bool {
        match key {
            ServiceKey::Inet { vip, .. } => self.owns_address(vip),
            ServiceKey::Fwmark { mark, .. } => self.fwmark_ranges.iter().any(|r| r.contains(*mark)),
        }
    }

    /// An address (a VIP, or an address on the VIP link) is owned when a VIP range contains it.
    pub fn owns_address(&self, address: &IpAddr) -> bool {
        self.vip_ranges.iter().any(|range| range.contains(address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Family;
    use balanced_schemas::v1::Protocol;

    fn ownership() -> Ownership {
        Ownership {
            interface: "balanced0".into(),
            vip_ranges: vec![
                "198.51.100.0/24".parse().unwrap(),
                "2001:db8::/64".parse().unwrap(),
            ],
            fwmark_ranges: vec!["100-199".parse().unwrap()],
        }
    }

    #[test]
    fn addresses_are_owned_only_inside_a_vip_range() {
        let own = ownership();
        assert!(own.owns_address(&"198.51.100.7".parse().unwrap()));
        assert!(own.owns_address(&"2001:db8::7".parse().unwrap()));
        assert!(!own.owns_address(&"198.51.101.7".parse().unwrap()));
        assert!(!own.owns_address(&"2001:db8:1::7".parse().unwrap()));
    }

    #[test]
    fn services_are_owned_by_vip_or_by_mark() {
        let own = ownership();
        let inet = |vip: &str| ServiceKey::Inet {
            protocol: Protocol::Tcp,
            vip: vip.parse().unwrap(),
            port: 80,
        };
        assert!(own.owns_service(&inet("198.51.100.10")));
        assert!(!own.owns_service(&inet("203.0.113.10")));
        let fwm = |mark| ServiceKey::Fwmark {
            family: Family::V6,
            mark,
        };
        assert!(own.owns_service(&fwm(100)));
        assert!(own.owns_service(&fwm(199)));
        assert!(!own.owns_service(&fwm(200)));
        assert!(!Ownership::default().owns_service(&fwm(100)));
    }
}
