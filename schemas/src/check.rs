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
