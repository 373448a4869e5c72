//! From one file's text to typed documents: YAML tree, `apiVersion`/`kind` dispatch, typed
//! conversion, and the field-path → position index the semantic checks report through.
//!
//! Pure: no I/O here (see `crate::load`). Dispatch reads `apiVersion` and `kind` from the tree
//! before any typed conversion, so a future `balanced.io/v2` is one more match arm.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::diagnostic::{Diagnostic, Position};
use crate::v1;
use crate::validate;
use crate::yaml::{self, Node, NodeKind, YamlError};

/// Every `apiVersion` this build understands.
pub const SUPPORTED_API_VERSIONS: &[&str] = &[v1::API_VERSION];

/// The kinds of `balanced.io/v1`.
pub const V1_KINDS: &[&str] = &["Balancer", "NodeConfig"];

/// One typed document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    Balancer(v1::Balancer),
    NodeConfig(v1::NodeConfig),
}

impl Manifest {
    pub fn kind(&self) -> &'static str {
        match self {
            Manifest::Balancer(_) => "Balancer",
            Manifest::NodeConfig(_) => "NodeConfig",
        }
    }

    pub fn metadata(&self) -> &v1::Metadata {
        match self {
            Manifest::Balancer(b) => &b.metadata,
            Manifest::NodeConfig(n) => &n.metadata,
        }
    }

    pub fn name(&self) -> &str {
        &self.metadata().name
    }
}

/// Where each field of a document was written, by field path: `spec.vip`,
/// `spec.services[1].backends[0].port`. The document itself is the empty path.
///
/// Lookups happen only for messages, so nothing is indexed up front (at 10,000 manifests an
/// index of every path was a fifth of the time a node took to read them), and once the
/// single-document checks are done the tree is let go too ([`Positions::release`]): it is
/// about twenty times the size of the text, and a valid manifest never needs it again. A
/// later lookup (a cross-file conflict) reads the document's text again, once. Keys may
/// contain dots (sysctl names): a path segment matches the longest key it starts with.
#[derive(Debug, Clone, Default)]
pub struct Positions {
    /// The document's tree, while kept or once read again.
    tree: OnceLock<Option<Node>>,
    /// The file's text and the document's index in it, to read the tree again.
    source: Option<(Arc<str>, usize)>,
}

/// Two position sets are equal when they come from the same document text, or (without a
/// text) hold equal trees — whether a tree is held right now does not matter.
impl PartialEq for Positions {
    fn eq(&self, other: &Self) -> bool {
        match (&self.source, &other.source) {
            (Some((a, i)), Some((b, j))) => i == j && a == b,
            (None, None) => self.tree.get() == other.tree.get(),
            _ => false,
        }
    }
}

/// What a walk along a field path found.
struct Found<'a> {
    /// The node at the path, when every step of it exists.
    node: Option<&'a Node>,
    /// The key of the last step, when that step was a mapping key.
    key: Option<Position>,
    /// The position of the deepest node reached.
    deepest: Position,
}

impl Positions {
    /// Document number `index` of `text`, whose tree is `root`.
    fn from_source(root: Node, text: Arc<str>, index: usize) -> Self {
        Positions {
            tree: OnceLock::from(Some(root)),
            source: Some((text, index)),
        }
    }

    /// Document number `index` of `text`, its tree read only when a lookup needs it.
    fn from_text(text: Arc<str>, index: usize) -> Self {
        Positions {
            tree: OnceLock::new(),
            source: Some((text, index)),
        }
    }

    /// Lets the tree go when it can be read again from the text.
    pub fn release(&mut self) {
        if self.source.is_some() {
            self.tree = OnceLock::new();
        }
    }

    fn root(&self) -> Option<&Node> {
        self.tree
            .get_or_init(|| {
                let (text, index) = self.source.as_ref()?;
                yaml::parse_documents(text).ok()?.into_iter().nth(*index)
            })
            .as_ref()
    }

    fn find(&self, path: &str) -> Found<'_> {
        let Some(mut node) = self.root() else {
            return Found {
                node: None,
                key: None,
                deepest: Position::default(),
            };
        };
        let mut key = None;
        let mut rest = path;
        while !rest.is_empty() {
            let step = match (&node.kind, rest.strip_prefix('[')) {
                (NodeKind::Seq(items), Some(index)) => {
                    index.split_once(']').and_then(|(n, after)| {
                        let item = items.get(n.parse::<usize>().ok()?)?;
                        Some((item, None, after))
                    })
                }
                (NodeKind::Map(entries), None) => entries
                    .iter()
                    .filter(|e| {
                        rest.strip_prefix(e.key.as_ref())
                            .is_some_and(|after| after.is_empty() || after.starts_with(['.', '[']))
                    })
                    .max_by_key(|e| e.key.len())
                    .map(|e| (&e.value, Some(e.key_position), &rest[e.key.len()..])),
                _ => None,
            };
            let Some((next, next_key, after)) = step else {
                return Found {
                    node: None,
                    key: None,
                    deepest: node.position,
                };
            };
            node = next;
            key = next_key;
            rest = after.strip_prefix('.').unwrap_or(after);
        }
        Found {
            node: Some(node),
            key,
            deepest: node.position,
        }
    }

    /// The position of exactly this field, when it was written.
    pub fn get(&self, path: &str) -> Option<Position> {
        self.find(path).node.map(|n| n.position)
    }

    /// The position of this field's key (`port:` rather than its value), for errors about
    /// the field itself; the value's or nearest parent's position when it has no key.
    pub fn key(&self, path: &str) -> Position {
        let found = self.find(path);
        match (found.node, found.key) {
            (Some(_), Some(key)) => key,
            _ => found.deepest,
        }
    }

    /// The position of this field or, when it was not written (a default applies), of the
    /// nearest enclosing object that was.
    pub fn at(&self, path: &str) -> Position {
        self.find(path).deepest
    }
}

/// One typed document of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub path: PathBuf,
    /// Where the document starts (its first key).
    pub position: Position,
    pub manifest: Manifest,
    pub positions: Positions,
}

impl Document {
    /// `path:line:col` of a field (or its nearest written parent), for messages that name
    /// another place.
    pub fn place(&self, field: &str) -> String {
        format!("{}:{}", self.path.display(), self.positions.at(field))
    }
}

/// One file: the documents that parsed, and every diagnostic found in it alone.
///
/// A file with any error diagnostic must not be applied as a whole; `documents` still holds
/// the documents that parsed so that cross-file checks can report on them too.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParsedFile {
    pub path: PathBuf,
    pub documents: Vec<Document>,
    pub diagnostics: Vec<Diagnostic>,
}

impl ParsedFile {
    pub fn has_errors(&self) -> bool {
        crate::diagnostic::has_errors(&self.diagnostics)
    }
}

/// Parses one file: syntax, structure, and every check that needs only one document.
pub fn parse_file(path: &Path, text: &str) -> ParsedFile {
    let mut file = ParsedFile {
        path: path.to_owned(),
        ..ParsedFile::default()
    };
    let source: Arc<str> = Arc::from(text);
    // The fast reader's events give a valid manifest its typed value without a tree; any
    // other document, and every error, goes through the tree and its positions. Documents are
    // reserved exactly: a `Document` is half a kilobyte, and a node holds one per file, ten
    // thousand files or more.
    let read = (text.len() <= yaml::MAX_FILE_BYTES)
        .then(|| yaml::block::read(text))
        .flatten();
    match read {
        Some(read) => {
            file.documents.reserve_exact(read.len());
            for index in 0..read.len() {
                let parsed = match fast_manifest(&read, index) {
                    Some(manifest) => Ok(Document {
                        path: path.to_owned(),
                        position: read.position(index),
                        manifest,
                        positions: Positions::from_text(source.clone(), index),
                    }),
                    None => parse_document(path, read.tree(index), &source, index),
                };
                file.add(parsed);
            }
        }
        None => match yaml::parse_documents_general(text) {
            Ok(nodes) => {
                file.documents.reserve_exact(nodes.len());
                for (index, node) in nodes.into_iter().enumerate() {
                    file.add(parse_document(path, node, &source, index));
                }
            }
            Err(e) => {
                let position = e.position.unwrap_or(Position::new(1, 1));
                file.diagnostics
                    .push(Diagnostic::error(path, position, yaml_message(&e)));
            }
        },
    }
    file
}

impl ParsedFile {
    /// Adds a document with the diagnostics of the checks that need it alone, or the
    /// diagnostics that kept it from being read.
    fn add(&mut self, parsed: Result<Document, Vec<Diagnostic>>) {
        match parsed {
            Ok(mut document) => {
                self.diagnostics.extend(validate::check_document(&document));
                document.positions.release();
                self.documents.push(document);
            }
            Err(diagnostics) => self.diagnostics.extend(diagnostics),
        }
    }
}

/// Document `index`'s typed value straight from the fast reader's events, when it is of a
/// known `apiVersion` and kind and converts without error; `None` sends it through the tree
/// ([`parse_document`]), which gives the same value or says what is wrong, and where.
fn fast_manifest(read: &yaml::block::Read<'_>, index: usize) -> Option<Manifest> {
    if read.root_str(index, "apiVersion")? != v1::API_VERSION {
        return None;
    }
    match read.root_str(index, "kind")? {
        "Balancer" => read.typed(index).map(Manifest::Balancer),
        "NodeConfig" => read.typed(index).map(Manifest::NodeConfig),
        _ => None,
    }
}

fn yaml_message(e: &YamlError) -> String {
    if e.path.is_empty() {
        e.message.clone()
    } else {
        format!("{}: {}", e.path, e.message)
    }
}

/// The structural errors of each service and each backend of a Balancer tree, converted one
/// by one: serde stops at a document's first error, but a file with three broken services
/// should say so once, not in three rounds.
fn service_errors(node: &Node) -> Vec<YamlError> {
    let mut errors = Vec::new();
    let services = node.get("spec").and_then(|spec| spec.get("services"));
    let Some(NodeKind::Seq(services)) = services.map(|s| &s.kind) else {
        return errors;
    };
    for (i, service) in services.iter().enumerate() {
        let prefix = format!("spec.services[{i}]");
        if let Err(e) = yaml::from_node::<v1::VirtualService>(service) {
            errors.push(e.under(&prefix));
            if let Some(NodeKind::Seq(backends)) = service.get("backends").map(|b| &b.kind) {
                for (j, backend) in backends.iter().enumerate() {
                    if let Err(e) = yaml::from_node::<v1::Backend>(backend) {
                        errors.push(e.under(&format!("{prefix}.backends[{j}]")));
                    }
                }
            }
        }
    }
    errors
}

fn parse_document(
    path: &Path,
    tree: Node,
    text: &Arc<str>,
    index: usize,
) -> Result<Document, Vec<Diagnostic>> {
    let node = &tree;
    let error = |position: Position, message: String| Diagnostic::error(path, position, message);
    if !matches!(node.kind, NodeKind::Map(_)) {
        return Err(vec![error(
            node.position,
            format!(
                "a manifest is a mapping with apiVersion, kind, metadata and spec, not {}",
                node.describe()
            ),
        )]);
    }
    let supported = SUPPORTED_API_VERSIONS.join(", ");
    let api_version = match node.get("apiVersion") {
        None => {
            return Err(vec![error(
                node.position,
                format!("missing apiVersion (supported: {supported})"),
            )]);
        }
        Some(value) => match value.as_str() {
            Some(text) => (text, value.position),
            None => {
                return Err(vec![error(
                    value.position,
                    format!(
                        "apiVersion must be a string, not {} (supported: {supported})",
                        value.describe()
                    ),
                )]);
            }
        },
    };
    let kind = match node.get("kind") {
        None => {
            return Err(vec![error(node.position, "missing kind".to_owned())]);
        }
        Some(value) => match value.as_str() {
            Some(text) => (text, value.position),
            None => {
                return Err(vec![error(
                    value.position,
                    format!("kind must be a string, not {}", value.describe()),
                )]);
            }
        },
    };
    let manifest = match api_version.0 {
        v1::API_VERSION => match kind.0 {
            "Balancer" => yaml::from_node(node).map(Manifest::Balancer),
            "NodeConfig" => yaml::from_node(node).map(Manifest::NodeConfig),
            other => {
                return Err(vec![error(
                    kind.1,
                    format!(
                        "unknown kind {other:?} for {}: expected {}",
                        v1::API_VERSION,
                        V1_KINDS.join(" or ")
                    ),
                )]);
            }
        },
        other => {
            return Err(vec![error(
                api_version.1,
                format!("unsupported apiVersion {other:?}: supported: {supported}"),
            )]);
        }
    };
    let manifest = manifest.map_err(|first| {
        let mut errors = vec![first];
        if kind.0 == "Balancer" {
            errors.extend(service_errors(node));
        }
        let mut diagnostics: Vec<Diagnostic> = errors
            .iter()
            .map(|e| error(e.position.unwrap_or(node.position), yaml_message(e)))
            .collect();
        crate::diagnostic::sort_diagnostics(&mut diagnostics);
        diagnostics
    })?;
    let position = node.position;
    Ok(Document {
        path: path.to_owned(),
        position,
        manifest,
        positions: Positions::from_source(tree, text.clone(), index),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(text: &str) -> Vec<String> {
        parse_file(Path::new("d.yaml"), text)
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn positions_index_values_and_keys_and_fall_back_to_parents() {
        let text = "apiVersion: balanced.io/v1\nkind: Balancer\nmetadata: {name: w}\nspec:\n  vip: \
                    198.51.100.1\n  services:\n    - protocol: TCP\n      port: 80\n      \
                    backends:\n        - address: 10.0.0.1\n";
        let file = parse_file(Path::new("d.yaml"), text);
        assert_eq!(file.diagnostics, []);
        let positions = &file.documents[0].positions;
        assert_eq!(positions.get("spec.vip"), Some(Position::new(5, 8)));
        assert_eq!(positions.key("spec.vip"), Position::new(5, 3));
        assert_eq!(positions.get("metadata.name"), Some(Position::new(3, 18)));
        assert_eq!(
            positions.get("spec.services[0].backends[0].address"),
            Some(Position::new(10, 20))
        );
        // Not written: the backend's port defaults, so the backend itself is the place.
        assert_eq!(positions.get("spec.services[0].backends[0].port"), None);
        assert_eq!(
            positions.at("spec.services[0].backends[0].port"),
            Position::new(10, 11)
        );
        assert_eq!(positions.at("nothing.here"), Position::new(1, 1));
    }

    #[test]
    fn positions_let_the_tree_go_and_read_their_own_document_again() {
        let doc = |name: &str, vip: &str| {
            format!(
                "apiVersion: balanced.io/v1\nkind: Balancer\nmetadata:\n  name: {name}\nspec:\n  \
                 vip: {vip}\n  services:\n    - protocol: TCP\n      port: 80\n"
            )
        };
        let text = format!(
            "{}---\n{}",
            doc("a", "198.51.100.1"),
            doc("b", "198.51.100.2")
        );
        let file = parse_file(Path::new("two.yaml"), &text);
        assert_eq!(file.diagnostics, []);
        let [first, second] = file.documents.as_slice() else {
            panic!("two documents: {:?}", file.documents);
        };
        assert!(
            first.positions.tree.get().is_none(),
            "released after the checks"
        );
        // The second document starts after the first's 9 lines and the separator.
        assert_eq!(second.positions.get("spec.vip"), Some(Position::new(16, 8)));
        assert_eq!(first.positions.get("spec.vip"), Some(Position::new(6, 8)));
        assert!(first.positions.tree.get().is_some(), "read again once");
        assert_eq!(first.positions, first.positions.clone());
        assert_ne!(first.positions, second.positions);
    }

    #[test]
    fn positions_find_keys_that_contain_dots() {
        let text = "apiVersion: balanced.io/v1\nkind: NodeConfig\nmetadata:\n  name: n\nspec:\n  \
                    sysctls:\n    net.ipv4.vs: 1\n    net.ipv4.vs.sloppy_tcp: 1\n  vipRanges: [10.0.0.0/8]\n";
        let file = parse_file(Path::new("n.yaml"), text);
        // `net.ipv4.vs` itself is no sysctl: the message points at its key.
        let places: Vec<Position> = file.diagnostics.iter().map(|d| d.position).collect();
        assert_eq!(places, [Position::new(7, 5)]);
        let positions = &file.documents[0].positions;
        // The longest key wins over its prefix `net.ipv4.vs`.
        assert_eq!(
            positions.key("spec.sysctls.net.ipv4.vs.sloppy_tcp"),
            Position::new(8, 5)
        );
        assert_eq!(
            positions.get("spec.sysctls.net.ipv4.vs"),
            Some(Position::new(7, 18))
        );
        assert_eq!(
            positions.get("spec.vipRanges[0]"),
            Some(Position::new(9, 15))
        );
        assert_eq!(positions.at("spec.vipRanges[3]"), Position::new(9, 14));
        assert_eq!(positions.key("spec.vipRanges[0]"), Position::new(9, 15));
    }

    #[test]
    fn dispatch_names_what_is_supported() {
        assert_eq!(
            messages("kind: Balancer\n"),
            ["d.yaml:1:1: missing apiVersion (supported: balanced.io/v1)"]
        );
        assert_eq!(
            messages("apiVersion: balanced.io/v1\n"),
            ["d.yaml:1:1: missing kind"]
        );
        assert_eq!(
            messages("apiVersion: balanced.io/v1\nkind: 3\n"),
            ["d.yaml:2:7: kind must be a string, not an integer"]
        );
        assert_eq!(
            messages("apiVersion: balanced.io/v1\nkind: Balancer\nmetadata: {name: w}\n"),
            ["d.yaml:1:1: missing field `spec`"]
        );
    }

    #[test]
    fn every_document_of_a_file_is_parsed_and_checked() {
        let one = "apiVersion: balanced.io/v1\nkind: Balancer\nmetadata: {name: a}\nspec: {vip: \
                   198.51.100.1, services: [{protocol: TCP, port: 80}]}\n";
        let bad = one
            .replace("name: a", "name: b")
            .replace("port: 80", "port: 0");
        let text = format!("{one}---\n{bad}---\n{}", one.replace("name: a", "name: c"));
        let file = parse_file(Path::new("d.yaml"), &text);
        let names: Vec<&str> = file.documents.iter().map(|d| d.manifest.name()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(file.documents[1].position, Position::new(6, 1));
        assert_eq!(file.diagnostics.len(), 1, "{:?}", file.diagnostics);
        assert_eq!(file.diagnostics[0].position.line, 9);
    }
}
