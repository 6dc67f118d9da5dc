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
}

/// The usage text.
pub const USAGE: &str = "usage: baseshift-benches [--smoke] [--backend memory|redis|postgres|all]... \
[--scenario NAME]... [--n N] [--repeat K]
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
                "--n" => {
                    let v = value("--n")?;
                    let n = v.parse().ok().filter(|&n: &usize| n > 0);
                    opts.n = Some(n.ok_or_else(|| invalid(format!("--n wants a positive integer, got {v:?}")))?);
                }
                "--repeat" => {
                    let v = value("--repeat")?;
                    let k = v.parse().ok().filter(|&k: &usize| k > 0);
                    opts.repeat =
                        Some(k.ok_or_else(|| invalid(format!("--repeat wants a positive integer, got {v:?}")))?);
                }
                "-h" | "--help" => return Err(invalid("help requested".into())),
                other => return Err(invalid(format!("unknown argument {other:?}"))),
            }
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
        Ok(())
    }

    #[test]
    fn rejects_bad_arguments() {
        for bad in [&["--n", "0"][..], &["--backend", "mysql"], &["--bogus"], &["--n"], &["--repeat", "0"]] {
            assert_eq!(parse(bad).map(|_| ()).map_err(|e| e.kind()), Err(ErrorKind::InvalidInput));
        }
    }
}
