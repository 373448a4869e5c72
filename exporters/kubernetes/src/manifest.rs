//! Manifest names, paths and bytes: the one place that decides how a rendered `Balancer` looks
//! on disk. Pure.
//!
//! Serialization goes through [`to_yaml`] only, which uses the schemas crate's YAML writer.

use std::fmt;

use balanced_schemas::v1::Balancer;

use crate::Error;

/// `metadata.source` of every manifest the exporter writes starts with this; the writer never
/// touches a file whose source does not.
pub const SOURCE_PREFIX: &str = "kubernetes/";

/// The first line of every file, so editors validate it against the published schema.
pub const HEADER: &str = "# yaml-language-server: $schema=https://raw.githubusercontent.com/balanced-lb/balanced/main/schemas/balancer.v1.json\n";

/// A Service's identity: namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl ServiceKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ServiceKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// `metadata.source` of the Service's manifests.
    pub fn source(&self) -> String {
        format!("{SOURCE_PREFIX}{}/{}", self.namespace, self.name)
    }

    /// The Service a `metadata.source` names, when the exporter wrote it.
    pub fn from_source(source: &str) -> Option<ServiceKey> {
        let rest = source.strip_prefix(SOURCE_PREFIX)?;
        let (namespace, name) = rest.split_once('/')?;
        (!namespace.is_empty() && !name.is_empty() && !name.contains('/'))
            .then(|| ServiceKey::new(namespace, name))
    }

    /// Relative path and `metadata.name` of the manifest for one family. The Service's first
    /// family keeps `<namespace>/<name>.yaml` (so a Service turning dual-stack keeps its file);
    /// the second gets the family in both. Service and namespace names cannot hold dots, so
    /// `<namespace>.<name>[.<family>]` is unique.
    pub fn manifest_id(&self, family: Family, primary: bool) -> (String, String) {
        if primary {
            (
                format!("{}/{}.yaml", self.namespace, self.name),
                format!("{}.{}", self.namespace, self.name),
            )
        } else {
            (
                format!("{}/{}.{family}.yaml", self.namespace, self.name),
                format!("{}.{}.{family}", self.namespace, self.name),
            )
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// An IP family as Kubernetes names them in `spec.ipFamilies` and `addressType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn from_kubernetes(name: &str) -> Option<Family> {
        match name {
            "IPv4" => Some(Family::V4),
            "IPv6" => Some(Family::V6),
            _ => None,
        }
    }

    pub fn of(addr: &std::net::IpAddr) -> Family {
        if addr.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        })
    }
}

/// The bytes of a manifest file: the schema header, then the YAML document.
pub fn to_yaml(balancer: &Balancer) -> Result<String, Error> {
    let body = balanced_schemas::yaml::to_string(balancer).map_err(|e| Error::Serialize {
        name: balancer.metadata.name.clone(),
        message: e.to_string(),
    })?;
    Ok(format!("{HEADER}{body}"))
}

/// Reads a manifest file back (the header is a comment).
pub fn from_yaml(text: &str) -> Result<Balancer, String> {
    balanced_schemas::yaml::from_str(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_round_trip_and_foreign_sources_are_not_services() {
        let key = ServiceKey::new("shop", "web");
        assert_eq!(key.source(), "kubernetes/shop/web");
        assert_eq!(ServiceKey::from_source(&key.source()), Some(key));
        assert_eq!(ServiceKey::from_source("manual"), None);
        assert_eq!(ServiceKey::from_source("kubernetes/shop"), None);
    }

    #[test]
    fn dual_stack_names_do_not_collide_with_other_services() {
        let web = ServiceKey::new("shop", "web");
        assert_eq!(web.manifest_id(Family::V4, true).0, "shop/web.yaml");
        assert_eq!(
            web.manifest_id(Family::V6, false),
            ("shop/web.ipv6.yaml".to_owned(), "shop.web.ipv6".to_owned())
        );
        let other = ServiceKey::new("shop", "web-ipv6");
        assert_ne!(
            other.manifest_id(Family::V4, true).0,
            web.manifest_id(Family::V6, false).0
        );
    }
}
