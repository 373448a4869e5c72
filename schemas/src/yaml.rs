//! YAML in and out: the only module that names serde-saphyr.
//!
//! Parsing takes two steps so that every error keeps the exact position of the offending field
//! or value. [`parse_documents`] turns the text into a tree of [`Node`]s, each carrying its own
//! line:col (serde-saphyr's `Spanned`). [`from_node`] then reads typed values from that tree
//! through a serde `Deserializer` of our own that attaches the position and field path of the
//! node being read to any error raised there: an unknown field points at its key, a bad value
//! at the value, a missing field at the mapping that lacks it. (serde-saphyr's own span
//! tracking does not pass through serde's buffered enums; the tree does not care.)
//!
//! Rule: any input ends in a value or an error, never a panic, a hang or unbounded memory.
//! [`MAX_FILE_BYTES`] caps the text, serde-saphyr's budget caps events, nodes, depth,
//! aliases, anchors and documents, and duplicate keys are errors.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_saphyr::{Budget, DuplicateKeyPolicy, Location, MessageFormatter, Options, Spanned};

use crate::diagnostic::Position;

pub(crate) mod block;

/// The largest manifest file accepted (a Balancer with 4,093 backends is about 300 KiB).
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;
/// The most documents one file may hold.
pub const MAX_DOCUMENTS: usize = 1_000;
/// The deepest nesting of mappings and sequences (manifests need about 6).
pub const MAX_DEPTH: usize = 32;
/// The most nodes (scalars, sequences, mappings) one file may produce, aliases expanded.
pub const MAX_NODES: usize = 200_000;
/// The most aliases (and the most anchors) one file may use.
pub const MAX_ALIASES: usize = 10_000;

/// One YAML value with the position it was written at.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub position: Position,
    pub kind: NodeKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// One `key: value` pair of a mapping, in document order.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Known words are not allocated per occurrence ([`key_text`]).
    pub key: Cow<'static, str>,
    pub key_position: Position,
    pub value: Node,
}

/// A mapping key as the tree holds it: the words of the manifest format are borrowed, not
/// allocated again for each of the quarter of a million keys a 10,000-file node has.
pub fn key_text(key: &str) -> Cow<'static, str> {
    // Most frequent first: a backend's keys come ten times per file.
    const WORDS: &[&str] = &[
        "address",
        "weight",
        "port",
        "protocol",
        "scheduler",
        "forwarding",
        "method",
        "backends",
        "name",
        "apiVersion",
        "kind",
        "metadata",
        "source",
        "spec",
        "vip",
        "services",
        "node",
        "pod",
        "namespace",
        "uid",
        "state",
        "upperThreshold",
        "lowerThreshold",
        "fwmark",
        "schedulerFlags",
        "persistence",
        "timeout",
        "netmask",
        "onePacket",
        "encapsulation",
        "checksum",
        "generation",
        "labels",
        "annotations",
    ];
    match WORDS.iter().find(|word| **word == key) {
        Some(word) => Cow::Borrowed(word),
        None => Cow::Owned(key.to_owned()),
    }
}

impl Node {
    /// The value of `key` when this node is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
            _ => None,
        }
    }

    /// The text of a string scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// What this node is, for messages: "a mapping", "a string", ….
    pub fn describe(&self) -> &'static str {
        match self.kind {
            NodeKind::Null => "null",
            NodeKind::Bool(_) => "a boolean",
            NodeKind::Int(_) => "an integer",
            NodeKind::Float(_) => "a number",
            NodeKind::Str(_) => "a string",
            NodeKind::Seq(_) => "a sequence",
            NodeKind::Map(_) => "a mapping",
        }
    }
}

/// One step of a field path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// Writes a field path the way messages and [`crate::Positions`] spell it:
/// `spec.services[1].backends[0].port`.
pub fn write_path(out: &mut String, segments: impl IntoIterator<Item = Segment>) {
    for segment in segments {
        match segment {
            Segment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&key);
            }
            Segment::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
}

/// A YAML error: syntax, a limit, or a value that does not fit its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// Where the error is; `None` only for errors that have no place (serialization).
    pub position: Option<Position>,
    /// The field path of the value in error (empty: the document itself).
    pub path: String,
    pub message: String,
    /// Path segments gathered innermost first while the error travels up the tree.
    segments: Vec<Segment>,
}

impl YamlError {
    fn new(position: Option<Position>, message: impl Into<String>) -> Self {
        YamlError {
            position,
            path: String::new(),
            message: message.into(),
            segments: Vec::new(),
        }
    }

    /// Sets the position unless a deeper node set it already.
    fn at(mut self, position: Position) -> Self {
        if self.position.is_none() {
            self.position = Some(position);
        }
        self
    }

    /// Records that the error happened inside `segment` of the enclosing node.
    fn within(mut self, segment: Segment) -> Self {
        self.segments.push(segment);
        self
    }

    /// The same error, read from a node found at `prefix` of a larger tree.
    pub fn under(mut self, prefix: &str) -> Self {
        if !prefix.is_empty() {
            self.path = if self.path.is_empty() {
                prefix.to_owned()
            } else if self.path.starts_with('[') {
                format!("{prefix}{}", self.path)
            } else {
                format!("{prefix}.{}", self.path)
            };
        }
        self
    }

    fn finish(mut self) -> Self {
        let segments = std::mem::take(&mut self.segments);
        write_path(&mut self.path, segments.into_iter().rev());
        self
    }
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(position) = self.position {
            write!(f, "{position}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for YamlError {}

impl de::Error for YamlError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        YamlError::new(None, msg.to_string())
    }
}

fn options() -> Options {
    let mut budget = Budget::default();
    budget.max_reader_input_bytes = Some(MAX_FILE_BYTES);
    budget.max_documents = MAX_DOCUMENTS;
    budget.max_depth = MAX_DEPTH;
    budget.max_nodes = MAX_NODES;
    budget.max_events = 2 * MAX_NODES;
    budget.max_aliases = MAX_ALIASES;
    budget.max_anchors = MAX_ALIASES;
    budget.max_total_scalar_bytes = MAX_FILE_BYTES;
    budget.max_recorded_anchor_events = MAX_NODES;
    budget.max_recorded_anchor_bytes = MAX_FILE_BYTES;
    budget.flow_nesting_limit = MAX_DEPTH;
    let mut options = Options::default();
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = MAX_NODES;
    options.alias_limits.max_replay_stack_depth = MAX_DEPTH;
    options.duplicate_keys = DuplicateKeyPolicy::Error;
    options.strict_booleans = true;
    options.reject_unsupported_tags = true;
    options.with_snippet = false;
    options
}

/// Parses every document of `text` into a position-carrying tree. Empty documents are
/// skipped. Syntax errors, duplicate keys and exceeded limits are errors with a position.
///
/// Manifests in the usual block style take a fast path ([`block`]) that gives the same tree;
/// anything else, and every error, goes through the general reader.
pub fn parse_documents(text: &str) -> Result<Vec<Node>, YamlError> {
    if text.len() <= MAX_FILE_BYTES
        && let Some(documents) = block::parse(text)
    {
        return Ok(documents);
    }
    parse_documents_general(text)
}

/// [`parse_documents`] without the fast path: serde-saphyr for everything.
pub fn parse_documents_general(text: &str) -> Result<Vec<Node>, YamlError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(YamlError::new(
            None,
            format!(
                "file is {} bytes, more than the {MAX_FILE_BYTES} bytes a manifest file may have",
                text.len()
            ),
        ));
    }
    serde_saphyr::from_multiple_with_options::<Node>(text, options()).map_err(|e| {
        let e = e.without_snippet();
        let position = e.location().and_then(position_of);
        let message = limit_message(e).unwrap_or_else(|| {
            serde_saphyr::UserMessageFormatter
                .format_message(e)
                .into_owned()
        });
        YamlError::new(position, message)
    })
}

/// Which of our limits a file hit, in our words rather than serde-saphyr's counters.
fn limit_message(mut e: &serde_saphyr::Error) -> Option<String> {
    use serde_saphyr::budget::BudgetBreach as Breach;
    while let serde_saphyr::Error::AliasError { error, .. }
    | serde_saphyr::Error::WithSnippet { error, .. } = e
    {
        e = error;
    }
    let what = match e {
        serde_saphyr::Error::Budget { breach, .. } => match breach {
            Breach::Depth { .. } => format!("nested deeper than {MAX_DEPTH} levels"),
            Breach::Documents { .. } => format!("more than {MAX_DOCUMENTS} documents"),
            Breach::Nodes { .. } | Breach::Events { .. } => {
                format!("more than {MAX_NODES} values")
            }
            Breach::Aliases { .. } | Breach::Anchors { .. } => {
                format!("more than {MAX_ALIASES} aliases or anchors")
            }
            Breach::ScalarBytes { .. } | Breach::InputBytes { .. } => {
                format!("more than {MAX_FILE_BYTES} bytes")
            }
            Breach::RecordedAnchorEvents { .. } | Breach::RecordedAnchorBytes { .. } => {
                format!("aliases expanding to more than {MAX_NODES} values")
            }
            _ => return None,
        },
        serde_saphyr::Error::AliasReplayLimitExceeded { .. }
        | serde_saphyr::Error::AliasExpansionLimitExceeded { .. } => {
            format!("aliases expanding to more than {MAX_NODES} values")
        }
        serde_saphyr::Error::AliasReplayStackDepthExceeded { .. } => {
            format!("aliases nested deeper than {MAX_DEPTH} levels")
        }
        _ => return None,
    };
    Some(format!("too large or too complex for a manifest: {what}"))
}

fn position_of(location: Location) -> Option<Position> {
    (location.line() > 0).then(|| Position {
        line: location.line(),
        column: location.column().max(1),
    })
}

/// Reads a typed value from a node tree. The error names the field path and the position of
/// the offending key or value.
pub fn from_node<T: DeserializeOwned>(node: &Node) -> Result<T, YamlError> {
    T::deserialize(NodeDeserializer { node }).map_err(YamlError::finish)
}

/// Parses a single-document text into `T` (tests and tools; manifests go through
/// [`crate::parse_file`]).
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    let documents = parse_documents(text)?;
    match documents.as_slice() {
        [node] => from_node(node),
        [] => Err(YamlError::new(None, "no YAML document")),
        [_, second, ..] => Err(YamlError::new(
            Some(second.position),
            "expected one YAML document, found several",
        )),
    }
}

/// Serializes a value as YAML (block style, the form manifests are written in).
pub fn to_string<T: Serialize>(value: &T) -> Result<String, YamlError> {
    serde_saphyr::to_string(value).map_err(|e| YamlError::new(None, e.to_string()))
}

// ---- from serde-saphyr into the tree ----

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<NodeKind>::deserialize(d)?;
        let position = position_of(spanned.referenced).unwrap_or_default();
        Ok(Node {
            position,
            kind: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for NodeKind {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeKindVisitor)
    }
}

struct NodeKindVisitor;

impl<'de> Visitor<'de> for NodeKindVisitor {
    type Value = NodeKind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<NodeKind, E> {
        Ok(NodeKind::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<NodeKind, E> {
        Ok(NodeKind::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<NodeKind, E> {
        Ok(NodeKind::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<NodeKind, E> {
        Ok(NodeKind::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<NodeKind, E> {
        i128::try_from(v)
            .map(NodeKind::Int)
            .map_err(|_| E::custom(format!("integer {v} is too large")))
    }
    fn visit_f64<E>(self, v: f64) -> Result<NodeKind, E> {
        Ok(NodeKind::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<NodeKind, E> {
        Ok(NodeKind::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<NodeKind, E> {
        Ok(NodeKind::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<NodeKind, E> {
        String::from_utf8(v.to_vec())
            .map(NodeKind::Str)
            .map_err(|_| E::custom("binary value is not UTF-8 text"))
    }
    fn visit_unit<E>(self) -> Result<NodeKind, E> {
        Ok(NodeKind::Null)
    }
    fn visit_none<E>(self) -> Result<NodeKind, E> {
        Ok(NodeKind::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<NodeKind, D::Error> {
        NodeKind::deserialize(d)
    }
    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<NodeKind, D::Error> {
        NodeKind::deserialize(d)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<NodeKind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(NodeKind::Seq(items))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<NodeKind, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value: Node = map.next_value()?;
            entries.push(Entry {
                key: Cow::Owned(key.value),
                key_position: position_of(key.referenced).unwrap_or(value.position),
                value,
            });
        }
        Ok(NodeKind::Map(entries))
    }
}

// ---- from the tree into typed values ----

struct NodeDeserializer<'a> {
    node: &'a Node,
}

impl NodeDeserializer<'_> {
    /// Gives an error raised at this node its position and, when the message does not quote
    /// the offending string already (`invalid IP address syntax`), the string.
    fn attach(&self, mut e: YamlError) -> YamlError {
        if e.position.is_none() {
            match &self.node.kind {
                NodeKind::Str(text) if !e.message.contains(text.as_str()) => {
                    e.message = format!("{}: {text:?}", e.message);
                }
                NodeKind::Null => e.message = e.message.replace("unit value", "null"),
                _ => {}
            }
        }
        e.at(self.node.position)
    }

    fn unexpected(&self) -> de::Unexpected<'_> {
        match &self.node.kind {
            NodeKind::Null => de::Unexpected::Other("null"),
            NodeKind::Bool(b) => de::Unexpected::Bool(*b),
            NodeKind::Int(i) => match u64::try_from(*i) {
                Ok(u) => de::Unexpected::Unsigned(u),
                Err(_) => match i64::try_from(*i) {
                    Ok(s) => de::Unexpected::Signed(s),
                    Err(_) => de::Unexpected::Other("a large integer"),
                },
            },
            NodeKind::Float(f) => de::Unexpected::Float(*f),
            NodeKind::Str(s) => de::Unexpected::Str(s),
            NodeKind::Seq(_) => de::Unexpected::Seq,
            NodeKind::Map(_) => de::Unexpected::Map,
        }
    }
}

impl<'de> de::Deserializer<'de> for NodeDeserializer<'_> {
    type Error = YamlError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        let result = match &self.node.kind {
            NodeKind::Null => visitor.visit_unit(),
            NodeKind::Bool(b) => visitor.visit_bool(*b),
            NodeKind::Int(i) => match (u64::try_from(*i), i64::try_from(*i)) {
                (Ok(u), _) => visitor.visit_u64(u),
                (_, Ok(s)) => visitor.visit_i64(s),
                _ => visitor.visit_i128(*i),
            },
            NodeKind::Float(f) => visitor.visit_f64(*f),
            NodeKind::Str(s) => visitor.visit_str(s),
            NodeKind::Seq(items) => visitor.visit_seq(SeqDeserializer {
                items: items.iter().enumerate(),
            }),
            NodeKind::Map(entries) => visitor.visit_map(MapDeserializer {
                entries: entries.iter(),
                value: None,
            }),
        };
        result.map_err(|e| self.attach(e))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        match self.node.kind {
            NodeKind::Null => visitor.visit_none().map_err(|e| self.attach(e)),
            _ => visitor.visit_some(self),
        }
    }

    /// Strings accept any scalar by its text (`1` for a sysctl value is the string "1").
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        let result = match &self.node.kind {
            NodeKind::Str(s) => visitor.visit_str(s),
            NodeKind::Int(i) => visitor.visit_string(i.to_string()),
            NodeKind::Float(f) => visitor.visit_string(f.to_string()),
            NodeKind::Bool(b) => visitor.visit_string(b.to_string()),
            _ => return self.deserialize_any(visitor),
        };
        result.map_err(|e| self.attach(e))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, YamlError> {
        let node = NodeDeserializer { node: self.node };
        visitor
            .visit_newtype_struct(self)
            .map_err(|e| node.attach(e))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, YamlError> {
        let result = match &self.node.kind {
            NodeKind::Str(s) => visitor.visit_enum(UnitVariant { name: s }),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        };
        result.map_err(|e| self.attach(e))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct identifier
    }
}

struct SeqDeserializer<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
}

impl<'de> de::SeqAccess<'de> for SeqDeserializer<'_> {
    type Error = YamlError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, YamlError> {
        match self.items.next() {
            Some((i, node)) => seed
                .deserialize(NodeDeserializer { node })
                .map(Some)
                .map_err(|e| e.within(Segment::Index(i))),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDeserializer<'a> {
    entries: std::slice::Iter<'a, Entry>,
    value: Option<&'a Entry>,
}

impl<'de> de::MapAccess<'de> for MapDeserializer<'_> {
    type Error = YamlError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, YamlError> {
        match self.entries.next() {
            Some(entry) => {
                self.value = Some(entry);
                seed.deserialize(entry.key.as_ref().into_deserializer())
                    .map(Some)
                    .map_err(|e: YamlError| e.at(entry.key_position))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, YamlError> {
        let entry = self
            .value
            .take()
            .ok_or_else(|| YamlError::new(None, "a mapping value was read before its key"))?;
        seed.deserialize(NodeDeserializer { node: &entry.value })
            .map_err(|e| e.within(Segment::Key(entry.key.to_string())))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct UnitVariant<'a> {
    name: &'a str,
}

impl<'de> de::EnumAccess<'de> for UnitVariant<'_> {
    type Error = YamlError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), YamlError> {
        let value = seed.deserialize(self.name.into_deserializer())?;
        Ok((value, self))
    }
}

impl<'de> de::VariantAccess<'de> for UnitVariant<'_> {
    type Error = YamlError;

    fn unit_variant(self) -> Result<(), YamlError> {
        Ok(())
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        _seed: T,
    ) -> Result<T::Value, YamlError> {
        Err(de::Error::invalid_type(
            de::Unexpected::UnitVariant,
            &"a variant with a value",
        ))
    }
    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, YamlError> {
        Err(de::Error::invalid_type(
            de::Unexpected::UnitVariant,
            &visitor,
        ))
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, YamlError> {
        Err(de::Error::invalid_type(
            de::Unexpected::UnitVariant,
            &visitor,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Outer {
        name: String,
        #[serde(default)]
        items: Vec<Inner>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        port: u16,
        #[serde(default)]
        note: Option<String>,
    }

    fn err<T: DeserializeOwned + fmt::Debug>(text: &str) -> String {
        from_str::<T>(text).unwrap_err().to_string()
    }

    #[test]
    fn tree_keeps_positions_of_keys_and_values() {
        let docs = parse_documents("a: 1\nb:\n  - x\n  - {c: true}\n").unwrap();
        let root = &docs[0];
        assert_eq!(root.position, Position::new(1, 1));
        let NodeKind::Map(entries) = &root.kind else {
            panic!("{root:?}")
        };
        assert_eq!(entries[0].key_position, Position::new(1, 1));
        assert_eq!(entries[0].value.position, Position::new(1, 4));
        assert_eq!(entries[1].value.position, Position::new(3, 3));
        let b = root.get("b").unwrap();
        let NodeKind::Seq(items) = &b.kind else {
            panic!("{b:?}")
        };
        assert_eq!(items[0].position, Position::new(3, 5));
        assert_eq!(items[1].get("c").unwrap().position, Position::new(4, 9));
        assert_eq!(items[1].get("c").unwrap().kind, NodeKind::Bool(true));
    }

    #[test]
    fn errors_point_at_the_offending_key_value_or_map() {
        let unknown = err::<Outer>("name: x\nitems:\n  - port: 1\n    bogus: 2\n");
        assert!(
            unknown.starts_with("4:5: items[0]: unknown field `bogus`"),
            "{unknown}"
        );
        let range = err::<Outer>("name: x\nitems:\n  - port: 1\n  - port: 70000\n");
        assert!(
            range.starts_with("4:11: items[1].port: invalid value"),
            "{range}"
        );
        let missing = err::<Outer>("name: x\nitems:\n  - note: hi\n");
        assert_eq!(missing, "3:5: items[0]: missing field `port`");
        let null = err::<Outer>("name: x\nitems:\n");
        assert_eq!(null, "2:6: items: invalid type: null, expected a sequence");
        let kind = err::<Outer>("name: x\nitems: 7\n");
        assert!(
            kind.starts_with("2:8: items: invalid type: integer `7`"),
            "{kind}"
        );
    }

    #[test]
    fn strings_accept_scalars_but_numbers_do_not_accept_strings() {
        let outer: Outer = from_str("name: 80\n").unwrap();
        assert_eq!(outer.name, "80");
        let quoted = err::<Outer>("name: x\nitems: [{port: \"80\"}]\n");
        assert!(
            quoted.starts_with("2:16: items[0].port: invalid type: string"),
            "{quoted}"
        );
    }

    #[test]
    fn yaml_1_1_booleans_are_plain_strings() {
        let outer: Outer = from_str("name: no\n").unwrap();
        assert_eq!(outer.name, "no");
    }

    #[test]
    fn syntax_errors_and_duplicate_keys_carry_a_position() {
        let syntax = parse_documents("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(syntax.position.is_some(), "{syntax}");
        let dup = parse_documents("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(dup.position, Some(Position::new(3, 1)), "{dup}");
        assert!(dup.message.contains("duplicate"), "{dup}");
    }

    #[test]
    fn several_documents_are_parsed_and_empty_ones_skipped() {
        let docs = parse_documents("a: 1\n---\n---\nb: 2\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].position, Position::new(4, 1));
    }

    #[test]
    fn crlf_and_a_byte_order_mark_keep_positions_and_tabs_are_refused() {
        let crlf: Outer = from_str("\u{feff}name: x\r\nitems:\r\n  - port: 1\r\n").unwrap();
        assert_eq!(
            crlf.items,
            [Inner {
                port: 1,
                note: None
            }]
        );
        let bad = err::<Outer>("name: x\r\nitems:\r\n  - port: 1\r\n    nope: 2\r\n");
        assert!(
            bad.starts_with("4:5: items[0]: unknown field `nope`"),
            "{bad}"
        );
        let tabs = parse_documents("a:\n\tb: 1\n").unwrap_err();
        assert_eq!(tabs.position.map(|p| p.line), Some(2), "{tabs}");
    }

    #[test]
    fn round_trip_through_to_string() {
        #[derive(Debug, Serialize, Deserialize, PartialEq)]
        struct P {
            port: u16,
            name: String,
        }
        let p = P {
            port: 80,
            name: "no".into(),
        };
        let text = to_string(&p).unwrap();
        assert_eq!(from_str::<P>(&text).unwrap(), p, "{text}");
    }
}
