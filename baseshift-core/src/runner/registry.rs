use super::JobRunner;
use crate::error::{Error, ErrorKind, Result};
use crate::hash::FastMap;
use std::fmt;
use std::sync::Arc;

/// The job types an engine can run, by name.
#[derive(Clone, Default)]
pub struct RunnerRegistry {
    runners: FastMap<String, Arc<dyn JobRunner>>,
}

impl fmt::Debug for RunnerRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut types: Vec<_> = self.runners.keys().collect();
        types.sort();
        f.debug_struct("RunnerRegistry").field("types", &types).finish()
    }
}

impl RunnerRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a runner under its `job_type`; a second runner for one type is a [`ErrorKind::Conflict`].
    pub fn register(&mut self, runner: Arc<dyn JobRunner>) -> Result<()> {
        let ty = runner.job_type().to_owned();
        if ty.is_empty() {
            return Err(Error::invalid_input("a runner's job_type must not be empty"));
        }
        if self.runners.contains_key(&ty) {
            return Err(Error::new(ErrorKind::Conflict, format!("job type `{ty}` is already registered")));
        }
        self.runners.insert(ty, runner);
        Ok(())
    }

    /// The runner for `job_type`.
    pub fn get(&self, job_type: &str) -> Option<&Arc<dyn JobRunner>> {
        self.runners.get(job_type)
    }

    /// Whether `job_type` is registered.
    pub fn contains(&self, job_type: &str) -> bool {
        self.runners.contains_key(job_type)
    }

    /// The registered job types, sorted.
    pub fn job_types(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.runners.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
}
