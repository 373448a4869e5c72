//! The fast path of [`super::parse_documents`] and [`crate::parse_file`]: the block-style
//! subset of YAML that manifests are written in, read line by line into a flat list of
//! [`Event`]s that borrow the text.
//!
//! The general reader (serde-saphyr's event parser, then serde into [`Node`]) costs about
//! 100 µs per manifest; a node reads 10,000 manifests at start-up and on every `plan`, which
//! under a slow machine (a QEMU guest without KVM) is most of a minute. This reader takes what
//! the exporter writes and what people write by hand — block mappings and sequences, plain,
//! quoted and flow-sequence scalars on one line, comments, `---` — and nothing else.
//!
//! Rule: it either reads exactly what the general reader reads (the tree built from the events,
//! [`Read::tree`], is the general reader's tree: same values, same positions) or it declines
//! with `None`, and the caller reads the text again with the general reader. Anything it is
//! not sure of — tags, anchors, aliases, block scalars, multi-line scalars, escapes, flow
//! mappings, duplicate keys, numbers other than plain decimal integers, words a YAML resolver
//! might read as something other than a string, syntax errors — is `None`, so every error
//! message still comes from the general reader. The tests compare both readers on every
//! manifest of the repository and on generated ones.
//!
//! A valid manifest needs no tree at all: [`Read::typed`] deserializes its typed value straight
//! from the events, as [`super::from_node`] would from the tree, and declines on any error so
//! that the tree, with its positions, says what is wrong.

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

use crate::diagnostic::Position;

use super::{
    Entry, MAX_DEPTH, MAX_DOCUMENTS, MAX_NODES, Node, NodeKind, UnitVariant, YamlError, key_text,
};

/// One step through a document, in text order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Event<'a> {
    /// A mapping of `len` entries starts: `len` times a `Key` and its value follow, then `End`.
    Map {
        position: Position,
        len: u32,
    },
    /// A sequence of `len` items starts: the items follow, then `End`.
    Seq {
        position: Position,
        len: u32,
    },
    End,
    Key(&'a str, Position),
    Scalar(Scalar<'a>, Position),
}

/// A scalar as the general reader resolves it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i128),
    Str(&'a str),
}

impl Scalar<'_> {
    fn kind(self) -> NodeKind {
        match self {
            Scalar::Null => NodeKind::Null,
            Scalar::Bool(b) => NodeKind::Bool(b),
            Scalar::Int(i) => NodeKind::Int(i),
            Scalar::Str(s) => NodeKind::Str(s.to_owned()),
        }
    }
}

/// The documents of a text the fast path took.
#[derive(Debug)]
pub(crate) struct Read<'a> {
    events: Vec<Event<'a>>,
    /// Each document's events: `events[start..end]`, the root mapping's.
    documents: Vec<(usize, usize)>,
}

impl<'a> Read<'a> {
    pub(crate) fn len(&self) -> usize {
        self.documents.len()
    }

    fn events(&self, index: usize) -> &[Event<'a>] {
        let (start, end) = self.documents[index];
        &self.events[start..end]
    }

    /// The document's tree, as the general reader builds it.
    pub(crate) fn tree(&self, index: usize) -> Node {
        let mut events = self.events(index).iter();
        // A document is one mapping, closed: the reader made sure.
        build(&mut events).unwrap_or(Node {
            position: Position::new(1, 1),
            kind: NodeKind::Null,
        })
    }

    /// Where the document's root mapping starts.
    pub(crate) fn position(&self, index: usize) -> Position {
        match self.events(index).first() {
            Some(Event::Map { position, .. }) => *position,
            _ => Position::new(1, 1),
        }
    }

    /// The text of the root mapping's `key`, when it is a string.
    pub(crate) fn root_str(&self, index: usize, key: &str) -> Option<&'a str> {
        let events = self.events(index);
        let mut depth = 0usize;
        for (i, event) in events.iter().enumerate() {
            match event {
                Event::Map { .. } | Event::Seq { .. } => depth += 1,
                Event::End => depth = depth.saturating_sub(1),
                Event::Key(k, _) if depth == 1 && *k == key => {
                    return match events.get(i + 1) {
                        Some(Event::Scalar(Scalar::Str(s), _)) => Some(s),
                        _ => None,
                    };
                }
                _ => {}
            }
        }
        None
    }

    /// The document's typed value, read from its events as [`super::from_node`] reads it
    /// from the tree; `None` on any error (the tree's conversion then says where and why).
    pub(crate) fn typed<T: DeserializeOwned>(&self, index: usize) -> Option<T> {
        let mut cursor = Cursor {
            events: self.events(index),
            next: 0,
            depth: 0,
        };
        let value = T::deserialize(&mut cursor).ok()?;
        (cursor.next == cursor.events.len()).then_some(value)
    }
}

/// The node that starts at the next event; `None` at an `End`.
fn build(events: &mut std::slice::Iter<'_, Event<'_>>) -> Option<Node> {
    match *events.next()? {
        Event::Map { position, len } => {
            let mut entries = Vec::with_capacity(len as usize);
            while let Some(Event::Key(key, key_position)) = events.next() {
                let value = build(events)?;
                entries.push(Entry {
                    key: key_text(key),
                    key_position: *key_position,
                    value,
                });
            }
            Some(Node {
                position,
                kind: NodeKind::Map(entries),
            })
        }
        Event::Seq { position, len } => {
            let mut items = Vec::with_capacity(len as usize);
            while let Some(item) = build(events) {
                items.push(item);
            }
            Some(Node {
                position,
                kind: NodeKind::Seq(items),
            })
        }
        Event::Scalar(scalar, position) => Some(Node {
            position,
            kind: scalar.kind(),
        }),
        Event::End | Event::Key(..) => None,
    }
}

/// Reads `text` into its documents' trees when it stays inside the subset; `None` otherwise.
pub(super) fn parse(text: &str) -> Option<Vec<Node>> {
    let read = read(text)?;
    Some((0..read.len()).map(|index| read.tree(index)).collect())
}

/// Reads `text` into events when it stays inside the subset; `None` otherwise.
pub(crate) fn read(text: &str) -> Option<Read<'_>> {
    if has_any(text, b"\t\r") {
        return None;
    }
    let mut reader = Reader {
        // About one event per ten bytes of a manifest; the stacks stay shallow.
        events: Vec::with_capacity(text.len() / 8),
        stack: Vec::with_capacity(8),
        keys: Vec::with_capacity(16),
        ascii: text.is_ascii(),
        ..Reader::default()
    };
    for (index, line) in text.split('\n').enumerate() {
        reader.line(index as u64 + 1, line)?;
    }
    reader.end_document()?;
    Some(Read {
        events: reader.events,
        documents: reader.documents,
    })
}

#[derive(Default)]
struct Reader<'a> {
    events: Vec<Event<'a>>,
    documents: Vec<(usize, usize)>,
    /// Where the current document's events start.
    document_start: usize,
    /// The open collections of the current document, outermost first.
    stack: Vec<Frame>,
    /// The keys of the open mappings, outermost first (each frame knows where its own start).
    keys: Vec<&'a str>,
    /// The current document's root closed.
    root_done: bool,
    /// The whole text is ASCII: a column is a byte offset.
    ascii: bool,
    nodes: usize,
    separators: usize,
}

enum Frame {
    Map {
        indent: usize,
        /// Its `Map` event's index.
        event: usize,
        /// Where its keys start in [`Reader::keys`].
        keys_from: usize,
        /// A key whose value is on the lines below.
        pending: bool,
    },
    Seq {
        indent: usize,
        event: usize,
        items: u32,
    },
}

impl Frame {
    fn indent(&self) -> usize {
        match self {
            Frame::Map { indent, .. } | Frame::Seq { indent, .. } => *indent,
        }
    }

    fn awaits_value(&self) -> bool {
        matches!(self, Frame::Map { pending: true, .. })
    }
}

/// One line's columns: 1-based, in characters as the general reader counts them.
struct Line<'a> {
    number: u64,
    text: &'a str,
    ascii: bool,
}

impl Line<'_> {
    fn at(&self, byte: usize) -> Position {
        let column = if self.ascii {
            byte
        } else {
            self.text[..byte].chars().count()
        };
        Position::new(self.number, column as u64 + 1)
    }
}

impl<'a> Reader<'a> {
    fn line(&mut self, number: u64, text: &'a str) -> Option<()> {
        // Tabs and carriage returns were refused for the whole text.
        if text.starts_with('\u{feff}') {
            return None;
        }
        let indent = text.len() - text.trim_start_matches(' ').len();
        let rest = &text[indent..];
        if rest.is_empty() || rest.starts_with('#') {
            return Some(());
        }
        if indent == 0 && (rest.starts_with("---") || rest.starts_with("...")) {
            return match rest[3..].trim_start() {
                "" if rest.starts_with("---") => {
                    // Empty documents count too, as the general reader counts them.
                    self.separators += 1;
                    if self.separators >= MAX_DOCUMENTS {
                        return None;
                    }
                    self.end_document()
                }
                _ => None,
            };
        }
        let line = Line {
            number,
            text,
            ascii: self.ascii,
        };
        if rest == "-" {
            return None;
        }
        match rest.strip_prefix("- ") {
            Some(item) => self.item(&line, indent, indent + 2 + spaces(item)),
            None => self.key_line(&line, indent),
        }
    }

    /// `- value` or `- key: value` at `indent`; the value starts at byte `start`.
    fn item(&mut self, line: &Line<'a>, indent: usize, start: usize) -> Option<()> {
        self.close_while(|top| top.indent() > indent)?;
        match self.stack.last() {
            Some(Frame::Seq { indent: i, .. }) if *i == indent => {}
            Some(top) if top.awaits_value() && top.indent() <= indent => {
                // The general reader places a sequence at its first dash, or at the first
                // item's content when the dashes are not indented below the key.
                let at = if top.indent() == indent {
                    start
                } else {
                    indent
                };
                let event = self.events.len();
                self.open(
                    Frame::Seq {
                        indent,
                        event,
                        items: 0,
                    },
                    Event::Seq {
                        position: line.at(at),
                        len: 0,
                    },
                )?;
            }
            _ => return None,
        }
        let content = &line.text[start..];
        if content == "-" || content.starts_with("- ") {
            return None;
        }
        if let Some(Frame::Seq { items, .. }) = self.stack.last_mut() {
            *items += 1;
        }
        match split_key(content) {
            Some(_) => {
                self.open_map(start, line.at(start))?;
                self.key_value(line, start)
            }
            None => self.inline(line, start),
        }
    }

    /// `key: value` or `key:` at `indent`.
    fn key_line(&mut self, line: &Line<'a>, indent: usize) -> Option<()> {
        self.close_while(|top| {
            top.indent() > indent || matches!(top, Frame::Seq { indent: i, .. } if *i == indent)
        })?;
        let continues = matches!(
            self.stack.last(),
            Some(Frame::Map { indent: i, pending: false, .. }) if *i == indent
        );
        if !continues {
            // A new mapping: a pending key's value, or the document's root.
            let opens = match self.stack.last() {
                Some(top) => top.awaits_value() && top.indent() < indent,
                None => !self.root_done,
            };
            if !opens {
                return None;
            }
            self.open_map(indent, line.at(indent))?;
        }
        self.key_value(line, indent)
    }

    /// Adds `key: value` (or a pending `key:`) at byte `start` to the innermost mapping.
    fn key_value(&mut self, line: &Line<'a>, start: usize) -> Option<()> {
        let (key, value_start) = split_key(&line.text[start..])?;
        let key_position = line.at(start);
        let value_start = start + value_start;
        let value = line.text[value_start..].trim_end_matches(' ');
        let Some(Frame::Map {
            keys_from, pending, ..
        }) = self.stack.last_mut()
        else {
            return None;
        };
        if self.keys[*keys_from..].contains(&key) {
            return None;
        }
        self.keys.push(key);
        self.events.push(Event::Key(key, key_position));
        if value.is_empty() || value.starts_with('#') {
            *pending = true;
            Some(())
        } else {
            self.inline(line, value_start)
        }
    }

    /// The value written on the line from byte `start`: a scalar or a flow sequence.
    fn inline(&mut self, line: &Line<'a>, start: usize) -> Option<()> {
        let text = &line.text[start..];
        let position = line.at(start);
        match *text.as_bytes().first()? {
            b'"' | b'\'' => {
                let scalar = Scalar::Str(quoted(text)?);
                self.events.push(Event::Scalar(scalar, position));
            }
            b'[' => self.flow_sequence(line, start, position)?,
            b'{' => match strip_comment(text) {
                "{}" => {
                    let map = Event::Map { position, len: 0 };
                    self.events.extend([map, Event::End]);
                }
                _ => return None,
            },
            _ => {
                let scalar = plain(strip_comment(text))?;
                self.events.push(Event::Scalar(scalar, position));
            }
        }
        self.count()
    }

    /// `[a, "b", c]` on one line, of scalars only.
    fn flow_sequence(&mut self, line: &Line<'a>, start: usize, position: Position) -> Option<()> {
        let text = strip_comment(&line.text[start..]);
        let inner = text.strip_prefix('[')?.strip_suffix(']')?;
        if has_any(inner, b"[]{}#") {
            return None;
        }
        let open = self.events.len();
        self.events.push(Event::Seq { position, len: 0 });
        let mut len = 0;
        if !inner.trim_matches(' ').is_empty() {
            let mut offset = start + 1;
            for item in inner.split(',') {
                let lead = spaces(item);
                let value = item.trim_matches(' ');
                let begin = offset + lead;
                offset += item.len() + 1;
                if value.is_empty() || value.ends_with(':') || pair(value, b':', b' ').is_some() {
                    return None;
                }
                let scalar = match value.as_bytes()[0] {
                    b'"' | b'\'' => Scalar::Str(quoted(value)?),
                    _ => plain(value)?,
                };
                self.count()?;
                self.events.push(Event::Scalar(scalar, line.at(begin)));
                len += 1;
            }
        }
        self.events[open] = Event::Seq { position, len };
        self.events.push(Event::End);
        Some(())
    }

    fn open_map(&mut self, indent: usize, position: Position) -> Option<()> {
        let frame = Frame::Map {
            indent,
            event: self.events.len(),
            keys_from: self.keys.len(),
            pending: false,
        };
        self.open(frame, Event::Map { position, len: 0 })
    }

    /// Opens a collection: the value of the pending key above it, if any.
    fn open(&mut self, frame: Frame, event: Event<'a>) -> Option<()> {
        if self.stack.len() >= MAX_DEPTH {
            return None;
        }
        self.count()?;
        if let Some(Frame::Map { pending, .. }) = self.stack.last_mut() {
            *pending = false;
        }
        self.stack.push(frame);
        self.events.push(event);
        Some(())
    }

    fn count(&mut self) -> Option<()> {
        self.nodes += 1;
        (self.nodes <= MAX_NODES).then_some(())
    }

    /// Closes the innermost collections while `done` says so.
    fn close_while(&mut self, done: impl Fn(&Frame) -> bool) -> Option<()> {
        while self.stack.last().is_some_and(&done) {
            self.close()?;
        }
        Some(())
    }

    fn close(&mut self) -> Option<()> {
        match self.stack.pop()? {
            Frame::Map { pending: true, .. } => return None,
            Frame::Map {
                event, keys_from, ..
            } => {
                let len = (self.keys.len() - keys_from) as u32;
                self.keys.truncate(keys_from);
                if let Event::Map { len: l, .. } = &mut self.events[event] {
                    *l = len;
                }
            }
            Frame::Seq { event, items, .. } => {
                if let Event::Seq { len, .. } = &mut self.events[event] {
                    *len = items;
                }
            }
        }
        self.events.push(Event::End);
        if self.stack.is_empty() {
            self.root_done = true;
        }
        Some(())
    }

    fn end_document(&mut self) -> Option<()> {
        while !self.stack.is_empty() {
            self.close()?;
        }
        if self.root_done {
            if self.documents.len() == MAX_DOCUMENTS {
                return None;
            }
            self.documents
                .push((self.document_start, self.events.len()));
        }
        self.root_done = false;
        self.document_start = self.events.len();
        Some(())
    }
}

/// Typed values straight from a document's events, as [`super::NodeDeserializer`] reads them
/// from the tree: the same visitor calls for the same values. Errors carry no position —
/// [`Read::typed`] drops them, and the tree's conversion reports them.
struct Cursor<'a, 'e> {
    events: &'e [Event<'a>],
    next: usize,
    /// Collections opened and not yet closed.
    depth: usize,
}

impl<'a> Cursor<'a, '_> {
    fn peek(&self) -> Option<Event<'a>> {
        self.events.get(self.next).copied()
    }

    fn take(&mut self) -> Result<Event<'a>, YamlError> {
        let event = self.peek().ok_or_else(|| fault("past the end"))?;
        self.next += 1;
        match event {
            Event::Map { .. } | Event::Seq { .. } => self.depth += 1,
            Event::End => self.depth = self.depth.checked_sub(1).ok_or_else(|| fault("end"))?,
            _ => {}
        }
        Ok(event)
    }

    /// Steps over one value.
    fn skip(&mut self) -> Result<(), YamlError> {
        let depth = self.depth;
        match self.take()? {
            Event::Scalar(..) => return Ok(()),
            Event::Map { .. } | Event::Seq { .. } => {}
            Event::End | Event::Key(..) => return Err(fault("not a value")),
        }
        while self.depth > depth {
            self.take()?;
        }
        Ok(())
    }

    /// Runs `visit` over the collection just opened, which must read it to its `End`.
    fn whole<T>(
        &mut self,
        visit: impl FnOnce(&mut Self) -> Result<T, YamlError>,
    ) -> Result<T, YamlError> {
        let depth = self.depth - 1;
        let value = visit(self)?;
        if self.depth != depth {
            return Err(fault("a collection was not read to its end"));
        }
        Ok(value)
    }
}

fn fault(what: &str) -> YamlError {
    YamlError::new(None, what)
}

impl<'de> de::Deserializer<'de> for &mut Cursor<'_, '_> {
    type Error = YamlError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        match self.take()? {
            Event::Scalar(scalar, _) => match scalar {
                Scalar::Null => visitor.visit_unit(),
                Scalar::Bool(b) => visitor.visit_bool(b),
                Scalar::Int(i) => match (u64::try_from(i), i64::try_from(i)) {
                    (Ok(u), _) => visitor.visit_u64(u),
                    (_, Ok(s)) => visitor.visit_i64(s),
                    _ => visitor.visit_i128(i),
                },
                Scalar::Str(s) => visitor.visit_str(s),
            },
            Event::Map { len, .. } => {
                self.whole(|cursor| visitor.visit_map(Entries { cursor, len }))
            }
            Event::Seq { len, .. } => self.whole(|cursor| visitor.visit_seq(Items { cursor, len })),
            Event::End | Event::Key(..) => Err(fault("not a value")),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        match self.peek() {
            Some(Event::Scalar(Scalar::Null, _)) => {
                self.take()?;
                visitor.visit_none()
            }
            _ => visitor.visit_some(self),
        }
    }

    /// Strings accept any scalar by its text, as the tree's conversion does.
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        match self.peek() {
            Some(Event::Scalar(Scalar::Str(s), _)) => {
                self.take()?;
                visitor.visit_str(s)
            }
            Some(Event::Scalar(Scalar::Int(i), _)) => {
                self.take()?;
                visitor.visit_string(i.to_string())
            }
            Some(Event::Scalar(Scalar::Bool(b), _)) => {
                self.take()?;
                visitor.visit_string(b.to_string())
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, YamlError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, YamlError> {
        match self.take()? {
            Event::Scalar(Scalar::Str(name), _) => visitor.visit_enum(UnitVariant { name }),
            _ => Err(fault("not a variant name")),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        self.skip()?;
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct identifier
    }
}

struct Items<'c, 'a, 'e> {
    cursor: &'c mut Cursor<'a, 'e>,
    /// Items not read yet.
    len: u32,
}

impl<'de> de::SeqAccess<'de> for Items<'_, '_, '_> {
    type Error = YamlError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, YamlError> {
        if let Some(Event::End) = self.cursor.peek() {
            self.cursor.take()?;
            return Ok(None);
        }
        self.len = self.len.saturating_sub(1);
        seed.deserialize(&mut *self.cursor).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.len as usize)
    }
}

struct Entries<'c, 'a, 'e> {
    cursor: &'c mut Cursor<'a, 'e>,
    /// Entries not read yet.
    len: u32,
}

impl<'de> de::MapAccess<'de> for Entries<'_, '_, '_> {
    type Error = YamlError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, YamlError> {
        match self.cursor.take()? {
            Event::End => Ok(None),
            Event::Key(key, _) => {
                self.len = self.len.saturating_sub(1);
                seed.deserialize(key.into_deserializer()).map(Some)
            }
            _ => Err(fault("not a key")),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, YamlError> {
        seed.deserialize(&mut *self.cursor)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.len as usize)
    }
}

/// Whether `text` holds any of the ASCII bytes `set`: a byte loop, where `str::contains` with
/// a set of chars decodes every character (a tenth of this reader's time).
fn has_any(text: &str, set: &[u8]) -> bool {
    text.bytes().any(|b| set.contains(&b))
}

fn spaces(text: &str) -> usize {
    text.len() - text.trim_start_matches(' ').len()
}

/// `key:` or `key: rest` → the key and where the rest starts. Keys are plain words that no
/// resolver reads as anything but a string.
fn split_key(text: &str) -> Option<(&str, usize)> {
    let colon = text.bytes().position(|b| b == b':')?;
    let after = &text[colon + 1..];
    if !(after.is_empty() || after.starts_with(' ')) {
        return None;
    }
    let key = &text[..colon];
    let word = key.starts_with(|c: char| c.is_ascii_alphabetic())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'))
        && !special_word(key);
    word.then_some((key, colon + 1 + spaces(after)))
}

/// A quoted scalar without escapes, alone on the rest of the line (a comment may follow).
fn quoted(text: &str) -> Option<&str> {
    let quote = text.chars().next()?;
    let body = &text[1..];
    let end = body.find(quote)?;
    let content = &body[..end];
    let tail = body[end + 1..].trim_start_matches(' ');
    let clean = !has_any(content, b"\\\"'");
    (clean && (tail.is_empty() || tail.starts_with('#') && body[end + 1..].starts_with(' ')))
        .then_some(content)
}

/// Where the two bytes `first` and `second` first stand side by side in `text`. Lines are
/// short, and a `str::find` with a string pattern sets up a searcher per call: it was a tenth
/// of this reader's time.
fn pair(text: &str, first: u8, second: u8) -> Option<usize> {
    text.as_bytes()
        .windows(2)
        .position(|w| w[0] == first && w[1] == second)
}

/// The text before a ` #` comment, trailing spaces removed.
fn strip_comment(text: &str) -> &str {
    let text = match pair(text, b' ', b'#') {
        Some(cut) => &text[..cut],
        None => text,
    };
    text.trim_end_matches(' ')
}

/// Words a YAML 1.1 or 1.2 resolver may read as null, a boolean or a special float.
fn special_word(text: &str) -> bool {
    const WORDS: &[&str] = &[
        "null", "true", "false", "yes", "no", "on", "off", "y", "n", "inf", "infinity", "nan",
    ];
    WORDS.iter().any(|w| text.eq_ignore_ascii_case(w))
}

/// A plain scalar as the general reader resolves it, for the forms that are certain:
/// null, the YAML 1.2 booleans, decimal integers without a leading zero, and text that cannot
/// be a number (addresses, CIDRs, durations, percentages, names).
fn plain(text: &str) -> Option<Scalar<'_>> {
    let bytes = text.as_bytes();
    let first = *bytes.first()?;
    if pair(text, b':', b' ').is_some() || text.ends_with(':') || pair(text, b' ', b'#').is_some() {
        return None;
    }
    match text {
        "~" | "null" | "Null" | "NULL" => return Some(Scalar::Null),
        "true" | "True" | "TRUE" => return Some(Scalar::Bool(true)),
        "false" | "False" | "FALSE" => return Some(Scalar::Bool(false)),
        _ => {}
    }
    if first.is_ascii_alphabetic() {
        return (!special_word(text) && !has_any(text, b"\"'`[]{}")).then_some(Scalar::Str(text));
    }
    if !first.is_ascii_digit() {
        return None;
    }
    if bytes.iter().all(u8::is_ascii_digit) {
        let canonical = (bytes.len() == 1 || first != b'0') && bytes.len() <= 18;
        return canonical
            .then(|| text.parse().ok().map(Scalar::Int))
            .flatten();
    }
    if !bytes.iter().all(|b| b.is_ascii_graphic()) || has_any(text, b"\"'`#") {
        return None;
    }
    // Starting with a digit: a string when no number can be spelled with these characters.
    let numeric = |b: &u8| b.is_ascii_hexdigit() || b"+-._xXoO".contains(b);
    let dotted = bytes.iter().filter(|b| **b == b'.').count() >= 2
        && bytes.iter().all(|b| b.is_ascii_digit() || *b == b'.');
    let range = text
        .split_once('-')
        .is_some_and(|(a, b)| digits(a) && digits(b));
    let radix = matches!(bytes, [b'0', b'x' | b'X' | b'o' | b'O' | b'b' | b'B', ..]);
    let hex_word = !radix
        && bytes
            .iter()
            .any(|b| b.is_ascii_hexdigit() && !b.is_ascii_digit() && !matches!(b, b'e' | b'E'));
    let text_only = !bytes.iter().all(numeric) || dotted || range || hex_word;
    text_only.then_some(Scalar::Str(text))
}

fn digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::v1;
    use crate::yaml::{from_node, parse_documents_general};

    fn repository() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                yaml_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }

    /// The fast path either declines or agrees with the general reader, which must then
    /// accept the text too; and a typed value read from its events is the one the tree gives,
    /// or none when the tree's conversion fails.
    fn agrees(text: &str) -> bool {
        let Some(fast) = parse(text) else {
            return false;
        };
        let read = read(text).expect("parse took it");
        for (index, tree) in fast.iter().enumerate() {
            typed_agrees::<v1::Balancer>(&read, index, tree, text);
            typed_agrees::<v1::NodeConfig>(&read, index, tree, text);
        }
        match parse_documents_general(text) {
            Ok(general) => assert_eq!(fast, general, "the readers differ on:\n{text}"),
            Err(e) => {
                panic!("the fast path accepted what the general reader refuses ({e}):\n{text}")
            }
        }
        true
    }

    fn typed_agrees<T>(read: &Read<'_>, index: usize, tree: &Node, text: &str)
    where
        T: DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        match (read.typed::<T>(index), from_node::<T>(tree)) {
            (Some(fast), Ok(slow)) => assert_eq!(fast, slow, "typed values differ on:\n{text}"),
            (Some(fast), Err(e)) => {
                panic!("the events gave {fast:?} where the tree says {e}:\n{text}")
            }
            (None, Ok(_)) => panic!("the events declined what the tree converts:\n{text}"),
            (None, Err(_)) => {}
        }
    }

    /// A manifest as the exporter and the benchmark write them (strings quoted or not).
    fn generated(backends: usize, quote: bool) -> String {
        let q = |s: &str| {
            if quote {
                format!("\"{s}\"")
            } else {
                s.to_owned()
            }
        };
        let mut text = format!(
            "# generated\napiVersion: balanced.io/v1\nkind: Balancer\nmetadata:\n  name: svc-00001\n  \
             generation: 3\n  source: kubernetes/shop/web\nspec:\n  vip: {}\n  services:\n  - protocol: TCP\n    \
             port: 80\n    scheduler: mh\n    schedulerFlags: [mh-fallback, mh-port]\n    forwarding:\n      \
             method: tunnel\n      tunnel: {{}}\n    backends:\n",
            q("198.18.0.2")
        );
        for i in 0..backends {
            text.push_str(&format!(
                "    - address: {}\n      weight: {i}\n      node: node-a\n      pod:\n        \
                 namespace: shop\n        name: web-{i}\n        uid: 342d1caa-f83e-7aa3-6816-9e74d309378{i}\n",
                q(&format!("10.244.1.{i}"))
            ));
        }
        text
    }

    #[test]
    fn takes_every_manifest_of_the_repository_the_same_way_or_declines() {
        let root = repository();
        let mut files = Vec::new();
        for dir in [
            "examples",
            "exporters/kubernetes/tests/fixtures",
            "schemas",
            "tests",
        ] {
            yaml_files(&root.join(dir), &mut files);
        }
        assert!(files.len() > 50, "found only {} YAML files", files.len());
        let mut taken = Vec::new();
        for file in &files {
            if agrees(&std::fs::read_to_string(file).unwrap()) {
                taken.push(file.strip_prefix(&root).unwrap().to_path_buf());
            }
        }
        // The point of the fast path: the manifests people and the exporter write take it.
        for must in [
            "examples/node.yaml",
            "examples/manifests/web.yaml",
            "examples/manifests/api-v6.yaml",
            "examples/manifests/games-fwmark.yaml",
            "exporters/kubernetes/tests/fixtures/render/cluster/expected/shop/web.yaml",
        ] {
            assert!(
                taken.contains(&PathBuf::from(must)),
                "{must} took the slow path"
            );
        }
        for quote in [false, true] {
            assert!(agrees(&generated(10, quote)));
        }
    }

    #[test]
    fn scalars_resolve_as_the_general_reader_resolves_them() {
        let scalars = [
            "~",
            "null",
            "Null",
            "NULL",
            "true",
            "True",
            "TRUE",
            "false",
            "FALSE",
            "yes",
            "No",
            "on",
            "OFF",
            "y",
            "n",
            "inf",
            "Infinity",
            "nan",
            ".nan",
            ".inf",
            "-.inf",
            "+.inf",
            "0",
            "00",
            "012",
            "7",
            "65535",
            "123456789012345678",
            "1234567890123456789",
            "99999999999999999999999",
            "-1",
            "+1",
            "1.",
            "1.0",
            ".5",
            "1e5",
            "1E5",
            "1e",
            "1d5",
            "0e1",
            "0x1F",
            "0X1f",
            "0o17",
            "0b101",
            "0B1",
            "1_000",
            "1:30",
            "10.0.0.1",
            "198.51.100.0/24",
            "2001:db8::1",
            "2001:db8:100::/48",
            "fd00::1",
            "100-199",
            "1-2-3",
            "1e5-3",
            "30s",
            "15m",
            "2h",
            "10ms",
            "3d",
            "25%",
            "deadbeef",
            "9e74d3093780",
            "342d1caa-f83e-7aa3-6816-9e74d3093780",
            "1f",
            "abc",
            "a b",
            "a#b",
            "a #b",
            "web-1",
            "kubernetes/shop/web",
            "mh-fallback",
            "x:y",
            "\"quoted\"",
            "'single'",
            "\"a\\tb\"",
            "'it''s'",
            "\"\"",
            "''",
            "[]",
            "{}",
            "[a, b]",
            "[ 1 , two ]",
            "[a,b]",
            "[\"x\", 'y']",
            "{a: 1}",
            "&a x",
            "*a",
            "!!str 1",
            "|",
            ">",
            "@x",
            "`x`",
            "%x",
            "? x",
            "-",
            "- x",
            "[a, [b]]",
            "[a:, b]",
            "é",
            "naïve",
        ];
        let mut taken = 0;
        for scalar in scalars {
            for text in [
                format!("key: {scalar}\n"),
                format!("key: {scalar} # comment\n"),
                format!("list:\n- {scalar}\n"),
                format!("list:\n  - {scalar}\n  - other\n"),
            ] {
                taken += usize::from(agrees(&text));
            }
        }
        assert!(taken >= 180, "only {taken} texts took the fast path");
    }

    #[test]
    fn structure_and_positions_match_or_decline_under_mutation() {
        let bases = [
            generated(3, false),
            generated(2, true),
            std::fs::read_to_string(repository().join("examples/node.yaml")).unwrap(),
            std::fs::read_to_string(repository().join("examples/manifests/web.yaml")).unwrap(),
        ];
        let edits: &[&dyn Fn(&str) -> String] = &[
            &|l| format!(" {l}"),
            &|l| format!("  {l}"),
            &|l| l.strip_prefix(' ').unwrap_or(l).to_owned(),
            &|l| l.strip_prefix("  ").unwrap_or(l).to_owned(),
            &|l| format!("{l}\n{l}"),
            &|_| String::new(),
            &|l| format!("{l} # note"),
            &|l| format!("{l}:"),
            &|l| l.replacen(": ", ":", 1),
            &|l| l.replacen(": ", ":   ", 1),
            &|l| l.replacen("- ", "-   ", 1),
            &|l| l.replacen("- ", "", 1),
            &|l| format!("- {l}"),
            &|l| format!("{l}\n---"),
            &|l| format!("---\n{l}"),
            &|l| format!("{l}\n  extra"),
            &|l| format!("{l}\n      deeper: 1"),
            &|l| l.replace(' ', "\t"),
        ];
        let mut checked = 0;
        let mut taken = 0;
        for base in &bases {
            let lines: Vec<&str> = base.lines().collect();
            for at in 0..lines.len() {
                for edit in edits {
                    let mut mutated = lines.clone();
                    let replaced = edit(lines[at]);
                    mutated[at] = &replaced;
                    let text = mutated.join("\n") + "\n";
                    checked += 1;
                    taken += usize::from(agrees(&text));
                }
            }
        }
        assert!(
            taken * 4 > checked,
            "only {taken} of {checked} mutants took the fast path"
        );
    }
}
