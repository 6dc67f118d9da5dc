//! The baseshift benchmark harness: the scenarios of BENCH.md for the in-memory, Redis and
//! PostgreSQL backends, with their baselines measured in the same run.
//!
//! ```text
//! cargo run --release -p baseshift-benches -- --backend all
//! cargo run -p baseshift-benches -- --smoke          # tiny sizes, every backend (CI)
//! baseshift-benches --backend memory --against OLD-BUILD --rounds 5   # two builds, alternated
//! ```
//!
//! Every scenario prints `RESULT <system> <backend> <scenario> n=<N> secs=<s> rate=<items/s>`;
//! `#` lines are notes. The process exits non-zero if any scenario fails.

mod baselines;
mod cli;
mod compare;
mod curve;
mod durable;
mod flow;
mod memory;
mod postgres;
mod redis;
mod report;
mod scaling;
mod shapes;
mod workload;

use cli::{Backend, Options};
use report::note;
use std::process::ExitCode;

/// The bench program's allocator: mimalloc (its v2 line, without transparent huge pages:
/// see `Cargo.toml`), as a service tuned for throughput would use (glibc's malloc and free
/// were 40% of the in-memory scenarios' instructions). The baselines run under the same
/// allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let opts = match Options::parse(std::env::args().skip(1)) {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    note(format!(
        "baseshift benches ({}, {} build); scenarios in BENCH.md",
        if opts.smoke { "smoke run, tiny N" } else { "full run" },
        if cfg!(debug_assertions) { "debug" } else { "release" }
    ));
    note(format!(
        "machine: {} cores; load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        report::load_average()
    ));
    note(format!(
        "allocator: mimalloc v2, transparent huge pages {} (this program's global allocator; the baselines \
         run under it too)",
        std::env::var("MIMALLOC_ALLOW_THP").map_or("off".to_owned(), |v| format!("as MIMALLOC_ALLOW_THP={v} says"))
    ));
    if let Some(against) = &opts.against {
        let args: Vec<String> = std::env::args().skip(1).collect();
        return match compare::run(against, opts.rounds.unwrap_or(3), &args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("comparison failed: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let tag = format!(
        "bench{}x{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() % 100_000)
    );
    let mut failures = Vec::new();
    if opts.backend(Backend::Memory) {
        record(&mut failures, "memory", memory::run(&opts).await);
        if opts.scenario("flow-control") {
            record(&mut failures, "memory flow-control", flow::run_memory(&opts).await);
        }
        if opts.scenario("scaling") || opts.scenario("drain") || opts.scenario("pending") {
            record(&mut failures, "memory scaling", scaling::run_memory(&opts).await);
        }
    }
    if opts.backend(Backend::Redis) {
        let outcome = async {
            let redis = redis::Redis::connect(tag.clone()).await?;
            if opts.scenario("baseline") || opts.scenario("hset-publish") {
                redis.baselines(&opts).await?;
            }
            durable::run(&opts, &redis).await?;
            if opts.scenario("flow-control") {
                flow::run_durable(&opts, &redis).await?;
            }
            if opts.scenario("scaling") {
                scaling::run_durable(&opts, &redis).await?;
            }
            Ok(())
        };
        record(&mut failures, "redis", outcome.await);
    }
    if opts.backend(Backend::Postgres) {
        let outcome = async {
            let pg = postgres::Pg::connect(tag.clone(), opts.smoke).await?;
            if opts.scenario("baseline") || opts.scenario("insert-update") {
                pg.baselines(&opts).await?;
            }
            durable::run(&opts, &pg).await?;
            if opts.scenario("scaling") {
                scaling::run_durable(&opts, &pg).await?;
            }
            Ok(())
        };
        record(&mut failures, "postgres", outcome.await);
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("benchmark scenarios failed: {}", failures.join(", "));
        ExitCode::FAILURE
    }
}

/// Notes a failed section (the remaining sections still run).
fn record(failures: &mut Vec<String>, section: &str, outcome: baseshift_core::Result<()>) {
    if let Err(e) = outcome {
        note(format!("FAILED {section}: {e}"));
        failures.push(section.to_owned());
    }
}
