//! STUB (helper B replaces): `${...}` interpolation.
use crate::error::Result;
use serde_json::Value;
use std::collections::HashMap;

/// A reference inside `${...}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// `${input.a.b}`: a path into the workflow input.
    Input(Vec<String>),
    /// `${jobs.<id>.output.a.b}`: a path into an upstream job's output.
    JobOutput {
        /// The job id.
        job: String,
        /// The path inside its output.
        path: Vec<String>,
    },
    /// `${workflow.id}`.
    WorkflowId,
    /// `${env.NAME}`, or a bare `${NAME}`: a host environment variable on the allowlist.
    Env(String),
    /// `${secrets.NAME}`: resolved at run time by the host's resolver.
    Secret(String),
}

/// A job config with its `${...}` references parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigTemplate {
    raw: Value,
}

/// The values references resolve to.
pub struct RenderScope<'a> {
    /// The workflow input.
    pub input: &'a Value,
    /// Outputs of upstream jobs by id.
    pub outputs: &'a HashMap<String, Value>,
    /// The workflow id.
    pub workflow_id: &'a str,
    /// Allow-listed host variables.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Secrets resolved for this run.
    pub secrets: &'a HashMap<String, String>,
}

impl ConfigTemplate {
    /// Parses every string in `config`; errors name the field path (e.g. `config.headers.x`).
    pub fn parse(config: &Value) -> std::result::Result<ConfigTemplate, (String, String)> {
        Ok(ConfigTemplate { raw: config.clone() })
    }

    /// Every reference, in document order.
    pub fn references(&self) -> Vec<&Reference> {
        todo!()
    }

    /// Names of the secrets referenced.
    pub fn secret_names(&self) -> Vec<&str> {
        todo!()
    }

    /// Whether there is no reference at all.
    pub fn is_static(&self) -> bool {
        todo!()
    }

    /// Resolves every reference.
    pub fn render(&self, scope: &RenderScope<'_>) -> Result<Value> {
        let _ = scope;
        Ok(self.raw.clone())
    }
}
