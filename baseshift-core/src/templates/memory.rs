//! The in-memory template store: every version of every template, in process memory.

use super::{TemplateStore, TemplateSummary};
use crate::error::{Error, Result};
use crate::template::{CompiledTemplate, WorkflowTemplate};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

type Catalog = BTreeMap<String, BTreeMap<semver::Version, Arc<WorkflowTemplate>>>;

/// The in-memory [`TemplateStore`]: every version of every template, lost when the process
/// exits. Every write validates the template's structure first.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use baseshift_core::{JobSpec, MemoryTemplateStore, TemplateStore, WorkflowTemplate};
///
/// let store = MemoryTemplateStore::new();
/// let v1 = WorkflowTemplate::new("nightly", semver::Version::new(1, 0, 0))
///     .job(JobSpec::new("report", "noop"));
/// store.create(&v1).await?;
/// assert_eq!(store.get("nightly", None).await?, v1);
/// # Ok::<(), baseshift_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Default)]
pub struct MemoryTemplateStore {
    templates: RwLock<Catalog>,
}

impl MemoryTemplateStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, Catalog> {
        // Each write is a single map insert or removal, so a poisoned lock holds a consistent map.
        self.templates.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Catalog> {
        self.templates.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stores the first version of a template (`Conflict` if its id exists).
    fn insert_first(&self, template: Arc<WorkflowTemplate>) -> Result<()> {
        let op = "TemplateStore::create";
        let mut templates = self.write();
        if templates.contains_key(&template.template_id) {
            return Err(context(Error::conflict(format!("template `{}` already exists", template.template_id)), op));
        }
        let versions = BTreeMap::from([(template.version.clone(), template.clone())]);
        templates.insert(template.template_id.clone(), versions);
        Ok(())
    }

    /// Stores a new version, greater than the latest (`NotFound` for an unknown id).
    fn insert_next(&self, template: Arc<WorkflowTemplate>) -> Result<()> {
        let op = "TemplateStore::update";
        let id = &template.template_id;
        let mut templates = self.write();
        let versions = templates
            .get_mut(id)
            .ok_or_else(|| context(Error::not_found(format!("template `{id}` does not exist")), op))?;
        if let Some(latest) = versions.keys().next_back()
            && template.version <= *latest
        {
            return Err(context(
                Error::conflict(format!(
                    "template `{id}`: version {} is not greater than the latest version {latest}",
                    template.version
                )),
                op,
            ));
        }
        versions.insert(template.version.clone(), template.clone());
        Ok(())
    }
}

fn context(err: Error, op: &'static str) -> Error {
    err.with_operation(op).with_backend("memory")
}

#[async_trait]
impl TemplateStore for MemoryTemplateStore {
    async fn create(&self, template: &WorkflowTemplate) -> Result<()> {
        template.validate().map_err(|e| context(e, "TemplateStore::create"))?;
        self.insert_first(Arc::new(template.clone()))
    }

    /// Keeps the compiled template's own `Arc`, unvalidated again and uncopied.
    async fn create_compiled(&self, compiled: &CompiledTemplate) -> Result<()> {
        self.insert_first(compiled.template().clone())
    }

    async fn update_compiled(&self, compiled: &CompiledTemplate) -> Result<()> {
        self.insert_next(compiled.template().clone())
    }

    async fn get(&self, template_id: &str, version: Option<&semver::Version>) -> Result<WorkflowTemplate> {
        self.get_shared(template_id, version).await.map(|t| t.as_ref().clone())
    }

    async fn get_shared(&self, template_id: &str, version: Option<&semver::Version>) -> Result<Arc<WorkflowTemplate>> {
        let op = "TemplateStore::get";
        let templates = self.read();
        let versions = templates
            .get(template_id)
            .ok_or_else(|| context(Error::not_found(format!("template `{template_id}` does not exist")), op))?;
        let found = match version {
            Some(v) => versions.get(v),
            None => versions.values().next_back(),
        };
        found.cloned().ok_or_else(|| {
            let v = version.map_or_else(|| "latest".to_owned(), ToString::to_string);
            context(Error::not_found(format!("template `{template_id}` has no version {v}")), op)
        })
    }

    async fn update(&self, template: &WorkflowTemplate) -> Result<()> {
        template.validate().map_err(|e| context(e, "TemplateStore::update"))?;
        self.insert_next(Arc::new(template.clone()))
    }

    async fn list(&self) -> Result<Vec<TemplateSummary>> {
        let templates = self.read();
        Ok(templates
            .iter()
            .filter_map(|(id, versions)| {
                let latest = versions.values().next_back()?;
                Some(TemplateSummary {
                    template_id: id.clone(),
                    name: latest.name.clone(),
                    latest_version: latest.version.clone(),
                    versions: versions.keys().cloned().collect(),
                })
            })
            .collect())
    }

    async fn delete(&self, template_id: &str) -> Result<()> {
        match self.write().remove(template_id) {
            Some(_) => Ok(()),
            None => Err(context(
                Error::not_found(format!("template `{template_id}` does not exist")),
                "TemplateStore::delete",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::template::JobSpec;
    use semver::Version;

    fn template(id: &str, version: Version, name: &str) -> WorkflowTemplate {
        let mut t = WorkflowTemplate::new(id, version).job(JobSpec::new("a", "noop"));
        t.name = name.to_owned();
        t
    }

    #[tokio::test]
    async fn compiled_templates_are_kept_shared_under_the_same_rules() {
        let store = MemoryTemplateStore::new();
        let compile = |t: WorkflowTemplate| crate::template::Validator::new().compile_shared(Arc::new(t)).unwrap();
        let first = compile(template("t", Version::new(1, 0, 0), "one"));
        store.create_compiled(&first).await.unwrap();
        let kept = store.get_shared("t", None).await.unwrap();
        assert!(Arc::ptr_eq(&kept, first.template()), "the compiled template's own Arc is kept");
        let again = store.create_compiled(&first).await.unwrap_err();
        assert_eq!(again.kind(), ErrorKind::Conflict);
        let not_greater = store.update_compiled(&first).await.unwrap_err();
        assert_eq!(not_greater.kind(), ErrorKind::Conflict);
        let unknown = store.update_compiled(&compile(template("u", Version::new(1, 0, 0), "u"))).await.unwrap_err();
        assert_eq!(unknown.kind(), ErrorKind::NotFound);
        store.update_compiled(&compile(template("t", Version::new(1, 1, 0), "two"))).await.unwrap();
        assert_eq!(store.get("t", None).await.unwrap().name, "two");
        assert_eq!(store.get("t", Some(&Version::new(1, 0, 0))).await.unwrap().name, "one");
    }

    #[tokio::test]
    async fn versions_are_kept_and_latest_wins() {
        let store = MemoryTemplateStore::new();
        store.create(&template("t", Version::new(1, 0, 0), "one")).await.unwrap();
        store.update(&template("t", Version::new(1, 2, 0), "two")).await.unwrap();
        assert_eq!(store.get("t", None).await.unwrap().name, "two");
        assert_eq!(store.get("t", Some(&Version::new(1, 0, 0))).await.unwrap().name, "one");
        let list = store.list().await.unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].versions, [Version::new(1, 0, 0), Version::new(1, 2, 0)]);
        assert_eq!(list[0].name, "two");
    }

    #[tokio::test]
    async fn prerelease_orders_below_its_release() {
        let store = MemoryTemplateStore::new();
        store.create(&template("t", Version::parse("2.0.0-rc.1").unwrap(), "rc")).await.unwrap();
        store.update(&template("t", Version::new(2, 0, 0), "final")).await.unwrap();
        let err = store.update(&template("t", Version::parse("2.0.0-rc.2").unwrap(), "rc2")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert_eq!(err.operation(), Some("TemplateStore::update"));
        assert_eq!(err.backend(), Some("memory"));
    }

    #[tokio::test]
    async fn errors_name_the_template() {
        let store = MemoryTemplateStore::new();
        let err = store.get("missing", None).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.message().contains("missing"), "{err}");
        store.create(&template("t", Version::new(1, 0, 0), "")).await.unwrap();
        let err = store.get("t", Some(&Version::new(9, 0, 0))).await.unwrap_err();
        assert!(err.message().contains("9.0.0"), "{err}");
        let err = store.delete("missing").await.unwrap_err();
        assert_eq!((err.kind(), err.operation()), (ErrorKind::NotFound, Some("TemplateStore::delete")));
    }
}
