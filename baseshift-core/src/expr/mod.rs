//! Expressions: `${...}` interpolation in job configs and CEL `when` conditions.

mod cond;
mod interp;

pub use cond::{Condition, ConditionVars};
pub use interp::{ConfigTemplate, Reference, RenderScope};

use crate::error::Result;
use async_trait::async_trait;

/// Resolves `${secrets.NAME}` at run time. Secret values are never written to state,
/// events or logs.
#[async_trait]
pub trait SecretResolver: Send + Sync + 'static {
    /// The value of secret `name` (`NotFound` if it does not exist).
    async fn resolve(&self, name: &str) -> Result<String>;
}
