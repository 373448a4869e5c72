//! Reading `kubectl get services,endpointslices[,pods] -A -o yaml` (a `v1` `List`, or single
//! objects, in one or more documents; JSON works too) into the objects [`crate::render`] takes.
//!
//! Pure apart from the caller's reading of the file. Of Pods only the metadata is kept (their
//! opt-out annotations); other kinds in the dump are skipped.

use std::path::Path;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::Error;

/// The Services, EndpointSlices and Pods' metadata of a dump.
#[derive(Debug, Clone, Default)]
pub struct Dump {
    pub services: Vec<Service>,
    pub slices: Vec<EndpointSlice>,
    pub pods: Vec<ObjectMeta>,
}

/// Parses the dump's text; `path` only names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<Dump, Error> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| Error::Yaml {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let mut dump = Dump::default();
    for (doc_index, document) in documents.into_iter().enumerate() {
        let items = match document.get("kind").and_then(Value::as_str) {
            Some(kind) if kind.ends_with("List") => match document.get("items") {
                Some(Value::Array(items)) => items.clone(),
                Some(Value::Null) | None => Vec::new(),
                Some(_) => {
                    return Err(Error::Dump {
                        path: path.to_owned(),
                        message: format!("document {}: items is not a list", doc_index + 1),
                    });
                }
            },
            Some(_) => vec![document],
            None if document.is_null() => Vec::new(),
            None => {
                return Err(Error::Dump {
                    path: path.to_owned(),
                    message: format!("document {}: no kind", doc_index + 1),
                });
            }
        };
        for (index, item) in items.into_iter().enumerate() {
            let kind = item
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let api_version = item
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let name = item
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned();
            let describe = |e: serde_json::Error| Error::Dump {
                path: path.to_owned(),
                message: format!(
                    "document {} item {index} ({kind} {name}): {e}",
                    doc_index + 1
                ),
            };
            match (api_version.as_str(), kind.as_str()) {
                ("v1", "Service") => dump
                    .services
                    .push(serde_json::from_value(item).map_err(describe)?),
                ("discovery.k8s.io/v1", "EndpointSlice") => dump
                    .slices
                    .push(serde_json::from_value(item).map_err(describe)?),
                ("v1", "Pod") => {
                    let metadata = item.get("metadata").cloned().unwrap_or_default();
                    dump.pods
                        .push(serde_json::from_value(metadata).map_err(describe)?);
                }
                _ => {}
            }
        }
    }
    Ok(dump)
}
