//! YAML/JSON loading with source locations.

use super::tree::{Key, Kind, Node, Pos};
use super::{CompensationSpec, JobSpec, WorkflowTemplate};
use crate::error::{Error, Location, Result};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Where each part of a YAML template was written (line and column per job and field).
///
/// Field names are those of the template (`depends_on`, `config`, `compensate.type`);
/// list elements and nested config fields are recorded too (`depends_on[1]`,
/// `config.headers.Authorization`). A lookup of a field that was not recorded falls back
/// to its closest recorded parent (`config.a.b` -> `config.a` -> `config`), then to the job.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SourceMap {
    top: HashMap<String, (u32, u32)>,
    jobs: Vec<JobPositions>,
    by_id: HashMap<String, usize>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct JobPositions {
    pos: Pos,
    fields: HashMap<String, (u32, u32)>,
}

impl SourceMap {
    /// The 1-based (line, column) of `field` of `job` (or of the job itself when `field` is
    /// `None`, or of a top-level field when `job` is `None`), if known.
    ///
    /// With duplicate job ids this finds the first job of that id; see
    /// [`SourceMap::locate_at`].
    pub fn locate(&self, job: Option<&str>, field: Option<&str>) -> Option<(u32, u32)> {
        match job {
            None => field.and_then(|f| closest(&self.top, f)),
            Some(id) => self.by_id.get(id).and_then(|&i| self.locate_at(i, field)),
        }
    }

    /// Like [`SourceMap::locate`] for the job at `index` in the template's job list.
    pub fn locate_at(&self, index: usize, field: Option<&str>) -> Option<(u32, u32)> {
        let job = self.jobs.get(index)?;
        match field {
            None => job.pos,
            Some(f) => closest(&job.fields, f).or(job.pos),
        }
    }
}

/// `field`, else its closest recorded parent path.
fn closest(fields: &HashMap<String, (u32, u32)>, field: &str) -> Option<(u32, u32)> {
    let mut path = field;
    loop {
        if let Some(p) = fields.get(path) {
            return Some(*p);
        }
        path = &path[..path.rfind(['.', '['])?];
    }
}

impl WorkflowTemplate {
    /// Parses and validates (structure only, see [`WorkflowTemplate::validate`]) a YAML template.
    ///
    /// Errors are [`ErrorKind::InvalidTemplate`](crate::ErrorKind::InvalidTemplate), located
    /// by template id, job id, field, line and column.
    pub fn from_yaml(src: &str) -> Result<WorkflowTemplate> {
        let root: Node = serde_saphyr::from_str(src).map_err(|e| {
            let mut loc = Location::default();
            if let Some(l) = e.location() {
                loc = loc.at(u32::try_from(l.line()).unwrap_or(0), u32::try_from(l.column()).unwrap_or(0));
            }
            Error::invalid_template(loc, format!("invalid YAML: {}", e.without_snippet()))
        })?;
        let template = Builder { positions: true, ..Builder::default() }.build(root)?;
        template.validate()?;
        Ok(template)
    }

    /// Parses and validates (structure only) a JSON template.
    pub fn from_json(src: &str) -> Result<WorkflowTemplate> {
        let value: serde_json::Value = serde_json::from_str(src).map_err(|e| {
            let loc =
                Location::default().at(u32::try_from(e.line()).unwrap_or(0), u32::try_from(e.column()).unwrap_or(0));
            Error::invalid_template(loc, format!("invalid JSON: {e}"))
        })?;
        let template = Builder::default().build(Node::from_value(value))?;
        template.validate()?;
        Ok(template)
    }

    /// Serializes to JSON (the storage form).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

const TOP_FIELDS: &[&str] = &["template_id", "name", "version", "description", "input_schema", "defaults", "jobs"];
const JOB_FIELDS: &[&str] = &[
    "id",
    "type",
    "config",
    "depends_on",
    "when",
    "trigger",
    "retry",
    "timeout",
    "priority",
    "compensate",
    "concurrency_key",
    "concurrency_limit",
];
const COMPENSATE_FIELDS: &[&str] = &["type", "config", "retry", "timeout"];

#[derive(Default)]
struct Builder {
    template_id: Option<String>,
    /// Whether the document has positions to record (YAML): else no source map is made.
    positions: bool,
    map: SourceMap,
}

impl Builder {
    fn err(&self, job: Option<&str>, field: Option<&str>, pos: Pos, message: impl Into<String>) -> Error {
        let mut loc = Location { template: self.template_id.clone(), ..Location::default() };
        loc.job = job.map(str::to_owned);
        loc.field = field.map(str::to_owned);
        if let Some((l, c)) = pos {
            loc = loc.at(l, c);
        }
        Error::invalid_template(loc, message)
    }

    fn read<T: DeserializeOwned>(&self, node: &Node, job: Option<&str>, field: &str) -> Result<T> {
        serde_json::from_value(node.to_value())
            .map_err(|e| self.err(job, Some(field), node.pos, format!("field `{field}`: {e}")))
    }

    fn string(&self, node: &Node, job: Option<&str>, field: &str) -> Result<String> {
        node.as_str().map(str::to_owned).ok_or_else(|| {
            self.err(job, Some(field), node.pos, format!("field `{field}` must be a string, not {}", node.type_name()))
        })
    }

    /// The entries of a mapping node.
    fn map_entries<'n>(
        &self,
        node: &'n Node,
        job: Option<&str>,
        what: impl fmt::Display,
        field: Option<&str>,
    ) -> Result<&'n [(Key, Node)]> {
        match &node.kind {
            Kind::Map(entries) => Ok(entries),
            _ => Err(self.err(job, field, node.pos, format!("{what} must be a mapping, not {}", node.type_name()))),
        }
    }

    /// Rejects unknown and repeated keys.
    fn check_keys(
        &self,
        entries: &[(Key, Node)],
        job: Option<&str>,
        what: impl fmt::Display,
        prefix: &str,
        known: &[&str],
    ) -> Result<()> {
        for (i, (key, _)) in entries.iter().enumerate() {
            let known_once =
                known.contains(&key.name.as_str()) && !entries[..i].iter().any(|(k, _)| k.name == key.name);
            if known_once {
                continue; // the common case: no field path to format
            }
            let field = format!("{prefix}{}", key.name);
            if !known.contains(&key.name.as_str()) {
                let hint = suggestion(&key.name, known).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
                return Err(self.err(
                    job,
                    Some(&field),
                    key.pos,
                    format!("unknown field `{field}` in {what}{hint}; expected one of: {}", known.join(", ")),
                ));
            }
            if entries[..i].iter().any(|(k, _)| k.name == key.name) {
                return Err(self.err(job, Some(&field), key.pos, format!("field `{field}` is given twice in {what}")));
            }
        }
        Ok(())
    }

    fn build(mut self, root: Node) -> Result<WorkflowTemplate> {
        let entries = self.map_entries(&root, None, "a template", None)?;
        let get = |name: &str| entries.iter().find(|(k, _)| k.name == name).map(|(_, v)| v);
        let Some(id_node) = get("template_id") else {
            return Err(self.err(None, Some("template_id"), root.pos, "missing field `template_id`"));
        };
        self.template_id = Some(self.string(id_node, None, "template_id")?);
        self.check_keys(entries, None, "the template", "", TOP_FIELDS)?;
        let Some(version_node) = get("version") else {
            return Err(self.err(None, Some("version"), root.pos, "missing field `version`"));
        };
        let version = super::version::deserialize(version_node.to_value())
            .map_err(|e| self.err(None, Some("version"), version_node.pos, format!("field `version`: {e}")))?;
        let mut template = WorkflowTemplate::new(self.template_id.clone().unwrap_or_default(), version);
        for (key, node) in entries {
            if let Some(p) = node.pos.or(key.pos) {
                self.map.top.insert(key.name.clone(), p);
            }
            match key.name.as_str() {
                "name" => template.name = self.string(node, None, "name")?,
                "description" => template.description = self.read(node, None, "description")?,
                "input_schema" => template.input_schema = Some(node.to_value()).filter(|v| !v.is_null()),
                "defaults" => template.defaults = self.read(node, None, "defaults")?,
                _ => {}
            }
        }
        let Some(jobs_node) = get("jobs") else {
            return Err(self.err(None, Some("jobs"), root.pos, "missing field `jobs`"));
        };
        let Kind::Seq(jobs) = &jobs_node.kind else {
            return Err(self.err(
                None,
                Some("jobs"),
                jobs_node.pos,
                format!("field `jobs` must be a list, not {}", jobs_node.type_name()),
            ));
        };
        template.jobs.reserve(jobs.len());
        for (index, node) in jobs.iter().enumerate() {
            template.jobs.push(self.build_job(index, node)?);
        }
        template.source_map = self.positions.then(|| Arc::new(self.map));
        Ok(template)
    }

    fn build_job(&mut self, index: usize, node: &Node) -> Result<JobSpec> {
        // Messages are formatted only for an error.
        let entries = self.map_entries(node, None, format_args!("job #{}", index + 1), None)?;
        let get = |name: &str| entries.iter().find(|(k, _)| k.name == name).map(|(_, v)| v);
        let Some(id_node) = get("id") else {
            return Err(self.err(None, Some("id"), node.pos, format!("job #{} has no `id`", index + 1)));
        };
        let id = self.string(id_node, None, "id")?;
        let j = Some(id.as_str());
        self.check_keys(entries, j, format_args!("job `{id}`"), "", JOB_FIELDS)?;
        let Some(type_node) = get("type") else {
            return Err(self.err(j, Some("type"), node.pos, format!("job `{id}` has no `type`")));
        };
        let mut job = JobSpec::new(id.clone(), self.string(type_node, j, "type")?);
        let mut positions = JobPositions { pos: node.pos, fields: HashMap::new() };
        for (key, value) in entries {
            if let Some(p) = value.pos.or(key.pos) {
                positions.fields.insert(key.name.clone(), p);
            }
            match key.name.as_str() {
                "config" => {
                    if self.positions {
                        value.for_each_path("config", |path, p| {
                            positions.fields.insert(path.to_owned(), p);
                        });
                    }
                    job.config = value.to_value();
                }
                "depends_on" => {
                    let Kind::Seq(items) = &value.kind else {
                        return Err(self.err(
                            j,
                            Some("depends_on"),
                            value.pos,
                            format!(
                                "field `depends_on` must be a list of job ids (`[]` for a root), not {}",
                                value.type_name()
                            ),
                        ));
                    };
                    let mut parents = Vec::with_capacity(items.len());
                    for (i, item) in items.iter().enumerate() {
                        // The field path is formatted only for a position or an error.
                        if let Some(p) = item.pos {
                            positions.fields.insert(format!("depends_on[{i}]"), p);
                        }
                        parents.push(match item.as_str() {
                            Some(parent) => parent.to_owned(),
                            None => self.string(item, j, &format!("depends_on[{i}]"))?,
                        });
                    }
                    job.depends_on = Some(parents);
                }
                "when" => job.when = Some(self.string(value, j, "when")?),
                "trigger" => job.trigger = self.read(value, j, "trigger")?,
                "retry" => job.retry = Some(self.read(value, j, "retry")?),
                "timeout" => job.timeout = Some(self.read(value, j, "timeout")?),
                "priority" => job.priority = self.read(value, j, "priority")?,
                "concurrency_key" => job.concurrency_key = Some(self.string(value, j, "concurrency_key")?),
                "concurrency_limit" => job.concurrency_limit = Some(self.read(value, j, "concurrency_limit")?),
                "compensate" => job.compensate = Some(self.build_compensation(&id, value, &mut positions)?),
                _ => {}
            }
        }
        if self.positions {
            self.map.by_id.entry(id).or_insert(index);
            self.map.jobs.push(positions);
        }
        Ok(job)
    }

    fn build_compensation(&self, id: &str, node: &Node, positions: &mut JobPositions) -> Result<CompensationSpec> {
        let j = Some(id);
        let entries = self.map_entries(node, j, "`compensate`", Some("compensate"))?;
        self.check_keys(entries, j, "`compensate`", "compensate.", COMPENSATE_FIELDS)?;
        let Some(type_node) = entries.iter().find(|(k, _)| k.name == "type").map(|(_, v)| v) else {
            return Err(self.err(j, Some("compensate.type"), node.pos, "`compensate` has no `type`"));
        };
        let mut spec = CompensationSpec::new(self.string(type_node, j, "compensate.type")?, serde_json::Value::Null);
        for (key, value) in entries {
            let field = format!("compensate.{}", key.name);
            if let Some(p) = value.pos.or(key.pos) {
                positions.fields.insert(field.clone(), p);
            }
            match key.name.as_str() {
                "config" => {
                    if self.positions {
                        value.for_each_path(&field, |path, p| {
                            positions.fields.insert(path.to_owned(), p);
                        });
                    }
                    spec.config = value.to_value();
                }
                "retry" => spec.retry = Some(self.read(value, j, &field)?),
                "timeout" => spec.timeout = Some(self.read(value, j, &field)?),
                _ => {}
            }
        }
        Ok(spec)
    }
}

/// The known name closest to a misspelt one (at most 2 edits away).
fn suggestion<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    known.iter().map(|k| (edit_distance(name, k), *k)).filter(|(d, _)| *d <= 2).min_by_key(|(d, _)| *d).map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
