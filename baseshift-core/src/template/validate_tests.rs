use super::*;
use crate::error::ErrorKind;
use crate::ids::Name;
use crate::runner::{JobContext, JobError, JobOutput, JobRunner};
use crate::template::{JobSpec, Trigger};
use async_trait::async_trait;
use serde_json::json;
use std::time::Duration;

const DIAMOND_YAML: &str = include_str!("../../tests/fixtures/diamond.yaml");
const HEAD: &str = "template_id: t\nversion: 1\njobs:\n  - id: a\n    type: http_request\n";

#[track_caller]
fn assert_at(err: &Error, job: Option<&str>, field: &str, line_col: Option<(u32, u32)>) {
    assert_eq!(err.kind(), ErrorKind::InvalidTemplate, "{err}");
    let loc = err.location().unwrap_or_else(|| panic!("no location: {err}"));
    assert_eq!(loc.template.as_deref(), Some("t"), "template of {err}");
    assert_eq!(loc.job.as_deref(), job, "job of {err}");
    assert_eq!(loc.field.as_deref(), Some(field), "field of {err}");
    assert_eq!(loc.line.zip(loc.column), line_col, "line/column of {err}");
}

fn yaml_err(src: &str) -> Error {
    WorkflowTemplate::from_yaml(src).unwrap_err()
}

/// A runner whose config needs a string `url`.
struct UrlRunner(&'static str);

#[async_trait]
impl JobRunner for UrlRunner {
    fn job_type(&self) -> &str {
        self.0
    }

    fn validate_config(&self, config: &Value) -> Result<()> {
        match config.get("url") {
            Some(Value::String(_)) => Ok(()),
            _ => Err(Error::invalid_template(Location::default().field("url"), "`url` must be a string")),
        }
    }

    async fn run(&self, _ctx: JobContext) -> std::result::Result<JobOutput, JobError> {
        Ok(JobOutput::empty())
    }
}

fn registry() -> RunnerRegistry {
    let mut r = RunnerRegistry::new();
    r.register(Arc::new(UrlRunner("http_request"))).unwrap();
    r.register(Arc::new(UrlRunner("webhook"))).unwrap();
    r
}

fn compile_yaml_with_registry(src: &str) -> Result<CompiledTemplate> {
    let t = WorkflowTemplate::from_yaml(src)?;
    let r = registry();
    Validator::new().registry(&r).compile(&t)
}

#[test]
fn duplicate_ids_name_the_second_occurrence() {
    let err = yaml_err(&format!("{HEAD}  - id: b\n    type: x\n  - id: a\n    type: x\n"));
    assert_at(&err, Some("a"), "id", Some((8, 9)));
    assert!(err.message().contains("duplicate job id `a`"), "{err}");
}

#[test]
fn unknown_parent_is_located_at_the_list_element() {
    let err = yaml_err(&format!("{HEAD}  - id: b\n    type: x\n    depends_on: [a, zz]\n"));
    assert_at(&err, Some("b"), "depends_on[1]", Some((8, 21)));
    assert!(err.message().contains("unknown job `zz`"), "{err}");
}

#[test]
fn self_dependency_is_rejected() {
    let err = yaml_err(&format!("{HEAD}  - id: b\n    type: x\n    depends_on: [b]\n"));
    assert_at(&err, Some("b"), "depends_on[0]", Some((8, 18)));
    assert!(err.message().contains("depends on itself"), "{err}");
}

#[test]
fn duplicate_parent_is_rejected() {
    let err = yaml_err(&format!("{HEAD}  - id: b\n    type: x\n    depends_on: [a, a]\n"));
    assert_at(&err, Some("b"), "depends_on[1]", Some((8, 21)));
}

#[test]
fn cycle_reports_its_path() {
    let src = "template_id: t\nversion: 1\njobs:\n  - id: start\n    type: x\n  - id: a\n    type: x\n    depends_on: [start, c]\n  - id: b\n    type: x\n    depends_on: [a]\n  - id: c\n    type: x\n    depends_on: [b]\n";
    let err = yaml_err(src);
    assert_at(&err, Some("a"), "depends_on", Some((8, 17)));
    assert!(err.message().contains("cycle: a -> b -> c -> a"), "{err}");
}

#[test]
fn unknown_job_type_lists_registered_types() {
    let err = compile_yaml_with_registry(&format!("{HEAD}    config: {{url: x}}\n  - id: b\n    type: thumbnail\n"))
        .unwrap_err();
    assert_at(&err, Some("b"), "type", Some((8, 11)));
    assert!(err.message().contains("unknown job type `thumbnail` (registered: http_request, webhook)"), "{err}");

    let err = compile_yaml_with_registry(&format!("{HEAD}    config: {{url: x}}\n    compensate: {{type: undo}}\n"))
        .unwrap_err();
    assert_at(&err, Some("a"), "compensate.type", Some((7, 24)));
}

#[test]
fn runner_config_errors_keep_their_field() {
    let err = compile_yaml_with_registry(&format!("{HEAD}    config:\n      url: 42\n")).unwrap_err();
    assert_at(&err, Some("a"), "config.url", Some((7, 12)));
    assert!(err.message().contains("`url` must be a string"), "{err}");

    let err = compile_yaml_with_registry(&format!(
        "{HEAD}    config: {{url: x}}\n    compensate:\n      type: webhook\n      config: {{}}\n"
    ))
    .unwrap_err();
    assert_at(&err, Some("a"), "compensate.config.url", Some((9, 15)));
    assert!(compile_yaml_with_registry(&format!("{HEAD}    config: {{url: x}}\n")).is_ok());
}

#[test]
fn bad_when_expression_is_rejected() {
    let err = yaml_err(&format!("{HEAD}    when: \"input.amount >\"\n"));
    assert_at(&err, Some("a"), "when", Some((6, 11)));
    let err = yaml_err(&format!("{HEAD}    when: \"payload.amount > 1\"\n"));
    assert_at(&err, Some("a"), "when", Some((6, 11)));
    assert!(err.message().contains("unknown variable `payload`"), "{err}");
}

#[test]
fn bad_interpolation_is_rejected() {
    let err = yaml_err(&format!("{HEAD}    config:\n      headers:\n        X-Id: \"${{input.id\"\n"));
    assert_at(&err, Some("a"), "config.headers.X-Id", Some((8, 15)));
    assert!(err.message().contains("unterminated"), "{err}");
    let err = yaml_err(&format!("{HEAD}    config:\n      args: [a, \"${{foo.bar}}\"]\n"));
    assert_at(&err, Some("a"), "config.args[1]", Some((7, 17)));
    assert!(err.message().contains("unknown root `foo`"), "{err}");
}

#[test]
fn job_output_references_must_be_ancestors() {
    // `b` and `c` are siblings: `c` cannot read `b`'s output.
    let src = format!(
        "{HEAD}  - id: b\n    type: x\n    depends_on: [a]\n  - id: c\n    type: x\n    depends_on: [a]\n    config:\n      v: \"${{jobs.b.output.x}}\"\n"
    );
    let err = yaml_err(&src);
    assert_at(&err, Some("c"), "config.v", Some((13, 10)));
    assert!(err.message().contains("job `c` reads the output of job `b`"), "{err}");

    let err = yaml_err(&format!("{HEAD}    config: {{v: \"${{jobs.ghost.output}}\"}}\n"));
    assert_at(&err, Some("a"), "config.v", Some((6, 17)));
    assert!(err.message().contains("unknown job `ghost`"), "{err}");

    let err = yaml_err(&format!("{HEAD}    config: {{v: \"${{jobs.a.output}}\"}}\n"));
    assert_at(&err, Some("a"), "config.v", Some((6, 17)));

    let err = yaml_err(&format!("{HEAD}  - id: b\n    type: x\n    depends_on: []\n    when: \"jobs.a.output.ok\"\n"));
    assert_at(&err, Some("b"), "when", Some((9, 11)));
}

#[test]
fn compensation_may_read_its_own_job() {
    let ok = format!("{HEAD}    compensate:\n      type: x\n      config: {{id: \"${{jobs.a.output.id}}\"}}\n");
    assert!(WorkflowTemplate::from_yaml(&ok).is_ok());
    let bad = format!(
        "{HEAD}    compensate:\n      type: x\n      config: {{id: \"${{jobs.b.output.id}}\"}}\n  - id: b\n    type: x\n"
    );
    let err = yaml_err(&bad);
    assert_at(&err, Some("a"), "compensate.config.id", Some((8, 20)));
}

#[test]
fn env_references_must_be_allowlisted() {
    let t =
        WorkflowTemplate::from_yaml(&format!("{HEAD}    config: {{url: \"${{API_URL}}/x\", h: \"${{env.HOME}}\"}}\n"))
            .unwrap();
    let allow: HashSet<String> = ["API_URL".to_owned()].into();
    let err = Validator::new().env_allowlist(&allow).compile(&t).unwrap_err();
    assert_at(&err, Some("a"), "config.h", Some((6, 38)));
    assert!(err.message().contains("`HOME` is not on the host's allowlist"), "{err}");
    let allow: HashSet<String> = ["API_URL".to_owned(), "HOME".to_owned()].into();
    assert!(Validator::new().env_allowlist(&allow).compile(&t).is_ok());
    // Without an allowlist, env references are not checked.
    assert!(Validator::new().compile(&t).is_ok());
}

#[test]
fn bad_input_schema_is_rejected() {
    let err = yaml_err(&format!("template_id: t\nversion: 1\ninput_schema:\n  type: 12\n{}", &HEAD[26..]));
    assert_at(&err, None, "input_schema", Some((4, 3)));
    assert!(err.message().contains("not a valid JSON Schema"), "{err}");
}

#[test]
fn retry_and_timeout_bounds_are_checked() {
    let cases = [
        ("    retry: {max_attempts: 0}\n", "retry", "max_attempts"),
        ("    retry: {multiplier: 0.5}\n", "retry", "multiplier"),
        ("    retry: {jitter: 1.5}\n", "retry", "jitter"),
        ("    retry: {initial_delay: 10m, max_delay: 1m}\n", "retry", "initial_delay"),
        ("    timeout: 0s\n", "timeout", "greater than zero"),
        ("    compensate: {type: x, timeout: 0}\n", "compensate.timeout", "greater than zero"),
    ];
    for (extra, field, needle) in cases {
        let err = yaml_err(&format!("{HEAD}{extra}"));
        assert_at(&err, Some("a"), field, err.location().and_then(|l| l.line.zip(l.column)));
        assert_eq!(err.location().and_then(|l| l.line), Some(6), "{err}");
        assert!(err.message().contains(needle), "{err}");
    }
    let err =
        yaml_err("template_id: t\nversion: 1\ndefaults:\n  retry: {max_attempts: 0}\njobs:\n  - id: a\n    type: x\n");
    assert_at(&err, None, "defaults.retry", Some((4, 3)));
}

#[test]
fn ids_are_checked() {
    let err = yaml_err("template_id: \"bad id\"\nversion: 1\njobs:\n  - id: a\n    type: x\n");
    assert_eq!(err.location().and_then(|l| l.field.as_deref()), Some("template_id"));
    assert_eq!(err.location().and_then(|l| l.line), Some(1));
    let err = yaml_err(&format!("{HEAD}  - id: \"b/c\"\n    type: x\n"));
    assert_at(&err, Some("b/c"), "id", Some((6, 9)));
    let err = yaml_err(&format!("{HEAD}  - id: b.compensate\n    type: x\n"));
    assert_at(&err, Some("b.compensate"), "id", Some((6, 9)));
    assert!(err.message().contains("reserved"), "{err}");
}

#[test]
fn programmatic_templates_are_validated_without_positions() {
    let t = WorkflowTemplate::new("t", semver::Version::new(1, 0, 0))
        .job(JobSpec::new("a", "x"))
        .job(JobSpec::new("b", "x").depends_on(["nope"]));
    let err = t.validate().unwrap_err();
    assert_at(&err, Some("b"), "depends_on[0]", None);
}

#[test]
fn diamond_compiles_with_defaults_and_compensation() {
    let t = WorkflowTemplate::from_yaml(DIAMOND_YAML).unwrap();
    let c = Validator::new().registry(&registry()).compile(&t).unwrap();
    let ids: Vec<&str> = c.jobs().iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["fetch", "fraud_check", "reserve_stock", "ship"]);
    let fetch = c.job("fetch").unwrap();
    assert_eq!(fetch.children, ["fraud_check", "reserve_stock"]);
    assert_eq!(fetch.retry.max_attempts, 3);
    assert_eq!(fetch.retry.initial_delay.0, Duration::from_secs(2));
    assert_eq!(fetch.timeout, Some(Duration::from_secs(30)));
    let ship = c.job("ship").unwrap();
    assert_eq!(ship.parents, ["fraud_check", "reserve_stock"]);
    assert_eq!(ship.trigger, Trigger::NoneFailed);
    assert_eq!(ship.priority, 5);
    assert!(ship.children.is_empty());
    let reserve = c.job("reserve_stock").unwrap();
    assert_eq!(reserve.retry.max_attempts, 5);
    assert_eq!(reserve.timeout, Some(Duration::from_secs(5)));
    assert_eq!(reserve.config.secret_names(), ["stock_token"]);
    assert!(c.job("fraud_check").unwrap().condition.is_some());

    let comp = c.job("reserve_stock.compensate").unwrap();
    assert!(comp.is_compensation());
    assert_eq!(comp.compensates.as_deref(), Some("reserve_stock"));
    assert!(comp.parents.is_empty() && comp.children.is_empty());
    assert_eq!(comp.retry.max_attempts, 3);
    assert_eq!(c.compensation_jobs().map(|j| j.id.as_str()).collect::<Vec<_>>(), ["reserve_stock.compensate"]);
    assert_eq!(c.roots().map(|j| j.id.as_str()).collect::<Vec<_>>(), ["fetch"]);
    assert!(c.job("nope").is_none());

    assert_eq!(c.ancestors_referenced("ship"), ["fraud_check", "reserve_stock"]);
    assert_eq!(c.ancestors_referenced("fraud_check"), ["fetch"]);
    assert_eq!(c.ancestors_referenced("reserve_stock.compensate"), ["reserve_stock"]);
    assert!(c.ancestors_referenced("fetch").is_empty());
}

#[test]
fn parents_listed_after_their_child_compile_in_template_order() {
    let t = WorkflowTemplate::new("t", semver::Version::new(1, 0, 0))
        .job(JobSpec::new("c", "x").depends_on(["b", "a"]).config(json!({"v": "${jobs.a.output}"})))
        .job(JobSpec::new("a", "x").depends_on(Vec::<String>::new()))
        .job(JobSpec::new("b", "x"))
        .job(JobSpec::new("d", "x").depends_on(["a"]).when("jobs.a.output.ok"));
    t.validate().unwrap();
    let c = Validator::new().compile(&t).unwrap();
    let parents: Vec<&[Name]> = c.jobs().iter().map(|j| j.parents.as_slice()).collect();
    assert_eq!(parents, [&["b", "a"][..], &[], &["a"], &["a"]]);
    let children: Vec<&[Name]> = c.jobs().iter().map(|j| j.children.as_slice()).collect();
    assert_eq!(children, [&[][..], &["c", "b", "d"], &["c"], &[]]);
    assert_eq!(c.roots().map(|j| j.id.as_str()).collect::<Vec<_>>(), ["a"]);
    assert_eq!(c.ancestors_referenced("c"), ["b", "a"]);

    // Listed out of order, a loop is still found and named from its first-listed job.
    let looped = WorkflowTemplate::new("t", semver::Version::new(1, 0, 0))
        .job(JobSpec::new("c", "x").depends_on(["b"]))
        .job(JobSpec::new("a", "x").depends_on(Vec::<String>::new()))
        .job(JobSpec::new("b", "x").depends_on(["a", "c"]));
    let err = looped.validate().unwrap_err();
    assert_at(&err, Some("c"), "depends_on", None);
    assert_eq!(err.message(), "cycle: c -> b -> c");
}

#[test]
fn configs_without_strings_are_still_checked_by_their_runner() {
    // `b` shares `a`'s type and `c` follows with another one: each meets its own runner.
    let t = WorkflowTemplate::new("t", semver::Version::new(1, 0, 0))
        .job(JobSpec::new("a", "http_request").config(json!({"url": "x"})))
        .job(JobSpec::new("b", "http_request").config(json!({"url": "y"})))
        .job(JobSpec::new("c", "webhook").config(json!(7)));
    t.validate().unwrap();
    let err = Validator::new().registry(&registry()).compile(&t).unwrap_err();
    assert_at(&err, Some("c"), "config.url", None);
    assert_eq!(err.message(), "invalid config for job type `webhook`: `url` must be a string");
    let fixed = t.clone().job(JobSpec::new("d", "thumbnail"));
    let err = Validator::new().registry(&registry()).compile(&fixed).unwrap_err();
    assert_at(&err, Some("c"), "config.url", None);
    let mut unknown = fixed;
    unknown.jobs[2].config = json!({"url": "z"});
    let err = Validator::new().registry(&registry()).compile(&unknown).unwrap_err();
    assert_at(&err, Some("d"), "type", None);
    assert!(err.message().starts_with("unknown job type `thumbnail`"), "{err}");
}

#[test]
fn ancestors_referenced_includes_transitive_references() {
    let t = WorkflowTemplate::new("t", semver::Version::new(1, 0, 0))
        .job(JobSpec::new("a", "x"))
        .job(JobSpec::new("b", "x"))
        .job(JobSpec::new("c", "x").config(json!({"v": "${jobs.a.output}"})).when("jobs.b.status == 'SUCCEEDED'"))
        .job(JobSpec::new("d", "x").when("jobs['a'].output.ok"));
    let c = Validator::new().compile(&t).unwrap();
    assert_eq!(c.ancestors_referenced("c"), ["b", "a"]);
    assert_eq!(c.ancestors_referenced("d"), ["c", "a"]);
}

#[test]
fn input_is_checked_against_the_schema() {
    let c = Validator::new().compile(&WorkflowTemplate::from_yaml(DIAMOND_YAML).unwrap()).unwrap();
    assert!(c.validate_input(&json!({"order_id": "o-1", "amount": 12.5})).is_ok());
    let err = c.validate_input(&json!({"order_id": 7, "amount": -1})).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.message().contains("`/order_id`") && err.message().contains("`/amount`"), "{err}");
    let field = err.location().and_then(|l| l.field.clone()).unwrap_or_default();
    assert!(field == "input/order_id" || field == "input/amount", "{field}");
    let err = c.validate_input(&json!({"order_id": "o-1"})).unwrap_err();
    assert!(err.message().contains("at `/`") && err.message().contains("amount"), "{err}");

    let no_schema = Validator::new()
        .compile(&WorkflowTemplate::new("t", semver::Version::new(1, 0, 0)).job(JobSpec::new("a", "x")));
    assert!(no_schema.unwrap().validate_input(&json!("anything")).is_ok());
}

#[test]
fn ten_thousand_job_chain_compiles() {
    let n = 10_000;
    let mut src = String::from("template_id: long\nversion: 1\njobs:\n");
    for i in 0..n {
        src.push_str(&format!("  - id: j{i}\n    type: noop\n"));
        if i > 0 {
            src.push_str(&format!("    config: {{prev: \"${{jobs.j{}.output}}\"}}\n", i - 1));
        }
    }
    let t = WorkflowTemplate::from_yaml(&src).unwrap();
    let c = Validator::new().compile(&t).unwrap();
    assert_eq!(c.jobs().len(), n);
    assert_eq!(c.roots().count(), 1);
    assert_eq!(c.job("j9999").unwrap().parents, ["j9998"]);
    assert_eq!(c.ancestors_referenced("j9999"), ["j9998"]);
    // Closing the chain into a loop is found without recursion too.
    let mut looped = t.clone();
    looped.jobs[0].depends_on = Some(vec![format!("j{}", n - 1)]);
    let err = looped.validate().unwrap_err();
    assert!(err.message().starts_with("cycle: j0 -> j1 -> "), "{}", &err.message()[..40]);
}
