//! The crate's one error type. Every variant names the object it is about and keeps its cause.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not valid YAML: {message}")]
    Yaml { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Dump { path: PathBuf, message: String },
    #[error("serializing the manifest {name}: {message}")]
    Serialize { name: String, message: String },
    #[error(
        "{path}: refusing to overwrite a file the exporter did not write (metadata.source is {source_field:?})"
    )]
    Foreign {
        path: PathBuf,
        source_field: Option<String>,
    },
    #[error("ip pools: {0}")]
    Pools(String),
    #[error("git {args}: {message}")]
    Git { args: String, message: String },
    #[error("Kubernetes API: {context}: {source}")]
    Kube {
        context: String,
        #[source]
        source: kube::Error,
    },
    #[error("Service {service}: the status PATCH kept conflicting after {retries} retries")]
    Conflict { service: String, retries: usize },
    #[error("{0}")]
    Config(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn kube(context: impl Into<String>, source: kube::Error) -> Self {
        Error::Kube {
            context: context.into(),
            source,
        }
    }
}
