use super::*;
use crate::error::ErrorKind;

const PAYMENT_YAML: &str = include_str!("../../tests/fixtures/payment_gateway.yaml");
const PAYMENT_JSON: &str = include_str!("../../tests/fixtures/payment_gateway.json");
const DIAMOND_YAML: &str = include_str!("../../tests/fixtures/diamond.yaml");

/// Asserts an InvalidTemplate error at (template, job, field, line, column).
#[track_caller]
fn assert_at(
    err: &Error,
    template: Option<&str>,
    job: Option<&str>,
    field: Option<&str>,
    line_col: Option<(u32, u32)>,
) {
    assert_eq!(err.kind(), ErrorKind::InvalidTemplate, "{err}");
    let loc = err.location().unwrap_or_else(|| panic!("no location: {err}"));
    assert_eq!(loc.template.as_deref(), template, "template of {err}");
    assert_eq!(loc.job.as_deref(), job, "job of {err}");
    assert_eq!(loc.field.as_deref(), field, "field of {err}");
    assert_eq!(loc.line.zip(loc.column), line_col, "line/column of {err}");
}

const HEAD: &str = "template_id: t\nversion: 1\njobs:\n  - id: a\n    type: noop\n";

#[test]
fn payment_gateway_fixture_loads_as_a_chain() {
    let t = WorkflowTemplate::from_yaml(PAYMENT_YAML).unwrap();
    assert_eq!(t.template_id, "payment_gateway_template");
    assert_eq!(t.name, "Payment Gateway Workflow");
    assert_eq!(t.version, semver::Version::new(1, 0, 0));
    let ids: Vec<&str> = t.jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["initialize_payment", "process_payment", "finalize_transaction"]);
    assert!(t.parents_of(0).is_empty());
    assert_eq!(t.parents_of(1), ["initialize_payment"]);
    assert_eq!(t.parents_of(2), ["process_payment"]);
    assert_eq!(t.jobs[0].config["url"], "${PAYMENT_GATEWAY_URL}/initialize");
    assert_eq!(t.jobs[1].config["image"], "payment-processor:v1");
    let map = t.source_map.as_ref().unwrap();
    assert_eq!(map.locate(Some("process_payment"), Some("type")), Some((9, 11)));
    assert_eq!(map.locate(None, Some("version")), Some((3, 10)));
}

#[test]
fn json_loading_gives_the_same_template() {
    let mut from_yaml = WorkflowTemplate::from_yaml(PAYMENT_YAML).unwrap();
    let from_json = WorkflowTemplate::from_json(PAYMENT_JSON).unwrap();
    assert!(from_json.source_map.is_none());
    from_yaml.source_map = None;
    assert_eq!(from_yaml, from_json);

    let mut diamond = WorkflowTemplate::from_yaml(DIAMOND_YAML).unwrap();
    diamond.source_map = None;
    let round_trip = WorkflowTemplate::from_json(&diamond.to_json()).unwrap();
    assert_eq!(round_trip, diamond);
}

#[test]
fn diamond_fixture_reads_every_field() {
    let t = WorkflowTemplate::from_yaml(DIAMOND_YAML).unwrap();
    assert_eq!(t.version, semver::Version::new(2, 1, 0));
    assert_eq!(t.description.as_deref(), Some("Fan out to two checks, join, then ship."));
    assert!(t.input_schema.is_some());
    assert_eq!(t.defaults.retry.as_ref().map(|r| r.max_attempts), Some(3));
    assert_eq!(t.defaults.timeout.map(|d| d.0), Some(std::time::Duration::from_secs(30)));
    let ship = &t.jobs[3];
    assert_eq!(ship.trigger, super::super::Trigger::NoneFailed);
    assert_eq!(ship.priority, 5);
    assert_eq!(t.parents_of(3), ["fraud_check", "reserve_stock"]);
    assert_eq!(t.jobs[1].when.as_deref(), Some("input.amount > 100"));
    let comp = t.jobs[2].compensate.as_ref().unwrap();
    assert_eq!(comp.job_type, "http_request");
    let map = t.source_map.as_ref().unwrap();
    // Nested config fields and list elements are located; unknown ones fall back to a parent.
    assert_eq!(map.locate(Some("reserve_stock"), Some("config.headers.Authorization")), Some((37, 24)));
    assert_eq!(map.locate(Some("reserve_stock"), Some("config.headers.Nope")), Some((37, 9)));
    assert_eq!(map.locate(Some("ship"), Some("depends_on[1]")), Some((45, 31)));
    assert_eq!(map.locate(Some("ship"), None), Some((43, 5)));
    assert_eq!(map.locate(Some("nope"), None), None);
}

#[test]
fn malformed_yaml_is_located() {
    let err = WorkflowTemplate::from_yaml(&format!("{HEAD}    config: {{x: [1, 2\n")).unwrap_err();
    assert_at(&err, None, None, None, Some((6, 17)));
    assert!(err.message().contains("invalid YAML"), "{err}");
}

#[test]
fn wrong_field_type_is_located() {
    let err = WorkflowTemplate::from_yaml(&format!("{HEAD}    priority: high\n")).unwrap_err();
    assert_at(&err, Some("t"), Some("a"), Some("priority"), Some((6, 15)));

    let err = WorkflowTemplate::from_yaml(&format!("{HEAD}    timeout: forever\n")).unwrap_err();
    assert_at(&err, Some("t"), Some("a"), Some("timeout"), Some((6, 14)));

    let err = WorkflowTemplate::from_yaml(&format!("{HEAD}    depends_on: a\n")).unwrap_err();
    assert_at(&err, Some("t"), Some("a"), Some("depends_on"), Some((6, 17)));

    let err = WorkflowTemplate::from_yaml("template_id: t\nversion: one\njobs: []\n").unwrap_err();
    assert_at(&err, Some("t"), None, Some("version"), Some((2, 10)));
}

#[test]
fn unknown_fields_are_rejected_with_a_hint() {
    let err = WorkflowTemplate::from_yaml(&format!("{HEAD}    depend_on: [b]\n")).unwrap_err();
    assert_at(&err, Some("t"), Some("a"), Some("depend_on"), Some((6, 5)));
    assert!(err.message().contains("did you mean `depends_on`"), "{err}");

    let err = WorkflowTemplate::from_yaml(&format!("{HEAD}    compensate: {{type: noop, confg: {{}}}}\n")).unwrap_err();
    assert_at(&err, Some("t"), Some("a"), Some("compensate.confg"), Some((6, 30)));

    let err = WorkflowTemplate::from_yaml(&format!("{HEAD}jobz: []\n")).unwrap_err();
    assert_at(&err, Some("t"), None, Some("jobz"), Some((6, 1)));

    let err =
        WorkflowTemplate::from_yaml(&format!("{HEAD}    retry: {{max_attempts: 2, multipler: 3}}\n")).unwrap_err();
    assert_at(&err, Some("t"), Some("a"), Some("retry"), Some((6, 12)));
    assert!(err.message().contains("multipler"), "{err}");
}

#[test]
fn missing_fields_are_named() {
    let err = WorkflowTemplate::from_yaml("template_id: t\nversion: 1\njobs:\n  - id: a\n").unwrap_err();
    assert_at(&err, Some("t"), Some("a"), Some("type"), Some((4, 5)));
    let err = WorkflowTemplate::from_yaml("template_id: t\nversion: 1\njobs:\n  - type: noop\n").unwrap_err();
    assert_at(&err, Some("t"), None, Some("id"), Some((4, 5)));
    let err = WorkflowTemplate::from_yaml("version: 1\njobs: []\n").unwrap_err();
    assert_at(&err, None, None, Some("template_id"), Some((1, 1)));
    let err = WorkflowTemplate::from_yaml("- a\n").unwrap_err();
    assert_at(&err, None, None, None, Some((1, 1)));
}

#[test]
fn json_errors_carry_line_and_column() {
    let err =
        WorkflowTemplate::from_json("{\n  \"template_id\": \"t\",\n  \"version\": 1,\n  \"jobs\": [\n}").unwrap_err();
    assert_at(&err, None, None, None, Some((5, 1)));

    let err = WorkflowTemplate::from_json(
        r#"{"template_id": "t", "version": 1, "jobs": [{"id": "a", "type": "noop", "depend_on": []}]}"#,
    )
    .unwrap_err();
    assert_at(&err, Some("t"), Some("a"), Some("depend_on"), None);
}

#[test]
fn structural_validation_runs_on_load() {
    let err = WorkflowTemplate::from_yaml(&format!("{HEAD}    depends_on: [a]\n")).unwrap_err();
    assert_at(&err, Some("t"), Some("a"), Some("depends_on[0]"), Some((6, 18)));
    let err = WorkflowTemplate::from_yaml("template_id: t\nversion: 1\njobs: []\n").unwrap_err();
    assert_at(&err, Some("t"), None, Some("jobs"), Some((3, 7)));
}

#[test]
fn deep_nesting_is_rejected_without_overflow() {
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let err = WorkflowTemplate::from_yaml(&format!("{HEAD}    config: {deep}\n")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidTemplate);
    let json =
        format!(r#"{{"template_id": "t", "version": 1, "jobs": [{{"id": "a", "type": "x", "config": {deep}}}]}}"#);
    let err = WorkflowTemplate::from_json(&json).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidTemplate);
}

#[test]
fn job_errors_name_the_job_and_field_in_yaml_and_json() {
    let err = WorkflowTemplate::from_yaml("template_id: t\nversion: 1\njobs:\n  - id: a\n    type: x\n  - oops\n")
        .unwrap_err();
    assert_at(&err, Some("t"), None, None, Some((6, 5)));
    assert_eq!(err.message(), "job #2 must be a mapping, not a string");
    let err =
        WorkflowTemplate::from_json(r#"{"template_id": "t", "version": 1, "jobs": [{"type": "x"}]}"#).unwrap_err();
    assert_at(&err, Some("t"), None, Some("id"), None);
    assert_eq!(err.message(), "job #1 has no `id`");

    let err = WorkflowTemplate::from_yaml(&format!("{HEAD}    prio: 1\n")).unwrap_err();
    assert_at(&err, Some("t"), Some("a"), Some("prio"), Some((6, 5)));
    assert!(err.message().starts_with("unknown field `prio` in job `a`; expected one of: id, type,"), "{err}");

    let err =
        WorkflowTemplate::from_yaml(&format!("{HEAD}  - id: b\n    type: x\n    depends_on: [a, 7]\n")).unwrap_err();
    assert_at(&err, Some("t"), Some("b"), Some("depends_on[1]"), Some((8, 21)));
    assert_eq!(err.message(), "field `depends_on[1]` must be a string, not a number");
    let err = WorkflowTemplate::from_json(
        r#"{"template_id": "t", "version": 1, "jobs": [{"id": "a", "type": "x"}, {"id": "b", "type": "x", "depends_on": ["a", null]}]}"#,
    )
    .unwrap_err();
    assert_at(&err, Some("t"), Some("b"), Some("depends_on[1]"), None);
    assert_eq!(err.message(), "field `depends_on[1]` must be a string, not null");
}
