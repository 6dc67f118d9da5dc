//! Validation of `concurrency_key` and `concurrency_limit`.

use super::Checker;
use crate::error::Result;
use crate::expr::{ConfigTemplate, Reference};
use crate::template::JobSpec;
use crate::template::compile::CompiledConcurrency;
use serde_json::Value;

impl Checker<'_, '_> {
    /// `concurrency_key` (input and workflow id only: it is rendered when the workflow
    /// starts) and its limit (the job's, else `defaults.concurrency_limit`).
    pub(super) fn compile_concurrency(&self, i: usize, job: &JobSpec) -> Result<Option<CompiledConcurrency>> {
        let default_limit = self.t.defaults.concurrency_limit;
        if default_limit == Some(0) {
            return Err(self.top_err("defaults.concurrency_limit", "defaults.concurrency_limit must be at least 1"));
        }
        let Some(key) = &job.concurrency_key else {
            if job.concurrency_limit.is_some() {
                return Err(self.err(
                    Some(i),
                    Some("concurrency_limit"),
                    format!("job `{}` sets concurrency_limit without a concurrency_key", job.id),
                ));
            }
            return Ok(None);
        };
        if key.trim().is_empty() {
            return Err(self.err(Some(i), Some("concurrency_key"), "concurrency_key must not be empty"));
        }
        let limit = match job.concurrency_limit.or(default_limit) {
            Some(0) => {
                return Err(self.err(Some(i), Some("concurrency_limit"), "concurrency_limit must be at least 1"));
            }
            Some(n) => n,
            None => {
                return Err(self.err(
                    Some(i),
                    Some("concurrency_key"),
                    format!(
                        "job `{}` has a concurrency_key but no concurrency_limit (set it on the job or in defaults)",
                        job.id
                    ),
                ));
            }
        };
        let template = ConfigTemplate::parse_at(&Value::String(key.clone()), "concurrency_key")
            .map_err(|(_, m)| self.err(Some(i), Some("concurrency_key"), m))?;
        for (_, r) in template.field_references() {
            if !matches!(r, Reference::Input(_) | Reference::WorkflowId) {
                return Err(self.err(
                    Some(i),
                    Some("concurrency_key"),
                    format!(
                        "{r}: concurrency_key may only use `${{input...}}` and `${{workflow.id}}` \
                         (it is fixed when the workflow starts)"
                    ),
                ));
            }
        }
        Ok(Some(CompiledConcurrency { key: template, limit }))
    }
}
