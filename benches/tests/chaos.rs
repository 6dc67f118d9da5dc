//! Short chaos runs, part of the test suite: two worker processes on one store, 30
//! workflows, 3 SIGKILLs (and on each backend one run with a network outage); every
//! count of the summary must be zero. Needs Redis and PostgreSQL at
//! `BASESHIFT_REDIS_URL` / `BASESHIFT_POSTGRES_URL` (`scripts/services.sh` starts them).

use std::process::Command;

fn chaos(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args(["--instances", "2", "--workflows", "30", "--kills", "3", "--deadline-secs", "50", "--seed", "7"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running the chaos binary: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = stdout.lines().find(|l| l.starts_with("CHAOS ")).unwrap_or("");
    assert!(
        out.status.success() && !summary.is_empty(),
        "chaos {args:?} failed ({}):\n{stdout}\n{stderr}\n(is the server running? scripts/services.sh starts one)",
        out.status
    );
    eprintln!("{summary}");
}

#[test]
fn redis_survives_kills() {
    chaos(&["--backend", "redis"]);
}

#[test]
fn postgres_survives_kills() {
    chaos(&["--backend", "postgres"]);
}

#[test]
fn redis_survives_a_network_outage() {
    chaos(&["--backend", "redis", "--kills", "1", "--outages", "1", "--outage-ms", "3000"]);
}

#[test]
fn postgres_survives_a_network_outage() {
    chaos(&["--backend", "postgres", "--kills", "1", "--outages", "1", "--outage-ms", "3000"]);
}
