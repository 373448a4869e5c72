//! The balanced manifest format: typed documents, YAML parsing with exact positions, semantic
//! validation and the generated JSON Schema.
//!
//! Flow: [`load_paths`] reads files → [`parse_file`] parses each (syntax, structure and the
//! checks one document needs) → [`check_set`] checks the set a node loads (unique names and
//! services, the node's VIP and mark ranges). [`validate_paths`] does all three for
//! `balanced validate`. Every problem is a [`Diagnostic`] printed `path:line:col: message`.
//!
//! A file with any error must not be applied as a whole (the engine keeps its last-known-good
//! version); a syntax error anywhere in a file yields that one error and no documents.
//! A `NodeConfig` document belongs in the node's config file (`--config`): one found among
//! the manifests is an error, so it cannot be silently ignored.
//!
//! Modules: [`yaml`] (the only one that names serde-saphyr), [`document`] (dispatch on
//! `apiVersion`/`kind`, typed documents, positions), [`validate`] (per-document rules),
//! [`check`] (rules across the set), [`load`] (the file system), [`schema`] (JSON Schema),
//! [`diagnostic`], and the [`v1`] types.

pub mod check;
pub mod diagnostic;
pub mod document;
pub mod load;
pub mod schema;
pub mod v1;
pub mod validate;
pub mod yaml;

pub use check::{NodeConfigDoc, check_set};
pub use diagnostic::{Diagnostic, Position, Severity, has_errors, sort_diagnostics};
pub use document::{Document, Manifest, ParsedFile, Positions, SUPPORTED_API_VERSIONS, parse_file};
pub use load::{load_file, load_node_config, load_paths, validate_paths};
pub use schema::{SchemaKind, json_schema, json_schema_text};
pub use yaml::YamlError;
