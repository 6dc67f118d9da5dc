//! Execution-safety tests of the `shell` runner: the host policy loaded from YAML/JSON,
//! command patterns, process-group kills, `prlimit` limits, resource accounting, and a
//! corpus of hostile inputs.

use super::*;
use crate::error::ErrorKind;
use serde_json::json;
use std::time::Duration;

fn ctx(config: Value) -> JobContext {
    JobContext::new("wf-safety", "step", "shell", config)
}

fn temp_dir() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("baseshift-safety-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Live (non-zombie) processes whose process group is `pgid`, from `/proc/<pid>/stat`.
fn live_group_members(pgid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some(close) = stat.rfind(')') else { continue };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // After `)`: state (field 3) is index 0, pgrp (field 5) index 2.
        if fields.get(2) == Some(&pgid.to_string().as_str()) && fields.first() != Some(&"Z") {
            found.push(pid);
        }
    }
    found
}

/// Waits (up to 2 s) until no live process is left in group `pgid`: SIGKILL is delivered
/// asynchronously, so a killed process can still be listed for a moment after `kill` returns.
async fn assert_group_gone(pgid: u32) {
    for _ in 0..100 {
        if live_group_members(pgid).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("survivors in group {pgid}: {:?}", live_group_members(pgid));
}

async fn wait_for_pgid(file: &Path) -> u32 {
    for _ in 0..100 {
        if let Ok(text) = std::fs::read_to_string(file)
            && let Ok(pgid) = text.trim().parse()
        {
            return pgid;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the job never wrote its pid");
}

#[test]
fn loads_yaml_in_the_plan_shape() {
    let config = ShellRunnerConfig::from_yaml(
        r#"
execution_type: local_process
security:
  allowed_commands: ["/usr/bin/*", "printf"]
  allowed_working_dirs: [/srv/jobs]
  env_allowlist: [QUALITY]
  inherit_env: [HOME]
  default_timeout: 30s
  max_execution_time: 5m
  cpu_time_limit: 10s
  max_address_space: 512MiB
  max_output_bytes: 64KiB
  max_arg_bytes: 4096
"#,
    )
    .unwrap();
    assert_eq!(config.allowed_commands, ["/usr/bin/*", "printf"]);
    assert_eq!(config.allowed_working_dirs, [PathBuf::from("/srv/jobs")]);
    assert_eq!(config.env_allowlist, ["QUALITY"]);
    assert_eq!(config.inherit_env, ["HOME"]);
    assert_eq!(config.default_timeout, Some(Duration::from_secs(30)));
    assert_eq!(config.max_execution_time, Some(Duration::from_secs(300)));
    assert_eq!(config.cpu_time_limit, Some(Duration::from_secs(10)));
    assert_eq!(config.max_address_space, Some(512 << 20));
    assert_eq!(config.max_output_bytes, 64 << 10);
    assert_eq!(config.max_arg_bytes, 4096);

    let json = ShellRunnerConfig::from_json(r#"{"security": {"allowed_commands": ["echo"]}}"#).unwrap();
    assert_eq!(json.allowed_commands, ["echo"]);
    assert_eq!(json.max_output_bytes, ShellRunnerConfig::default().max_output_bytes);
}

#[test]
fn config_errors_name_the_field() {
    let cases = [
        ("security: {allowed_comands: [echo]}", "shell.security.allowed_comands"),
        ("security: {cpu_time_limit: soon}", "shell.security.cpu_time_limit"),
        ("security: {max_address_space: lots}", "shell.security.max_address_space"),
        ("security: {allowed_commands: echo}", "shell.security.allowed_commands"),
        ("execution_type: docker", "shell.execution_type"),
        ("runner: x", "shell.runner"),
        ("security: {allowed_commands: ['bin/*']}", "shell.security.allowed_commands"),
        ("security: {allowed_commands: ['/usr/bin/../sbin/x']}", "shell.security.allowed_commands"),
        ("security: {allowed_working_dirs: [relative/dir]}", "shell.security.allowed_working_dirs"),
        ("security: {env_allowlist: [LD_PRELOAD]}", "shell.security.env_allowlist"),
        ("security: {max_execution_time: 0s}", "shell.security.max_execution_time"),
        ("security: {cpu_time_limit: 1s, prlimit_path: /nonexistent/prlimit}", "shell.security.cpu_time_limit"),
        ("security: [1, 2]", "shell.security"),
        ("security: {allowed_commands: [", "shell"),
    ];
    for (yaml, field) in cases {
        let err = ShellRunnerConfig::from_yaml(yaml).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{yaml}");
        assert!(err.to_string().contains(field), "{yaml}: {err}");
    }
    let err = ShellRunnerConfig::from_json(r#"{"security": {"max_output_bytes": -1}}"#).unwrap_err();
    assert!(err.to_string().contains("shell.security.max_output_bytes"), "{err}");
}

#[tokio::test]
async fn command_patterns_match_one_path_segment() {
    let r = ShellRunner::new(ShellRunnerConfig::default().allow_command("/usr/bin/*"));
    let out = r.run(ctx(json!({"argv": ["/usr/bin/printf", "%s", "ok"]}))).await.unwrap();
    assert_eq!(out.value()["stdout"], "ok");
    for program in [
        "printf",
        "/bin/sh",
        "/usr/bin/../../bin/sh",
        "/usr/bin/./printf",
        "/usr/bin/x/y",
        "/usr/bin/",
        "/usr//bin/printf",
    ] {
        let err = r.run(ctx(json!({"argv": [program]}))).await.unwrap_err();
        assert!(!err.is_retryable(), "{program}");
        assert!(err.message().contains("not allowed by shell.allowed_commands"), "{program}: {err}");
    }
    assert!(config::glob_match(b"/opt/tool-?", b"/opt/tool-a"));
    assert!(!config::glob_match(b"/opt/tool-?", b"/opt/tool-/"));
    assert!(config::glob_match(b"/opt/*/bin", b"/opt/x/bin"));
    assert!(!config::glob_match(b"/opt/*/bin", b"/opt/x/y/bin"));
}

#[tokio::test]
async fn max_execution_time_caps_the_job_timeout() {
    let r = ShellRunner::new(
        ShellRunnerConfig::default().allow_command("sleep").max_execution_time(Duration::from_millis(300)),
    );
    let err = r.run(ctx(json!({"argv": ["sleep", "30"], "timeout": "1h"}))).await.unwrap_err();
    assert!(err.message().contains("timed out"), "{err}");
    assert!(err.details().unwrap()["resource_usage"]["duration_ms"].is_u64());
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let dir = temp_dir();
    let pid_file = dir.join("pid");
    let script = format!("echo $$ > {}; sleep 60 & sleep 60", pid_file.display());
    let r = ShellRunner::new(ShellRunnerConfig::default().allow_command("/bin/sh"));
    let job = r.run(ctx(json!({"argv": ["/bin/sh", "-c", script], "timeout": "2s"})));
    let (result, pgid) = tokio::join!(job, wait_for_pgid(&pid_file));
    let err = result.unwrap_err();
    assert!(err.message().contains("timed out"), "{err}");
    assert!(err.is_retryable());
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn timeout_kills_leftovers_of_a_leader_that_already_exited() {
    let dir = temp_dir();
    let pid_file = dir.join("pid");
    // The shell exits at once; its background `sleep` keeps stdout open, so the job hangs.
    let script = format!("echo $$ > {}; sleep 60 &", pid_file.display());
    let r = ShellRunner::new(ShellRunnerConfig::default().allow_command("/bin/sh"));
    let job = r.run(ctx(json!({"argv": ["/bin/sh", "-c", script], "timeout": "1s"})));
    let (result, pgid) = tokio::join!(job, wait_for_pgid(&pid_file));
    assert!(result.unwrap_err().message().contains("timed out"));
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn cancellation_kills_the_whole_process_group() {
    let dir = temp_dir();
    let pid_file = dir.join("pid");
    let script = format!("echo $$ > {}; sleep 60 & sleep 60", pid_file.display());
    let r = ShellRunner::new(ShellRunnerConfig::default().allow_command("/bin/sh"));
    let context = ctx(json!({"argv": ["/bin/sh", "-c", script]}));
    let token = context.cancellation.clone();
    let job = r.run(context);
    let cancel = async {
        let pgid = wait_for_pgid(&pid_file).await;
        for _ in 0..100 {
            if live_group_members(pgid).len() >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(live_group_members(pgid).len(), 3, "sh and both sleeps should be running");
        token.cancel();
        pgid
    };
    let (result, pgid) = tokio::join!(job, cancel);
    assert!(result.unwrap_err().message().contains("cancelled"));
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn dropping_the_job_kills_the_whole_process_group() {
    let dir = temp_dir();
    let pid_file = dir.join("pid");
    let script = format!("echo $$ > {}; sleep 60 & sleep 60", pid_file.display());
    let r = ShellRunner::new(ShellRunnerConfig::default().allow_command("/bin/sh"));
    let job = r.run(ctx(json!({"argv": ["/bin/sh", "-c", script]})));
    let pgid = tokio::select! {
        _ = job => panic!("the job should not finish"),
        pgid = wait_for_pgid(&pid_file) => pgid,
    };
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn prlimit_applies_cpu_and_address_space_limits() {
    let r = ShellRunner::new(
        ShellRunnerConfig::default()
            .allow_command("/bin/sh")
            .cpu_time_limit(Duration::from_millis(1500))
            .max_address_space(256 << 20),
    );
    let out = r.run(ctx(json!({"argv": ["/bin/sh", "-c", "ulimit -t; ulimit -Ht; ulimit -v"]}))).await.unwrap();
    assert_eq!(out.value()["stdout"], "2\n3\n262144\n");
}

#[tokio::test]
async fn cpu_time_limit_stops_a_spinning_job_permanently() {
    let r = ShellRunner::new(
        ShellRunnerConfig::default()
            .allow_command("/bin/sh")
            .cpu_time_limit(Duration::from_secs(1))
            .default_timeout(Duration::from_secs(30)),
    );
    let err = r.run(ctx(json!({"argv": ["/bin/sh", "-c", "while :; do :; done"]}))).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(err.message().contains("shell.cpu_time_limit"), "{err}");
    assert_eq!(err.details().unwrap()["signal"], 24);
}

#[tokio::test]
async fn missing_prlimit_fails_permanently_naming_the_setting() {
    let r = ShellRunner::new(
        ShellRunnerConfig::default()
            .allow_command("echo")
            .max_address_space(1 << 30)
            .prlimit_path("/nonexistent/prlimit"),
    );
    let err = r.run(ctx(json!({"argv": ["echo"]}))).await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.message().contains("shell.max_address_space") && err.message().contains("prlimit"), "{err}");
    assert!(r.config().validate().is_err());
}

#[tokio::test]
async fn resource_usage_is_recorded() {
    let r = ShellRunner::new(ShellRunnerConfig::default().allow_command("/bin/sh"));
    let script = "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; echo $i";
    let out = r.run(ctx(json!({"argv": ["/bin/sh", "-c", script]}))).await.unwrap();
    let usage = &out.value()["resource_usage"];
    assert!(usage["duration_ms"].is_u64(), "{usage}");
    assert!(usage["cpu_ms"].is_u64(), "{usage}");
    assert!(usage["max_rss_kb"].as_u64().is_some_and(|kb| kb > 0), "{usage}");
}

/// Shell metacharacters and tricks that must reach the program as one inert argument.
const INERT_ARGS: &[&str] = &[
    "; rm -rf /",
    "$(id)",
    "`id`",
    "a\nb; id",
    "line1\r\nInjected: header",
    "$HOME ${PATH}",
    "* ?",
    "&& touch /tmp/pwned || true",
    "| cat /etc/passwd",
    "> /tmp/out",
    "'quoted' \"double\" \\escaped",
    "--help",
    "-c id",
    "%s%n%x",
    "../../../../etc/passwd",
    "LD_PRELOAD=/tmp/evil.so",
    "\u{202e}rtl\u{0007}bell",
];

#[tokio::test]
async fn hostile_arguments_reach_the_program_as_one_inert_argv_element() {
    let r = ShellRunner::new(ShellRunnerConfig::default().allow_command("/usr/bin/printf"));
    for arg in INERT_ARGS {
        // `%s|` around the first argument; a second one would print a second `|`.
        let out = r.run(ctx(json!({"argv": ["/usr/bin/printf", "[%s]|", arg]}))).await.unwrap();
        assert_eq!(out.value()["stdout"], format!("[{arg}]|"), "{arg:?}");
    }
    let r = ShellRunner::new(ShellRunnerConfig::default().allow_command("/bin/sh"));
    for arg in INERT_ARGS {
        let out =
            r.run(ctx(json!({"argv": ["/bin/sh", "-c", "printf '%s|' \"$#\" \"$1\"", "sh", arg]}))).await.unwrap();
        assert_eq!(out.value()["stdout"], format!("1|{arg}|"), "{arg:?}");
    }
}

#[tokio::test]
async fn hostile_configs_are_rejected_permanently_naming_the_rule() {
    let base = temp_dir();
    let jobs = base.join("jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    let jobs_text = jobs.display().to_string();
    let r = ShellRunner::new(
        ShellRunnerConfig::default()
            .allow_commands(["/usr/bin/printf", "printf"])
            .allow_working_dir(&jobs)
            .allow_env("GREETING")
            .allow_env("LD_PRELOAD")
            .max_arg_bytes(64 * 1024),
    );
    let big = "x".repeat(1024 * 1024);
    let cases: Vec<(Value, &str)> = vec![
        (json!({"argv": ["printf; rm -rf /"]}), "shell.allowed_commands"),
        (json!({"argv": ["/bin/sh -c id"]}), "shell.allowed_commands"),
        (json!({"argv": ["$(which printf)"]}), "shell.allowed_commands"),
        (json!({"argv": ["/usr/bin/../bin/printf"]}), "shell.allowed_commands"),
        (json!({"argv": ["/usr/bin/printf\nid"]}), "shell.allowed_commands"),
        (json!({"argv": ["printf", "a\u{0}b"]}), "NUL"),
        (json!({"argv": ["printf", big]}), "shell.max_arg_bytes"),
        (json!({"argv": ["printf"], "stdin": big}), "shell.max_arg_bytes"),
        (json!({"argv": ["printf"], "env": {"GREETING": big}}), "shell.max_arg_bytes"),
        (json!({"argv": ["printf"], "env": {"GREETING": "a\u{0}b"}}), "NUL"),
        (json!({"argv": ["printf"], "env": {"LD_PRELOAD": "/tmp/evil.so"}}), "LD_"),
        (json!({"argv": ["printf"], "env": {"PATH": "/tmp/evil"}}), "shell.env_allowlist"),
        (json!({"argv": ["printf"], "env": {"GREETING=x; PATH": "y"}}), "shell.env_allowlist"),
        (json!({"argv": ["printf"], "working_dir": format!("{jobs_text}/../..")}), "working_dir"),
        (json!({"argv": ["printf"], "working_dir": "../../etc"}), "working_dir"),
        (json!({"argv": ["printf"], "working_dir": "/etc"}), "shell.allowed_working_dirs"),
        (json!({"argv": ["printf"], "working_dir": format!("{jobs_text}\u{0}/x")}), "NUL"),
    ];
    for (config, rule) in cases {
        let err = r.run(ctx(config.clone())).await.unwrap_err();
        assert!(!err.is_retryable(), "{config}: {err}");
        assert!(err.message().contains(rule), "{config}: expected `{rule}` in {err}");
    }
}

#[tokio::test]
async fn only_allowlisted_env_reaches_the_child() {
    let r = ShellRunner::new(ShellRunnerConfig::default().allow_command("/usr/bin/env").allow_env("GREETING"));
    let out = r.run(ctx(json!({"argv": ["/usr/bin/env"], "env": {"GREETING": "$(id)"}}))).await.unwrap();
    let stdout = out.value()["stdout"].as_str().unwrap().to_owned();
    let names: Vec<&str> = stdout.lines().filter_map(|l| l.split('=').next()).collect();
    assert!(names.iter().all(|n| *n == "GREETING" || *n == "PATH"), "{stdout}");
    assert!(stdout.contains("GREETING=$(id)\n"), "{stdout}");
}
