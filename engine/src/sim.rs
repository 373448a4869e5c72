//! The simulated dataplane (`--dataplane sim:PATH`): the node's state lives in a JSON file and
//! changes as the kernel would change it ([`crate::kernel_sim`]), so successive commands see
//! each other's effects and tests can set connection counts.
//!
//! The file is the document `balanced status --output json` prints: a JSON object whose
//! `observed` key holds a [`NodeState`]; other keys are kept untouched. A missing file is an
//! empty node. `commit()` writes the file atomically (temporary file + rename).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::dataplane::{Action, ActionError, Dataplane, DataplaneError, Errno, ObserveRequest};
use crate::display::describe_action;
use crate::kernel_sim::apply_action;
use crate::model::{Interface, NodeState};

/// A node simulated in a file.
#[derive(Debug)]
pub struct SimDataplane {
    path: PathBuf,
    read_only: bool,
    document: serde_json::Map<String, serde_json::Value>,
    state: NodeState,
    dirty: bool,
}

impl SimDataplane {
    /// Opens the state at `path` (a missing file is an empty node). `read_only`: `plan` never
    /// changes it; applying is refused.
    pub fn open(path: &Path, read_only: bool) -> Result<Self, DataplaneError> {
        let io = |source| DataplaneError::Io {
            path: path.to_owned(),
            source,
        };
        let format = |source| DataplaneError::SimFormat {
            path: path.to_owned(),
            source,
        };
        let (document, state) = match std::fs::read(path) {
            Ok(bytes) => {
                let mut document: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(&bytes).map_err(format)?;
                let state = match document.remove("observed") {
                    Some(observed) => serde_json::from_value(observed).map_err(format)?,
                    None => NodeState::default(),
                };
                (document, state)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                (serde_json::Map::new(), NodeState::default())
            }
            Err(e) => return Err(io(e)),
        };
        Ok(SimDataplane {
            path: path.to_owned(),
            read_only,
            document,
            state,
            dirty: false,
        })
    }

    /// The whole simulated state, as the file holds it.
    pub fn state(&self) -> &NodeState {
        &self.state
    }
}

impl Dataplane for SimDataplane {
    /// Like the kernel: every service, the requested link (missing when the file holds another
    /// or none) and only the requested sysctls.
    fn observe(&mut self, request: &ObserveRequest) -> Result<NodeState, DataplaneError> {
        let interface = if self.state.interface.name == request.interface {
            self.state.interface.clone()
        } else {
            Interface {
                name: request.interface.clone(),
                ..Interface::default()
            }
        };
        let sysctls = request
            .sysctls
            .iter()
            .filter_map(|name| {
                self.state
                    .sysctls
                    .get(name)
                    .map(|value| (name.clone(), value.clone()))
            })
            .collect();
        Ok(NodeState {
            interface,
            services: self.state.services.clone(),
            sysctls,
            timeouts: self.state.timeouts,
        })
    }

    fn apply(&mut self, action: &Action) -> Result<(), ActionError> {
        if self.read_only {
            return Err(ActionError {
                errno: Errno::EPERM,
                message: format!(
                    "{}: {} on a read-only simulated dataplane",
                    self.path.display(),
                    describe_action(action)
                ),
            });
        }
        apply_action(&mut self.state, action).map_err(|errno| ActionError {
            errno,
            message: describe_action(action),
        })?;
        self.dirty = true;
        Ok(())
    }

    /// Writes the file atomically when something changed: a temporary file next to it, synced,
    /// then renamed over it.
    fn commit(&mut self) -> Result<(), DataplaneError> {
        if !self.dirty {
            return Ok(());
        }
        if self.read_only {
            return Err(DataplaneError::ReadOnly {
                path: self.path.clone(),
            });
        }
        let mut document = self.document.clone();
        let observed =
            serde_json::to_value(&self.state).map_err(|source| DataplaneError::SimFormat {
                path: self.path.clone(),
                source,
            })?;
        document.insert("observed".to_owned(), observed);
        let mut bytes =
            serde_json::to_vec_pretty(&document).map_err(|source| DataplaneError::SimFormat {
                path: self.path.clone(),
                source,
            })?;
        bytes.push(b'\n');
        write_atomically(&self.path, &bytes).map_err(|source| DataplaneError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.dirty = false;
        Ok(())
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "sim".into(), |n| n.to_string_lossy().into_owned());
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}
