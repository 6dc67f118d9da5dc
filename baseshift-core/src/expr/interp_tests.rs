use super::*;
use crate::error::ErrorKind;
use serde_json::json;

struct Fixture {
    input: Value,
    outputs: HashMap<String, Value>,
    secrets: HashMap<String, String>,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            input: json!({"order": {"id": 42, "items": ["a", "b"]}, "name": "bob"}),
            outputs: HashMap::from([("fetch".to_owned(), json!({"url": "http://x", "meta": {"n": 3}}))]),
            secrets: HashMap::from([("token".to_owned(), "s3cr3t".to_owned())]),
        }
    }

    fn render(&self, config: Value) -> Result<Value> {
        let env = |name: &str| (name == "HOST").then(|| "example.org".to_owned());
        let scope = RenderScope {
            input: &self.input,
            outputs: &self.outputs,
            workflow_id: "wf-1",
            env: &env,
            secrets: &self.secrets,
        };
        ConfigTemplate::parse(&config).map_err(|(p, m)| Error::invalid_input(format!("{p}: {m}")))?.render(&scope)
    }
}

#[test]
fn parses_every_reference_kind() {
    let cases = [
        ("input.a.b", Reference::Input(vec!["a".into(), "b".into()])),
        ("input", Reference::Input(vec![])),
        ("jobs.fetch.output", Reference::JobOutput { job: "fetch".into(), path: vec![] }),
        ("jobs.a.b.output.x", Reference::JobOutput { job: "a.b".into(), path: vec!["x".into()] }),
        ("workflow.id", Reference::WorkflowId),
        ("env.HOME", Reference::Env("HOME".into())),
        ("PAYMENT_GATEWAY_URL", Reference::Env("PAYMENT_GATEWAY_URL".into())),
        (" secrets.db-pass ", Reference::Secret("db-pass".into())),
    ];
    for (text, expected) in cases {
        assert_eq!(Reference::parse(text).unwrap(), expected, "{text}");
    }
}

#[test]
fn rejects_bad_references() {
    for text in ["", "  ", "foo.bar", "jobs.x", "jobs.output", "workflow.name", "env.A.B", "input..a", "1abc"] {
        assert!(Reference::parse(text).is_err(), "`{text}` should be rejected");
    }
    let err = Reference::parse("foo.bar").unwrap_err();
    assert!(err.contains("unknown root `foo`"), "{err}");
}

#[test]
fn reference_display_round_trips() {
    for text in ["input.a.b", "jobs.x.output.y", "workflow.id", "env.A", "secrets.B"] {
        let r = Reference::parse(text).unwrap();
        assert_eq!(r.to_string(), format!("${{{text}}}"));
        assert_eq!(Reference::parse(&r.to_string()[2..r.to_string().len() - 1]).unwrap(), r);
    }
}

#[test]
fn parse_errors_name_the_field_path() {
    let (path, msg) = ConfigTemplate::parse(&json!({"headers": {"Authorization": "Bearer ${secrets.x"}})).unwrap_err();
    assert_eq!(path, "config.headers.Authorization");
    assert!(msg.contains("unterminated"), "{msg}");

    let (path, msg) = ConfigTemplate::parse(&json!({"args": ["a", "b", "${}"]})).unwrap_err();
    assert_eq!(path, "config.args[2]");
    assert!(msg.contains("empty"), "{msg}");

    let (path, _) = ConfigTemplate::parse_at(&json!({"u": "${foo.bar}"}), "compensate.config").unwrap_err();
    assert_eq!(path, "compensate.config.u");
}

#[test]
fn whole_reference_keeps_the_json_type() {
    let f = Fixture::new();
    let out = f
        .render(
            json!({"order": "${input.order}", "n": "${jobs.fetch.output.meta.n}", "first": "${input.order.items.0}"}),
        )
        .unwrap();
    assert_eq!(out, json!({"order": {"id": 42, "items": ["a", "b"]}, "n": 3, "first": "a"}));
}

#[test]
fn mixed_strings_render_values_as_text() {
    let f = Fixture::new();
    let out = f
        .render(json!({
            "url": "https://${HOST}/orders/${input.order.id}?wf=${workflow.id}",
            "msg": "hi ${input.name}, items=${input.order.items}",
            "padded": " ${input.order.id}",
        }))
        .unwrap();
    assert_eq!(out["url"], "https://example.org/orders/42?wf=wf-1");
    assert_eq!(out["msg"], r#"hi bob, items=["a","b"]"#);
    assert_eq!(out["padded"], " 42");
}

#[test]
fn escapes_render_a_literal_dollar_brace() {
    let f = Fixture::new();
    let t = ConfigTemplate::parse(&json!("cost: $${input.x} and ${input.name}")).unwrap();
    assert_eq!(t.references().len(), 1);
    assert!(!t.is_static());
    assert_eq!(f.render(json!("cost: $${input.x} and ${input.name}")).unwrap(), json!("cost: ${input.x} and bob"));
    assert_eq!(f.render(json!("$${only}")).unwrap(), json!("${only}"));
    assert!(!ConfigTemplate::parse(&json!("$${only}")).unwrap().is_static());
}

#[test]
fn object_keys_are_not_interpolated() {
    let f = Fixture::new();
    let out = f.render(json!({"${input.name}": "${input.name}"})).unwrap();
    assert_eq!(out, json!({"${input.name}": "bob"}));
}

#[test]
fn secrets_are_resolved_and_listed() {
    let f = Fixture::new();
    let config = json!({"headers": {"Authorization": "Bearer ${secrets.token}"}, "t": "${secrets.token}", "u": "${secrets.other}"});
    let t = ConfigTemplate::parse(&config).unwrap();
    assert_eq!(t.secret_names(), vec!["token", "other"]);
    let err = f.render(config).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.message().contains("config.u") && err.message().contains("${secrets.other}"), "{err}");
    let out = f.render(json!({"headers": {"Authorization": "Bearer ${secrets.token}"}})).unwrap();
    assert_eq!(out["headers"]["Authorization"], "Bearer s3cr3t");
}

#[test]
fn missing_values_are_invalid_input_naming_field_and_reference() {
    let f = Fixture::new();
    let cases = [
        (json!({"a": "${input.nope}"}), "config.a", "${input.nope}"),
        (json!({"b": ["${jobs.missing.output}"]}), "config.b[0]", "${jobs.missing.output}"),
        (json!({"c": "x${jobs.fetch.output.zzz}"}), "config.c", "${jobs.fetch.output.zzz}"),
        (json!({"d": "${env.NOT_ALLOWED}"}), "config.d", "${env.NOT_ALLOWED}"),
    ];
    for (config, field, reference) in cases {
        let err = f.render(config).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.message().contains(field) && err.message().contains(reference), "{err}");
        assert_eq!(err.location().and_then(|l| l.field.as_deref()), Some(field));
    }
}

#[test]
fn helpers_report_jobs_and_static_configs() {
    let t =
        ConfigTemplate::parse(&json!({"a": "${jobs.x.output}", "b": "${jobs.y.output.z} ${jobs.x.output.q}"})).unwrap();
    assert_eq!(t.job_refs(), vec!["x", "y"]);
    let paths: Vec<&str> = t.field_references().map(|(p, _)| p).collect();
    assert_eq!(paths, vec!["config.a", "config.b", "config.b"]);
    let s = ConfigTemplate::parse(&json!({"a": [1, "two", {"b": null}]})).unwrap();
    assert!(s.is_static());
    assert!(s.references().is_empty());
    assert_eq!(
        Fixture::new().render(json!({"a": [1, "two", {"b": null}]})).unwrap(),
        json!({"a": [1, "two", {"b": null}]})
    );
}
