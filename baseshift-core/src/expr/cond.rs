//! STUB (helper B replaces): CEL conditions.
use serde_json::Value;

/// A compiled CEL `when` condition.
#[derive(Clone, Debug)]
pub struct Condition {
    source: String,
}

/// The variables a condition sees.
#[derive(Clone, Copy, Debug)]
pub struct ConditionVars<'a> {
    /// The workflow input.
    pub input: &'a Value,
    /// `{ "<job id>": { "output": ..., "status": "SUCCEEDED" } }` for the upstream jobs.
    pub jobs: &'a Value,
    /// `{ "id": "<workflow id>" }`.
    pub workflow: &'a Value,
}

impl Condition {
    /// Compiles a CEL expression.
    pub fn compile(source: &str) -> Result<Condition, String> {
        Ok(Condition { source: source.to_owned() })
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates to a boolean (a non-boolean result is an error).
    pub fn evaluate(&self, vars: &ConditionVars<'_>) -> Result<bool, String> {
        let _ = vars;
        todo!()
    }
}
