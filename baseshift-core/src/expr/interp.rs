//! `${...}` interpolation in job configs.
//!
//! Every string of a config may hold references: `${input.a.b}`, `${jobs.<id>.output.a}`,
//! `${workflow.id}`, `${env.NAME}` (or a bare `${NAME}`), `${secrets.NAME}`. `$${` writes a
//! literal `${`. A string that is exactly one reference renders to the referenced JSON value
//! with its type; otherwise each reference is rendered into the string. Object keys are
//! never interpolated.

use crate::error::{Error, Location, Result};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;

/// A reference inside `${...}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// `${input.a.b}`: a path into the workflow input (`${input}` is the whole input).
    Input(Vec<String>),
    /// `${jobs.<id>.output.a.b}`: a path into an upstream job's output.
    JobOutput {
        /// The job id.
        job: String,
        /// The path inside its output.
        path: Vec<String>,
    },
    /// `${workflow.id}`.
    WorkflowId,
    /// `${env.NAME}`, or a bare `${NAME}`: a host environment variable on the allowlist.
    Env(String),
    /// `${secrets.NAME}`: resolved at run time by the host's resolver.
    Secret(String),
}

impl Reference {
    /// Parses the text between `${` and `}` (surrounding spaces allowed).
    pub fn parse(text: &str) -> std::result::Result<Reference, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty reference `${}`".to_owned());
        }
        let segments: Vec<&str> = text.split('.').collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(format!("`${{{text}}}` has an empty path segment"));
        }
        let owned = |s: &[&str]| s.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>();
        match segments.as_slice() {
            ["input", rest @ ..] => Ok(Reference::Input(owned(rest))),
            ["jobs", rest @ ..] => {
                let Some(pos) = rest.iter().position(|s| *s == "output").filter(|p| *p > 0) else {
                    return Err(format!(
                        "`${{{text}}}`: expected `${{jobs.<id>.output}}` or `${{jobs.<id>.output.<path>}}`"
                    ));
                };
                Ok(Reference::JobOutput { job: rest[..pos].join("."), path: owned(&rest[pos + 1..]) })
            }
            ["workflow", "id"] => Ok(Reference::WorkflowId),
            ["workflow", ..] => Err(format!("`${{{text}}}`: only `${{workflow.id}}` is available")),
            ["env", name] => checked_name(name, text).map(Reference::Env),
            ["secrets", name] => checked_name(name, text).map(Reference::Secret),
            ["env" | "secrets", ..] => Err(format!("`${{{text}}}`: expected `${{{}.NAME}}`", segments[0])),
            [name] => checked_name(name, text).map(Reference::Env),
            [root, ..] => {
                Err(format!("`${{{text}}}`: unknown root `{root}` (expected input, jobs, workflow, env or secrets)"))
            }
            [] => Err("empty reference `${}`".to_owned()),
        }
    }
}

fn checked_name(name: &str, text: &str) -> std::result::Result<String, String> {
    let mut chars = name.chars();
    let valid_start = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if valid_start && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        Ok(name.to_owned())
    } else {
        Err(format!("`${{{text}}}`: `{name}` is not a valid variable name"))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = |p: &[String]| p.iter().map(|s| format!(".{s}")).collect::<String>();
        match self {
            Reference::Input(p) => write!(f, "${{input{}}}", path(p)),
            Reference::JobOutput { job, path: p } => write!(f, "${{jobs.{job}.output{}}}", path(p)),
            Reference::WorkflowId => f.write_str("${workflow.id}"),
            Reference::Env(n) => write!(f, "${{env.{n}}}"),
            Reference::Secret(n) => write!(f, "${{secrets.{n}}}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Segment {
    Lit(String),
    Ref(usize),
}

#[derive(Clone, Debug, PartialEq)]
enum Node {
    /// A subtree without references or escapes: copied as is.
    Static(Value),
    /// A string that is exactly one reference: renders to the value with its type.
    Whole(usize),
    /// A string mixing text and references (or holding an escape).
    Text(Vec<Segment>),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

/// A job config with its `${...}` references parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigTemplate {
    raw: Value,
    root: Node,
    /// Every reference with the field path of the string holding it, in document order.
    refs: Vec<(String, Reference)>,
}

/// The values references resolve to.
pub struct RenderScope<'a> {
    /// The workflow input.
    pub input: &'a Value,
    /// Outputs of upstream jobs by id.
    pub outputs: &'a HashMap<String, Value>,
    /// The workflow id.
    pub workflow_id: &'a str,
    /// Allow-listed host variables.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Secrets resolved for this run.
    pub secrets: &'a HashMap<String, String>,
}

impl ConfigTemplate {
    /// Parses every string in `config`; errors name the field path (e.g. `config.headers.x`).
    pub fn parse(config: &Value) -> std::result::Result<ConfigTemplate, (String, String)> {
        Self::parse_at(config, "config")
    }

    /// Like [`ConfigTemplate::parse`], with field paths starting at `root`
    /// (e.g. `compensate.config`).
    pub fn parse_at(config: &Value, root: &str) -> std::result::Result<ConfigTemplate, (String, String)> {
        if matches!(config, Value::Null | Value::Bool(_) | Value::Number(_)) {
            // Nothing to parse (most jobs have no config): no field path to build.
            return Ok(ConfigTemplate { raw: config.clone(), root: Node::Static(config.clone()), refs: Vec::new() });
        }
        let mut refs = Vec::new();
        let node = parse_node(config, root.to_owned(), &mut refs)?;
        Ok(ConfigTemplate { raw: config.clone(), root: node, refs })
    }

    /// The config as written, references unresolved.
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    /// Every reference, in document order.
    pub fn references(&self) -> Vec<&Reference> {
        self.refs.iter().map(|(_, r)| r).collect()
    }

    /// Every reference with the field path of the string holding it, in document order.
    pub fn field_references(&self) -> impl Iterator<Item = (&str, &Reference)> + '_ {
        self.refs.iter().map(|(p, r)| (p.as_str(), r))
    }

    /// The ids of the jobs whose outputs are referenced, without duplicates, in document order.
    pub fn job_refs(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for (_, r) in &self.refs {
            if let Reference::JobOutput { job, .. } = r
                && !out.contains(&job.as_str())
            {
                out.push(job);
            }
        }
        out
    }

    /// The names of the secrets referenced, without duplicates, in document order.
    pub fn secret_names(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for (_, r) in &self.refs {
            if let Reference::Secret(name) = r
                && !out.contains(&name.as_str())
            {
                out.push(name);
            }
        }
        out
    }

    /// Whether rendering returns the raw config unchanged (no references, no `$${` escapes).
    pub fn is_static(&self) -> bool {
        matches!(self.root, Node::Static(_))
    }

    /// Resolves every reference.
    ///
    /// A missing input path, job output, environment variable or secret is an
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) error naming the field
    /// path and the reference.
    pub fn render(&self, scope: &RenderScope<'_>) -> Result<Value> {
        self.render_node(&self.root, scope)
    }

    fn render_node(&self, node: &Node, scope: &RenderScope<'_>) -> Result<Value> {
        match node {
            Node::Static(v) => Ok(v.clone()),
            Node::Whole(i) => self.resolve(*i, scope),
            Node::Text(segments) => {
                let mut out = String::new();
                for seg in segments {
                    match seg {
                        Segment::Lit(s) => out.push_str(s),
                        Segment::Ref(i) => match self.resolve(*i, scope)? {
                            Value::String(s) => out.push_str(&s),
                            other => out.push_str(&other.to_string()),
                        },
                    }
                }
                Ok(Value::String(out))
            }
            Node::Array(items) => {
                items.iter().map(|n| self.render_node(n, scope)).collect::<Result<Vec<_>>>().map(Value::Array)
            }
            Node::Object(entries) => {
                let mut map = serde_json::Map::with_capacity(entries.len());
                for (k, n) in entries {
                    map.insert(k.clone(), self.render_node(n, scope)?);
                }
                Ok(Value::Object(map))
            }
        }
    }

    fn resolve(&self, index: usize, scope: &RenderScope<'_>) -> Result<Value> {
        let (field, reference) = &self.refs[index];
        let missing = |what: String| {
            Error::invalid_input(format!("field `{field}`: {reference}: {what}"))
                .with_location(Location::default().field(field.clone()))
        };
        match reference {
            Reference::Input(path) => lookup(scope.input, path)
                .cloned()
                .ok_or_else(|| missing("the workflow input has no such field".to_owned())),
            Reference::JobOutput { job, path } => {
                let output =
                    scope.outputs.get(job).ok_or_else(|| missing(format!("no output of job `{job}` is available")))?;
                lookup(output, path)
                    .cloned()
                    .ok_or_else(|| missing(format!("the output of job `{job}` has no such field")))
            }
            Reference::WorkflowId => Ok(Value::String(scope.workflow_id.to_owned())),
            Reference::Env(name) => (scope.env)(name)
                .map(Value::String)
                .ok_or_else(|| missing(format!("environment variable `{name}` is not provided"))),
            Reference::Secret(name) => scope
                .secrets
                .get(name)
                .map(|s| Value::String(s.clone()))
                .ok_or_else(|| missing(format!("secret `{name}` was not resolved"))),
        }
    }
}

/// Follows `path` into `value`; a numeric segment indexes an array.
pub(crate) fn lookup<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(value, |v, seg| match v {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

type ParseResult<T> = std::result::Result<T, (String, String)>;

fn parse_node(value: &Value, path: String, refs: &mut Vec<(String, Reference)>) -> ParseResult<Node> {
    match value {
        Value::String(s) => parse_string(s, path, refs),
        Value::Array(items) => {
            let mut nodes = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                nodes.push(parse_node(item, format!("{path}[{i}]"), refs)?);
            }
            if nodes.iter().all(|n| matches!(n, Node::Static(_))) {
                return Ok(Node::Static(value.clone()));
            }
            Ok(Node::Array(nodes))
        }
        Value::Object(map) => {
            let mut entries = Vec::with_capacity(map.len());
            for (k, v) in map {
                entries.push((k.clone(), parse_node(v, format!("{path}.{k}"), refs)?));
            }
            if entries.iter().all(|(_, n)| matches!(n, Node::Static(_))) {
                return Ok(Node::Static(value.clone()));
            }
            Ok(Node::Object(entries))
        }
        other => Ok(Node::Static(other.clone())),
    }
}

fn parse_string(s: &str, path: String, refs: &mut Vec<(String, Reference)>) -> ParseResult<Node> {
    if !s.contains("${") {
        return Ok(Node::Static(Value::String(s.to_owned())));
    }
    let mut segments = Vec::new();
    let mut lit = String::new();
    let mut rest = s;
    while let Some(pos) = rest.find("${") {
        if rest[..pos].ends_with('$') {
            // `$${` is an escaped literal `${`.
            lit.push_str(&rest[..pos - 1]);
            lit.push_str("${");
            rest = &rest[pos + 2..];
            continue;
        }
        lit.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let Some(end) = after.find('}') else {
            return Err((path, format!("unterminated `${{` in `{s}`")));
        };
        let reference = Reference::parse(&after[..end]).map_err(|m| (path.clone(), m))?;
        if !lit.is_empty() {
            segments.push(Segment::Lit(std::mem::take(&mut lit)));
        }
        segments.push(Segment::Ref(refs.len()));
        refs.push((path.clone(), reference));
        rest = &after[end + 1..];
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        segments.push(Segment::Lit(lit));
    }
    Ok(match segments.as_slice() {
        [Segment::Ref(i)] => Node::Whole(*i),
        _ => Node::Text(segments),
    })
}

#[cfg(test)]
#[path = "interp_tests.rs"]
mod tests;
