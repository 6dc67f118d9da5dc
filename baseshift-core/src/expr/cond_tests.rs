use super::*;
use serde_json::json;

fn eval(source: &str) -> Result<bool, String> {
    let input = json!({"amount": 150, "country": "DE", "items": [1, 2, 3]});
    let jobs = json!({"check": {"output": {"approved": true, "score": 0.7}, "status": "SUCCEEDED"}});
    let workflow = json!({"id": "wf-9"});
    Condition::compile(source)?.evaluate(&ConditionVars { input: &input, jobs: &jobs, workflow: &workflow })
}

#[test]
fn evaluates_true_and_false() {
    assert_eq!(eval("input.amount > 100"), Ok(true));
    assert_eq!(eval("input.amount > 1000"), Ok(false));
    assert_eq!(eval("jobs.check.output.approved && jobs.check.status == 'SUCCEEDED'"), Ok(true));
    assert_eq!(eval("input.country in ['FR', 'IT']"), Ok(false));
    assert_eq!(eval("workflow.id == 'wf-9'"), Ok(true));
    assert_eq!(eval("input.items.all(x, x > 0)"), Ok(true));
    assert_eq!(eval("has(input.missing)"), Ok(false));
}

#[test]
fn non_boolean_result_is_an_error() {
    let err = eval("input.amount + 1").unwrap_err();
    assert!(err.contains("not a boolean"), "{err}");
    let err = eval("input.country").unwrap_err();
    assert!(err.contains("not a boolean"), "{err}");
}

#[test]
fn evaluation_failure_is_an_error() {
    let err = eval("input.missing == 1").unwrap_err();
    assert!(err.contains("failed"), "{err}");
}

#[test]
fn syntax_errors_are_rejected_at_compile_time() {
    for bad in ["input.amount >", "((", "input.amount === 1", ""] {
        let err = Condition::compile(bad).unwrap_err();
        assert!(!err.is_empty(), "{bad}");
    }
}

#[test]
fn unknown_variables_are_rejected() {
    let err = Condition::compile("inputs.amount > 1").unwrap_err();
    assert!(err.contains("unknown variable `inputs`"), "{err}");
    assert!(Condition::compile("input.items.exists(i, i == 2)").is_ok());
    assert!(Condition::compile("input.items.map(v, v * 2).size() > 0 && v > 1").is_err());
}

#[test]
fn job_references_are_collected() {
    let c = Condition::compile("jobs.b.output.x > 1 || jobs['a-1'].status == 'SUCCEEDED' || input.jobs.z").unwrap();
    assert_eq!(c.job_refs(), ["a-1".to_owned(), "b".to_owned()]);
    assert_eq!(c.source(), "jobs.b.output.x > 1 || jobs['a-1'].status == 'SUCCEEDED' || input.jobs.z");
}

#[test]
fn condition_is_send_sync_clone() {
    fn assert_traits<T: Clone + Send + Sync + 'static>() {}
    assert_traits::<Condition>();
}

#[test]
fn json_integers_support_arithmetic() {
    assert_eq!(eval("input.amount + 1 == 151"), Ok(true));
    assert_eq!(eval("jobs.check.output.score * 2.0 > 1.0"), Ok(true));
    assert_eq!(eval("size(input.items) == 3"), Ok(true));
}

#[test]
fn deeply_nested_expressions_are_rejected() {
    let src = format!("{}true{}", "(".repeat(2000), ")".repeat(2000));
    assert!(Condition::compile(&src).is_err());
}

#[test]
fn long_flat_expressions_within_limits_compile() {
    let chain = vec!["input.amount > 1"; 150].join(" && ");
    assert!(chain.len() < MAX_CONDITION_LEN);
    assert_eq!(eval(&chain), Ok(true));
    let nested = format!("{}input.amount > 1{}", "(".repeat(32), ")".repeat(32));
    assert_eq!(eval(&nested), Ok(true));
    assert!(Condition::compile(&format!("{}true", "!".repeat(40))).is_err());
    assert!(Condition::compile(&"x".repeat(MAX_CONDITION_LEN + 1)).is_err());
    // Brackets inside string literals do not count.
    assert_eq!(eval(&format!("input.country != '{}'", "(".repeat(100))), Ok(true));
}
