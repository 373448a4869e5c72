//! The fast path of [`super::parse_documents`]: the block-style subset of YAML that manifests
//! are written in, read line by line straight into the position-carrying tree.
//!
//! The general reader (serde-saphyr's event parser, then serde into [`Node`]) costs about
//! 100 µs per manifest; a node reads 10,000 manifests at start-up and on every `plan`, which
//! under a slow machine (a QEMU guest without KVM) is most of a minute. This reader takes what
//! the exporter writes and what people write by hand — block mappings and sequences, plain,
//! quoted and flow-sequence scalars on one line, comments, `---` — and nothing else.
//!
//! Rule: it either returns exactly the tree the general reader returns (same values, same
//! positions) or `None`, and the caller reads the text again with the general reader. Anything
//! it is not sure of — tags, anchors, aliases, block scalars, multi-line scalars, escapes,
//! flow mappings, duplicate keys, numbers other than plain decimal integers, words a YAML
//! resolver might read as something other than a string, syntax errors — is `None`, so every
//! error message still comes from the general reader. The tests compare both readers on every
//! manifest of the repository and on generated ones.

use std::borrow::Cow;

use crate::diagnostic::Position;

use super::{Entry, MAX_DEPTH, MAX_DOCUMENTS, MAX_NODES, Node, NodeKind, key_text};

/// Reads `text` when it stays inside the subset; `None` otherwise.
pub(super) fn parse(text: &str) -> Option<Vec<Node>> {
    let mut reader = Reader::default();
    for (index, line) in text.split('\n').enumerate() {
        reader.line(index as u64 + 1, line)?;
    }
    reader.end_document()?;
    Some(reader.documents)
}

#[derive(Default)]
struct Reader {
    documents: Vec<Node>,
    /// The open collections of the current document, outermost first.
    stack: Vec<Frame>,
    /// The current document's root, once its outermost collection closed.
    root: Option<Node>,
    nodes: usize,
    separators: usize,
}

enum Frame {
    Map {
        indent: usize,
        position: Position,
        entries: Vec<Entry>,
        /// A key whose value is on the lines below.
        pending: Option<(Cow<'static, str>, Position)>,
    },
    Seq {
        indent: usize,
        position: Position,
        items: Vec<Node>,
    },
}

impl Frame {
    /// An empty mapping whose keys start at `indent`.
    fn map(indent: usize, position: Position) -> Frame {
        Frame::Map {
            indent,
            position,
            entries: Vec::with_capacity(4),
            pending: None,
        }
    }

    fn indent(&self) -> usize {
        match self {
            Frame::Map { indent, .. } | Frame::Seq { indent, .. } => *indent,
        }
    }

    fn awaits_value(&self) -> bool {
        matches!(
            self,
            Frame::Map {
                pending: Some(_),
                ..
            }
        )
    }
}

/// One line's columns: 1-based, in characters as the general reader counts them.
struct Line<'a> {
    number: u64,
    text: &'a str,
}

impl Line<'_> {
    fn at(&self, byte: usize) -> Position {
        let column = if self.text.is_ascii() {
            byte
        } else {
            self.text[..byte].chars().count()
        };
        Position::new(self.number, column as u64 + 1)
    }
}

impl Reader {
    fn line(&mut self, number: u64, text: &str) -> Option<()> {
        if text.contains(['\t', '\r']) || text.starts_with('\u{feff}') {
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
        let line = Line { number, text };
        if rest == "-" {
            return None;
        }
        match rest.strip_prefix("- ") {
            Some(item) => self.item(&line, indent, indent + 2 + spaces(item)),
            None => self.key_line(&line, indent),
        }
    }

    /// `- value` or `- key: value` at `indent`; the value starts at byte `start`.
    fn item(&mut self, line: &Line, indent: usize, start: usize) -> Option<()> {
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
                self.open(Frame::Seq {
                    indent,
                    position: line.at(at),
                    items: Vec::with_capacity(4),
                })?;
            }
            _ => return None,
        }
        let content = &line.text[start..];
        if content == "-" || content.starts_with("- ") {
            return None;
        }
        match split_key(content) {
            Some(_) => {
                self.open(Frame::map(start, line.at(start)))?;
                self.key_value(line, start)
            }
            None => {
                let node = self.inline(line, start)?;
                match self.stack.last_mut() {
                    Some(Frame::Seq { items, .. }) => items.push(node),
                    _ => return None,
                }
                Some(())
            }
        }
    }

    /// `key: value` or `key:` at `indent`.
    fn key_line(&mut self, line: &Line, indent: usize) -> Option<()> {
        self.close_while(|top| {
            top.indent() > indent || matches!(top, Frame::Seq { indent: i, .. } if *i == indent)
        })?;
        let continues = matches!(
            self.stack.last(),
            Some(Frame::Map { indent: i, pending: None, .. }) if *i == indent
        );
        if !continues {
            // A new mapping: a pending key's value, or the document's root.
            let opens = match self.stack.last() {
                Some(top) => top.awaits_value() && top.indent() < indent,
                None => self.root.is_none(),
            };
            if !opens {
                return None;
            }
            self.open(Frame::map(indent, line.at(indent)))?;
        }
        self.key_value(line, indent)
    }

    /// Adds `key: value` (or a pending `key:`) at byte `start` to the innermost mapping.
    fn key_value(&mut self, line: &Line, start: usize) -> Option<()> {
        let (key, value_start) = split_key(&line.text[start..])?;
        let key_position = line.at(start);
        let value_start = start + value_start;
        let value = line.text[value_start..].trim_end_matches(' ');
        let value = if value.is_empty() || value.starts_with('#') {
            None
        } else {
            Some(self.inline(line, value_start)?)
        };
        let Some(Frame::Map {
            entries, pending, ..
        }) = self.stack.last_mut()
        else {
            return None;
        };
        if entries.iter().any(|e| e.key == key) {
            return None;
        }
        match value {
            Some(value) => entries.push(Entry {
                key: key_text(key),
                key_position,
                value,
            }),
            None => *pending = Some((key_text(key), key_position)),
        }
        Some(())
    }

    /// The value written on the line from byte `start`: a scalar or a flow sequence.
    fn inline(&mut self, line: &Line, start: usize) -> Option<Node> {
        let text = &line.text[start..];
        let position = line.at(start);
        let kind = match *text.as_bytes().first()? {
            b'"' | b'\'' => NodeKind::Str(quoted(text)?.to_owned()),
            b'[' => NodeKind::Seq(self.flow_sequence(line, start)?),
            b'{' => match strip_comment(text) {
                "{}" => NodeKind::Map(Vec::new()),
                _ => return None,
            },
            _ => plain(strip_comment(text))?,
        };
        self.count()?;
        Some(Node { position, kind })
    }

    /// `[a, "b", c]` on one line, of scalars only.
    fn flow_sequence(&mut self, line: &Line, start: usize) -> Option<Vec<Node>> {
        let text = strip_comment(&line.text[start..]);
        let inner = text.strip_prefix('[')?.strip_suffix(']')?;
        if inner.contains(['[', ']', '{', '}', '#']) {
            return None;
        }
        let mut items = Vec::new();
        if inner.trim_matches(' ').is_empty() {
            return Some(items);
        }
        let mut offset = start + 1;
        for item in inner.split(',') {
            let lead = spaces(item);
            let value = item.trim_matches(' ');
            let begin = offset + lead;
            offset += item.len() + 1;
            if value.is_empty() || value.ends_with(':') || pair(value, b':', b' ').is_some() {
                return None;
            }
            let kind = match value.as_bytes()[0] {
                b'"' | b'\'' => NodeKind::Str(quoted(value)?.to_owned()),
                _ => plain(value)?,
            };
            self.count()?;
            items.push(Node {
                position: line.at(begin),
                kind,
            });
        }
        Some(items)
    }

    fn open(&mut self, frame: Frame) -> Option<()> {
        if self.stack.len() >= MAX_DEPTH {
            return None;
        }
        self.count()?;
        self.stack.push(frame);
        Some(())
    }

    fn count(&mut self) -> Option<()> {
        self.nodes += 1;
        (self.nodes <= MAX_NODES).then_some(())
    }

    /// Closes the innermost collections while `done` says so, attaching each to its parent.
    fn close_while(&mut self, done: impl Fn(&Frame) -> bool) -> Option<()> {
        while self.stack.last().is_some_and(&done) {
            self.close()?;
        }
        Some(())
    }

    fn close(&mut self) -> Option<()> {
        let node = match self.stack.pop()? {
            Frame::Map {
                pending: Some(_), ..
            } => return None,
            Frame::Map {
                position, entries, ..
            } => Node {
                position,
                kind: NodeKind::Map(entries),
            },
            Frame::Seq {
                position, items, ..
            } => Node {
                position,
                kind: NodeKind::Seq(items),
            },
        };
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries, pending, ..
            }) => {
                let (key, key_position) = pending.take()?;
                entries.push(Entry {
                    key,
                    key_position,
                    value: node,
                });
            }
        }
        Some(())
    }

    fn end_document(&mut self) -> Option<()> {
        while !self.stack.is_empty() {
            self.close()?;
        }
        if let Some(root) = self.root.take() {
            if self.documents.len() == MAX_DOCUMENTS {
                return None;
            }
            self.documents.push(root);
        }
        Some(())
    }
}

fn spaces(text: &str) -> usize {
    text.len() - text.trim_start_matches(' ').len()
}

/// `key:` or `key: rest` → the key and where the rest starts. Keys are plain words that no
/// resolver reads as anything but a string.
fn split_key(text: &str) -> Option<(&str, usize)> {
    let colon = text.find(':')?;
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
    let clean = !content.contains('\\') && !content.contains(['"', '\'']);
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
fn plain(text: &str) -> Option<NodeKind> {
    let bytes = text.as_bytes();
    let first = *bytes.first()?;
    if pair(text, b':', b' ').is_some() || text.ends_with(':') || pair(text, b' ', b'#').is_some() {
        return None;
    }
    match text {
        "~" | "null" | "Null" | "NULL" => return Some(NodeKind::Null),
        "true" | "True" | "TRUE" => return Some(NodeKind::Bool(true)),
        "false" | "False" | "FALSE" => return Some(NodeKind::Bool(false)),
        _ => {}
    }
    if first.is_ascii_alphabetic() {
        return (!special_word(text) && !text.contains(['"', '\'', '`', '[', ']', '{', '}']))
            .then(|| NodeKind::Str(text.to_owned()));
    }
    if !first.is_ascii_digit() {
        return None;
    }
    if bytes.iter().all(u8::is_ascii_digit) {
        let canonical = (bytes.len() == 1 || first != b'0') && bytes.len() <= 18;
        return canonical
            .then(|| text.parse().ok().map(NodeKind::Int))
            .flatten();
    }
    if !bytes.iter().all(|b| b.is_ascii_graphic()) || text.contains(['"', '\'', '`', '#']) {
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
    text_only.then(|| NodeKind::Str(text.to_owned()))
}

fn digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::yaml::parse_documents_general;

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
    /// accept the text too.
    fn agrees(text: &str) -> bool {
        let Some(fast) = parse(text) else {
            return false;
        };
        match parse_documents_general(text) {
            Ok(general) => assert_eq!(fast, general, "the readers differ on:\n{text}"),
            Err(e) => {
                panic!("the fast path accepted what the general reader refuses ({e}):\n{text}")
            }
        }
        true
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
