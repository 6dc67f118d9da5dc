//! STUB (helper B replaces): validation.
use super::{CompiledTemplate, WorkflowTemplate};
use crate::error::Result;
use crate::runner::RunnerRegistry;
use std::collections::HashSet;

/// Validates templates and compiles them into a [`CompiledTemplate`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Validator<'a> {
    registry: Option<&'a RunnerRegistry>,
    env_allowlist: Option<&'a HashSet<String>>,
}

impl<'a> Validator<'a> {
    /// Structure-only validation (no runner or env checks).
    pub fn new() -> Self {
        Validator::default()
    }

    /// Also check job types against `registry` and call each runner's `validate_config`.
    #[must_use]
    pub fn registry(mut self, registry: &'a RunnerRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Also check `${env.NAME}` references against the host's allowlist.
    #[must_use]
    pub fn env_allowlist(mut self, allow: &'a HashSet<String>) -> Self {
        self.env_allowlist = Some(allow);
        self
    }

    /// Validates `template` and compiles it.
    pub fn compile(&self, template: &WorkflowTemplate) -> Result<CompiledTemplate> {
        let _ = (template, self.registry, self.env_allowlist);
        todo!()
    }
}

impl WorkflowTemplate {
    /// Validates the structure: ids, parents, cycles, expressions, schema.
    pub fn validate(&self) -> Result<()> {
        Validator::new().compile(self).map(|_| ())
    }
}
