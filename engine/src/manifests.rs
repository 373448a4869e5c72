//! The set of manifests a node runs on, with **last known good** versions.
//!
//! Files come from one or more watched directories (recursive `*.yaml`/`*.yml`, symlinks
//! followed, names starting with `.` skipped — so a Kubernetes ConfigMap volume's `..data`
//! and timestamped directories are never read twice). Each file is identified by its
//! **watched directory as given on the command line** (made absolute, symlinks *not* resolved,
//! so a swapped `current -> rev-N` link keeps its identity) and its path relative to that
//! directory. That pair keys the last-known-good store in the state directory.
//!
//! Rules:
//! - A file that fails to parse or validate is reported; its last known good version stays in
//!   force (state `stale`), or nothing when it never was good (state `invalid`).
//! - Cross-file checks (`check_set`) run over the whole set in force. A file whose *new*
//!   version conflicts with the others falls back to its last known good version; when a
//!   conflict is reported only at unchanged files but did not exist without the changed ones,
//!   every changed file falls back.
//! - A deleted file is a deletion: its manifests leave the set and its stored version is
//!   forgotten.
//! - A watched directory that is missing, unreadable or holds no manifest file while its store
//!   has some is an **error state**: every stored version of that directory stays in force
//!   until the directory has files again, or an operator accepts it (`apply
//!   --allow-mass-delete`). An emptied directory never wipes a node.
//! - Only files whose identity (device, inode, size, times) changed are read and parsed again.
//!
//! I/O is limited to reading the watched files and the store; persisting is explicit
//! ([`ManifestSet::persist`]) so `plan` stays read-only.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use balanced_schemas::v1;
use balanced_schemas::{
    Diagnostic, Manifest, NodeConfigDoc, ParsedFile, Position, Severity, check_set, parse_file,
};
use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::state_dir::{LkgStore, StateDir};

/// Subdirectory depth beyond which the walk stops (symlink loops).
const MAX_DEPTH: usize = 32;

/// One watched directory.
#[derive(Debug)]
struct Source {
    /// Absolute, as given (not canonicalized).
    dir: PathBuf,
    /// What `dir` resolved to at the last scan (follows a swapped symlink).
    resolved: Option<PathBuf>,
    /// The directories under `resolved` that scan walked (through symlinks, as walked).
    directories: Vec<PathBuf>,
    store: LkgStore,
    health: SourceHealth,
}

/// Whether a watched directory can be trusted to list the node's manifests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state", content = "reason")]
pub enum SourceHealth {
    Ok,
    /// Missing or unreadable while manifests from it are in force.
    Missing(String),
    /// No manifest file while manifests from it are in force.
    Empty,
}

/// Identifies a manifest file: its watched directory (index) and its path relative to it.
///
/// Keys are compared as bytes, with `/` before every other byte: for the normalised relative
/// paths keys hold (from a directory walk, or a watcher's path with its root stripped) that is
/// the order of [`Path`]'s components, without parsing them — at 10,000 files the key
/// comparisons of a start-up were a tenth of its time.
#[derive(Debug, Clone)]
pub struct FileKey {
    pub source: usize,
    pub rel: PathBuf,
}

impl FileKey {
    fn rel_bytes(&self) -> &[u8] {
        self.rel.as_os_str().as_encoded_bytes()
    }
}

impl PartialEq for FileKey {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.rel_bytes() == other.rel_bytes()
    }
}

impl Eq for FileKey {}

impl std::hash::Hash for FileKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.source.hash(state);
        self.rel_bytes().hash(state);
    }
}

impl Ord for FileKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let (a, b) = (self.rel_bytes(), other.rel_bytes());
        let rank = |byte: u8| if byte == b'/' { 0 } else { u16::from(byte) + 1 };
        self.source.cmp(&other.source).then_with(|| {
            match a.iter().zip(b).position(|(x, y)| x != y) {
                Some(at) => rank(a[at]).cmp(&rank(b[at])),
                None => a.len().cmp(&b.len()),
            }
        })
    }
}

impl PartialOrd for FileKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// One version of a file: its text and what parsing it gave.
#[derive(Debug)]
struct Version {
    /// Unique in this process: tells versions apart without holding them.
    serial: u64,
    text: Vec<u8>,
    parsed: ParsedFile,
    /// No error from the per-file checks (warnings allowed).
    valid: bool,
}

/// Device, inode, size, modification and change times: changes when a file is edited,
/// replaced or re-pointed by a symlink swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Fingerprint {
    fn of(meta: &fs::Metadata) -> Self {
        Fingerprint {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

#[derive(Debug)]
struct FileEntry {
    /// `<watched dir>/<rel>`: the path diagnostics name.
    path: PathBuf,
    /// The version on disk now; `None` when the file is gone.
    current: Option<Arc<Version>>,
    fingerprint: Option<Fingerprint>,
    /// The last known good version (from the store or accepted in this process).
    lkg: Option<Arc<Version>>,
    /// The version in force after the last [`ManifestSet::resolve`].
    in_force: Option<Arc<Version>>,
    state: FileState,
    reason: Option<String>,
    /// The version in force when the cross-file checks last ran over the whole set.
    checked: Option<Arc<Version>>,
}

/// A file's standing after [`ManifestSet::resolve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FileState {
    /// The file as it is on disk is in force.
    InForce,
    /// The file is invalid, conflicting or missing with its directory; its last known good
    /// version is in force.
    Stale,
    /// The file is invalid and never was good: nothing of it is in force.
    Invalid,
}

/// One manifest document as `status` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestStatus {
    /// `metadata.name` of the version in force (absent when nothing is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    pub path: PathBuf,
    pub state: FileState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A watched directory as `status` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    pub directory: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<PathBuf>,
    #[serde(flatten)]
    pub health: SourceHealth,
}

/// What one [`ManifestSet::resolve`] found.
#[derive(Debug, Default)]
pub struct Resolution {
    /// Every diagnostic of the files on disk and of the cross-file checks, warnings too, plus
    /// one per unhealthy directory; sorted.
    pub diagnostics: Vec<Diagnostic>,
    /// Any error: a manifest or a directory is invalid (exit 65 for `validate`/`plan`).
    pub invalid: bool,
}

/// The manifests of all watched directories, with their last known good versions.
#[derive(Debug)]
pub struct ManifestSet {
    sources: Vec<Source>,
    files: BTreeMap<FileKey, FileEntry>,
    /// Accept a missing or emptied directory as intended (`--allow-mass-delete`).
    accept_empty: bool,
    /// The node config of the last cross-file check when it found nothing; `None` after a
    /// check that found something (or before the first).
    clean_check: Option<Option<v1::NodeConfigSpec>>,
    /// What a resolve can reuse from the last one (see [`Resolved`]).
    resolved: Resolved,
}

/// The bookkeeping that lets [`ManifestSet::resolve`] look only at the files that changed
/// since the last resolve, when that one ended with every directory healthy and the set clean.
#[derive(Debug, Default)]
struct Resolved {
    /// The last resolve ended healthy and clean, so the next may be partial.
    reusable: bool,
    /// Files read again (or gone) since the last resolve.
    dirty: BTreeSet<FileKey>,
    /// Files not in force as they are on disk.
    fallen: BTreeSet<FileKey>,
    /// Files whose version on disk has diagnostics (warnings too).
    noted: BTreeSet<FileKey>,
    /// Counts resolves.
    epoch: u64,
    /// Since resolve number `since`, only the files in `journal` can have a new version in
    /// force, each listed with the resolve that looked at it again; a consumer that saw an
    /// older resolve must look at every file.
    since: u64,
    journal: Vec<(u64, FileKey)>,
}

impl ManifestSet {
    /// Loads the stores of `dirs` and scans them. Nothing is written.
    pub fn load(
        dirs: &[PathBuf],
        state: &StateDir,
        accept_empty: bool,
    ) -> Result<Self, EngineError> {
        let mut sources = Vec::new();
        let mut files = BTreeMap::new();
        for (index, dir) in dirs.iter().enumerate() {
            let dir = std::path::absolute(dir).map_err(|e| EngineError::io(dir, e))?;
            let store = state.lkg(&source_id(&dir));
            for (rel, text) in store.load_all()? {
                let path = dir.join(&rel);
                let version = Arc::new(parse_version(&path, text));
                files.insert(
                    FileKey { source: index, rel },
                    FileEntry {
                        path,
                        current: None,
                        fingerprint: None,
                        lkg: Some(version),
                        in_force: None,
                        state: FileState::Invalid,
                        reason: None,
                        checked: None,
                    },
                );
            }
            sources.push(Source {
                dir,
                resolved: None,
                directories: Vec::new(),
                store,
                health: SourceHealth::Ok,
            });
        }
        let mut set = ManifestSet {
            sources,
            files,
            accept_empty,
            clean_check: None,
            resolved: Resolved::default(),
        };
        for index in 0..set.sources.len() {
            set.rescan(index);
        }
        Ok(set)
    }

    /// The watched directories (absolute, as given) and what they resolve to now.
    pub fn watched(&self) -> impl Iterator<Item = (&Path, Option<&Path>)> {
        self.sources
            .iter()
            .map(|s| (s.dir.as_path(), s.resolved.as_deref()))
    }

    /// Every directory to watch for the manifests, one by one (none recursively): each
    /// watched directory as resolved now and the directories the last scan walked under it.
    /// A directory made later raises an event in its parent, whose rescan walks it.
    pub fn directories(&self) -> impl Iterator<Item = &Path> {
        self.sources.iter().flat_map(|s| {
            s.resolved
                .iter()
                .chain(s.directories.iter())
                .map(PathBuf::as_path)
        })
    }

    /// Re-resolves every watched directory and re-reads the files that changed. Returns
    /// whether anything changed.
    pub fn rescan_all(&mut self) -> bool {
        let mut changed = false;
        for index in 0..self.sources.len() {
            changed |= self.rescan(index);
        }
        changed
    }

    /// Handles changed paths reported by the watcher: a manifest file is read again when its
    /// identity changed; anything else under a watched directory (a directory, a hidden entry
    /// such as a ConfigMap's `..data`, the watched path itself) rescans that directory. Returns
    /// whether anything changed.
    pub fn refresh_paths(&mut self, paths: &[PathBuf]) -> bool {
        let mut rescan = BTreeSet::new();
        let mut single = BTreeSet::new();
        for path in paths {
            for (index, source) in self.sources.iter().enumerate() {
                let rel = [Some(&source.dir), source.resolved.as_ref()]
                    .into_iter()
                    .flatten()
                    .find_map(|root| path.strip_prefix(root).ok());
                match rel {
                    Some(rel) if is_manifest_rel(rel) && !path.is_dir() => {
                        single.insert((index, rel.to_path_buf()));
                    }
                    Some(_) => {
                        rescan.insert(index);
                    }
                    None if source.dir.starts_with(path) => {
                        rescan.insert(index);
                    }
                    None => {}
                }
            }
        }
        let mut changed = false;
        for &index in &rescan {
            changed |= self.rescan(index);
        }
        for (index, rel) in single {
            if !rescan.contains(&index) {
                changed |= self.refresh_file(index, &rel, true);
            }
        }
        changed
    }

    /// Decides which version of every file is in force and runs the cross-file checks over
    /// that set (see the module rules).
    pub fn resolve(&mut self, node: Option<&NodeConfigDoc>) -> Resolution {
        if let Some(resolution) = self.resolve_dirty(node) {
            return resolution;
        }
        let mut diagnostics = Vec::new();
        let mut invalid = false;
        let mut held_sources = BTreeSet::new();
        for (index, source) in self.sources.iter().enumerate() {
            let message = match &source.health {
                SourceHealth::Ok => continue,
                SourceHealth::Missing(reason) => format!("watched directory unusable: {reason}"),
                SourceHealth::Empty => "watched directory holds no manifest".to_owned(),
            };
            invalid = true;
            let message = if self.accept_empty {
                format!("{message}; its manifests are removed (--allow-mass-delete)")
            } else {
                held_sources.insert(index);
                format!(
                    "{message}; its last known good manifests stay in force (apply --allow-mass-delete accepts it)"
                )
            };
            diagnostics.push(error_at(&source.dir, message));
        }

        // First choice: the file on disk when valid, else its last known good version.
        for (key, entry) in self.files.iter_mut() {
            entry.reason = None;
            if held_sources.contains(&key.source) {
                entry.in_force = entry.lkg.clone();
                entry.state = fallback_state(&entry.lkg);
                entry.reason = Some("its watched directory is missing or empty".to_owned());
                continue;
            }
            if let Some(current) = &entry.current {
                diagnostics.extend(current.parsed.diagnostics.iter().cloned());
            }
            invalid |= !choose_on_disk(entry);
        }

        // The cross-file checks look only at names, VIPs and service identities: when the last
        // full check found nothing and no file's identities changed, it still holds.
        if self.still_clean(node) {
            self.resolved_all(held_sources.is_empty() && !invalid_source(&self.sources));
            return self.finish(diagnostics, invalid);
        }
        let by_path: HashMap<PathBuf, FileKey> = self
            .files
            .iter()
            .map(|(k, e)| (e.path.clone(), k.clone()))
            .collect();
        // Diagnostics of conflicts that made a file fall back are reported too, although the
        // set in force no longer has them.
        let mut refused = Vec::new();
        let cross = loop {
            let cross = self.check(node);
            let erroneous: BTreeSet<&FileKey> = cross
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .filter_map(|d| by_path.get(&d.path))
                .collect();
            let changed: BTreeSet<FileKey> = self
                .files
                .iter()
                .filter(|(_, e)| is_new(e))
                .map(|(k, _)| k.clone())
                .collect();
            let mut revert: Vec<FileKey> = erroneous
                .iter()
                .filter(|k| changed.contains(**k))
                .map(|k| (*k).clone())
                .collect();
            if revert.is_empty() && !erroneous.is_empty() && !changed.is_empty() {
                let with = error_set(&cross);
                let saved = self.set_aside(&changed);
                let without = error_set(&self.check(node));
                self.restore(saved);
                if with != without {
                    revert = changed.into_iter().collect();
                }
            }
            if revert.is_empty() {
                break cross;
            }
            refused.extend(cross.into_iter().filter(|d| d.severity == Severity::Error));
            for key in revert {
                if let Some(entry) = self.files.get_mut(&key) {
                    entry.in_force = entry.lkg.clone();
                    entry.state = fallback_state(&entry.lkg);
                    entry.reason = Some("conflicts with other manifests".to_owned());
                }
            }
        };
        self.clean_check = (cross.is_empty() && refused.is_empty())
            .then(|| node.and_then(NodeConfigDoc::spec).cloned());
        for entry in self.files.values_mut() {
            entry.checked = entry.in_force.clone();
        }
        invalid |= cross.iter().any(|d| d.severity == Severity::Error);
        diagnostics.extend(cross);
        diagnostics.extend(refused);
        self.resolved_all(held_sources.is_empty() && !invalid_source(&self.sources));
        self.finish(diagnostics, invalid)
    }

    /// The partial resolve: when the last resolve ended with every directory healthy and the
    /// set clean, and the node config is the same, only the files read again since can change
    /// their choice, and the cross-file checks still hold unless one of them changed its
    /// identities. `None` when a full resolve is needed.
    fn resolve_dirty(&mut self, node: Option<&NodeConfigDoc>) -> Option<Resolution> {
        let same_node = self
            .clean_check
            .as_ref()
            .is_some_and(|checked| checked.as_ref() == node.and_then(NodeConfigDoc::spec));
        if !self.resolved.reusable || !same_node || invalid_source(&self.sources) {
            return None;
        }
        let dirty = std::mem::take(&mut self.resolved.dirty);
        for key in &dirty {
            let Some(entry) = self.files.get_mut(key) else {
                continue;
            };
            entry.reason = None;
            choose_on_disk(entry);
        }
        let kept = dirty
            .iter()
            .filter_map(|k| self.files.get(k))
            .all(identities_kept);
        if !kept {
            // The full resolve decides again for every file, these included.
            self.resolved.reusable = false;
            self.resolved.dirty = dirty;
            return None;
        }
        for key in &dirty {
            self.note(key);
        }
        let resolved = &mut self.resolved;
        resolved.epoch += 1;
        let epoch = resolved.epoch;
        resolved
            .journal
            .extend(dirty.into_iter().map(|key| (epoch, key)));
        if resolved.journal.len() > self.files.len().max(64) {
            // A consumer reads only the entries after the resolve it saw; this only bounds
            // the memory (a consumer that lags that far looks at every file once).
            resolved.since = resolved.epoch;
            resolved.journal.clear();
        }
        let mut diagnostics = Vec::new();
        for key in &self.resolved.noted {
            if let Some(current) = self.files.get(key).and_then(|e| e.current.as_ref()) {
                diagnostics.extend(current.parsed.diagnostics.iter().cloned());
            }
        }
        let invalid = !self.resolved.fallen.is_empty();
        Some(self.finish_sorted(diagnostics, invalid))
    }

    /// After a full resolve: every file may have a new version in force.
    fn resolved_all(&mut self, reusable: bool) {
        let resolved = &mut self.resolved;
        resolved.reusable = reusable && self.clean_check.is_some();
        resolved.dirty.clear();
        resolved.fallen.clear();
        resolved.noted.clear();
        resolved.epoch += 1;
        resolved.since = resolved.epoch;
        resolved.journal.clear();
        let keys: Vec<FileKey> = self.files.keys().cloned().collect();
        for key in &keys {
            self.note(key);
        }
    }

    /// Records whether a file is in force as on disk and whether it has diagnostics.
    fn note(&mut self, key: &FileKey) {
        let Some(entry) = self.files.get(key) else {
            self.resolved.fallen.remove(key);
            self.resolved.noted.remove(key);
            return;
        };
        if entry.state == FileState::InForce {
            self.resolved.fallen.remove(key);
        } else {
            self.resolved.fallen.insert(key.clone());
        }
        let noted = entry
            .current
            .as_ref()
            .is_some_and(|c| !c.parsed.diagnostics.is_empty());
        if noted {
            self.resolved.noted.insert(key.clone());
        } else {
            self.resolved.noted.remove(key);
        }
    }

    /// The number of resolves so far, for [`ManifestSet::changed_since`].
    pub fn epoch(&self) -> u64 {
        self.resolved.epoch
    }

    /// The files whose version in force may have changed since resolve number `epoch`, or
    /// `None` when that is not known (every file must be looked at).
    pub fn changed_since(&self, epoch: u64) -> Option<impl Iterator<Item = &FileKey>> {
        let journal = &self.resolved.journal;
        (epoch >= self.resolved.since).then(|| {
            let first = journal.partition_point(|(e, _)| *e <= epoch);
            journal[first..].iter().map(|(_, key)| key)
        })
    }

    /// The serial and parse of the version in force of one file.
    pub fn in_force_of(&self, key: &FileKey) -> Option<(u64, &ParsedFile)> {
        self.files
            .get(key)?
            .in_force
            .as_deref()
            .map(|v| (v.serial, &v.parsed))
    }

    /// Whether the last full cross-file check found nothing and still holds: same node config,
    /// and every file in force has the names, VIPs and services it had then.
    fn still_clean(&self, node: Option<&NodeConfigDoc>) -> bool {
        let Some(checked_node) = &self.clean_check else {
            return false;
        };
        if checked_node.as_ref() != node.and_then(NodeConfigDoc::spec) {
            return false;
        }
        self.files.values().all(identities_kept)
    }

    /// Sorts the diagnostics; `invalid` also when any file is not in force as it is on disk.
    fn finish(&self, diagnostics: Vec<Diagnostic>, mut invalid: bool) -> Resolution {
        invalid |= self.files.values().any(|e| e.state != FileState::InForce);
        self.finish_sorted(diagnostics, invalid)
    }

    fn finish_sorted(&self, mut diagnostics: Vec<Diagnostic>, invalid: bool) -> Resolution {
        diagnostics.sort_by(|a, b| {
            (&a.path, a.position.line, a.position.column, &a.message).cmp(&(
                &b.path,
                b.position.line,
                b.position.column,
                &b.message,
            ))
        });
        diagnostics.dedup_by(|a, b| {
            a.path == b.path && a.position == b.position && a.message == b.message
        });
        Resolution {
            diagnostics,
            invalid,
        }
    }

    /// Each file in force with the serial of its version in force (a new serial means new
    /// content), in file order.
    pub fn in_force_files(&self) -> impl Iterator<Item = (&FileKey, u64, &ParsedFile)> {
        self.files
            .iter()
            .filter_map(|(k, e)| e.in_force.as_deref().map(|v| (k, v.serial, &v.parsed)))
    }

    /// Whether the whole-set checks found nothing: no two manifests share a name or a
    /// service, so the set compiles file by file.
    pub fn is_clean(&self) -> bool {
        self.clean_check.is_some()
    }

    /// The Balancers in force, in file order.
    pub fn balancers(&self) -> Vec<&v1::Balancer> {
        self.files
            .values()
            .filter_map(|e| e.in_force.as_deref())
            .flat_map(|v| v.parsed.documents.iter())
            .filter_map(|d| match &d.manifest {
                Manifest::Balancer(b) => Some(b),
                _ => None,
            })
            .collect()
    }

    /// Every file and document with its state, sorted by path.
    pub fn status(&self) -> Vec<ManifestStatus> {
        let mut out = Vec::new();
        for entry in self.files.values() {
            let shown = entry.in_force.as_deref().or(entry.current.as_deref());
            let documents = shown.map(|v| v.parsed.documents.as_slice()).unwrap_or(&[]);
            if entry.in_force.is_none() && entry.state == FileState::InForce {
                continue;
            }
            if documents.is_empty() {
                out.push(ManifestStatus {
                    name: None,
                    kind: None,
                    generation: None,
                    path: entry.path.clone(),
                    state: entry.state,
                    reason: entry.reason.clone(),
                });
            }
            for document in documents {
                let (kind, metadata) = match &document.manifest {
                    Manifest::Balancer(b) => ("Balancer", &b.metadata),
                    Manifest::NodeConfig(n) => ("NodeConfig", &n.metadata),
                };
                out.push(ManifestStatus {
                    name: Some(metadata.name.clone()),
                    kind: Some(kind.to_owned()),
                    generation: metadata.generation,
                    path: entry.path.clone(),
                    state: entry.state,
                    reason: entry.reason.clone(),
                });
            }
        }
        out
    }

    pub fn sources(&self) -> Vec<SourceStatus> {
        self.sources
            .iter()
            .map(|s| SourceStatus {
                directory: s.dir.clone(),
                resolved: s.resolved.clone(),
                health: s.health.clone(),
            })
            .collect()
    }

    /// Writes the versions now in force to the store and forgets deleted files (call after
    /// [`ManifestSet::resolve`]; never from `plan`).
    pub fn persist(&mut self) -> Result<(), EngineError> {
        for (index, source) in self.sources.iter().enumerate() {
            let mut store = Vec::new();
            let mut forget = Vec::new();
            for (key, entry) in self.files.range(source_range(index)) {
                match (&entry.in_force, &entry.lkg) {
                    (Some(now), Some(old)) if Arc::ptr_eq(now, old) || now.text == old.text => {}
                    (Some(now), _) => store.push((key.rel.as_path(), now.text.as_slice())),
                    (None, _) if entry.current.is_none() => forget.push(key.rel.as_path()),
                    (None, _) => {}
                }
            }
            source.store.store(&source.dir, &store)?;
            source.store.remove(&forget)?;
        }
        for entry in self.files.values_mut() {
            if entry.in_force.is_some() {
                entry.lkg = entry.in_force.clone();
            }
        }
        self.files
            .retain(|_, e| e.in_force.is_some() || e.current.is_some());
        Ok(())
    }

    fn check(&self, node: Option<&NodeConfigDoc>) -> Vec<Diagnostic> {
        let parsed: Vec<&ParsedFile> = self
            .files
            .values()
            .filter_map(|e| e.in_force.as_deref())
            .map(|v| &v.parsed)
            .collect();
        check_set(&parsed, node)
    }

    fn set_aside(&mut self, keys: &BTreeSet<FileKey>) -> Vec<(FileKey, Option<Arc<Version>>)> {
        keys.iter()
            .filter_map(|k| {
                let entry = self.files.get_mut(k)?;
                let saved = std::mem::replace(&mut entry.in_force, entry.lkg.clone());
                Some((k.clone(), saved))
            })
            .collect()
    }

    fn restore(&mut self, saved: Vec<(FileKey, Option<Arc<Version>>)>) {
        for (key, version) in saved {
            if let Some(entry) = self.files.get_mut(&key) {
                entry.in_force = version;
            }
        }
    }

    /// Re-resolves a watched directory, walks it and re-reads changed files.
    fn rescan(&mut self, index: usize) -> bool {
        let dir = self.sources[index].dir.clone();
        let had_any = self.files.keys().any(|k| k.source == index);
        let mut changed = false;
        let walked = fs::canonicalize(&dir).and_then(|resolved| {
            let mut walked = Walked::default();
            walk(&resolved, Path::new(""), 0, &mut walked)?;
            Ok((resolved, walked))
        });
        let (
            resolved,
            Walked {
                files: found,
                directories,
            },
        ) = match walked {
            Ok(ok) => ok,
            Err(e) => {
                let health = SourceHealth::Missing(e.to_string());
                let source = &mut self.sources[index];
                changed |= source.health != health || source.resolved.is_some();
                source.health = health;
                source.resolved = None;
                source.directories.clear();
                if self.accept_empty {
                    changed |= self.mark_all_gone(index);
                }
                return changed;
            }
        };
        let health = if found.is_empty() && had_any && !self.accept_empty {
            SourceHealth::Empty
        } else {
            SourceHealth::Ok
        };
        {
            let source = &mut self.sources[index];
            changed |= source.health != health || source.resolved.as_ref() != Some(&resolved);
            source.health = health.clone();
            source.resolved = Some(resolved);
            source.directories = directories;
        }
        if health != SourceHealth::Ok {
            return changed;
        }
        let present: BTreeSet<&PathBuf> = found.iter().collect();
        let missing: Vec<PathBuf> = self
            .files
            .iter()
            .filter(|(k, e)| k.source == index && e.current.is_some() && !present.contains(&k.rel))
            .map(|(k, _)| k.rel.clone())
            .collect();
        for rel in missing.iter().chain(found.iter()) {
            changed |= self.refresh_file(index, rel, false);
        }
        changed
    }

    fn mark_all_gone(&mut self, index: usize) -> bool {
        let mut changed = false;
        for (key, entry) in self.files.iter_mut() {
            if key.source == index && entry.current.is_some() {
                entry.current = None;
                entry.fingerprint = None;
                self.resolved.dirty.insert(key.clone());
                changed = true;
            }
        }
        changed
    }

    /// Reads one file again (or notes that it is gone). `reported`: the watcher named this
    /// file, so it is read even when its identity looks unchanged — timestamps are coarser
    /// than two quick writes of the same size; a rescan trusts the identity instead.
    fn refresh_file(&mut self, index: usize, rel: &Path, reported: bool) -> bool {
        let Some(root) = self.sources[index].resolved.clone() else {
            return false;
        };
        let key = FileKey {
            source: index,
            rel: rel.to_path_buf(),
        };
        let on_disk = root.join(rel);
        let entry = self.files.get(&key);
        let known = entry.and_then(|e| e.fingerprint);
        // A file this set has not seen (every file at start-up) is opened straight away and
        // stat'ed through its descriptor: one path lookup instead of two.
        let found = match known {
            Some(known) if !reported => {
                let meta = fs::metadata(&on_disk).ok().filter(|m| m.is_file());
                match meta.map(|m| Fingerprint::of(&m)) {
                    Some(now) if now == known => return false,
                    Some(_) => read_file(&on_disk),
                    None => None,
                }
            }
            _ => read_file(&on_disk),
        };
        let fingerprint = found.as_ref().map(|(f, _)| *f);
        let path = self.sources[index].dir.join(rel);
        let current = match found {
            None => None,
            Some((_, read)) => match read {
                Ok(text)
                    if entry
                        .and_then(|e| e.current.as_ref())
                        .is_some_and(|old| old.text == text) =>
                {
                    if let Some(entry) = self.files.get_mut(&key) {
                        entry.fingerprint = fingerprint;
                    }
                    return false;
                }
                Ok(text) => Some(parse_version(&path, text)),
                Err(e) => Some(unreadable(&path, &e)),
            },
        };
        match (self.files.get_mut(&key), current) {
            (Some(entry), current) => {
                let was_present = entry.current.is_some();
                entry.fingerprint = fingerprint;
                entry.current = current.map(Arc::new);
                self.resolved.dirty.insert(key);
                was_present || entry.current.is_some()
            }
            (None, None) => false,
            (None, Some(current)) => {
                self.resolved.dirty.insert(key.clone());
                self.files.insert(
                    key,
                    FileEntry {
                        path,
                        current: Some(Arc::new(current)),
                        fingerprint,
                        lkg: None,
                        in_force: None,
                        state: FileState::Invalid,
                        reason: None,
                        checked: None,
                    },
                );
                true
            }
        }
    }
}

/// What the cross-file checks look at in a file: each document's kind and name, and for a
/// Balancer its VIP and each service's protocol, port and mark.
type Identity<'a> = (
    &'static str,
    &'a str,
    Option<(std::net::IpAddr, Vec<ServiceIdentity>)>,
);
type ServiceIdentity = (Option<v1::Protocol>, Option<u16>, Option<u32>);

fn identities(file: &ParsedFile) -> Vec<Identity<'_>> {
    file.documents
        .iter()
        .map(|d| {
            let services = match &d.manifest {
                Manifest::Balancer(b) => Some((
                    b.spec.vip,
                    b.spec
                        .services
                        .iter()
                        .map(|s| (s.protocol, s.port, s.fwmark))
                        .collect(),
                )),
                Manifest::NodeConfig(_) => None,
            };
            (d.manifest.kind(), d.manifest.name(), services)
        })
        .collect()
}

/// Whether a watched directory is missing or empty while its manifests are in force.
fn invalid_source(sources: &[Source]) -> bool {
    sources.iter().any(|s| s.health != SourceHealth::Ok)
}

/// Every key of one watched directory.
fn source_range(index: usize) -> std::ops::Range<FileKey> {
    FileKey {
        source: index,
        rel: PathBuf::new(),
    }..FileKey {
        source: index + 1,
        rel: PathBuf::new(),
    }
}

/// The first choice for a file: the version on disk when valid (true), else its last known
/// good version (false); a file gone from disk is in force as gone.
fn choose_on_disk(entry: &mut FileEntry) -> bool {
    match &entry.current {
        Some(current) if current.valid => {
            entry.in_force = Some(current.clone());
            entry.state = FileState::InForce;
            true
        }
        Some(_) => {
            entry.in_force = entry.lkg.clone();
            entry.state = fallback_state(&entry.lkg);
            entry.reason = Some("invalid".to_owned());
            false
        }
        None => {
            entry.in_force = None;
            entry.state = FileState::InForce;
            true
        }
    }
}

/// Whether the version in force has the names, VIPs and services of the one the last full
/// cross-file check saw.
fn identities_kept(entry: &FileEntry) -> bool {
    match (&entry.in_force, &entry.checked) {
        (None, None) => true,
        (Some(now), Some(then)) => {
            Arc::ptr_eq(now, then) || identities(&now.parsed) == identities(&then.parsed)
        }
        _ => false,
    }
}

/// Whether the version chosen for an entry is one that is not its last known good.
fn is_new(entry: &FileEntry) -> bool {
    match (&entry.in_force, &entry.lkg) {
        (Some(now), Some(old)) => !Arc::ptr_eq(now, old) && now.text != old.text,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

fn fallback_state(lkg: &Option<Arc<Version>>) -> FileState {
    if lkg.is_some() {
        FileState::Stale
    } else {
        FileState::Invalid
    }
}

fn error_set(diagnostics: &[Diagnostic]) -> BTreeSet<(PathBuf, u64, u64, String)> {
    diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| {
            (
                d.path.clone(),
                d.position.line,
                d.position.column,
                d.message.clone(),
            )
        })
        .collect()
}

fn next_serial() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn parse_version(path: &Path, text: Vec<u8>) -> Version {
    let parsed = match std::str::from_utf8(&text) {
        Ok(s) => parse_file(path, s),
        Err(e) => ParsedFile {
            path: path.to_path_buf(),
            documents: Vec::new(),
            diagnostics: vec![error_at(path, format!("not UTF-8 text: {e}"))],
        },
    };
    let valid = !parsed
        .diagnostics
        .iter()
        .any(|d| d.severity == Severity::Error);
    Version {
        serial: next_serial(),
        text,
        parsed,
        valid,
    }
}

fn unreadable(path: &Path, e: &io::Error) -> Version {
    Version {
        serial: next_serial(),
        text: Vec::new(),
        parsed: ParsedFile {
            path: path.to_path_buf(),
            documents: Vec::new(),
            diagnostics: vec![error_at(path, format!("cannot read: {e}"))],
        },
        valid: false,
    }
}

fn error_at(path: &Path, message: String) -> Diagnostic {
    Diagnostic {
        path: path.to_path_buf(),
        position: Position { line: 1, column: 1 },
        severity: Severity::Error,
        message,
    }
}

/// A relative path the walk would list: `*.yaml`/`*.yml`, no component starting with `.`.
fn is_manifest_rel(rel: &Path) -> bool {
    let plain = rel.components().all(|c| match c {
        Component::Normal(name) => !name.as_encoded_bytes().starts_with(b"."),
        _ => false,
    });
    plain
        && matches!(
            rel.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        )
}

/// What a walk of a watched directory found.
#[derive(Default)]
struct Walked {
    /// Manifest files, relative to the directory; sorted.
    files: Vec<PathBuf>,
    /// The directories under it, as walked (a symlinked one by its link's path).
    directories: Vec<PathBuf>,
}

/// Lists manifest files and directories under `dir`, following symlinks, skipping hidden
/// names.
fn walk(dir: &Path, rel: &Path, depth: usize, out: &mut Walked) -> io::Result<()> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        entries.push((entry.file_name(), entry));
    }
    entries.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
    for (name, entry) in entries {
        if name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        // The directory entry's type costs no system call; only a symlink is followed.
        let file_type = match entry.file_type() {
            Ok(t) if t.is_symlink() => fs::metadata(entry.path()).map(|m| m.file_type()),
            other => other,
        };
        let Ok(file_type) = file_type else {
            continue;
        };
        let rel = rel.join(&name);
        if file_type.is_dir() {
            let path = entry.path();
            walk(&path, &rel, depth + 1, out)?;
            out.directories.push(path);
        } else if file_type.is_file() && is_manifest_rel(&rel) {
            out.files.push(rel);
        }
    }
    Ok(())
}

/// The regular file at `path`: its fingerprint and its text (or why it could not be read);
/// `None` when no regular file is there. Opened without blocking (a FIFO named like a
/// manifest must not hang the node) and stat'ed through the descriptor.
fn read_file(path: &Path) -> Option<(Fingerprint, io::Result<Vec<u8>>)> {
    use std::os::unix::fs::OpenOptionsExt;
    let opened = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path);
    match opened {
        Ok(file) => {
            let meta = file.metadata().ok().filter(|m| m.is_file())?;
            let fingerprint = Fingerprint::of(&meta);
            Some((fingerprint, read_known_size(file, fingerprint.len)))
        }
        // There but not readable (permissions): a file, reported as unreadable.
        Err(e) => {
            let meta = fs::metadata(path).ok().filter(|m| m.is_file())?;
            Some((Fingerprint::of(&meta), Err(e)))
        }
    }
}

/// Reads a file whose size `stat` just gave: one `read` of a byte more than that when it did
/// not change since. A read of a regular file that returns less than asked has reached its
/// end, so no second `read` is needed to see it (nor the `statx` and `lseek` with which
/// `read_to_end` sizes its buffer).
fn read_known_size(mut file: fs::File, len: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut text = vec![0; usize::try_from(len).unwrap_or(0).saturating_add(1)];
    let mut filled = 0;
    loop {
        if filled == text.len() {
            // It grew since: read on in larger steps.
            text.resize(filled * 2, 0);
        }
        match file.read(&mut text[filled..]) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                if filled < text.len() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    text.truncate(filled);
    Ok(text)
}

/// A stable name for a watched directory in the store: FNV-1a (64 bit) of its absolute path.
pub fn source_id(dir: &Path) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in dir.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balancer(name: &str, vip: &str, weight: u32) -> String {
        format!(
            "apiVersion: balanced.io/v1\nkind: Balancer\nmetadata:\n  name: {name}\nspec:\n  vip: {vip}\n  \
             services:\n    - protocol: TCP\n      port: 80\n      backends:\n        - address: 10.0.0.1\n          \
             weight: {weight}\n"
        )
    }

    fn versions(set: &ManifestSet) -> Vec<*const Version> {
        set.files
            .values()
            .map(|e| e.current.as_ref().map_or(std::ptr::null(), Arc::as_ptr))
            .collect()
    }

    /// The directories to watch one by one: the watched one as resolved, every directory
    /// under it (a symlinked one by its link), no hidden one.
    #[test]
    fn the_scan_lists_every_directory_to_watch() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("m");
        let elsewhere = root.path().join("elsewhere");
        fs::create_dir_all(dir.join("a/b")).unwrap();
        fs::create_dir_all(dir.join("..data")).unwrap();
        fs::create_dir_all(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.join("linked")).unwrap();
        fs::write(dir.join("a/b/x.yaml"), balancer("x", "198.51.100.1", 1)).unwrap();
        let state = StateDir::new(root.path().join("state"));
        let mut set = ManifestSet::load(std::slice::from_ref(&dir), &state, false).unwrap();
        let listed = |set: &ManifestSet| -> BTreeSet<PathBuf> {
            set.directories().map(Path::to_path_buf).collect()
        };
        let real = fs::canonicalize(&dir).unwrap();
        let expected: BTreeSet<PathBuf> = ["", "a", "a/b", "linked"]
            .iter()
            .map(|rel| real.join(rel))
            .collect();
        assert_eq!(listed(&set), expected);
        // A directory made later is listed once a scan has walked it.
        fs::create_dir_all(dir.join("a/c")).unwrap();
        set.refresh_paths(&[dir.join("a/c")]);
        assert!(listed(&set).contains(&real.join("a/c")));
    }

    #[test]
    fn a_file_is_read_whole_whatever_size_stat_gave() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("a.yaml");
        let text: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(&path, &text).unwrap();
        let open = || fs::File::open(&path).unwrap();
        for len in [0, 1, 4095, 9_999, 10_000, 10_001, 50_000] {
            assert_eq!(
                read_known_size(open(), len).unwrap(),
                text,
                "stat said {len}"
            );
        }
        let (fingerprint, read) = read_file(&path).unwrap();
        assert_eq!((fingerprint.len, read.unwrap()), (10_000, text));
        fs::write(&path, b"").unwrap();
        assert!(read_known_size(open(), 3).unwrap().is_empty());
        // No regular file there: nothing, at once (a FIFO is not even waited on).
        assert!(read_file(&root.path().join("missing.yaml")).is_none());
        assert!(read_file(root.path()).is_none());
        let fifo = root.path().join("fifo.yaml");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path that lives across the call.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        assert!(read_file(&fifo).is_none());
    }

    proptest::proptest! {
        /// The byte order of keys is the component order of their paths.
        #[test]
        fn keys_sort_as_their_paths_do(
            a in proptest::collection::vec("[a-c./_-]{1,3}", 1..4),
            b in proptest::collection::vec("[a-c./_-]{1,3}", 1..4),
        ) {
            // Normalised relative paths, as keys hold: no empty, `.` or `..` component.
            let path = |segments: &[String]| -> PathBuf {
                segments.iter().flat_map(|s| s.split('/')).filter(|c| !matches!(*c, "" | "." | ".."))
                    .collect()
            };
            let (a, b) = (path(&a), path(&b));
            let key = |rel: &PathBuf| FileKey { source: 0, rel: rel.clone() };
            proptest::prop_assert_eq!(key(&a).cmp(&key(&b)), a.cmp(&b));
            proptest::prop_assert_eq!(key(&a) == key(&b), a == b);
        }
    }

    #[test]
    fn only_the_changed_file_is_read_and_parsed_again() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("m");
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("a.yaml"), balancer("a", "198.51.100.1", 1)).unwrap();
        fs::write(dir.join("sub/b.yml"), balancer("b", "198.51.100.2", 1)).unwrap();
        fs::write(dir.join("c.yaml"), balancer("c", "198.51.100.3", 1)).unwrap();
        fs::write(dir.join("notes.txt"), "not a manifest").unwrap();
        fs::write(dir.join(".hidden.yaml"), "not read").unwrap();
        let state = StateDir::new(root.path().join("state"));
        let mut set = ManifestSet::load(std::slice::from_ref(&dir), &state, false).unwrap();
        set.resolve(None);
        assert_eq!(set.balancers().len(), 3);
        let before = versions(&set);

        fs::write(dir.join("c.yaml"), balancer("c", "198.51.100.3", 9)).unwrap();
        assert!(set.refresh_paths(&[dir.join("c.yaml"), dir.join("notes.txt")]));
        let after = versions(&set);
        // Keys in order: a.yaml, c.yaml, sub/b.yml.
        assert_eq!(
            (before[0], before[2]),
            (after[0], after[2]),
            "a.yaml and sub/b.yml were not parsed again"
        );
        assert_ne!(before[1], after[1], "c.yaml was");

        let same = versions(&set);
        assert!(
            !set.refresh_paths(&[dir.join("c.yaml")]),
            "same bytes: no change"
        );
        assert_eq!(versions(&set), same);
        assert!(
            !set.rescan_all(),
            "a rescan re-reads nothing that did not change"
        );
    }

    #[test]
    fn an_edit_that_renames_into_a_conflict_is_caught_after_clean_rounds() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("m");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("a.yaml"), balancer("a", "198.51.100.1", 1)).unwrap();
        fs::write(dir.join("c.yaml"), balancer("c", "198.51.100.3", 1)).unwrap();
        let state = StateDir::new(root.path().join("state"));
        let mut set = ManifestSet::load(std::slice::from_ref(&dir), &state, false).unwrap();
        assert!(!set.resolve(None).invalid);
        set.persist().unwrap();

        // A weight edit: the last clean check still holds.
        fs::write(dir.join("c.yaml"), balancer("c", "198.51.100.3", 5)).unwrap();
        set.refresh_paths(&[dir.join("c.yaml")]);
        assert!(!set.resolve(None).invalid);
        set.persist().unwrap();

        // A rename onto a's name: checked again, refused, the previous c stays in force.
        fs::write(dir.join("c.yaml"), balancer("a", "198.51.100.3", 5)).unwrap();
        set.refresh_paths(&[dir.join("c.yaml")]);
        let resolution = set.resolve(None);
        assert!(resolution.invalid);
        assert!(
            resolution
                .diagnostics
                .iter()
                .any(|d| d.message.contains("duplicate metadata.name")),
            "{:?}",
            resolution.diagnostics
        );
        let names: Vec<_> = set
            .balancers()
            .iter()
            .map(|b| b.metadata.name.clone())
            .collect();
        assert_eq!(names, vec!["a".to_owned(), "c".to_owned()]);
    }

    /// What a resolve decided, comparable between two sets.
    fn outcome(set: &mut ManifestSet) -> (Vec<String>, bool, Vec<ManifestStatus>, Vec<String>) {
        let resolution = set.resolve(None);
        let balancers = set
            .balancers()
            .iter()
            .map(|b| format!("{} {:?}", b.metadata.name, b.spec))
            .collect();
        (
            resolution
                .diagnostics
                .iter()
                .map(|d| d.to_string())
                .collect(),
            resolution.invalid,
            set.status(),
            balancers,
        )
    }

    #[test]
    fn a_partial_resolve_decides_what_a_full_one_does() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("m");
        fs::create_dir_all(&dir).unwrap();
        let state = StateDir::new(root.path().join("state"));
        for (name, vip) in [
            ("a", "198.51.100.1"),
            ("b", "198.51.100.2"),
            ("c", "198.51.100.3"),
        ] {
            fs::write(dir.join(format!("{name}.yaml")), balancer(name, vip, 1)).unwrap();
        }
        let mut set = ManifestSet::load(std::slice::from_ref(&dir), &state, false).unwrap();
        assert!(!outcome(&mut set).1);
        set.persist().unwrap();
        let c = FileKey {
            source: 0,
            rel: "c.yaml".into(),
        };
        // (what to write or delete, whether only that file needs looking at afterwards)
        let steps: Vec<(&str, Option<String>, bool)> = vec![
            ("c.yaml", Some(balancer("c", "198.51.100.3", 2)), true),
            ("c.yaml", Some("spec: [broken".to_owned()), true),
            ("c.yaml", Some(balancer("c", "198.51.100.3", 3)), true),
            ("b.yaml", None, false),
            ("d.yaml", Some(balancer("d", "198.51.100.4", 1)), false),
            ("c.yaml", Some(balancer("c", "198.51.100.3", 4)), true),
            ("c.yaml", Some(balancer("a", "198.51.100.3", 4)), false),
            ("c.yaml", Some(balancer("c", "198.51.100.3", 5)), false),
            ("c.yaml", Some(balancer("c", "198.51.100.3", 6)), true),
        ];
        for (i, (file, text, partial)) in steps.into_iter().enumerate() {
            let path = dir.join(file);
            match text {
                Some(text) => fs::write(&path, text).unwrap(),
                None => fs::remove_file(&path).unwrap(),
            }
            let mut fresh = ManifestSet::load(std::slice::from_ref(&dir), &state, false).unwrap();
            let epoch = set.epoch();
            set.refresh_paths(&[path]);
            let got = outcome(&mut set);
            assert_eq!(got, outcome(&mut fresh), "step {i}: {file}");
            let changed: Option<Vec<&FileKey>> = set.changed_since(epoch).map(Iterator::collect);
            if partial {
                assert_eq!(changed, Some(vec![&c]), "step {i}: only c.yaml looked at");
            } else {
                assert_eq!(changed, None, "step {i}: every file looked at");
            }
            set.persist().unwrap();
        }
    }

    #[test]
    fn paths_the_walk_lists() {
        assert!(is_manifest_rel(Path::new("a.yaml")));
        assert!(is_manifest_rel(Path::new("team/a.yml")));
        assert!(!is_manifest_rel(Path::new("..data/a.yaml")));
        assert!(!is_manifest_rel(Path::new(".a.yaml")));
        assert!(!is_manifest_rel(Path::new("a.json")));
        assert!(!is_manifest_rel(Path::new("")));
    }

    #[test]
    fn source_ids_are_stable_across_releases() {
        // FNV-1a 64 of the path bytes: a restart must find the same store.
        assert_eq!(source_id(Path::new("")), "cbf29ce484222325");
        assert_eq!(source_id(Path::new("a")), "af63dc4c8601ec8c");
    }
}
