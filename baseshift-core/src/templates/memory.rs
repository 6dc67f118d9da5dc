//! STUB (helper D replaces): in-memory template store.
use super::*;

/// The in-memory [`TemplateStore`].
#[derive(Debug, Default)]
pub struct MemoryTemplateStore {}

impl MemoryTemplateStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl TemplateStore for MemoryTemplateStore {
    async fn create(&self, template: &WorkflowTemplate) -> Result<()> {
        let _ = template;
        todo!()
    }
    async fn get(&self, template_id: &str, version: Option<&semver::Version>) -> Result<WorkflowTemplate> {
        let _ = (template_id, version);
        todo!()
    }
    async fn update(&self, template: &WorkflowTemplate) -> Result<()> {
        let _ = template;
        todo!()
    }
    async fn list(&self) -> Result<Vec<TemplateSummary>> {
        todo!()
    }
    async fn delete(&self, template_id: &str) -> Result<()> {
        let _ = template_id;
        todo!()
    }
}
