//! The baseshift benchmark harness (scenarios in BENCH.md). This first version covers the
//! in-memory DAG scenarios and the plain-tokio baseline; `--smoke` runs them with tiny N so
//! CI keeps the harness compiling and working.
//!
//! `cargo run --release -p baseshift-benches` prints one `RESULT` line per scenario.

use baseshift_core::engine::Engine;
use baseshift_core::{JobSpec, WorkflowStatus, WorkflowTemplate};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn result(system: &str, scenario: &str, n: usize, secs: f64) {
    println!("RESULT {system} memory {scenario} n={n} secs={secs:.4} rate={:.1}", n as f64 / secs);
}

fn fanout(n: usize) -> WorkflowTemplate {
    let mut t =
        WorkflowTemplate::new(format!("fanout{n}"), semver::Version::new(1, 0, 0)).job(JobSpec::new("src", "noop"));
    let mids: Vec<String> = (0..n.saturating_sub(2)).map(|i| format!("m{i}")).collect();
    for m in &mids {
        t = t.job(JobSpec::new(m.clone(), "noop").depends_on(["src"]));
    }
    t.job(JobSpec::new("sink", "noop").depends_on(mids))
}

fn chain(n: usize) -> WorkflowTemplate {
    let mut t = WorkflowTemplate::new(format!("chain{n}"), semver::Version::new(1, 0, 0));
    for i in 0..n {
        t = t.job(JobSpec::new(format!("j{i}"), "noop"));
    }
    t
}

fn diamond() -> WorkflowTemplate {
    WorkflowTemplate::new("diamond", semver::Version::new(1, 0, 0))
        .job(JobSpec::new("a", "noop"))
        .job(JobSpec::new("b", "noop").depends_on(["a"]))
        .job(JobSpec::new("c", "noop").depends_on(["a"]))
        .job(JobSpec::new("d", "noop").depends_on(["a"]))
        .job(JobSpec::new("e", "noop").depends_on(["b", "c", "d"]))
}

async fn engine() -> baseshift_core::Result<Engine> {
    let e = Engine::builder().concurrency(64).build()?;
    e.launch().await?;
    Ok(e)
}

async fn one_workflow(scenario: &str, template: WorkflowTemplate, n: usize) -> baseshift_core::Result<()> {
    let e = engine().await?;
    let parse = Instant::now();
    let json_text = serde_json::to_string(&template).map_err(baseshift_core::Error::from)?;
    let parsed = WorkflowTemplate::from_json(&json_text)?;
    println!("# template parse+validate ({n} jobs): {:.1} ms", parse.elapsed().as_secs_f64() * 1e3);
    let id_tpl = parsed.template_id.clone();
    e.register_template(parsed).await?;
    let t0 = Instant::now();
    let id = e.start(&id_tpl, json!({})).await?;
    let done = e.wait(&id).await?;
    let secs = t0.elapsed().as_secs_f64();
    if done.status != WorkflowStatus::Completed {
        return Err(baseshift_core::Error::internal(format!("{scenario} ended {}", done.status)));
    }
    result("baseshift", scenario, n, secs);
    e.shutdown().await;
    Ok(())
}

async fn diamonds(workflows: usize) -> baseshift_core::Result<()> {
    let e = engine().await?;
    e.register_template(diamond()).await?;
    let t0 = Instant::now();
    let mut ids = Vec::with_capacity(workflows);
    for _ in 0..workflows {
        ids.push(e.start("diamond", json!({})).await?);
    }
    for id in &ids {
        let done = e.wait(id).await?;
        if done.status != WorkflowStatus::Completed {
            return Err(baseshift_core::Error::internal(format!("diamond ended {}", done.status)));
        }
    }
    result("baseshift", "diamonds", workflows * 5, t0.elapsed().as_secs_f64());
    e.shutdown().await;
    Ok(())
}

/// The floor: one `tokio::spawn` per job, a oneshot channel per edge.
async fn baseline_fanout(n: usize) {
    let t0 = Instant::now();
    let mids = n.saturating_sub(2);
    let (mut to_mid, mut from_src) = (Vec::with_capacity(mids), Vec::with_capacity(mids));
    let (mut to_sink, mut from_mid) = (Vec::with_capacity(mids), Vec::with_capacity(mids));
    for _ in 0..mids {
        let (tx, rx) = oneshot::channel::<()>();
        to_mid.push(tx);
        from_src.push(rx);
        let (tx, rx) = oneshot::channel::<()>();
        to_sink.push(tx);
        from_mid.push(rx);
    }
    tokio::spawn(async move {
        for tx in to_mid {
            let _ = tx.send(());
        }
    });
    for (rx, tx) in from_src.into_iter().zip(to_sink) {
        tokio::spawn(async move {
            let _ = rx.await;
            let _ = tx.send(());
        });
    }
    let sink = tokio::spawn(async move {
        for rx in from_mid {
            let _ = rx.await;
        }
    });
    let _ = sink.await;
    result("tokio-baseline", "fanout", n, t0.elapsed().as_secs_f64());
}

async fn baseline_chain(n: usize) {
    let t0 = Instant::now();
    let (first_tx, mut prev_rx) = oneshot::channel::<()>();
    for _ in 0..n {
        let (tx, rx) = oneshot::channel::<()>();
        let input = prev_rx;
        tokio::spawn(async move {
            let _ = input.await;
            let _ = tx.send(());
        });
        prev_rx = rx;
    }
    let _ = first_tx.send(());
    let _ = prev_rx.await;
    result("tokio-baseline", "chain", n, t0.elapsed().as_secs_f64());
}

async fn baseline_diamonds(workflows: usize) {
    let t0 = Instant::now();
    let mut ends = Vec::with_capacity(workflows);
    for _ in 0..workflows {
        let mut a_out = Vec::new();
        let mut e_in = Vec::new();
        for _ in 0..3 {
            let (a_tx, mid_rx) = oneshot::channel::<()>();
            let (mid_tx, e_rx) = oneshot::channel::<()>();
            a_out.push(a_tx);
            e_in.push(e_rx);
            tokio::spawn(async move {
                let _ = mid_rx.await;
                let _ = mid_tx.send(());
            });
        }
        tokio::spawn(async move {
            for tx in a_out {
                let _ = tx.send(());
            }
        });
        ends.push(tokio::spawn(async move {
            for rx in e_in {
                let _ = rx.await;
            }
        }));
    }
    for e in ends {
        let _ = e.await;
    }
    result("tokio-baseline", "diamonds", workflows * 5, t0.elapsed().as_secs_f64());
}

#[tokio::main]
async fn main() -> baseshift_core::Result<()> {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let (n, wfs) = if smoke { (50, 20) } else { (10_000, 2_000) };
    println!("# baseshift benches ({}); scenarios in BENCH.md", if smoke { "smoke run, tiny N" } else { "full run" });
    println!("# load average {}", load_average());
    baseline_fanout(n).await;
    one_workflow("fanout", fanout(n), n).await?;
    println!("# load average {}", load_average());
    baseline_chain(n).await;
    one_workflow("chain", chain(n), n).await?;
    println!("# load average {}", load_average());
    baseline_diamonds(wfs).await;
    diamonds(wfs).await?;
    tokio::time::sleep(Duration::from_millis(1)).await;
    Ok(())
}
