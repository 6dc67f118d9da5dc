//! The [`TemplateStore`] trait: a versioned catalog of workflow templates.

mod memory;

pub use memory::MemoryTemplateStore;

use crate::error::Result;
use crate::template::{CompiledTemplate, WorkflowTemplate};
use async_trait::async_trait;

/// One template in a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TemplateSummary {
    /// The template id.
    pub template_id: String,
    /// The latest version's name.
    pub name: String,
    /// The latest version.
    pub latest_version: semver::Version,
    /// Every stored version, ascending.
    pub versions: Vec<semver::Version>,
}

impl TemplateSummary {
    /// A summary from the stored versions (in any order); `InvalidInput` when there are none.
    pub fn new(
        template_id: impl Into<String>,
        name: impl Into<String>,
        mut versions: Vec<semver::Version>,
    ) -> Result<Self> {
        let template_id = template_id.into();
        versions.sort();
        versions.dedup();
        let latest_version = versions
            .last()
            .cloned()
            .ok_or_else(|| crate::Error::invalid_input(format!("template `{template_id}` has no versions")))?;
        Ok(TemplateSummary { template_id, name: name.into(), latest_version, versions })
    }
}

/// Stores workflow templates with semantic versions.
///
/// # Contract
///
/// - `create` stores the first version of a new id; an existing id is a `Conflict`.
/// - Every write validates the template's structure first ([`WorkflowTemplate::validate`]);
///   an invalid template is an `InvalidTemplate` error and nothing is stored.
/// - `get(id, None)` returns the latest version, `get(id, Some(v))` exactly `v`;
///   a missing id or version is `NotFound`.
/// - `update` stores a new version, which must be greater than the latest (else
///   `Conflict`); older versions stay readable; the id must exist (else `NotFound`).
/// - `list` returns every id, sorted, with its versions.
/// - `delete` removes an id and all its versions (`NotFound` if absent). Workflows already
///   running keep their snapshot in the [`StateStore`](crate::StateStore).
#[async_trait]
pub trait TemplateStore: Send + Sync + 'static {
    /// Stores the first version of a template.
    async fn create(&self, template: &WorkflowTemplate) -> Result<()>;

    /// Reads the latest version, or a given one.
    async fn get(&self, template_id: &str, version: Option<&semver::Version>) -> Result<WorkflowTemplate>;

    /// [`get`](Self::get), shared: a store that keeps its templates in memory returns its
    /// own copy without cloning it (the engine calls this on every start). The default
    /// wraps `get`.
    async fn get_shared(
        &self,
        template_id: &str,
        version: Option<&semver::Version>,
    ) -> Result<std::sync::Arc<WorkflowTemplate>> {
        self.get(template_id, version).await.map(std::sync::Arc::new)
    }

    /// Stores a new, greater version.
    async fn update(&self, template: &WorkflowTemplate) -> Result<()>;

    /// [`create`](Self::create) for a template that `compiled` was made from: compiling
    /// validated it (a superset of [`WorkflowTemplate::validate`]), so a store may skip
    /// its own validation and keep the shared template. The default calls `create`.
    async fn create_compiled(&self, compiled: &CompiledTemplate) -> Result<()> {
        self.create(compiled.template()).await
    }

    /// [`update`](Self::update) for a template that `compiled` was made from (see
    /// [`create_compiled`](Self::create_compiled)). The default calls `update`.
    async fn update_compiled(&self, compiled: &CompiledTemplate) -> Result<()> {
        self.update(compiled.template()).await
    }

    /// Lists the stored templates.
    async fn list(&self) -> Result<Vec<TemplateSummary>>;

    /// Deletes a template and all its versions.
    async fn delete(&self, template_id: &str) -> Result<()>;
}
