//! Checks across documents: the whole set of manifests one node loads, and the node's config.
//!
//! Pure: works on parsed files only. Each rule keeps one map keyed by what must be unique, so
//! checking 10,000 files costs one pass. Files are visited in the order given (`load_paths`
//! sorts them), so the first occurrence is the one kept and every later one is the error,
//! naming the first place.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::IpAddr;

use crate::diagnostic::Diagnostic;
use crate::document::{Document, Manifest, ParsedFile};
use crate::v1;
use crate::validate::{ServiceKey, service_key, service_name};

/// The node's configuration, read from the file given as `--config`.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfigDoc {
    /// The document; its manifest is always [`Manifest::NodeConfig`].
    pub document: Document,
    /// Warnings found in the node config file (errors make it an `Err`).
    pub warnings: Vec<Diagnostic>,
}

impl NodeConfigDoc {
    /// The node config's spec. Defaults when the document is not a NodeConfig, which
    /// [`crate::load_node_config`] never returns.
    pub fn spec(&self) -> Option<&v1::NodeConfigSpec> {
        match &self.document.manifest {
            Manifest::NodeConfig(config) => Some(&config.spec),
            Manifest::Balancer(_) => None,
        }
    }
}

/// Checks the whole set a node loads: `metadata.name` unique, each (VIP, protocol, port) and
/// (family, fwmark) defined once, NodeConfig only in `--config`, and — given the node's
/// config — every VIP inside `vipRanges` and every mark inside `fwmarkRanges`.
pub fn check_set(files: &[&ParsedFile], node: Option<&NodeConfigDoc>) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    let mut names: HashMap<&str, &Document> = HashMap::new();
    let mut services: HashMap<ServiceKey, (&Document, String)> = HashMap::new();
    let spec = node.and_then(NodeConfigDoc::spec);
    for document in files.iter().flat_map(|f| &f.documents) {
        let balancer = match &document.manifest {
            Manifest::Balancer(balancer) => balancer,
            Manifest::NodeConfig(_) => {
                diagnostics.push(Diagnostic::error(
                    &document.path,
                    document.positions.at("kind"),
                    "a NodeConfig belongs in the node's config file (--config), not among the \
                     manifests",
                ));
                continue;
            }
        };
        let name = document.manifest.name();
        match names.entry(name) {
            Entry::Occupied(first) => diagnostics.push(Diagnostic::error(
                &document.path,
                document.positions.at("metadata.name"),
                format!(
                    "duplicate metadata.name {name:?}: already used at {}",
                    first.get().place("metadata.name")
                ),
            )),
            Entry::Vacant(slot) => {
                slot.insert(document);
            }
        }
        let vip = balancer.spec.vip;
        if let Some(spec) = spec {
            check_vip_owned(&mut diagnostics, document, vip, spec, node);
        }
        for (i, service) in balancer.spec.services.iter().enumerate() {
            let field = format!("spec.services[{i}]");
            if let (Some(spec), Some(mark)) = (spec, service.fwmark)
                && !spec.fwmark_ranges.iter().any(|r| r.contains(mark))
            {
                diagnostics.push(Diagnostic::error(
                    &document.path,
                    document.positions.at(&format!("{field}.fwmark")),
                    format!(
                        "service {}: fwmark {mark} is outside this node's fwmarkRanges ({}) \
                         in {}",
                        service_name(vip, service),
                        list(&spec.fwmark_ranges),
                        node_path(node)
                    ),
                ));
            }
            let Some(key) = service_key(vip, service) else {
                continue;
            };
            match services.entry(key) {
                Entry::Occupied(first) => {
                    let (first_doc, first_field) = first.get();
                    // Repeats inside one document are reported by its own checks.
                    if !std::ptr::eq(*first_doc, document) {
                        diagnostics.push(Diagnostic::error(
                            &document.path,
                            document.positions.at(&field),
                            format!(
                                "service {} is also defined at {} (Balancer {:?})",
                                service_name(vip, service),
                                first_doc.place(first_field),
                                first_doc.manifest.name()
                            ),
                        ));
                    }
                }
                Entry::Vacant(slot) => {
                    slot.insert((document, field));
                }
            }
        }
    }
    diagnostics
}

fn check_vip_owned(
    diagnostics: &mut Vec<Diagnostic>,
    document: &Document,
    vip: IpAddr,
    spec: &v1::NodeConfigSpec,
    node: Option<&NodeConfigDoc>,
) {
    if spec.vip_ranges.iter().any(|range| range.contains(&vip)) {
        return;
    }
    let ranges = if spec.vip_ranges.is_empty() {
        "none: it owns no VIP".to_owned()
    } else {
        list(&spec.vip_ranges)
    };
    diagnostics.push(Diagnostic::error(
        &document.path,
        document.positions.at("spec.vip"),
        format!(
            "VIP {vip} is outside this node's vipRanges ({ranges}) in {}",
            node_path(node)
        ),
    ));
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "none".to_owned();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn node_path(node: Option<&NodeConfigDoc>) -> String {
    node.map(|n| n.document.path.display().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::document::parse_file;

    fn balancer(name: &str, vip: &str, services: &str) -> String {
        format!(
            "apiVersion: balanced.io/v1\nkind: Balancer\nmetadata:\n  name: {name}\nspec:\n  \
             vip: \"{vip}\"\n  services: {services}\n"
        )
    }

    fn node(spec: &str) -> NodeConfigDoc {
        let text = format!(
            "apiVersion: balanced.io/v1\nkind: NodeConfig\nmetadata:\n  name: n\nspec: {spec}\n"
        );
        NodeConfigDoc::from_file(parse_file(Path::new("node.yaml"), &text)).unwrap()
    }

    /// `check_set` over files given as (path, text), printed.
    fn set(files: &[(&str, String)], node: Option<&NodeConfigDoc>) -> Vec<String> {
        let parsed: Vec<ParsedFile> = files
            .iter()
            .map(|(path, text)| parse_file(Path::new(path), text))
            .collect();
        for file in &parsed {
            assert!(!file.has_errors(), "{:?}", file.diagnostics);
        }
        let refs: Vec<&ParsedFile> = parsed.iter().collect();
        check_set(&refs, node)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn duplicate_names_name_both_places() {
        let files = [
            ("a.yaml", balancer("web", "198.51.100.1", "[]")),
            ("b.yaml", balancer("web", "198.51.100.2", "[]")),
            ("c.yaml", balancer("api", "198.51.100.3", "[]")),
        ];
        assert_eq!(
            set(&files, None),
            ["b.yaml:4:9: duplicate metadata.name \"web\": already used at a.yaml:4:9"]
        );
    }

    #[test]
    fn a_service_defined_in_two_documents_names_both() {
        let tcp80 = "[{protocol: TCP, port: 80}]";
        let text = format!(
            "{}---\n{}",
            balancer("a", "198.51.100.1", tcp80),
            balancer("b", "198.51.100.1", tcp80)
        );
        assert_eq!(
            set(&[("x.yaml", text)], None),
            [
                "x.yaml:15:14: service TCP 198.51.100.1:80 is also defined at x.yaml:7:14 (Balancer \"a\")"
            ]
        );
    }

    #[test]
    fn services_differ_by_vip_protocol_port_and_marks_by_family() {
        let files = [
            (
                "a.yaml",
                balancer(
                    "a",
                    "198.51.100.1",
                    "[{protocol: TCP, port: 80}, {fwmark: 5}]",
                ),
            ),
            (
                "b.yaml",
                balancer("b", "198.51.100.2", "[{protocol: TCP, port: 80}]"),
            ),
            (
                "c.yaml",
                balancer(
                    "c",
                    "198.51.100.1",
                    "[{protocol: UDP, port: 80}, {protocol: TCP, port: 81}]",
                ),
            ),
            ("d.yaml", balancer("d", "2001:db8::1", "[{fwmark: 5}]")),
        ];
        assert_eq!(set(&files, None), Vec::<String>::new());
        let files = [
            ("a.yaml", balancer("a", "198.51.100.1", "[{fwmark: 5}]")),
            ("b.yaml", balancer("b", "198.51.100.2", "[{fwmark: 5}]")),
        ];
        assert_eq!(
            set(&files, None),
            [
                "b.yaml:7:14: service fwmark 5 (IPv4) is also defined at a.yaml:7:14 (Balancer \"a\")"
            ]
        );
    }

    #[test]
    fn repeats_inside_one_document_are_left_to_its_own_checks() {
        let text = balancer(
            "a",
            "198.51.100.1",
            "[{protocol: TCP, port: 80}, {protocol: TCP, port: 80}]",
        );
        let file = parse_file(Path::new("a.yaml"), &text);
        assert_eq!(file.diagnostics.len(), 1, "{:?}", file.diagnostics);
        assert_eq!(check_set(&[&file], None), []);
    }

    #[test]
    fn the_node_owns_only_its_vip_and_mark_ranges() {
        let node = node("{vipRanges: [198.51.100.0/24, 2001:db8::/32], fwmarkRanges: [10-20]}");
        let inside = [(
            "a.yaml",
            balancer(
                "a",
                "2001:db8::1",
                "[{fwmark: 10}, {fwmark: 20}, {protocol: TCP, port: 1}]",
            ),
        )];
        assert_eq!(set(&inside, Some(&node)), Vec::<String>::new());
        let outside = [(
            "a.yaml",
            balancer(
                "a",
                "203.0.113.1",
                "[{fwmark: 21}, {protocol: TCP, port: 1}]",
            ),
        )];
        assert_eq!(
            set(&outside, Some(&node)),
            [
                "a.yaml:6:8: VIP 203.0.113.1 is outside this node's vipRanges (198.51.100.0/24, \
                 2001:db8::/32) in node.yaml",
                "a.yaml:7:23: service fwmark 21 (IPv4): fwmark 21 is outside this node's \
                 fwmarkRanges (10-20) in node.yaml",
            ]
        );
        let owns_nothing = node_with_no_ranges();
        let lines = set(
            &[("a.yaml", balancer("a", "198.51.100.1", "[]"))],
            Some(&owns_nothing),
        );
        assert_eq!(
            lines,
            [
                "a.yaml:6:8: VIP 198.51.100.1 is outside this node's vipRanges (none: it owns no VIP) in node.yaml"
            ]
        );
        // Without a node config there is nothing to check ranges against.
        assert_eq!(set(&outside, None), Vec::<String>::new());
    }

    fn node_with_no_ranges() -> NodeConfigDoc {
        node("{}")
    }

    #[test]
    fn a_node_config_among_the_manifests_is_an_error() {
        let text =
            "apiVersion: balanced.io/v1\nkind: NodeConfig\nmetadata:\n  name: n\n".to_owned();
        assert_eq!(
            set(&[("m/node.yaml", text)], None),
            [
                "m/node.yaml:2:7: a NodeConfig belongs in the node's config file (--config), not \
              among the manifests"
            ]
        );
    }
}
