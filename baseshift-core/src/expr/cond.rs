//! CEL `when` conditions.

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};
use cel::{Context, Program};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

/// The variables a condition may read.
pub const CONDITION_VARIABLES: [&str; 3] = ["input", "jobs", "workflow"];

/// A compiled CEL `when` condition.
///
/// The program is parsed once by [`Condition::compile`] and shared (`Arc`) between clones.
#[derive(Clone)]
pub struct Condition {
    source: String,
    program: Arc<Program>,
    job_refs: Vec<String>,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition").field("source", &self.source).finish_non_exhaustive()
    }
}

impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// The variables a condition sees.
#[derive(Clone, Copy, Debug)]
pub struct ConditionVars<'a> {
    /// The workflow input.
    pub input: &'a Value,
    /// `{ "<job id>": { "output": ..., "status": "SUCCEEDED" } }` for the upstream jobs.
    pub jobs: &'a Value,
    /// `{ "id": "<workflow id>" }`.
    pub workflow: &'a Value,
}

impl Condition {
    /// Compiles a CEL expression.
    ///
    /// Rejects syntax errors and references to variables other than `input`, `jobs` and
    /// `workflow` (comprehension variables such as `x` in `input.items.all(x, x > 0)` are fine).
    pub fn compile(source: &str) -> Result<Condition, String> {
        if source.trim().is_empty() {
            return Err("empty condition".to_owned());
        }
        let depth = check_size(source)?;
        let program = parse_program(source, depth).map_err(|e| format!("invalid CEL expression `{source}`: {e}"))?;
        let mut refs = Refs::default();
        refs.walk(program.expression(), &mut Vec::new());
        if let Some(unknown) = refs.variables.iter().find(|v| !CONDITION_VARIABLES.contains(&v.as_str())) {
            return Err(format!(
                "condition `{source}` reads unknown variable `{unknown}` (available: input, jobs, workflow)"
            ));
        }
        Ok(Condition {
            source: source.to_owned(),
            program: Arc::new(program),
            job_refs: refs.jobs.into_iter().collect(),
        })
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The job ids the condition reads as `jobs.<id>` or `jobs["<id>"]`, sorted.
    pub fn job_refs(&self) -> &[String] {
        &self.job_refs
    }

    /// Evaluates to a boolean (a non-boolean result or an evaluation failure, e.g. a
    /// missing field, is an error).
    pub fn evaluate(&self, vars: &ConditionVars<'_>) -> Result<bool, String> {
        let mut ctx = Context::default();
        for (name, value) in [("input", vars.input), ("jobs", vars.jobs), ("workflow", vars.workflow)] {
            ctx.add_variable_from_value(name, to_cel(value));
        }
        match self.program.execute(&ctx) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => {
                Err(format!("condition `{}` evaluated to {} ({other:?}), not a boolean", self.source, other.type_of()))
            }
            Err(e) => Err(format!("condition `{}` failed: {e}", self.source)),
        }
    }
}

/// Longest condition accepted, in bytes.
pub const MAX_CONDITION_LEN: usize = 4096;
/// Deepest nesting of brackets and unary operators accepted.
pub const MAX_CONDITION_DEPTH: usize = 32;

/// Nesting depth the CEL parser handles on the caller's stack.
const SHALLOW_DEPTH: usize = 4;
/// Stack for parsing deeper sources: the generated parser takes over 100 KiB per nesting
/// level in debug builds (16 levels overflow a 2 MiB thread).
const PARSER_STACK: usize = 64 * 1024 * 1024;

/// Parses on the current thread when shallow, else on a thread with a large stack (a
/// panic in the parser then also becomes an error instead of unwinding into the caller).
fn parse_program(source: &str, depth: usize) -> Result<Program, String> {
    if depth <= SHALLOW_DEPTH {
        return Program::compile(source).map_err(|e| e.to_string());
    }
    let owned = source.to_owned();
    std::thread::Builder::new()
        .name("baseshift-cel-parse".to_owned())
        .stack_size(PARSER_STACK)
        .spawn(move || Program::compile(&owned).map_err(|e| e.to_string()))
        .map_err(|e| format!("cannot start the CEL parser thread: {e}"))?
        .join()
        .map_err(|_| "the CEL parser failed on this expression".to_owned())?
}

/// The CEL parser recurses deeply per nesting level and overflows the stack long before
/// its own depth limit applies: reject oversized or deeply nested sources up front.
/// Returns the deepest nesting found.
fn check_size(source: &str) -> Result<usize, String> {
    if source.len() > MAX_CONDITION_LEN {
        return Err(format!("condition is longer than {MAX_CONDITION_LEN} bytes"));
    }
    let (mut depth, mut unary_run, mut quote, mut deepest) = (0usize, 0usize, None::<char>, 0usize);
    let mut chars = source.chars();
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            match c {
                '\\' => {
                    chars.next();
                }
                _ if c == q => quote = None,
                _ => {}
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        unary_run = match c {
            '!' | '-' => unary_run + 1,
            c if c.is_whitespace() => unary_run,
            _ => 0,
        };
        deepest = deepest.max(depth + unary_run);
        if deepest > MAX_CONDITION_DEPTH {
            return Err(format!("condition nests deeper than {MAX_CONDITION_DEPTH} levels"));
        }
    }
    Ok(deepest)
}

/// JSON to CEL. Unlike `cel::to_value`, a non-negative integer becomes an `int` (not a
/// `uint`), so `input.count + 1` works: CEL has no mixed `int`/`uint` arithmetic.
fn to_cel(value: &Value) -> cel::Value {
    match value {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(items) => cel::Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(map) => {
            let m: HashMap<String, cel::Value> = map.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            cel::Value::from(m)
        }
    }
}

#[derive(Default)]
struct Refs {
    variables: BTreeSet<String>,
    jobs: BTreeSet<String>,
}

impl Refs {
    /// Collects free variables (ignoring comprehension-bound ones in `scope`) and
    /// `jobs.<id>` / `jobs["<id>"]` selections.
    fn walk(&mut self, e: &IdedExpr, scope: &mut Vec<String>) {
        match &e.expr {
            Expr::Unspecified | Expr::Literal(_) => {}
            Expr::Ident(name) => {
                if !name.starts_with('@') && !scope.iter().any(|s| s == name) {
                    self.variables.insert(name.clone());
                }
            }
            Expr::Select(sel) => {
                if self.is_jobs(&sel.operand, scope) {
                    self.jobs.insert(sel.field.clone());
                }
                self.walk(&sel.operand, scope);
            }
            Expr::Call(call) => {
                if call.func_name == "_[_]"
                    && let [target, IdedExpr { expr: Expr::Literal(LiteralValue::String(key)), .. }] =
                        call.args.as_slice()
                    && self.is_jobs(target, scope)
                {
                    self.jobs.insert(key.inner().to_owned());
                }
                if let Some(t) = &call.target {
                    self.walk(t, scope);
                }
                for a in &call.args {
                    self.walk(a, scope);
                }
            }
            Expr::Comprehension(c) => {
                self.walk(&c.iter_range, scope);
                self.walk(&c.accu_init, scope);
                let before = scope.len();
                scope.push(c.iter_var.clone());
                scope.extend(c.iter_var2.clone());
                scope.push(c.accu_var.clone());
                self.walk(&c.loop_cond, scope);
                self.walk(&c.loop_step, scope);
                self.walk(&c.result, scope);
                scope.truncate(before);
            }
            Expr::List(list) => {
                for el in &list.elements {
                    self.walk(el, scope);
                }
            }
            Expr::Map(map) => self.walk_entries(map.entries.iter().map(|e| &e.expr), scope),
            Expr::Struct(st) => self.walk_entries(st.entries.iter().map(|e| &e.expr), scope),
        }
    }

    fn walk_entries<'e>(&mut self, entries: impl Iterator<Item = &'e EntryExpr>, scope: &mut Vec<String>) {
        for entry in entries {
            match entry {
                EntryExpr::StructField(f) => self.walk(&f.value, scope),
                EntryExpr::MapEntry(m) => {
                    self.walk(&m.key, scope);
                    self.walk(&m.value, scope);
                }
            }
        }
    }

    fn is_jobs(&self, e: &IdedExpr, scope: &[String]) -> bool {
        matches!(&e.expr, Expr::Ident(n) if n == "jobs" && !scope.iter().any(|s| s == "jobs"))
    }
}

#[cfg(test)]
#[path = "cond_tests.rs"]
mod tests;
