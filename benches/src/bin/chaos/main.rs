//! The crash-and-outage harness: K engine processes share one Redis or PostgreSQL store
//! while the supervisor submits W workflows of mixed shapes, SIGKILLs a random worker N
//! times (restarting it each time) and optionally cuts the network to the store; then it
//! checks the guarantees from the store, the run records and the event streams.
//!
//! ```text
//! cargo run --release -p baseshift-benches --bin chaos -- --backend redis --instances 4 --workflows 500 --kills 50
//! scripts/chaos.sh postgres --outages 2
//! ```
//!
//! It prints one line `CHAOS backend=... lost=0 stuck=0 double_committed=0
//! overlapping_leases=0 missing_events=0 out_of_order_events=0 ...` (what each count means
//! is in `check.rs`) and exits non-zero if any count is non-zero or the run failed.

mod check;
mod events;
mod leases;
mod opts;
mod overlap;
mod proxy;
mod record;
mod shapes;
mod supervisor;
mod worker;

use opts::Mode;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let mode = match opts::parse(std::env::args().skip(1)) {
        Ok(mode) => mode,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match mode {
        Mode::Worker(w) => {
            tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).init();
            match worker::run(w).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("worker failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Mode::Supervise(o) => match supervisor::run(o).await {
            Ok(summary) => {
                println!("{summary}");
                if summary.is_clean() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
            }
            Err(e) => {
                eprintln!("chaos run failed: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
