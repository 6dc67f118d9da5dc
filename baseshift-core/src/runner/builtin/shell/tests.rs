use super::exec::tail;
use super::*;
use crate::error::ErrorKind;
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

fn runner(config: ShellRunnerConfig) -> ShellRunner {
    ShellRunner::new(config)
}

fn allowing(commands: &[&str]) -> ShellRunner {
    runner(ShellRunnerConfig::default().allow_commands(commands.iter().copied()))
}

fn ctx(config: Value) -> JobContext {
    JobContext::new("wf-1", "step", "shell", config)
}

async fn run_ok(runner: &ShellRunner, config: Value) -> Value {
    runner.validate_config(&config).unwrap();
    runner.run(ctx(config)).await.unwrap().value().clone()
}

/// A fresh directory under the system temp dir.
fn temp_dir() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("baseshift-shell-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether a live process has `arg` on its command line (Linux `/proc`).
fn process_with_arg_exists(arg: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| c.split(|b| *b == 0).any(|part| part == arg.as_bytes()))
            .unwrap_or(false)
    })
}

#[tokio::test]
async fn arguments_are_passed_verbatim_not_interpreted() {
    let r = allowing(&["echo"]);
    let out = run_ok(&r, json!({"argv": ["echo", "a  b", "c; rm -rf /tmp/x", "$HOME", "`id`", "|", "*"]})).await;
    assert_eq!(out["stdout"], json!("a  b c; rm -rf /tmp/x $HOME `id` | *\n"));
    assert_eq!(out["exit_code"], json!(0));
    assert_eq!(out["stderr"], json!(""));
    assert_eq!(out["truncated"], json!(false));
    assert!(out.get("json").is_none());
}

#[tokio::test]
async fn disallowed_command_is_rejected_at_load_and_at_run() {
    let r = allowing(&["echo"]);
    let config = json!({"argv": ["/usr/bin/echo", "hi"]});
    let err = r.validate_config(&config).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidTemplate);
    assert!(err.to_string().contains("not allowed by shell.allowed_commands"), "{err}");
    assert_eq!(err.location().and_then(|l| l.field.as_deref()), Some("config.argv"));
    let err = r.run(ctx(config)).await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.message().contains("shell.allowed_commands"), "{err}");
}

#[tokio::test]
async fn default_config_allows_no_command() {
    let r = runner(ShellRunnerConfig::default());
    assert!(r.validate_config(&json!({"argv": ["true"]})).is_err());
    assert!(r.run(ctx(json!({"argv": ["true"]}))).await.is_err());
}

#[test]
fn validation_checks_shape_and_skips_unresolved_values() {
    let r = allowing(&["echo"]);
    assert!(r.validate_config(&json!({"argv": ["${input.program}", "x"]})).is_ok());
    assert!(r.validate_config(&json!({"argv": "${input.argv}"})).is_ok());
    assert!(r.validate_config(&json!({"argv": ["echo"], "timeout": "${input.t}"})).is_ok());
    assert!(r.validate_config(&json!({"argv": ["echo"], "working_dir": "${input.dir}"})).is_ok());
    for bad in [
        json!({}),
        json!({"argv": []}),
        json!({"argv": "echo hi"}),
        json!({"argv": ["echo", 1]}),
        json!({"argv": [""]}),
        json!({"argv": ["echo"], "timeout": "soon"}),
        json!({"argv": ["echo"], "retry_on_exit_codes": ["x"]}),
        json!({"argv": ["echo"], "parse_json_stdout": "yes"}),
        json!({"argv": ["echo"], "command": "rm"}),
        json!({"argv": ["echo"], "env": {"A": {"nested": 1}}}),
    ] {
        assert!(r.validate_config(&bad).is_err(), "accepted {bad}");
    }
}

#[tokio::test]
async fn child_environment_is_cleared_except_path_and_inherited_names() {
    let host_var = std::env::vars().map(|(k, _)| k).find(|k| k != "PATH");
    let r = allowing(&["env"]);
    let out = run_ok(&r, json!({"argv": ["env"]})).await;
    let stdout = out["stdout"].as_str().unwrap();
    for line in stdout.lines() {
        assert!(line.starts_with("PATH="), "unexpected variable in child: {line}");
    }
    if let Some(name) = host_var {
        let r = runner(ShellRunnerConfig::default().allow_command("env").inherit_env(name.clone()));
        let out = run_ok(&r, json!({"argv": ["env"]})).await;
        let stdout = out["stdout"].as_str().unwrap();
        assert!(stdout.lines().any(|l| l.starts_with(&format!("{name}="))), "{name} not inherited: {stdout}");
    }
}

#[tokio::test]
async fn job_env_is_limited_to_the_allowlist() {
    let r = runner(ShellRunnerConfig::default().allow_command("printenv").allow_env("GREETING"));
    let out = run_ok(&r, json!({"argv": ["printenv", "GREETING"], "env": {"GREETING": "hello world"}})).await;
    assert_eq!(out["stdout"], json!("hello world\n"));

    let bad = json!({"argv": ["printenv"], "env": {"LD_PRELOAD": "/tmp/x.so"}});
    let err = r.validate_config(&bad).unwrap_err();
    assert!(err.to_string().contains("LD_PRELOAD"), "{err}");
    let err = r.run(ctx(bad)).await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.message().contains("LD_PRELOAD"), "{err}");
}

#[tokio::test]
async fn working_dir_must_be_under_an_allowed_directory() {
    let base = temp_dir();
    let inner = base.join("inner");
    std::fs::create_dir_all(&inner).unwrap();
    let inner_str = inner.to_str().unwrap().to_owned();

    let none_allowed = allowing(&["pwd"]);
    let config = json!({"argv": ["pwd"], "working_dir": inner_str});
    assert!(none_allowed.validate_config(&config).is_err());
    assert!(none_allowed.run(ctx(config.clone())).await.is_err());

    let r = runner(ShellRunnerConfig::default().allow_command("pwd").allow_working_dir(&base));
    let out = run_ok(&r, config).await;
    let expected = std::fs::canonicalize(&inner).unwrap();
    assert_eq!(out["stdout"].as_str().unwrap().trim_end(), expected.to_str().unwrap());

    for bad in ["/", "relative/dir", &format!("{}/../..", inner.display())] {
        let config = json!({"argv": ["pwd"], "working_dir": bad});
        assert!(r.validate_config(&config).is_err(), "accepted {bad}");
        assert!(!r.run(ctx(config)).await.unwrap_err().is_retryable());
    }
    let missing = json!({"argv": ["pwd"], "working_dir": base.join("missing").to_str().unwrap()});
    assert!(!r.run(ctx(missing)).await.unwrap_err().is_retryable());
    std::fs::remove_dir_all(&base).unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn symlinks_cannot_escape_the_working_dir_allowlist() {
    let base = temp_dir();
    let link = base.join("escape");
    std::os::unix::fs::symlink("/", &link).unwrap();
    let r = runner(ShellRunnerConfig::default().allow_command("pwd").allow_working_dir(&base));
    let config = json!({"argv": ["pwd"], "working_dir": link.to_str().unwrap()});
    // Lexically fine, so only the run-time check can catch it.
    assert!(r.validate_config(&config).is_ok());
    let err = r.run(ctx(config)).await.unwrap_err();
    assert!(err.message().contains("not under an allowed directory"), "{err}");
    std::fs::remove_dir_all(&base).unwrap();
}

#[tokio::test]
async fn stdin_is_piped_to_the_program() {
    let r = allowing(&["cat"]);
    let out = run_ok(&r, json!({"argv": ["cat"], "stdin": "line one\nline; two\n"})).await;
    assert_eq!(out["stdout"], json!("line one\nline; two\n"));
}

#[tokio::test]
async fn program_reading_stdin_gets_eof_without_stdin() {
    let r = allowing(&["cat"]);
    let out = run_ok(&r, json!({"argv": ["cat"], "timeout": "10s"})).await;
    assert_eq!(out["stdout"], json!(""));
}

#[tokio::test]
async fn output_is_capped_while_the_child_runs_to_completion() {
    let r = runner(ShellRunnerConfig::default().allow_command("head").max_output_bytes(1000));
    // Far more than a pipe buffer: the child only exits if the runner keeps draining.
    let out = run_ok(&r, json!({"argv": ["head", "-c", "5000000", "/dev/zero"], "timeout": "20s"})).await;
    assert_eq!(out["stdout"].as_str().unwrap().len(), 1000);
    assert_eq!(out["truncated"], json!(true));
    assert_eq!(out["exit_code"], json!(0));
}

#[tokio::test]
async fn timeout_kills_the_child() {
    let r = allowing(&["sleep"]);
    let marker = "30.0417";
    let start = Instant::now();
    let err = r.run(ctx(json!({"argv": ["sleep", marker], "timeout": "300ms"}))).await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    assert!(err.is_retryable());
    assert!(err.message().contains("timed out"), "{err}");
    assert_eq!(err.details().unwrap()["timed_out"], json!(true));
    #[cfg(target_os = "linux")]
    assert!(!process_with_arg_exists(marker), "the child survived its timeout");
}

#[tokio::test]
async fn host_default_timeout_and_job_deadline_apply() {
    let r = runner(ShellRunnerConfig::default().allow_command("sleep").default_timeout(Duration::from_millis(200)));
    let start = Instant::now();
    let err = r.run(ctx(json!({"argv": ["sleep", "30"]}))).await.unwrap_err();
    assert!(err.message().contains("timed out"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));

    let r = allowing(&["sleep"]);
    let mut c = ctx(json!({"argv": ["sleep", "30"], "timeout": "1h"}));
    c.deadline = Some(Instant::now() + Duration::from_millis(200));
    let start = Instant::now();
    let err = r.run(c).await.unwrap_err();
    assert!(err.message().contains("timed out"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn cancellation_kills_the_child() {
    let r = allowing(&["sleep"]);
    let marker = "30.0418";
    let c = ctx(json!({"argv": ["sleep", marker]}));
    let token = c.cancellation.clone();
    let start = Instant::now();
    let handle = tokio::spawn(async move { r.run(c).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    #[cfg(target_os = "linux")]
    assert!(process_with_arg_exists(marker), "the child should be running before cancellation");
    token.cancel();
    let err = handle.await.unwrap().unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    assert!(err.message().contains("cancelled"), "{err}");
    #[cfg(target_os = "linux")]
    assert!(!process_with_arg_exists(marker), "the child survived cancellation");
}

#[tokio::test]
async fn exit_codes_map_to_retryable_or_permanent() {
    let r = allowing(&["sh", "false"]);
    let script = "echo partial; echo 'disk full' >&2; exit 3";
    let err = r.run(ctx(json!({"argv": ["sh", "-c", script]}))).await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.message().contains("code 3") && err.message().contains("disk full"), "{err}");
    let details = err.details().unwrap();
    assert_eq!((&details["exit_code"], &details["stderr"]), (&json!(3), &json!("disk full\n")));
    assert!(details["resource_usage"]["duration_ms"].is_u64(), "{details}");

    let config = json!({"argv": ["sh", "-c", script], "retry_on_exit_codes": [3, 75]});
    assert!(r.run(ctx(config)).await.unwrap_err().is_retryable());

    let config = json!({"argv": ["false"], "retry_on_exit_codes": [3]});
    let err = r.run(ctx(config)).await.unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(err.details().unwrap()["exit_code"], json!(1));
}

#[tokio::test]
async fn stderr_in_details_is_only_the_tail() {
    let r = allowing(&["sh"]);
    let script = "head -c 10000 /dev/zero | tr '\\0' a >&2; echo END >&2; exit 1";
    let err = r.run(ctx(json!({"argv": ["sh", "-c", script]}))).await.unwrap_err();
    let stderr = err.details().unwrap()["stderr"].as_str().unwrap().to_owned();
    assert_eq!(stderr.len(), 4096);
    assert!(stderr.ends_with("aaaEND\n"));
}

#[cfg(unix)]
#[tokio::test]
async fn death_by_signal_is_retryable() {
    let r = allowing(&["sh"]);
    let err = r.run(ctx(json!({"argv": ["sh", "-c", "kill -9 $$"]}))).await.unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(err.details().unwrap()["signal"], json!(9));
}

#[tokio::test]
async fn json_stdout_is_parsed_when_asked() {
    let r = allowing(&["echo"]);
    let out = run_ok(&r, json!({"argv": ["echo", r#"{"rows": 3, "ok": true}"#], "parse_json_stdout": true})).await;
    assert_eq!(out["json"], json!({"rows": 3, "ok": true}));

    let err = r.run(ctx(json!({"argv": ["echo", "not json"], "parse_json_stdout": true}))).await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.message().contains("not JSON"), "{err}");
}

#[tokio::test]
async fn missing_program_is_a_permanent_spawn_failure() {
    let r = allowing(&["/nonexistent/baseshift-tool"]);
    let err = r.run(ctx(json!({"argv": ["/nonexistent/baseshift-tool"]}))).await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.message().contains("cannot start"), "{err}");
}

#[test]
fn tail_respects_char_boundaries() {
    assert_eq!(tail("abc", 10), "abc");
    assert_eq!(tail("abcdef", 3), "def");
    // "é" is two bytes: a cut inside it moves forward.
    assert_eq!(tail("aéb", 2), "b");
    assert_eq!(tail("aéb", 3), "éb");
}
