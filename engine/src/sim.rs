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
        let (document, state) = load(path)?;
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
    /// The file is read again first (unless applied changes wait for `commit`), so what
    /// another process wrote there — connection counts, drift, a broken file — is seen the way
    /// a kernel's changes would be.
    fn observe(&mut self, request: &ObserveRequest) -> Result<NodeState, DataplaneError> {
        if !self.dirty {
            (self.document, self.state) = load(&self.path)?;
        }
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

/// Reads the document at `path`: its other keys and its `observed` state (a missing file is an
/// empty node).
fn load(
    path: &Path,
) -> Result<(serde_json::Map<String, serde_json::Value>, NodeState), DataplaneError> {
    let format = |source| DataplaneError::SimFormat {
        path: path.to_owned(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            let mut document: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&bytes).map_err(format)?;
            let state = match document.remove("observed") {
                Some(observed) => serde_json::from_value(observed).map_err(format)?,
                None => NodeState::default(),
            };
            Ok((document, state))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok((serde_json::Map::new(), NodeState::default()))
        }
        Err(source) => Err(DataplaneError::Io {
            path: path.to_owned(),
            source,
        }),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ServiceConfig, ServiceKey};
    use balanced_schemas::v1::{Protocol, Scheduler};

    fn add_service() -> Action {
        Action::AddService {
            key: ServiceKey::Inet {
                protocol: Protocol::Tcp,
                vip: "198.51.100.10".parse().unwrap(),
                port: 80,
            },
            config: ServiceConfig {
                scheduler: Scheduler::Rr,
                flags: 0,
                timeout: 0,
                netmask: u32::MAX,
                pe_name: String::new(),
            },
        }
    }

    fn request() -> ObserveRequest {
        ObserveRequest {
            interface: "balanced0".into(),
            vip_links: 1,
            sysctls: vec!["net.ipv4.vs.sloppy_tcp".into()],
        }
    }

    #[test]
    fn a_missing_file_is_an_empty_node_and_commits_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.json");
        let mut sim = SimDataplane::open(&path, false).unwrap();
        let empty = sim.observe(&request()).unwrap();
        assert!(empty.services.is_empty() && !empty.interface.exists);
        sim.apply(&Action::EnsureInterface {
            name: "balanced0".into(),
        })
        .unwrap();
        sim.apply(&add_service()).unwrap();
        let refused = sim.apply(&add_service()).unwrap_err();
        assert_eq!(refused.errno, Errno::EEXIST);
        sim.commit().unwrap();

        let mut again = SimDataplane::open(&path, true).unwrap();
        let state = again.observe(&request()).unwrap();
        assert_eq!(state.services.len(), 1);
        assert!(state.interface.exists && state.interface.up);
        let other_link = again
            .observe(&ObserveRequest {
                interface: "other0".into(),
                vip_links: 1,
                sysctls: Vec::new(),
            })
            .unwrap();
        assert!(
            !other_link.interface.exists,
            "only the simulated link exists"
        );
    }

    #[test]
    fn other_keys_of_the_document_are_kept_and_read_only_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        std::fs::write(
            &path,
            r#"{"manifests": [{"name": "web"}], "observed": {"interface": {"name": "balanced0",
               "exists": true, "up": true, "addresses": []}, "services": [],
               "sysctls": {"net.ipv4.vs.sloppy_tcp": "1", "net.ipv4.vs.conntrack": "0"}}}"#,
        )
        .unwrap();
        let mut read_only = SimDataplane::open(&path, true).unwrap();
        let state = read_only.observe(&request()).unwrap();
        assert_eq!(
            state.sysctls.keys().collect::<Vec<_>>(),
            ["net.ipv4.vs.sloppy_tcp"],
            "only the requested sysctls"
        );
        assert_eq!(
            read_only.apply(&add_service()).unwrap_err().errno,
            Errno::EPERM
        );

        let mut sim = SimDataplane::open(&path, false).unwrap();
        sim.apply(&add_service()).unwrap();
        sim.commit().unwrap();
        let document: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(document["manifests"][0]["name"], "web");
        assert_eq!(
            document["observed"]["services"].as_array().unwrap().len(),
            1
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn a_broken_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.json");
        std::fs::write(&path, "{not json").unwrap();
        let error = SimDataplane::open(&path, true).unwrap_err();
        assert!(matches!(error, DataplaneError::SimFormat { .. }));
        assert!(error.to_string().contains("bad.json"), "{error}");
    }
}
