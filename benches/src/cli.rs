//! Command-line options: which backends and scenarios run, and at what size.

use baseshift_core::{Error, ErrorKind, Result};

/// A backend the harness can measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The in-memory store (and the plain-tokio baseline).
    Memory,
    /// `baseshift-redis` (and the raw Redis baseline).
    Redis,
    /// `baseshift-postgres` (and the raw PostgreSQL baseline).
    Postgres,
}

/// Parsed options.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Tiny sizes, debug-friendly: proves every scenario runs to completion.
    pub smoke: bool,
    /// Backends to run (all when empty).
    pub backends: Vec<Backend>,
    /// Scenario names to run (all when empty); `scaling` selects the scaling curve.
    pub scenarios: Vec<String>,
    /// Overrides every scenario's item count.
    pub n: Option<usize>,
    /// Runs of each in-memory DAG scenario and its baseline, alternated, and rounds of
    /// the scaling curves (the store-backed curve's `RESULT` lines give the median run
    /// of each size); 1 when not set.
    pub repeat: Option<usize>,
    /// Another build of this harness to compare with (`--against PATH`): both run the
    /// other options alternately, `rounds` times (see `compare.rs`).
    pub against: Option<String>,
    /// Rounds of a comparison (`--rounds K`, with `--against`); 3 when not set.
    pub rounds: Option<usize>,
}

/// The usage text.
pub const USAGE: &str = "usage: baseshift-benches [--smoke] [--backend memory|redis|postgres|all]... \
[--scenario NAME]... [--n N] [--repeat K] [--against OTHER-BUILD [--rounds K]]
scenarios: fanout chain diamonds enqueue enqueue-bulk process drain pending latency baseline scaling flow-control";

impl Options {
    /// Parses the arguments after the program name.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Options> {
        let mut opts = Options::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next().ok_or_else(|| Error::new(ErrorKind::InvalidInput, format!("{name} needs a value\n{USAGE}")))
            };
            match arg.as_str() {
                "--smoke" => opts.smoke = true,
                "--backend" => match value("--backend")?.as_str() {
                    "memory" => opts.backends.push(Backend::Memory),
                    "redis" => opts.backends.push(Backend::Redis),
                    "postgres" => opts.backends.push(Backend::Postgres),
                    "all" => opts.backends.clear(),
                    other => return Err(invalid(format!("unknown backend {other:?}"))),
                },
                "--scenario" => opts.scenarios.push(value("--scenario")?),
                "--n" => opts.n = Some(positive("--n", value("--n")?)?),
                "--repeat" => opts.repeat = Some(positive("--repeat", value("--repeat")?)?),
                "--against" => opts.against = Some(value("--against")?),
                "--rounds" => opts.rounds = Some(positive("--rounds", value("--rounds")?)?),
                "-h" | "--help" => return Err(invalid("help requested".into())),
                other => return Err(invalid(format!("unknown argument {other:?}"))),
            }
        }
        if opts.rounds.is_some() && opts.against.is_none() {
            return Err(invalid("--rounds needs --against (the build to compare with)".into()));
        }
        Ok(opts)
    }

    /// Whether `backend` is selected.
    pub fn backend(&self, backend: Backend) -> bool {
        self.backends.is_empty() || self.backends.contains(&backend)
    }

    /// Whether `scenario` is selected (baselines run with their scenario, or as `baseline`).
    pub fn scenario(&self, scenario: &str) -> bool {
        self.scenarios.is_empty() || self.scenarios.iter().any(|s| s == scenario)
    }

    /// The item count: the `--n` override, else `smoke` or `full` by mode.
    pub fn size(&self, full: usize, smoke: usize) -> usize {
        self.n.unwrap_or(if self.smoke { smoke } else { full })
    }
}

/// The value of option `name` as a positive integer.
fn positive(name: &str, v: String) -> Result<usize> {
    v.parse()
        .ok()
        .filter(|&k: &usize| k > 0)
        .ok_or_else(|| invalid(format!("{name} wants a positive integer, got {v:?}")))
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidInput, format!("{message}\n{USAGE}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options> {
        Options::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn filters_and_sizes() -> Result<()> {
        let o = parse(&["--smoke", "--backend", "redis", "--scenario", "drain", "--n", "7", "--repeat", "3"])?;
        assert_eq!(o.repeat, Some(3));
        assert!(o.smoke && o.backend(Backend::Redis) && !o.backend(Backend::Memory));
        assert!(o.scenario("drain") && !o.scenario("process"));
        assert_eq!(o.size(20_000, 10), 7);
        let all = parse(&["--backend", "memory", "--backend", "all"])?;
        assert!(all.backend(Backend::Postgres) && all.scenario("anything"));
        assert_eq!(all.size(20_000, 10), 20_000);
        let compare = parse(&["--against", "/old/baseshift-benches", "--rounds", "5"])?;
        assert_eq!((compare.against.as_deref(), compare.rounds), (Some("/old/baseshift-benches"), Some(5)));
        Ok(())
    }

    #[test]
    fn rejects_bad_arguments() {
        for bad in [
            &["--n", "0"][..],
            &["--backend", "mysql"],
            &["--bogus"],
            &["--n"],
            &["--repeat", "0"],
            &["--rounds", "2"],
            &["--against", "x", "--rounds", "0"],
            &["--against"],
        ] {
            assert_eq!(parse(bad).map(|_| ()).map_err(|e| e.kind()), Err(ErrorKind::InvalidInput));
        }
    }
}
