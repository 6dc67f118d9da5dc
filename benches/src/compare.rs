//! Two builds side by side: `--against OTHER` runs this program and the harness binary
//! `OTHER` (e.g. a build of the previous commit) alternately with the same options, and
//! prints each scenario's median and fastest time per item for both and their ratio.
//!
//! On a shared or virtual machine the same run can be 1.6x slower an hour later, so only
//! runs made in one session, alternated, compare two builds: each round runs both, the
//! one that goes first changing every round, so a slow spell falls on both sides.

use crate::report::{median, note, results, run_child};
use baseshift_core::{Error, Result};
use std::path::PathBuf;

/// The options that drive the comparison itself, each followed by a value: a child gets
/// every other argument.
const OWN: [&str; 2] = ["--against", "--rounds"];

/// The arguments for each side's run: `args` without `--against` and `--rounds` and their values.
pub fn child_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if OWN.contains(&arg.as_str()) {
            it.next();
        } else {
            out.push(arg.clone());
        }
    }
    out
}

/// The runs of each scenario on both sides, in the order the scenarios first appeared.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Row>,
}

#[derive(Debug)]
struct Row {
    key: String,
    /// Microseconds per item of each run: this build's, then the other's.
    us: [Vec<f64>; 2],
}

impl Table {
    /// Adds one run's `results` for `side` (0: this build, 1: the other).
    pub fn add(&mut self, side: usize, results: Vec<(String, usize, f64)>) {
        for (key, n, secs) in results {
            let at = match self.rows.iter().position(|r| r.key == key) {
                Some(at) => at,
                None => {
                    self.rows.push(Row { key, us: [Vec::new(), Vec::new()] });
                    self.rows.len() - 1
                }
            };
            self.rows[at].us[side].push(secs * 1e6 / n.max(1) as f64);
        }
    }

    /// One line per scenario: both sides' median and fastest time per item and the
    /// ratio of the medians (this / other); a scenario only one side ran says so.
    pub fn lines(&mut self) -> Vec<String> {
        self.rows
            .iter_mut()
            .map(|row| {
                let [this, other] = &mut row.us;
                let fastest = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
                match (this.is_empty(), other.is_empty()) {
                    (false, false) => {
                        let (a, b) = (median(this), median(other));
                        format!(
                            "compare {}: this {a:.3} us/item (fastest {:.3}), against {b:.3} (fastest {:.3}); \
                             this/against {:.2}x; medians of {} and {} runs",
                            row.key,
                            fastest(this),
                            fastest(other),
                            a / b,
                            this.len(),
                            other.len()
                        )
                    }
                    (false, true) => format!("compare {}: only this build ran it", row.key),
                    _ => format!("compare {}: only the other build ran it", row.key),
                }
            })
            .collect()
    }
}

/// Runs `rounds` rounds of this build and `against`, alternated, each with `args` (the
/// program's arguments: see [`child_args`]), then prints the comparison.
pub async fn run(against: &str, rounds: usize, args: &[String]) -> Result<()> {
    let this = std::env::current_exe().map_err(|e| Error::internal(format!("compare: own executable: {e}")))?;
    let other = PathBuf::from(against);
    let args = child_args(args);
    note(format!(
        "compare: {rounds} round{} of this build ({}) and {} with `{}`, alternated (the side that goes first \
         changes every round); the sides' own output is not shown",
        if rounds == 1 { "" } else { "s" },
        this.display(),
        other.display(),
        args.join(" ")
    ));
    let mut table = Table::default();
    for round in 0..rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            let exe = if side == 0 { &this } else { &other };
            let out = run_child(exe.clone(), args.clone(), format!("compare: {}", exe.display())).await?;
            table.add(side, results(&out));
        }
    }
    table.lines().iter().for_each(note);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_side_gets_every_argument_but_the_comparisons() {
        let args = strings(&["--against", "/old", "--backend", "memory", "--rounds", "3", "--n", "10"]);
        assert_eq!(child_args(&args), strings(&["--backend", "memory", "--n", "10"]));
    }

    #[test]
    fn reads_result_lines_only() {
        let out = "# note\nRESULT baseshift memory chain n=10000 secs=0.0300 rate=333333.3\nRESULT bad\n\
                   RESULT tokio-baseline memory chain n=10000 secs=0.0050 rate=2000000.0\n";
        let r = results(out);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0], ("baseshift memory chain n=10000".to_owned(), 10_000, 0.03));
        assert_eq!(r[1].0, "tokio-baseline memory chain n=10000");
    }

    #[test]
    fn medians_and_ratio_per_scenario() {
        let mut t = Table::default();
        let run = |secs: f64| vec![("baseshift memory chain n=1000".to_owned(), 1000, secs)];
        for (this, other) in [(0.002, 0.004), (0.003, 0.004), (0.010, 0.005)] {
            t.add(0, run(this));
            t.add(1, run(other));
        }
        t.add(1, vec![("baseshift memory fanout n=1000".to_owned(), 1000, 0.001)]);
        let lines = t.lines();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            "compare baseshift memory chain n=1000: this 3.000 us/item (fastest 2.000), against 4.000 \
             (fastest 4.000); this/against 0.75x; medians of 3 and 3 runs"
        );
        assert_eq!(lines[1], "compare baseshift memory fanout n=1000: only the other build ran it");
    }
}
