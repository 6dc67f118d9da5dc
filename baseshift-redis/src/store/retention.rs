//! Retention: removing finished workflows from Redis, in batches of one script each.

use super::codec::{array, int};
use crate::connection::Conn;
use crate::keys::Keys;
use crate::scripts::SCRIPTS;
use baseshift_core::Result;
use baseshift_core::store::retention_cutoff;
use serde_json::json;
use std::time::Duration;

/// Workflows removed per script run: each run blocks the server while it works.
const BATCH: u64 = 200;

/// What [`RedisStateStore::apply_retention`](crate::RedisStateStore::apply_retention)
/// removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisRetention {
    /// Workflow headers removed.
    pub workflows: u64,
    /// Job records removed with them.
    pub jobs: u64,
    /// Script runs (round trips) used.
    pub batches: u64,
}

/// See [`RedisStateStore::apply_retention`](crate::RedisStateStore::apply_retention).
pub(super) async fn apply(conn: &Conn, keys: &Keys, older_than: Duration) -> Result<RedisRetention> {
    const OP: &str = "RedisStateStore::apply_retention";
    let cutoff = retention_cutoff(older_than)?;
    let payload =
        json!({ "prefix": keys.prefix(), "cutoff_ms": cutoff.timestamp_millis(), "limit": BATCH }).to_string();
    let mut report = RedisRetention::default();
    loop {
        let reply = conn.script(&SCRIPTS.retention, &[], &[&payload], OP).await?;
        let counts = array(OP, reply)?;
        let count = |i: usize| counts.get(i).map_or(Ok(0), |v| int(OP, v)).map(|n| u64::try_from(n).unwrap_or(0));
        let (workflows, jobs, taken) = (count(0)?, count(1)?, count(2)?);
        report.workflows += workflows;
        report.jobs += jobs;
        report.batches += 1;
        // Fewer index entries than the limit: nothing more is due.
        if taken < BATCH {
            return Ok(report);
        }
    }
}
