//! Command-line options of the supervisor and of its worker processes.

use baseshift_core::{Error, ErrorKind, Result};
use std::path::PathBuf;

/// The store every process shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `RedisStateStore`.
    Redis,
    /// `PostgresStateStore`.
    Postgres,
}

impl Backend {
    /// `redis` or `postgres`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Redis => "redis",
            Backend::Postgres => "postgres",
        }
    }

    fn parse(s: &str) -> Result<Backend> {
        match s {
            "redis" => Ok(Backend::Redis),
            "postgres" => Ok(Backend::Postgres),
            other => Err(invalid(format!("unknown backend {other:?} (redis or postgres)"))),
        }
    }
}

/// The supervisor's options.
#[derive(Clone, Debug)]
pub struct Options {
    /// The shared store.
    pub backend: Backend,
    /// Worker processes.
    pub instances: usize,
    /// Workflows submitted.
    pub workflows: usize,
    /// SIGKILLs (each followed by a restart).
    pub kills: usize,
    /// Mean pause between kills, in ms (each pause is drawn from 0.5x to 1.5x).
    pub kill_every_ms: u64,
    /// Network outages between the workers and the store (the proxy cuts every connection).
    pub outages: usize,
    /// Length of one outage, in ms.
    pub outage_ms: u64,
    /// PostgreSQL only: the outage is `pg_terminate_backend` of every worker connection,
    /// repeated for the outage's length, instead of the proxy.
    pub terminate_backends: bool,
    /// Shell command that takes the store down instead of the proxy (dedicated machines).
    pub outage_down: Option<String>,
    /// Shell command that brings the store back after `outage_down`.
    pub outage_up: Option<String>,
    /// The workers' lease TTL, in ms.
    pub lease_ms: u64,
    /// Jobs one worker runs at once.
    pub concurrency: usize,
    /// Give up waiting for terminal workflows after this many seconds.
    pub deadline_secs: u64,
    /// Seed of the kill schedule and victims (random when absent).
    pub seed: Option<u64>,
    /// Keep the keys / schema afterwards (for inspection).
    pub keep: bool,
    /// Where worker logs go (a fresh temporary directory when absent).
    pub log_dir: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backend: Backend::Redis,
            instances: 4,
            workflows: 500,
            kills: 50,
            kill_every_ms: 800,
            outages: 0,
            outage_ms: 4_000,
            terminate_backends: false,
            outage_down: None,
            outage_up: None,
            lease_ms: 2_000,
            concurrency: 8,
            deadline_secs: 300,
            seed: None,
            keep: false,
            log_dir: None,
        }
    }
}

/// A worker process's options (passed by the supervisor).
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// The shared store.
    pub backend: Backend,
    /// The store's URL (the supervisor's proxy).
    pub store_url: String,
    /// The Redis URL of the event bus.
    pub bus_url: String,
    /// The URL of the run records' server (direct, never through the proxy).
    pub record_url: String,
    /// The key prefix (Redis keys, event streams) and schema name (Postgres).
    pub prefix: String,
    /// The worker's slot (its instance id is `worker-<slot>` across restarts).
    pub slot: usize,
    /// Lease TTL in ms.
    pub lease_ms: u64,
    /// Jobs run at once.
    pub concurrency: usize,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Mode {
    /// Run the whole experiment.
    Supervise(Options),
    /// Be one engine instance until killed.
    Worker(WorkerOptions),
}

/// The usage text.
pub const USAGE: &str = "usage: chaos [--backend redis|postgres] [--instances K] [--workflows W] [--kills N] \
[--kill-every-ms MS] [--outages N] [--outage-ms MS] [--terminate-backends | --outage-down CMD --outage-up CMD] \
[--lease-ms MS] \
[--concurrency C] [--deadline-secs S] [--seed N] [--keep] [--log-dir DIR]";

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Mode> {
    let mut args = args.into_iter().peekable();
    if args.peek().map(String::as_str) == Some("worker") {
        args.next();
        return parse_worker(args).map(Mode::Worker);
    }
    let mut o = Options::default();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| invalid(format!("{arg} needs a value")));
        match arg.as_str() {
            "--backend" => o.backend = Backend::parse(&value()?)?,
            "--instances" => o.instances = positive(&arg, &value()?)?,
            "--workflows" => o.workflows = positive(&arg, &value()?)?,
            "--kills" => o.kills = number(&arg, &value()?)?,
            "--kill-every-ms" => o.kill_every_ms = positive(&arg, &value()?)?,
            "--outages" => o.outages = number(&arg, &value()?)?,
            "--outage-ms" => o.outage_ms = positive(&arg, &value()?)?,
            "--outage-down" => o.outage_down = Some(value()?),
            "--outage-up" => o.outage_up = Some(value()?),
            "--lease-ms" => o.lease_ms = positive(&arg, &value()?)?,
            "--concurrency" => o.concurrency = positive(&arg, &value()?)?,
            "--deadline-secs" => o.deadline_secs = positive(&arg, &value()?)?,
            "--seed" => o.seed = Some(number(&arg, &value()?)?),
            "--log-dir" => o.log_dir = Some(PathBuf::from(value()?)),
            "--keep" => o.keep = true,
            "--terminate-backends" => o.terminate_backends = true,
            "-h" | "--help" => return Err(invalid("help requested".into())),
            other => return Err(invalid(format!("unknown argument {other:?}"))),
        }
    }
    if o.outage_down.is_some() != o.outage_up.is_some() {
        return Err(invalid("--outage-down and --outage-up go together".into()));
    }
    if o.terminate_backends && (o.backend != Backend::Postgres || o.outage_down.is_some()) {
        return Err(invalid("--terminate-backends is for --backend postgres, without --outage-down".into()));
    }
    if o.lease_ms < 300 {
        return Err(invalid("--lease-ms must be at least 300".into()));
    }
    Ok(Mode::Supervise(o))
}

fn parse_worker(mut args: impl Iterator<Item = String>) -> Result<WorkerOptions> {
    let mut w = WorkerOptions {
        backend: Backend::Redis,
        store_url: String::new(),
        bus_url: String::new(),
        record_url: String::new(),
        prefix: String::new(),
        slot: 0,
        lease_ms: 2_000,
        concurrency: 8,
    };
    while let Some(arg) = args.next() {
        let value = args.next().ok_or_else(|| invalid(format!("worker {arg} needs a value")))?;
        match arg.as_str() {
            "--backend" => w.backend = Backend::parse(&value)?,
            "--store-url" => w.store_url = value,
            "--bus-url" => w.bus_url = value,
            "--record-url" => w.record_url = value,
            "--prefix" => w.prefix = value,
            "--slot" => w.slot = number(&arg, &value)?,
            "--lease-ms" => w.lease_ms = positive(&arg, &value)?,
            "--concurrency" => w.concurrency = positive(&arg, &value)?,
            other => return Err(invalid(format!("unknown worker argument {other:?}"))),
        }
    }
    if w.store_url.is_empty() || w.bus_url.is_empty() || w.record_url.is_empty() || w.prefix.is_empty() {
        return Err(invalid("worker needs --store-url, --bus-url, --record-url and --prefix".into()));
    }
    Ok(w)
}

fn number<T: std::str::FromStr>(name: &str, v: &str) -> Result<T> {
    v.parse().map_err(|_| invalid(format!("{name} wants a non-negative integer, got {v:?}")))
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(name: &str, v: &str) -> Result<T> {
    let n: T = number(name, v)?;
    if n > T::default() { Ok(n) } else { Err(invalid(format!("{name} wants a positive integer, got {v:?}"))) }
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidInput, format!("{message}\n{USAGE}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &[&str]) -> Result<Mode> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn supervisor_and_worker_arguments() -> Result<()> {
        let Mode::Supervise(o) = parse_args(&["--backend", "postgres", "--kills", "0", "--instances", "2"])? else {
            return Err(Error::internal("expected supervise"));
        };
        assert_eq!((o.backend, o.kills, o.instances, o.workflows), (Backend::Postgres, 0, 2, 500));
        let worker = ["worker", "--store-url", "redis://x", "--bus-url", "b", "--record-url", "r", "--prefix", "p"];
        let Mode::Worker(w) = parse_args(&worker)? else { return Err(Error::internal("expected worker")) };
        assert_eq!((w.prefix.as_str(), w.slot), ("p", 0));
        Ok(())
    }

    #[test]
    fn bad_arguments_are_invalid_input() {
        let bad: [&[&str]; 6] = [
            &["--instances", "0"],
            &["--backend", "mysql"],
            &["--bogus"],
            &["--kills"],
            &["--outage-down", "x"],
            &["worker", "--prefix", "p"],
        ];
        for args in bad {
            assert_eq!(parse_args(args).map(|_| ()).map_err(|e| e.kind()), Err(ErrorKind::InvalidInput), "{args:?}");
        }
    }
}
