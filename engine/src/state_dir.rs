//! The node's state directory (`--state-dir`, default `/var/lib/balanced`): what must survive a
//! restart and what `balanced status` reads.
//!
//! ```text
//! <state-dir>/
//!   lock                      flock(2) held by the one `apply` or `run` writing here
//!   drain-record.json         drain starts and address withdrawals (the planner's DrainRecord)
//!   status.json               the latest status document: `apply` writes it after converging,
//!                             `run` within a second of each converge (crate::status_writer)
//!   lkg/<source-id>/.source   the watched directory this entry belongs to (for people)
//!   lkg/<source-id>/<rel>     the last known good text of <watched dir>/<rel>
//! ```
//!
//! Rule: every file is replaced atomically (temporary file, fsync, rename, fsync of the
//! directory), so a crash leaves either the old or the new version, never a torn one. Readers
//! treat a missing file as "nothing recorded yet"; a `plan` never writes here.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::EngineError;
use crate::plan::DrainRecord;

pub const DEFAULT_STATE_DIR: &str = "/var/lib/balanced";

const DRAIN_RECORD: &str = "drain-record.json";
const STATUS: &str = "status.json";
const LKG: &str = "lkg";
const SOURCE_MARKER: &str = ".source";

/// A state directory; nothing is created until something is written.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the exclusive lock of the directory (creating it), so one `apply` and one `run`
    /// never write the same state at once. Held until the returned guard is dropped.
    pub fn lock(&self) -> Result<StateLock, EngineError> {
        fs::create_dir_all(&self.root).map_err(|e| EngineError::io(&self.root, e))?;
        let path = self.root.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| EngineError::io(&path, e))?;
        // SAFETY: flock on a descriptor we own; no memory is shared with the kernel.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            return Err(if err.kind() == io::ErrorKind::WouldBlock {
                EngineError::Locked { path }
            } else {
                EngineError::io(&path, err)
            });
        }
        Ok(StateLock { _file: file })
    }

    pub fn read_drain_record(&self) -> Result<DrainRecord, EngineError> {
        Ok(self.read_json(DRAIN_RECORD)?.unwrap_or_default())
    }

    pub fn write_drain_record(&self, record: &DrainRecord) -> Result<(), EngineError> {
        self.write_json(DRAIN_RECORD, record, &|| false)
    }

    /// The status document last written by `apply` or `run`, as raw JSON (the reader decides
    /// which fields it needs, so an older or newer engine's document still reads).
    pub fn read_status(&self) -> Result<Option<serde_json::Value>, EngineError> {
        self.read_json(STATUS)
    }

    pub fn write_status<T: Serialize>(&self, status: &T) -> Result<(), EngineError> {
        self.write_json(STATUS, status, &|| false)
    }

    /// [`StateDir::write_status`] that gives way: `give_way` is asked before each 64 KiB
    /// written, and when it says so the write stops with an error and the file stays as it was.
    pub fn write_status_giving_way<T: Serialize>(
        &self,
        status: &T,
        give_way: &dyn Fn() -> bool,
    ) -> Result<(), EngineError> {
        self.write_json(STATUS, status, give_way)
    }

    /// The last-known-good store of one watched directory.
    pub fn lkg(&self, source_id: &str) -> LkgStore {
        LkgStore {
            dir: self.root.join(LKG).join(source_id),
        }
    }

    fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, EngineError> {
        let path = self.root.join(name);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| EngineError::StateFormat { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(EngineError::io(&path, e)),
        }
    }

    /// Serializes straight into the temporary file: the status of a large node is tens of
    /// megabytes, and building it in memory first cost as much again in reallocation.
    fn write_json<T: Serialize>(
        &self,
        name: &str,
        value: &T,
        give_way: &dyn Fn() -> bool,
    ) -> Result<(), EngineError> {
        let path = self.root.join(name);
        let mut unserializable = None;
        let written = write_atomic_with(&path, |file| {
            let mut out = io::BufWriter::with_capacity(1 << 16, GivingWay { file, give_way });
            serde_json::to_writer_pretty(&mut out, value).map_err(|e| {
                if e.is_io() {
                    io::Error::from(e)
                } else {
                    io::Error::other(unserializable.insert(e).to_string())
                }
            })?;
            out.write_all(b"\n")?;
            out.flush()
        });
        match (written, unserializable) {
            (_, Some(source)) => Err(EngineError::StateFormat { path, source }),
            (Err(e), None) => Err(EngineError::io(&path, e)),
            (Ok(()), None) => Ok(()),
        }
    }
}

/// A file whose writes fail once `give_way` says so.
struct GivingWay<'a> {
    file: &'a File,
    give_way: &'a dyn Fn() -> bool,
}

impl Write for GivingWay<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if (self.give_way)() {
            return Err(io::Error::other("gave way before the end"));
        }
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// The exclusive lock of a state directory; released on drop (closing the descriptor).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

/// Last known good texts of the manifest files of one watched directory, by relative path.
#[derive(Debug, Clone)]
pub struct LkgStore {
    dir: PathBuf,
}

impl LkgStore {
    /// Every stored entry: relative path → text, sorted. A missing store is empty.
    pub fn load_all(&self) -> Result<Vec<(PathBuf, Vec<u8>)>, EngineError> {
        let mut out = Vec::new();
        match fs::metadata(&self.dir) {
            Ok(_) => collect(&self.dir, Path::new(""), &mut out)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(EngineError::io(&self.dir, e)),
        }
        out.sort();
        Ok(out)
    }

    /// Records each `(rel, text)` as the last known good version of `rel`; `source` names the
    /// watched directory in the store's marker file. Many entries (a first start with
    /// thousands of files) share two filesystem syncs instead of two each.
    pub fn store(&self, source: &Path, entries: &[(&Path, &[u8])]) -> Result<(), EngineError> {
        if entries.is_empty() {
            return Ok(());
        }
        let marker = self.dir.join(SOURCE_MARKER);
        if !marker.exists() {
            let mut line = source.as_os_str().as_encoded_bytes().to_vec();
            line.push(b'\n');
            write_atomic(&marker, &line).map_err(|e| EngineError::io(&marker, e))?;
        }
        let mut files = Vec::with_capacity(entries.len());
        for (rel, text) in entries {
            files.push((self.entry(rel)?, *text));
        }
        if let [(path, text)] = files.as_slice() {
            return write_atomic(path, text).map_err(|e| EngineError::io(path, e));
        }
        write_atomic_batch(&self.dir, &files).map_err(|e| EngineError::io(&self.dir, e))
    }

    /// Forgets the entries `rels` (their files were deleted on purpose).
    pub fn remove(&self, rels: &[&Path]) -> Result<(), EngineError> {
        let mut removed = false;
        for rel in rels {
            let path = self.entry(rel)?;
            match fs::remove_file(&path) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(EngineError::io(&path, e)),
            }
        }
        if removed {
            sync_filesystem(&self.dir).map_err(|e| EngineError::io(&self.dir, e))?;
        }
        Ok(())
    }

    fn entry(&self, rel: &Path) -> Result<PathBuf, EngineError> {
        let plain = rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !plain || rel.as_os_str().is_empty() {
            return Err(EngineError::io(
                rel,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a plain relative path inside a watched directory",
                ),
            ));
        }
        Ok(self.dir.join(rel))
    }
}

fn collect(dir: &Path, rel: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) -> Result<(), EngineError> {
    let entries = fs::read_dir(dir).map_err(|e| EngineError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| EngineError::io(dir, e))?;
        let name = entry.file_name();
        if name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let path = entry.path();
        let file_type = entry.file_type().map_err(|e| EngineError::io(&path, e))?;
        if file_type.is_dir() {
            collect(&path, &rel.join(&name), out)?;
        } else if file_type.is_file() {
            let text = fs::read(&path).map_err(|e| EngineError::io(&path, e))?;
            out.push((rel.join(&name), text));
        }
    }
    Ok(())
}

/// Replaces `path` with `bytes` atomically and durably: a temporary file in the same
/// directory, fsync, rename over `path`, fsync of the directory. Creates missing parents.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |mut file| file.write_all(bytes))
}

/// [`write_atomic`] with the content written by `write` into the temporary file.
fn write_atomic_with(path: &Path, write: impl FnOnce(&File) -> io::Result<()>) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(parent)?;
    let tmp = temporary(path)?;
    let result = (|| {
        let file = File::create(&tmp)?;
        write(&file)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_parent(path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// [`write_atomic`] for many files under `root`: every temporary file written, one sync of
/// the filesystem, every rename, one more sync. Each file is still either old or new after a
/// crash.
fn write_atomic_batch(root: &Path, files: &[(PathBuf, &[u8])]) -> io::Result<()> {
    let mut renames = Vec::with_capacity(files.len());
    let result = (|| {
        for (path, bytes) in files {
            let tmp = temporary(path)?;
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            renames.push((tmp.clone(), path));
            fs::write(&tmp, bytes)?;
        }
        sync_filesystem(root)?;
        for (tmp, path) in &renames {
            fs::rename(tmp, path)?;
        }
        sync_filesystem(root)
    })();
    if result.is_err() {
        for (tmp, _) in &renames {
            let _ = fs::remove_file(tmp);
        }
    }
    result
}

fn temporary(path: &Path) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    Ok(path.with_file_name(tmp_name))
}

/// syncfs(2) on the filesystem holding `dir`.
fn sync_filesystem(dir: &Path) -> io::Result<()> {
    let handle = File::open(dir)?;
    // SAFETY: syncfs on a descriptor we own.
    if unsafe { libc::syncfs(handle.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => File::open(p)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_write_that_gives_way_leaves_the_last_one_whole() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let big: Vec<u64> = (0..100_000).collect();
        state.write_status(&serde_json::json!({ "n": 1 })).unwrap();
        let asked = std::cell::Cell::new(0);
        let give_way = || {
            asked.set(asked.get() + 1);
            asked.get() > 2
        };
        assert!(
            state
                .write_status_giving_way(&serde_json::json!({ "n": 2, "big": big }), &give_way)
                .is_err()
        );
        // About 1.5 MB of JSON: some 20 chunks of 64 KiB had it not stopped at the third.
        assert!(
            (3..6).contains(&asked.get()),
            "asked before each 64 KiB until it gave way: {} times",
            asked.get()
        );
        assert_eq!(
            state.read_status().unwrap(),
            Some(serde_json::json!({ "n": 1 }))
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("status.json")]);
        state
            .write_status_giving_way(&serde_json::json!({ "n": 3, "big": big }), &|| false)
            .unwrap();
        assert_eq!(state.read_status().unwrap().unwrap()["n"], 3);
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/status.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("status.json")]);
    }

    #[test]
    fn lkg_store_round_trips_nested_paths_and_forgets() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::new(dir.path()).lkg("abc");
        assert!(store.load_all().unwrap().is_empty());
        let one: &[(&Path, &[u8])] = &[(Path::new("team/web.yaml"), b"x: 1\n")];
        store.store(Path::new("/m"), one).unwrap();
        let batch: &[(&Path, &[u8])] =
            &[(Path::new("dns.yaml"), b"y"), (Path::new("a/b.yaml"), b"z")];
        store.store(Path::new("/m"), batch).unwrap();
        assert_eq!(
            store.load_all().unwrap(),
            vec![
                (PathBuf::from("a/b.yaml"), b"z".to_vec()),
                (PathBuf::from("dns.yaml"), b"y".to_vec()),
                (PathBuf::from("team/web.yaml"), b"x: 1\n".to_vec()),
            ]
        );
        let leftovers = fs::read_dir(dir.path().join("lkg/abc"))
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().contains(".tmp-")
            })
            .count();
        assert_eq!(leftovers, 0, "no temporary file is left behind");
        store
            .remove(&[Path::new("dns.yaml"), Path::new("gone.yaml")])
            .unwrap();
        assert_eq!(store.load_all().unwrap().len(), 2);
        let evil: &[(&Path, &[u8])] = &[(Path::new("../evil.yaml"), b"")];
        assert!(store.store(Path::new("/m"), evil).is_err());
    }

    #[test]
    fn second_lock_is_refused_while_the_first_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let first = state.lock().unwrap();
        assert!(matches!(state.lock(), Err(EngineError::Locked { .. })));
        drop(first);
        state.lock().unwrap();
    }
}
