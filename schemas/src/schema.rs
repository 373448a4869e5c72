//! The JSON Schema of each kind, generated from the Rust types (the source of truth).
//!
//! The committed copies `schemas/balancer.v1.json` and `schemas/nodeconfig.v1.json` are what
//! editors load through the `# yaml-language-server: $schema=…` comment; a test fails when
//! they differ from what this module generates (`BLESS=1` rewrites them).

use crate::v1;

/// The kinds a schema can be printed for (`balanced schema --kind …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SchemaKind {
    Balancer,
    NodeConfig,
}

impl SchemaKind {
    pub const ALL: [SchemaKind; 2] = [SchemaKind::Balancer, SchemaKind::NodeConfig];

    pub fn as_str(self) -> &'static str {
        match self {
            SchemaKind::Balancer => "Balancer",
            SchemaKind::NodeConfig => "NodeConfig",
        }
    }

    /// The committed file name under `schemas/`.
    pub fn file_name(self) -> &'static str {
        match self {
            SchemaKind::Balancer => "balancer.v1.json",
            SchemaKind::NodeConfig => "nodeconfig.v1.json",
        }
    }
}

impl std::fmt::Display for SchemaKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SchemaKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SchemaKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown kind {s:?}: expected Balancer or NodeConfig"))
    }
}

/// The JSON Schema (draft 2020-12) of one kind.
pub fn json_schema(kind: SchemaKind) -> serde_json::Value {
    let schema = match kind {
        SchemaKind::Balancer => schemars::schema_for!(v1::Balancer),
        SchemaKind::NodeConfig => schemars::schema_for!(v1::NodeConfig),
    };
    schema.to_value()
}

/// The schema as committed: pretty JSON with a final newline.
pub fn json_schema_text(kind: SchemaKind) -> String {
    let mut text = serde_json::to_string_pretty(&json_schema(kind)).unwrap_or_default();
    text.push('\n');
    text
}
