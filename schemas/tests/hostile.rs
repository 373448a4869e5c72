//! Bad input of every kind ends in diagnostics, never a panic, a hang or unbounded memory.
//!
//! Explicit hostile cases (alias bombs, deep nesting, huge scalars, many documents, huge
//! files, binary junk) plus property tests over random bytes and over random mutations of a
//! valid manifest, which reach far deeper into the parser than pure noise does.

use std::path::Path;
use std::time::{Duration, Instant};

use balanced_schemas::yaml::{MAX_DEPTH, MAX_DOCUMENTS, MAX_FILE_BYTES};
use balanced_schemas::{ParsedFile, parse_file};
use proptest::prelude::*;

const VALID: &str = include_str!("../../examples/manifests/web.yaml");

fn parse(text: &str) -> ParsedFile {
    parse_file(Path::new("hostile.yaml"), text)
}

/// Parses, requires an error, and bounds the time (generous: debug build, shared CPUs).
fn rejected(text: &str, needle: &str) {
    let start = Instant::now();
    let file = parse(text);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    assert!(file.has_errors(), "accepted: {file:?}");
    let messages: Vec<String> = file.diagnostics.iter().map(ToString::to_string).collect();
    assert!(
        messages.iter().any(|m| m.contains(needle)),
        "no {needle:?} in {messages:#?}"
    );
    assert!(messages.iter().all(|m| m.starts_with("hostile.yaml:")));
}

#[test]
fn billion_laughs_alias_bomb_is_refused() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..30 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    rejected(
        &text,
        "too large or too complex for a manifest: aliases expanding",
    );
}

#[test]
fn deep_nesting_is_refused() {
    let depth = 100_000;
    rejected(
        &format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
        "hostile.yaml:",
    );
    let mut block = String::new();
    for i in 0..(MAX_DEPTH * 4) {
        block.push_str(&" ".repeat(i));
        block.push_str("k:\n");
    }
    rejected(&block, "nested deeper than 32 levels");
}

#[test]
fn a_huge_scalar_or_file_is_refused_without_reading_it_all() {
    let text = format!("apiVersion: {}\n", "x".repeat(MAX_FILE_BYTES + 1));
    rejected(&text, "more than the");
}

#[test]
fn many_documents_are_refused() {
    let text = "a: 1\n---\n".repeat(MAX_DOCUMENTS + 10);
    rejected(&text, "more than 1000 documents");
}

#[test]
fn many_empty_documents_and_separators_end_quickly() {
    rejected(&"---\n".repeat(200_000), "hostile.yaml:");
}

#[test]
fn binary_junk_and_odd_documents_give_errors() {
    rejected("\u{0}\u{1}\u{2}\u{fffd}", "hostile.yaml:");
    rejected("just a string\n", "not a string");
    rejected("42\n", "not an integer");
    rejected(
        "apiVersion: [balanced.io/v1]\nkind: Balancer\n",
        "apiVersion must be a string",
    );
    rejected("? [a, b]\n: c\n", "hostile.yaml:");
    rejected("a: !custom x\n", "hostile.yaml:");
    rejected("a: &x 1\nb: *y\n", "hostile.yaml:");
}

#[test]
fn merge_keys_and_aliases_within_limits_still_work() {
    let text = "\
apiVersion: balanced.io/v1
kind: Balancer
metadata: {name: web}
spec:
  vip: 198.51.100.10
  services:
    - &http
      protocol: TCP
      port: 80
      backends: &pool
        - address: 10.1.0.11
    - <<: *http
      port: 8080
      backends: *pool
";
    let file = parse(text);
    assert_eq!(file.diagnostics, [], "{text}");
    assert_eq!(file.documents.len(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse(&text);
    }

    #[test]
    fn random_yamlish_text_never_panics(text in "[ -~\n\t]{0,400}") {
        let _ = parse(&text);
    }

    #[test]
    fn mutated_manifests_never_panic_and_errors_have_positions(
        cut in 0..VALID.len(),
        at in 0..VALID.len(),
        insert in "[ -~\n]{0,8}",
    ) {
        let mut text = VALID.to_owned();
        if text.is_char_boundary(at) {
            text.insert_str(at, &insert);
        }
        let cut = cut.min(text.len());
        if text.is_char_boundary(cut) {
            text.truncate(cut);
        }
        let file = parse(&text);
        for d in &file.diagnostics {
            prop_assert!(d.position.line >= 1, "{d}");
            prop_assert!(d.position.line <= text.lines().count() as u64 + 1, "{d}");
        }
    }
}
