//! Criterion micro-benchmarks of the engine's pure parts: template parse + validate,
//! planning one job transition, config interpolation and condition evaluation.
//!
//! `cargo bench -p baseshift-benches --bench micro`

use baseshift_core::engine::plan::{self, Outcome};
use baseshift_core::expr::{Condition, ConditionVars, ConfigTemplate, RenderScope};
use baseshift_core::template::Validator;
use baseshift_core::{JobSpec, WorkflowId, WorkflowTemplate};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::json;
use std::collections::HashMap;
use std::hint::black_box;

/// A fan-out template of `n` jobs as JSON text.
fn fanout_json(n: usize) -> String {
    let mut t = WorkflowTemplate::new("fanout", semver::Version::new(1, 0, 0)).job(JobSpec::new("src", "noop"));
    let mids: Vec<String> = (0..n.saturating_sub(2)).map(|i| format!("m{i}")).collect();
    for m in &mids {
        t = t.job(JobSpec::new(m.clone(), "noop").depends_on(["src"]));
    }
    let t = t.job(JobSpec::new("sink", "noop").depends_on(mids));
    serde_json::to_string(&t).unwrap_or_default()
}

fn parse_validate(c: &mut Criterion) {
    let mut group = c.benchmark_group("template parse+validate");
    group.sample_size(10);
    for n in [10, 1_000, 100_000] {
        let text = fanout_json(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &text, |b, text| {
            b.iter(|| {
                let t = WorkflowTemplate::from_json(black_box(text)).map(|t| t.validate());
                assert!(matches!(t, Ok(Ok(()))));
            })
        });
    }
    group.finish();
}

fn plan_transition(c: &mut Criterion) {
    let template = WorkflowTemplate::new("diamond", semver::Version::new(1, 0, 0))
        .job(JobSpec::new("a", "noop"))
        .job(JobSpec::new("b", "noop").depends_on(["a"]))
        .job(JobSpec::new("c", "noop").depends_on(["a"]))
        .job(JobSpec::new("e", "noop").depends_on(["b", "c"]));
    let Ok(compiled) = Validator::new().compile(&template) else { return };
    let records = plan::initial_records(&compiled, &WorkflowId::new("wf-bench"));
    let now = chrono::Utc::now();
    c.bench_function("plan complete(a) with 2 children", |b| {
        b.iter(|| plan::complete(&compiled, records[0].clone(), Outcome::Succeeded(json!({ "n": 1 })), 3, now))
    });
}

fn interpolation(c: &mut Criterion) {
    let config = json!({ "url": "https://x.invalid/${input.order}", "n": "${jobs.fetch.output.n}", "k": 1 });
    let Ok(tpl) = ConfigTemplate::parse(&config) else { return };
    let input = json!({ "order": 42 });
    let outputs = HashMap::from([("fetch".to_owned(), json!({ "n": 7 }))]);
    let secrets = HashMap::new();
    let env = |_: &str| None;
    let scope = RenderScope { input: &input, outputs: &outputs, workflow_id: "wf-bench", env: &env, secrets: &secrets };
    c.bench_function("interpolate 2 references", |b| b.iter(|| tpl.render(black_box(&scope))));
}

fn condition(c: &mut Criterion) {
    let Ok(cond) = Condition::compile("input.amount > 100 && jobs.check.output.ok") else { return };
    let (input, jobs, workflow) =
        (json!({ "amount": 150 }), json!({ "check": { "output": { "ok": true } } }), json!({}));
    let vars = ConditionVars { input: &input, jobs: &jobs, workflow: &workflow };
    c.bench_function("condition evaluate", |b| b.iter(|| cond.evaluate(black_box(&vars))));
}

criterion_group!(micro, parse_validate, plan_transition, interpolation, condition);
criterion_main!(micro);
