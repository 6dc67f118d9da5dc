//! The floors the engine is compared with: plain tokio tasks, raw Redis commands and raw
//! PostgreSQL transactions doing the least work a job system must do per job.

use crate::report::{result, secs};
use baseshift_core::{Error, ErrorKind, Result};
use futures_util::future::try_join_all;
use sqlx::{AssertSqlSafe, Connection};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// `fanout` with one `tokio::spawn` per job and a oneshot channel per edge; the seconds.
pub async fn tokio_fanout(n: usize) -> f64 {
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
    secs(t0)
}

/// `chain` as `n` spawned tasks, each released by its predecessor's oneshot; the seconds.
pub async fn tokio_chain(n: usize) -> f64 {
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
    secs(t0)
}

/// `diamonds`: per workflow, A releases three tasks whose completions release E.
pub async fn tokio_diamonds(workflows: usize) -> f64 {
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
    secs(t0)
}

fn redis_err(e: redis::RedisError) -> Error {
    Error::new(ErrorKind::Unavailable, format!("redis baseline: {e}"))
}

fn pg_err(e: sqlx::Error) -> Error {
    Error::new(ErrorKind::Unavailable, format!("postgres baseline: {e}"))
}

fn hset_publish(pipe: &mut redis::Pipeline, prefix: &str, i: usize) {
    pipe.cmd("HSET").arg(format!("{prefix}:h:{i}")).arg("status").arg("done").ignore();
    pipe.cmd("PUBLISH").arg(format!("{prefix}:ch")).arg(i).ignore();
}

/// The three raw Redis baselines (`n` pairs of `HSET` + `PUBLISH` each), on keys under
/// `prefix`, which are deleted afterwards.
pub async fn redis(url: &str, prefix: &str, n: usize) -> Result<()> {
    let client = redis::Client::open(url).map_err(redis_err)?;
    let mut con = client.get_multiplexed_async_connection().await.map_err(redis_err)?;

    crate::report::before("redis-baseline", "redis", "hset-publish-seq");
    let t0 = Instant::now();
    for i in 0..n {
        redis::cmd("HSET")
            .arg(format!("{prefix}:h:{i}"))
            .arg("status")
            .arg("done")
            .query_async::<()>(&mut con)
            .await
            .map_err(redis_err)?;
        redis::cmd("PUBLISH")
            .arg(format!("{prefix}:ch"))
            .arg(i)
            .query_async::<()>(&mut con)
            .await
            .map_err(redis_err)?;
    }
    result("redis-baseline", "redis", "hset-publish-seq", n, secs(t0));

    crate::report::before("redis-baseline", "redis", "hset-publish-pair-pipe");
    let t0 = Instant::now();
    for i in 0..n {
        let mut pipe = redis::pipe();
        hset_publish(&mut pipe, prefix, i);
        pipe.query_async::<()>(&mut con).await.map_err(redis_err)?;
    }
    result("redis-baseline", "redis", "hset-publish-pair-pipe", n, secs(t0));

    crate::report::before("redis-baseline", "redis", "hset-publish-pipelined");
    let t0 = Instant::now();
    for first in (0..n).step_by(1_000) {
        let mut pipe = redis::pipe();
        for i in first..n.min(first + 1_000) {
            hset_publish(&mut pipe, prefix, i);
        }
        pipe.query_async::<()>(&mut con).await.map_err(redis_err)?;
    }
    result("redis-baseline", "redis", "hset-publish-pipelined", n, secs(t0));

    for first in (0..n).step_by(1_000) {
        let mut pipe = redis::pipe();
        for i in first..n.min(first + 1_000) {
            pipe.cmd("UNLINK").arg(format!("{prefix}:h:{i}")).ignore();
        }
        pipe.query_async::<()>(&mut con).await.map_err(redis_err)?;
    }
    Ok(())
}

/// The two raw PostgreSQL baselines (`n` transactions of `INSERT ... RETURNING id` and
/// `UPDATE ... WHERE id = $1`) on a table `table` created for the run and dropped after.
pub async fn postgres(url: &str, table: &str, n: usize) -> Result<()> {
    let mut con = sqlx::PgConnection::connect(url).await.map_err(pg_err)?;
    let create = format!("CREATE TABLE {table} (id bigserial PRIMARY KEY, status text NOT NULL, payload int NOT NULL)");
    sqlx::raw_sql(AssertSqlSafe(create)).execute(&mut con).await.map_err(pg_err)?;
    let insert: Arc<str> = format!("INSERT INTO {table} (status, payload) VALUES ('ready', $1) RETURNING id").into();
    let update: Arc<str> = format!("UPDATE {table} SET status = 'done' WHERE id = $1").into();

    crate::report::before("pg-baseline", "postgres", "insert-update-seq");
    let t0 = Instant::now();
    for i in 0..n {
        pg_job(&mut con, &insert, &update, i).await?;
    }
    result("pg-baseline", "postgres", "insert-update-seq", n, secs(t0));

    crate::report::before("pg-baseline", "postgres", "insert-update-conc8");
    let mut cons = Vec::with_capacity(8);
    for _ in 0..8 {
        cons.push(sqlx::PgConnection::connect(url).await.map_err(pg_err)?);
    }
    let t0 = Instant::now();
    let tasks = cons.into_iter().enumerate().map(|(w, mut c)| {
        let (insert, update) = (insert.clone(), update.clone());
        tokio::spawn(async move {
            for i in (w..n).step_by(8) {
                pg_job(&mut c, &insert, &update, i).await?;
            }
            c.close().await.map_err(pg_err)
        })
    });
    for joined in try_join_all(tasks).await.map_err(|e| Error::internal(format!("pg baseline task: {e}")))? {
        joined?;
    }
    result("pg-baseline", "postgres", "insert-update-conc8", n, secs(t0));

    sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE {table}"))).execute(&mut con).await.map_err(pg_err)?;
    con.close().await.map_err(pg_err)
}

async fn pg_job(con: &mut sqlx::PgConnection, insert: &Arc<str>, update: &Arc<str>, i: usize) -> Result<()> {
    let mut tx = con.begin().await.map_err(pg_err)?;
    let id: i64 =
        sqlx::query_scalar(AssertSqlSafe(insert.clone())).bind(i as i32).fetch_one(&mut *tx).await.map_err(pg_err)?;
    sqlx::query(AssertSqlSafe(update.clone())).bind(id).execute(&mut *tx).await.map_err(pg_err)?;
    tx.commit().await.map_err(pg_err)
}
