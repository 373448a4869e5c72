//! The writer: puts rendered manifests on disk, one file per path, and nothing else.
//!
//! Rules: a file is replaced atomically (temporary file in the same directory, fsync, rename;
//! every directory touched is fsynced once at the end of the batch, before the batch is
//! reported or committed), so a reader sees the old bytes or the new ones, never a mix; a file is
//! rewritten only when its bytes change; `metadata.generation` continues from the file on disk
//! and is bumped on every change; only files whose `metadata.source` starts with `kubernetes/`
//! are ever replaced or deleted. With Git, each batch becomes one commit naming the Services.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use balanced_schemas::v1::Balancer;

use crate::Error;
use crate::annotations::ServiceConfig;
use crate::manifest::{self, SOURCE_PREFIX, ServiceKey};

/// What the writer knows about one file it owns.
#[derive(Debug, Clone)]
struct OnDisk {
    service: ServiceKey,
    generation: u64,
    bytes: String,
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    pub path: String,
    pub service: ServiceKey,
    pub kind: ChangeKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    Created { generation: u64 },
    Updated { generation: u64 },
    Deleted,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ChangeKind::Created { generation } => {
                write!(
                    f,
                    "{}: created {} (generation {generation})",
                    self.service, self.path
                )
            }
            ChangeKind::Updated { generation } => {
                write!(
                    f,
                    "{}: updated {} (generation {generation})",
                    self.service, self.path
                )
            }
            ChangeKind::Deleted => write!(f, "{}: deleted {}", self.service, self.path),
        }
    }
}

/// Committing (and pushing) each batch of changes to the Git repository holding the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitConfig {
    /// `git push <remote> HEAD` after each commit.
    pub push: Option<String>,
    pub author_name: String,
    pub author_email: String,
}

/// What one sync did: the changes made, and the files it could not write (the others were
/// still written).
#[derive(Debug, Default)]
pub struct Batch {
    pub changes: Vec<Change>,
    pub errors: Vec<Error>,
}

impl Batch {
    /// The changes, or the first error.
    pub fn into_result(self) -> Result<Vec<Change>, Error> {
        match self.errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(self.changes),
        }
    }

    fn record(&mut self, result: Result<Option<Change>, Error>) {
        match result {
            Ok(change) => self.changes.extend(change),
            Err(e) => self.errors.push(e),
        }
    }
}

pub struct Writer {
    dir: PathBuf,
    owned: BTreeMap<String, OnDisk>,
    git: Option<GitConfig>,
}

impl Writer {
    /// Opens the output directory (creating it) and reads the manifests it holds, so
    /// generations continue and the exporter's own files are known.
    pub fn open(dir: impl Into<PathBuf>, git: Option<GitConfig>) -> Result<Writer, Error> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut writer = Writer {
            dir,
            owned: BTreeMap::new(),
            git,
        };
        let mut files = Vec::new();
        collect_yaml(&writer.dir, &writer.dir, &mut files)?;
        for relative in files {
            match writer.read_owned(&relative) {
                Ok(Some(on_disk)) => {
                    writer.owned.insert(relative, on_disk);
                }
                Ok(None) | Err(Error::Foreign { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(writer)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The Services whose manifests are on disk.
    pub fn services(&self) -> BTreeSet<ServiceKey> {
        self.owned.values().map(|o| o.service.clone()).collect()
    }

    /// The configuration each Service's manifests on disk were rendered with: the last good
    /// configuration after a restart.
    pub fn configs(&self) -> BTreeMap<ServiceKey, ServiceConfig> {
        self.owned
            .values()
            .filter_map(|o| {
                let balancer = manifest::from_yaml(&o.bytes).ok()?;
                Some((o.service.clone(), ServiceConfig::from_manifest(&balancer)?))
            })
            .collect()
    }

    /// Makes the directory hold exactly `manifests` among the files the exporter owns.
    pub fn sync(&mut self, manifests: BTreeMap<String, Balancer>) -> Batch {
        self.sync_except(manifests, &BTreeSet::new())
    }

    /// Like [`Writer::sync`], but the files of the `held` Services stay exactly as they are.
    pub fn sync_except(
        &mut self,
        manifests: BTreeMap<String, Balancer>,
        held: &BTreeSet<ServiceKey>,
    ) -> Batch {
        let gone: Vec<String> = self
            .owned
            .iter()
            .filter(|(p, o)| !manifests.contains_key(*p) && !held.contains(&o.service))
            .map(|(p, _)| p.clone())
            .collect();
        self.batch(manifests, gone)
    }

    /// Makes the directory hold exactly `manifests` for one Service: files of the Service that
    /// are not among them (a family gone, the Service gone) are deleted.
    pub fn sync_service(
        &mut self,
        service: &ServiceKey,
        manifests: BTreeMap<String, Balancer>,
    ) -> Batch {
        let gone: Vec<String> = self
            .owned
            .iter()
            .filter(|(p, o)| &o.service == service && !manifests.contains_key(*p))
            .map(|(p, _)| p.clone())
            .collect();
        self.batch(manifests, gone)
    }

    fn batch(&mut self, manifests: BTreeMap<String, Balancer>, gone: Vec<String>) -> Batch {
        let mut batch = Batch::default();
        let mut dirs = BTreeSet::new();
        for (path, balancer) in manifests {
            batch.record(self.write(&path, balancer, &mut dirs));
        }
        for path in gone {
            batch.record(self.delete(&path, &mut dirs));
        }
        for dir in dirs {
            if let Err(e) = sync_dir(&dir) {
                batch.errors.push(e);
            }
        }
        batch
    }

    /// Writes one manifest when its bytes differ from the file's, continuing its generation.
    /// Directories to fsync are added to `dirs`.
    fn write(
        &mut self,
        path: &str,
        mut balancer: Balancer,
        dirs: &mut BTreeSet<PathBuf>,
    ) -> Result<Option<Change>, Error> {
        let service = balancer
            .metadata
            .source
            .as_deref()
            .and_then(ServiceKey::from_source)
            .ok_or_else(|| Error::Foreign {
                path: self.dir.join(path),
                source_field: balancer.metadata.source.clone(),
            })?;
        let previous = match self.owned.get(path) {
            Some(p) => Some(p.clone()),
            None => self.read_owned(path)?,
        };
        let (generation, kind) = match &previous {
            None => (1, ChangeKind::Created { generation: 1 }),
            Some(p) => {
                balancer.metadata.generation = Some(p.generation);
                if manifest::to_yaml(&balancer)? == p.bytes {
                    self.owned.insert(path.to_owned(), p.clone());
                    return Ok(None);
                }
                let generation = p.generation + 1;
                (generation, ChangeKind::Updated { generation })
            }
        };
        balancer.metadata.generation = Some(generation);
        let bytes = manifest::to_yaml(&balancer)?;
        dirs.extend(replace_file(&self.dir.join(path), bytes.as_bytes())?);
        self.owned.insert(
            path.to_owned(),
            OnDisk {
                service: service.clone(),
                generation,
                bytes,
            },
        );
        Ok(Some(Change {
            path: path.to_owned(),
            service,
            kind,
        }))
    }

    fn delete(
        &mut self,
        path: &str,
        dirs: &mut BTreeSet<PathBuf>,
    ) -> Result<Option<Change>, Error> {
        let Some(on_disk) = self.owned.remove(path) else {
            return Ok(None);
        };
        let full = self.dir.join(path);
        match fs::remove_file(&full) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&full, e)),
        }
        if let Some(parent) = full.parent() {
            if parent != self.dir && fs::remove_dir(parent).is_ok() {
                dirs.insert(self.dir.clone());
            } else {
                dirs.insert(parent.to_path_buf());
            }
        }
        Ok(Some(Change {
            path: path.to_owned(),
            service: on_disk.service,
            kind: ChangeKind::Deleted,
        }))
    }

    /// Reads a file at `path`: `None` when there is none; an error when it exists but is not
    /// the exporter's (unparsable or another source), so it is never overwritten.
    fn read_owned(&self, path: &str) -> Result<Option<OnDisk>, Error> {
        let full = self.dir.join(path);
        let bytes = match fs::read_to_string(&full) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&full, e)),
        };
        let Ok(balancer) = manifest::from_yaml(&bytes) else {
            return Err(Error::Foreign {
                path: full,
                source_field: None,
            });
        };
        let service = balancer
            .metadata
            .source
            .as_deref()
            .filter(|s| s.starts_with(SOURCE_PREFIX))
            .and_then(ServiceKey::from_source);
        match service {
            Some(service) => Ok(Some(OnDisk {
                service,
                generation: balancer.metadata.generation.unwrap_or(0),
                bytes,
            })),
            None => Err(Error::Foreign {
                path: full,
                source_field: balancer.metadata.source,
            }),
        }
    }

    /// One commit for the batch (and a push when configured). Returns whether it committed.
    pub fn commit(&self, changes: &[Change]) -> Result<bool, Error> {
        let Some(git) = &self.git else {
            return Ok(false);
        };
        if changes.is_empty() {
            return Ok(false);
        }
        let paths: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
        let mut add = vec!["add", "--all", "--"];
        add.extend(&paths);
        self.git(git, &add)?;
        let services: BTreeSet<&ServiceKey> = changes.iter().map(|c| &c.service).collect();
        let mut message = format!(
            "balanced-exporter: {} Service{} changed\n\n",
            services.len(),
            if services.len() == 1 { "" } else { "s" }
        );
        for change in changes {
            message.push_str(&format!("{change}\n"));
        }
        let mut commit = vec!["commit", "--quiet", "-m", message.as_str(), "--"];
        commit.extend(&paths);
        self.git(git, &commit)?;
        if let Some(remote) = &git.push {
            self.git(git, &["push", "--quiet", remote, "HEAD"])?;
        }
        Ok(true)
    }

    fn git(&self, git: &GitConfig, args: &[&str]) -> Result<(), Error> {
        let output = Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", &git.author_name)
            .env("GIT_AUTHOR_EMAIL", &git.author_email)
            .env("GIT_COMMITTER_NAME", &git.author_name)
            .env("GIT_COMMITTER_EMAIL", &git.author_email)
            .output()
            .map_err(|e| Error::Git {
                args: args.first().copied().unwrap_or_default().to_owned(),
                message: e.to_string(),
            })?;
        if output.status.success() {
            Ok(())
        } else {
            Err(Error::Git {
                args: args.first().copied().unwrap_or_default().to_owned(),
                message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            })
        }
    }
}

/// Every `*.yaml` under `dir`, as paths relative to `root`, skipping hidden entries (the
/// writer's temporary files, `.git`).
fn collect_yaml(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), Error> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        paths.push(entry.path());
    }
    paths.sort();
    for path in paths {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            collect_yaml(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml")
            && let Some(relative) = path.strip_prefix(root).ok().and_then(|r| r.to_str())
        {
            out.push(relative.to_owned());
        }
    }
    Ok(())
}

/// Replaces `path` with `bytes` so that readers see either the old or the new file: a
/// temporary file in the same directory, fsynced, renamed over it. Returns the directories
/// whose entries changed, which the caller fsyncs (once per batch).
pub fn replace_file(path: &Path, bytes: &[u8]) -> Result<Vec<PathBuf>, Error> {
    let parent = path
        .parent()
        .ok_or_else(|| Error::io(path, std::io::Error::other("no parent directory")))?;
    let mut dirs = vec![parent.to_path_buf()];
    if !parent.exists() {
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        dirs.extend(parent.parent().map(Path::to_path_buf));
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::io(path, std::io::Error::other("no file name")))?;
    let temporary = parent.join(format!(".{name}.tmp"));
    let mut file = File::create(&temporary).map_err(|e| Error::io(&temporary, e))?;
    file.write_all(bytes)
        .map_err(|e| Error::io(&temporary, e))?;
    file.sync_all().map_err(|e| Error::io(&temporary, e))?;
    drop(file);
    fs::rename(&temporary, path).map_err(|e| Error::io(path, e))?;
    Ok(dirs)
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}
