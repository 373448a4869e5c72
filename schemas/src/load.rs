//! Reading manifests from disk: walk files and directories, read, parse, check the set.
//!
//! The only module here that touches the file system. Directories are walked recursively
//! (following symlinks, including a directory that is itself a symlink) for `*.yaml` and
//! `*.yml`, in sorted order; entries whose name starts with `.` are skipped, so the `..data`
//! indirection of a Kubernetes ConfigMap volume is not loaded twice, and a symlink loop is
//! walked once. A path named explicitly is always read, whatever its name. Every I/O problem
//! becomes a diagnostic on that path.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::check::{NodeConfigDoc, check_set};
use crate::diagnostic::{Diagnostic, Position, sort_diagnostics};
use crate::document::{Manifest, ParsedFile, parse_file};
use crate::yaml::MAX_FILE_BYTES;

/// Reads and parses every manifest file under `paths`, sorted by path, each file once.
pub fn load_paths(paths: &[PathBuf]) -> Vec<ParsedFile> {
    let mut files = BTreeSet::new();
    let mut problems = Vec::new();
    for path in paths {
        match fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                let mut visited = BTreeSet::new();
                walk(path, &mut visited, &mut files, &mut problems);
            }
            Ok(_) => {
                files.insert(path.clone());
            }
            Err(e) => problems.push(io_problem(path, &e)),
        }
    }
    let mut parsed: Vec<ParsedFile> = files.iter().map(|path| load_file(path)).collect();
    parsed.extend(problems);
    parsed.sort_by(|a, b| a.path.cmp(&b.path));
    parsed
}

/// Reads and parses one file.
pub fn load_file(path: &Path) -> ParsedFile {
    match read_text(path) {
        Ok(text) => parse_file(path, &text),
        Err(diagnostic) => ParsedFile {
            path: path.to_owned(),
            documents: Vec::new(),
            diagnostics: vec![diagnostic],
        },
    }
}

fn walk(
    dir: &Path,
    visited: &mut BTreeSet<PathBuf>,
    files: &mut BTreeSet<PathBuf>,
    problems: &mut Vec<ParsedFile>,
) {
    // A directory reached again through a symlink loop is walked once.
    match fs::canonicalize(dir) {
        Ok(real) => {
            if !visited.insert(real) {
                return;
            }
        }
        Err(e) => {
            problems.push(io_problem(dir, &e));
            return;
        }
    }
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(io_problem(dir, &e));
            return;
        }
    };
    let mut children = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => children.push(entry.path()),
            Err(e) => problems.push(io_problem(dir, &e)),
        }
    }
    children.sort();
    for child in children {
        let hidden = child
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        match fs::metadata(&child) {
            Ok(meta) if meta.is_dir() => walk(&child, visited, files, problems),
            Ok(_) if is_manifest_name(&child) => {
                files.insert(child);
            }
            Ok(_) => {}
            // A dangling symlink named like a manifest is reported; others are not ours.
            Err(e) if is_manifest_name(&child) => problems.push(io_problem(&child, &e)),
            Err(_) => {}
        }
    }
}

fn is_manifest_name(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

fn io_problem(path: &Path, e: &std::io::Error) -> ParsedFile {
    ParsedFile {
        path: path.to_owned(),
        documents: Vec::new(),
        diagnostics: vec![Diagnostic::error(
            path,
            Position::default(),
            format!("cannot read: {e}"),
        )],
    }
}

fn read_text(path: &Path) -> Result<String, Diagnostic> {
    let file_error = |message: String| Diagnostic::error(path, Position::default(), message);
    let file = fs::File::open(path).map_err(|e| file_error(format!("cannot read: {e}")))?;
    let mut bytes = Vec::new();
    let cap = u64::try_from(MAX_FILE_BYTES).unwrap_or(u64::MAX);
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| file_error(format!("cannot read: {e}")))?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(file_error(format!(
            "file is larger than the {MAX_FILE_BYTES} bytes a manifest file may have"
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        file_error(format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Reads the node's configuration: exactly one `kind: NodeConfig` document. `Err` holds the
/// diagnostics when the file has any error; warnings travel in [`NodeConfigDoc::warnings`].
pub fn load_node_config(path: &Path) -> Result<NodeConfigDoc, Vec<Diagnostic>> {
    let file = load_file(path);
    NodeConfigDoc::from_file(file)
}

impl NodeConfigDoc {
    /// Takes the single NodeConfig document out of a parsed file.
    pub fn from_file(file: ParsedFile) -> Result<NodeConfigDoc, Vec<Diagnostic>> {
        let mut diagnostics = file.diagnostics;
        let mut documents = file.documents.into_iter();
        let first = documents.next();
        for extra in documents {
            diagnostics.push(Diagnostic::error(
                &file.path,
                extra.position,
                "a node config file holds exactly one NodeConfig document",
            ));
        }
        let document = match first {
            Some(document) => match document.manifest {
                Manifest::NodeConfig(_) => Some(document),
                Manifest::Balancer(_) => {
                    diagnostics.push(Diagnostic::error(
                        &file.path,
                        document.positions.at("kind"),
                        "expected kind NodeConfig in the node config file, found Balancer",
                    ));
                    None
                }
            },
            None => {
                if !crate::diagnostic::has_errors(&diagnostics) {
                    diagnostics.push(Diagnostic::error(
                        &file.path,
                        Position::default(),
                        "no NodeConfig document",
                    ));
                }
                None
            }
        };
        match document {
            Some(document) if !crate::diagnostic::has_errors(&diagnostics) => Ok(NodeConfigDoc {
                document,
                warnings: diagnostics,
            }),
            _ => {
                sort_diagnostics(&mut diagnostics);
                Err(diagnostics)
            }
        }
    }
}

/// `balanced validate`: load every manifest under `paths` (and the node config), run all
/// checks, return every diagnostic sorted by path, line and column.
pub fn validate_paths(paths: &[PathBuf], node_config: Option<&Path>) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    let node = node_config.and_then(|path| match load_node_config(path) {
        Ok(node) => {
            diagnostics.extend(node.warnings.iter().cloned());
            Some(node)
        }
        Err(errors) => {
            diagnostics.extend(errors);
            None
        }
    });
    let files = load_paths(paths);
    for file in &files {
        diagnostics.extend(file.diagnostics.iter().cloned());
    }
    let refs: Vec<&ParsedFile> = files.iter().collect();
    diagnostics.extend(check_set(&refs, node.as_ref()));
    sort_diagnostics(&mut diagnostics);
    diagnostics
}
