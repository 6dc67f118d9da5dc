//! The engine's compiled templates, by template id and version, found without building
//! a key: a start looks its template up by the `semver::Version` it holds, a worker by
//! the version text its workflow's header holds. A key of two owned strings cost every
//! start a formatted version and two copies.

use crate::hash::FastMap;
use crate::template::{CompiledTemplate, WorkflowTemplate};
use std::sync::Arc;

/// One compiled version of a template.
#[derive(Debug)]
struct Entry {
    /// The version as headers write it (`Version`'s `Display`).
    text: String,
    compiled: Arc<CompiledTemplate>,
}

/// Compiled templates by id, each id's versions in a short list.
#[derive(Debug, Default)]
pub(crate) struct CompiledCache {
    by_id: FastMap<String, Vec<Entry>>,
}

impl CompiledCache {
    /// The compiled form of `template`'s id and version, if cached.
    pub(crate) fn for_template(&self, template: &WorkflowTemplate) -> Option<&Arc<CompiledTemplate>> {
        let versions = self.by_id.get(&template.template_id)?;
        versions.iter().map(|e| &e.compiled).find(|c| c.template().version == template.version)
    }

    /// The compiled template of id `template_id` at version `version` (as a header writes it).
    pub(crate) fn for_stored(&self, template_id: &str, version: &str) -> Option<&Arc<CompiledTemplate>> {
        let versions = self.by_id.get(template_id)?;
        versions.iter().find(|e| e.text == version).map(|e| &e.compiled)
    }

    /// Caches `compiled`, replacing what was cached for its id and version.
    pub(crate) fn insert(&mut self, compiled: Arc<CompiledTemplate>) {
        let t = compiled.template();
        let versions = self.by_id.entry(t.template_id.clone()).or_default();
        match versions.iter_mut().find(|e| e.compiled.template().version == t.version) {
            Some(e) => e.compiled = compiled,
            None => versions.push(Entry { text: t.version.to_string(), compiled }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{JobSpec, Validator};
    use semver::Version;

    fn compiled(id: &str, version: Version, job: &str) -> Arc<CompiledTemplate> {
        let t = WorkflowTemplate::new(id, version).job(JobSpec::new(job, "noop"));
        Arc::new(Validator::new().compile_shared(Arc::new(t)).expect("valid template"))
    }

    #[test]
    fn found_by_version_and_by_its_text_and_replaced_per_version() {
        let mut cache = CompiledCache::default();
        let v1 = compiled("t", Version::new(1, 0, 0), "a");
        let v2 = compiled("t", "2.0.0-rc.1+b7".parse().unwrap(), "a");
        cache.insert(v1.clone());
        cache.insert(v2.clone());
        assert!(cache.for_template(v1.template()).is_some_and(|c| Arc::ptr_eq(c, &v1)));
        assert!(cache.for_stored("t", "2.0.0-rc.1+b7").is_some_and(|c| Arc::ptr_eq(c, &v2)));
        assert!(cache.for_stored("t", "1.0.0").is_some_and(|c| Arc::ptr_eq(c, &v1)));
        assert!(cache.for_stored("t", "3.0.0").is_none() && cache.for_stored("u", "1.0.0").is_none());

        let again = compiled("t", Version::new(1, 0, 0), "b");
        cache.insert(again.clone());
        assert!(cache.for_stored("t", "1.0.0").is_some_and(|c| Arc::ptr_eq(c, &again)));
        assert_eq!(cache.by_id["t"].len(), 2);
    }
}
