//! Errors of loading schemas and resolving kinds (not validation findings: see `violation`).

/// Failure to build or query the schema set.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// An embedded CRD file is not valid YAML.
    #[error("parsing embedded CRD file {file}")]
    ParseCrd {
        file: String,
        // Boxed: the YAML error is large and would bloat every `Result` of this crate.
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// The embedded KubeVirt swagger document is not valid JSON.
    #[error("parsing embedded OpenAPI document {file}")]
    ParseSwagger {
        file: String,
        #[source]
        source: serde_json::Error,
    },
    /// A schema document lacks something the loader needs (group, kind, versions, definition).
    #[error("schema document {file}: {detail}")]
    BadSchemaDocument { file: String, detail: String },
    /// The JSON-schema compiler rejected a converted schema.
    #[error("compiling the schema of {api_version} {kind}: {detail}")]
    CompileSchema {
        api_version: String,
        kind: String,
        detail: String,
    },
    /// No served kind with this apiVersion and kind.
    #[error("no matches for kind \"{kind}\" in version \"{api_version}\"")]
    UnknownKind { api_version: String, kind: String },
}
