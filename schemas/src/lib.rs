//! The balanced manifest format: typed documents, YAML parsing with exact positions, semantic
//! validation and the generated JSON Schema.

pub mod v1;
