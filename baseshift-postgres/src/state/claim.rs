//! [`StateStore::claim`](baseshift_core::StateStore::claim): candidates are locked with
//! `FOR UPDATE SKIP LOCKED` from two index scans (expired leases by expiry, ready jobs by
//! queue score), chosen in Rust under the per-type caps and the concurrency keys' room,
//! and updated in one statement that also appends their `job_running` events.
//!
//! Concurrency keys: before counting a key's `RUNNING` jobs, the claim takes a
//! transaction-scoped advisory lock on the key, so two claims never both see the same
//! free slot; the lock is held until the claim commits. The keys of the first page of
//! candidates are waited for, in key order; those of a later page are taken only if
//! free (see `count_running`), so two claims never wait for each other's keys.

use super::PostgresStateStore;
use crate::error::db;
use crate::rows::{JobRow, job_columns, micros};
use baseshift_core::store::{ClaimRequest, Claimed};
use baseshift_core::{Error, Event, JobStatus, Result, WorkflowId};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{PgConnection, Row};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

const OP: &str = "StateStore::claim";

/// Expired leases, oldest expiry first: `$1` now, `$2` excluded types, `$3` limit
/// (`$4`, the excluded keys, is unused: an expired lease already holds its key's slot).
/// The scan starts at the lease floor (migration 0005: no such lease expires before it),
/// not at the front of `jobs_leases`, where every job finished more than a lease TTL ago
/// left a dead index entry inside the scanned range.
macro_rules! expired_sql {
    () => {
        "SELECT workflow_id, job_id, job_type, attempt, \
         extract(epoch FROM lease_expires_at)::float8 AS sort_key, \
         concurrency->>'key' AS ckey, (concurrency->>'limit')::int8 AS climit FROM jobs \
         WHERE status = 'RUNNING' AND NOT awaiting_external AND lease_expires_at <= $1 \
           AND lease_expires_at >= coalesce((SELECT floor FROM lease_floor), '-infinity') \
           AND job_type <> ALL($2::text[]) AND cardinality($4::text[]) >= 0 \
         ORDER BY lease_expires_at, workflow_id, job_id LIMIT $3 FOR UPDATE SKIP LOCKED"
    };
}

/// Due ready jobs, best queue score first: `$1` now, `$2` excluded types, `$3` limit,
/// `$4` excluded concurrency keys (at their limit). The scan starts at the claim floor
/// (migration 0004: no `READY` job scores below it), not at the front of `jobs_ready`,
/// where the jobs claimed since the last vacuum left their dead index entries.
macro_rules! ready_sql {
    () => {
        "SELECT workflow_id, job_id, job_type, attempt, queue_score AS sort_key, \
         concurrency->>'key' AS ckey, (concurrency->>'limit')::int8 AS climit FROM jobs \
         WHERE status = 'READY' AND queue_score >= coalesce((SELECT floor FROM claim_floor), '-Infinity') \
           AND (ready_at IS NULL OR ready_at <= $1) AND job_type <> ALL($2::text[]) \
           AND (concurrency IS NULL OR concurrency->>'key' <> ALL($4::text[])) \
         ORDER BY queue_score, workflow_id, job_id LIMIT $3 FOR UPDATE SKIP LOCKED"
    };
}

/// Locks concurrency keys `$1` (sorted) for the rest of the transaction.
const LOCK_KEYS: &str = "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) \
     FROM (SELECT DISTINCT k FROM unnest($1::text[]) AS k ORDER BY k) AS s";
/// Locks those of concurrency keys `$1` that no other transaction holds, without
/// waiting; returns the others.
const TRY_LOCK_KEYS: &str = "SELECT k FROM (SELECT DISTINCT k FROM unnest($1::text[]) AS k ORDER BY k) AS s \
     WHERE NOT pg_try_advisory_xact_lock(hashtextextended(k, 0))";

/// `RUNNING` jobs per concurrency key among `$1`.
const RUNNING_PER_KEY: &str = "SELECT concurrency->>'key' AS k, count(*) AS n FROM jobs \
     WHERE status = 'RUNNING' AND concurrency IS NOT NULL AND concurrency->>'key' = ANY($1::text[]) GROUP BY 1";

const EXPIRED: &str = expired_sql!();
const READY: &str = ready_sql!();
/// The scans as named prepared statements, whose `EXPLAIN EXECUTE` shows the plan the
/// claim's transaction settings give them (see [`super::Plans::Claim`]).
const PREPARE_EXPIRED: &str =
    concat!("PREPARE baseshift_explain_claim (timestamptz, text[], int8, text[]) AS ", expired_sql!());
const PREPARE_READY: &str =
    concat!("PREPARE baseshift_explain_claim (timestamptz, text[], int8, text[]) AS ", ready_sql!());

const TAKE: &str = concat!(
    "WITH c AS (UPDATE jobs SET status = 'RUNNING', attempt = jobs.attempt + 1, version = jobs.version + 1, \
       lease_owner = $3, lease_token = t.token, lease_expires_at = $4, started_at = $5 \
     FROM unnest($1::text[], $2::text[], $6::text[]) AS t(workflow_id, job_id, token) \
     WHERE jobs.workflow_id = t.workflow_id AND jobs.job_id = t.job_id \
     RETURNING jobs.*), \
     o AS (INSERT INTO outbox (workflow_id, event) \
       SELECT e.w, e.ev FROM unnest($7::text[], $8::jsonb[]) WITH ORDINALITY AS e(w, ev, n) ORDER BY e.n) \
     SELECT ",
    job_columns!(),
    " FROM c"
);

const NEXT_DUE: &str = "SELECT min(ready_at) FROM jobs WHERE status = 'READY' AND ready_at > $1";

/// Raises the claim floor to the lowest score among `READY` jobs (migration 0004); `NULL`
/// when a write making jobs ready, or another raise, holds the floor's lock.
const RAISE_FLOOR: &str = "SELECT claim_floor_raise()";
/// Raises the lease floor to the earliest lease (migration 0005), in epoch seconds;
/// `NULL` when busy.
const RAISE_LEASE_FLOOR: &str = "SELECT lease_floor_raise()";
/// Both raises in one round trip (each takes its own lock and fresh snapshots), not above
/// `$1`, the best score the claim took, and `$2`, the expiry of the leases it gave out:
/// a queue the claims emptied gets a floor just below the jobs readied next, which
/// therefore need not lower it (writers that must lower it queue on its row).
const RAISE_FLOORS: &str = "SELECT claim_floor_raise($1) AS ready, lease_floor_raise($2) AS leases";

/// Jobs a store claims between two raises of the floors: the dead index entries the
/// next claims step over are those of the jobs claimed or finished (by every store)
/// since the last raise. A raise that finds a lock busy is tried again at the next claim.
pub(crate) const RAISE_EVERY: u64 = 128;

/// A locked, claimable job.
#[derive(Clone, Debug)]
pub(crate) struct Candidate {
    /// 0: an expired lease, 1: a ready job.
    pub(crate) group: u8,
    /// Lease expiry (epoch seconds) or queue score.
    pub(crate) sort_key: f64,
    pub(crate) workflow_id: String,
    pub(crate) job_id: String,
    pub(crate) job_type: String,
    pub(crate) attempt: i64,
    /// The concurrency key and its limit, if any.
    pub(crate) key: Option<(String, i64)>,
}

impl Candidate {
    fn key(&self) -> (String, String) {
        (self.workflow_id.clone(), self.job_id.clone())
    }
}

/// Sorts candidates in claim order: expired leases first, then by key, then by id.
pub(crate) fn sort(c: &mut [Candidate]) {
    c.sort_by(|a, b| {
        a.group
            .cmp(&b.group)
            .then_with(|| a.sort_key.total_cmp(&b.sort_key))
            .then_with(|| a.workflow_id.cmp(&b.workflow_id))
            .then_with(|| a.job_id.cmp(&b.job_id))
    });
}

/// What [`choose`] picked, and which caps it used up.
#[derive(Debug, Default)]
pub(crate) struct Choice {
    pub(crate) chosen: Vec<Candidate>,
    /// Capped types whose cap this choice used up.
    pub(crate) full_types: HashSet<String>,
    /// Concurrency keys with no room left.
    pub(crate) full_keys: HashSet<String>,
}

/// The first `limit` candidates in claim order, at most `caps[t]` of each capped type,
/// and ready jobs with a concurrency key only while `running[key]` plus the ones chosen
/// stay under the key's limit (an expired lease already holds its slot).
pub(crate) fn choose(
    mut candidates: Vec<Candidate>,
    limit: usize,
    caps: &HashMap<String, usize>,
    running: &HashMap<String, i64>,
) -> Choice {
    sort(&mut candidates);
    let mut taken: HashMap<&str, usize> = HashMap::new();
    let mut keyed: HashMap<&str, i64> = HashMap::new();
    let mut choice = Choice::default();
    let mut seen = HashSet::new();
    for c in &candidates {
        if choice.chosen.len() >= limit {
            break;
        }
        if !seen.insert(c.key()) {
            continue;
        }
        if let Some(cap) = caps.get(&c.job_type)
            && taken.get(c.job_type.as_str()).copied().unwrap_or(0) >= *cap
        {
            choice.full_types.insert(c.job_type.clone());
            continue;
        }
        if c.group == 1
            && let Some((key, key_limit)) = &c.key
        {
            let n = keyed.entry(key.as_str()).or_insert_with(|| running.get(key).copied().unwrap_or(0));
            if *n >= *key_limit {
                choice.full_keys.insert(key.clone());
                continue;
            }
            *n += 1;
        }
        if caps.contains_key(&c.job_type) {
            *taken.entry(c.job_type.as_str()).or_default() += 1;
        }
        choice.chosen.push(c.clone());
    }
    choice
}

impl PostgresStateStore {
    /// The query plans of the claim's two scans (expired leases, then ready jobs), as
    /// `EXPLAIN` prints them with the claim's own planner settings (generic plans): a
    /// diagnostic to check that claims use the `jobs_leases` and `jobs_ready` indexes on a
    /// live database. Runs in a rolled-back transaction.
    pub async fn explain_claim(&self) -> Result<Vec<String>> {
        const OP: &str = "PostgresStateStore::explain_claim";
        let mut tx = super::begin(&self.shared, super::Plans::Claim).await.map_err(db(OP))?;
        let mut plans = Vec::with_capacity(2);
        for sql in [PREPARE_EXPIRED, PREPARE_READY] {
            sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(db(OP))?;
            let lines: Result<Vec<String>> =
                sqlx::query_scalar("EXPLAIN EXECUTE baseshift_explain_claim(now(), '{}', 10, '{}')")
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db(OP));
            // A prepared statement outlives the transaction: it goes before any error is returned.
            let deallocated = sqlx::raw_sql("DEALLOCATE baseshift_explain_claim").execute(&mut *tx).await;
            let lines = lines?;
            deallocated.map_err(db(OP))?;
            plans.push(lines.join("\n"));
        }
        tx.rollback().await.map_err(db(OP))?;
        Ok(plans)
    }

    pub(super) async fn claim_jobs(&self, req: ClaimRequest) -> Result<Claimed> {
        let now = micros(Utc::now());
        let ttl = TimeDelta::from_std(req.lease_ttl).ok();
        let expires_at = ttl.and_then(|d| now.checked_add_signed(d)).map(micros).ok_or_else(|| {
            Error::invalid_input(format!("lease ttl {:?} is out of range", req.lease_ttl)).with_operation(OP)
        })?;
        let mut tx = super::begin(&self.shared, super::Plans::Claim).await.map_err(db(OP))?;
        let chosen = if req.limit == 0 { Vec::new() } else { self.lock_candidates(&mut tx, &req, now).await? };
        let mut jobs = Vec::with_capacity(chosen.len());
        if !chosen.is_empty() {
            let (mut wf, mut ids, mut tokens, mut event_wf, mut events) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for c in &chosen {
                let attempt = u32::try_from(c.attempt + 1).unwrap_or(u32::MAX);
                let event =
                    Event::job(&WorkflowId::new(c.workflow_id.clone()), &c.job_id, JobStatus::Running, attempt, None);
                events.push(serde_json::to_value(&event)?);
                event_wf.push(c.workflow_id.clone());
                wf.push(c.workflow_id.clone());
                ids.push(c.job_id.clone());
                tokens.push(uuid::Uuid::now_v7().to_string());
            }
            let rows: Vec<JobRow> = sqlx::query_as(TAKE)
                .bind(wf)
                .bind(ids)
                .bind(req.owner.as_str())
                .bind(expires_at)
                .bind(now)
                .bind(tokens)
                .bind(event_wf)
                .bind(events)
                .fetch_all(&mut *tx)
                .await
                .map_err(db(OP))?;
            let mut by_key: HashMap<(String, String), JobRow> =
                rows.into_iter().map(|r| ((r.workflow_id().to_owned(), r.job_id().to_owned()), r)).collect();
            for c in &chosen {
                if let Some(row) = by_key.remove(&c.key()) {
                    jobs.push(row.into_record()?);
                }
            }
        }
        let next_ready_at: Option<DateTime<Utc>> =
            sqlx::query_scalar(NEXT_DUE).bind(now).fetch_one(&mut *tx).await.map_err(db(OP))?;
        tx.commit().await.map_err(db(OP))?;
        let claimed = chosen.len() as u64;
        if claimed > 0 {
            let before = self.shared.claimed_since_raise.fetch_add(claimed, Ordering::Relaxed);
            if before + claimed >= RAISE_EVERY {
                let best = chosen.iter().filter(|c| c.group == 1).map(|c| c.sort_key).fold(f64::NEG_INFINITY, f64::max);
                let best = if best == f64::NEG_INFINITY { f64::INFINITY } else { best };
                self.raise_floors(best, expires_at).await;
            }
        }
        Ok(Claimed { jobs, next_ready_at })
    }

    /// Raises both floors in one statement; the count restarts once both were raised (or
    /// the statement failed: the jobs are claimed, and a floor left low only costs time).
    async fn raise_floors(&self, ready_hint: f64, lease_hint: DateTime<Utc>) {
        const OP: &str = "PostgresStateStore::claim (raising the floors)";
        let raised = async {
            let mut conn = self.shared.pool.acquire().await.map_err(db(OP))?;
            let row = sqlx::query(RAISE_FLOORS)
                .bind(ready_hint)
                .bind(lease_hint)
                .fetch_one(&mut *conn)
                .await
                .map_err(db(OP))?;
            let ready: Option<f64> = row.try_get("ready").map_err(db(OP))?;
            let leases: Option<f64> = row.try_get("leases").map_err(db(OP))?;
            Ok::<bool, Error>(ready.is_some() && leases.is_some())
        };
        match raised.await {
            Ok(false) => {}
            Ok(true) => self.shared.claimed_since_raise.store(0, Ordering::Relaxed),
            Err(e) => {
                tracing::debug!(error = %e, "raising the claim floors failed");
                self.shared.claimed_since_raise.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Raises the claim floor (a lower bound on the `queue_score` of every `READY` job,
    /// where the claim's ready scan starts) to the lowest score among `READY` jobs, and
    /// returns it (`+inf` when no job is ready); `None` when the floor's lock was busy (a
    /// write making jobs ready has not committed yet, or another raise runs) or the
    /// server's default isolation is not `READ COMMITTED`, in which cases the floor
    /// stays as it was.
    ///
    /// Claims call this (with [`raise_lease_floor`](Self::raise_lease_floor)) every 128
    /// jobs they claim, so the dead index entries their scans step over stay few however
    /// many jobs were claimed since the last vacuum; writes that make jobs ready lower the
    /// floor themselves (a trigger), so the floor never hides a job, whichever store
    /// instance readied it.
    pub async fn raise_claim_floor(&self) -> Result<Option<f64>> {
        const OP: &str = "PostgresStateStore::raise_claim_floor";
        let mut conn = self.shared.pool.acquire().await.map_err(db(OP))?;
        sqlx::query_scalar(RAISE_FLOOR).fetch_one(&mut *conn).await.map_err(db(OP))
    }

    /// Raises the lease floor (a lower bound on the lease expiry of every `RUNNING` job not
    /// awaiting an external completion, where the claim's expired-lease scan starts) to
    /// the earliest such lease, and returns it in seconds since the epoch (`+inf` when
    /// there is none); `None` when its lock was busy (a write giving out a lease, a claim
    /// included, has not committed yet) or outside `READ COMMITTED`. Writes giving out
    /// leases lower it themselves, as for [`raise_claim_floor`](Self::raise_claim_floor).
    pub async fn raise_lease_floor(&self) -> Result<Option<f64>> {
        const OP: &str = "PostgresStateStore::raise_lease_floor";
        let mut conn = self.shared.pool.acquire().await.map_err(db(OP))?;
        sqlx::query_scalar(RAISE_LEASE_FLOOR).fetch_one(&mut *conn).await.map_err(db(OP))
    }

    /// Locks candidates page by page: a page that a capped type or a full concurrency key
    /// filled is fetched again without them, keeping the jobs already chosen for them.
    async fn lock_candidates(
        &self,
        conn: &mut PgConnection,
        req: &ClaimRequest,
        now: DateTime<Utc>,
    ) -> Result<Vec<Candidate>> {
        let limit = i64::try_from(req.limit).unwrap_or(i64::MAX);
        let mut excluded: Vec<String> = req.exclude_types.clone();
        excluded.extend(req.type_limits.iter().filter(|(_, cap)| **cap == 0).map(|(t, _)| t.clone()));
        let mut excluded_keys: Vec<String> = Vec::new();
        let mut running: HashMap<String, i64> = HashMap::new();
        let mut pinned: Vec<Candidate> = Vec::new();
        loop {
            let mut page = pinned.clone();
            let mut page_full = false;
            for (group, sql) in [(0u8, EXPIRED), (1u8, READY)] {
                let rows = sqlx::query(sql)
                    .bind(now)
                    .bind(&excluded)
                    .bind(limit)
                    .bind(&excluded_keys)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(db(OP))?;
                page_full |= rows.len() as i64 >= limit;
                for row in rows {
                    let ckey: Option<String> = row.try_get("ckey").map_err(db(OP))?;
                    let climit: Option<i64> = row.try_get("climit").map_err(db(OP))?;
                    page.push(Candidate {
                        group,
                        sort_key: row.try_get("sort_key").map_err(db(OP))?,
                        workflow_id: row.try_get("workflow_id").map_err(db(OP))?,
                        job_id: row.try_get("job_id").map_err(db(OP))?,
                        job_type: row.try_get("job_type").map_err(db(OP))?,
                        attempt: row.try_get("attempt").map_err(db(OP))?,
                        key: ckey.map(|k| (k, climit.unwrap_or(1))),
                    });
                }
            }
            count_running(conn, &page, &mut running).await?;
            let choice = choose(page, req.limit, &req.type_limits, &running);
            let new_types: Vec<String> = choice.full_types.into_iter().filter(|t| !excluded.contains(t)).collect();
            let new_keys: Vec<String> = choice.full_keys.into_iter().filter(|k| !excluded_keys.contains(k)).collect();
            if choice.chosen.len() >= req.limit || !page_full || (new_types.is_empty() && new_keys.is_empty()) {
                return Ok(choice.chosen);
            }
            excluded.extend(new_types);
            excluded_keys.extend(new_keys);
            pinned = choice
                .chosen
                .into_iter()
                .filter(|c| {
                    excluded.contains(&c.job_type) || c.key.as_ref().is_some_and(|(k, _)| excluded_keys.contains(k))
                })
                .collect();
        }
    }
}

/// Locks the concurrency keys of ready candidates not counted yet and counts their
/// `RUNNING` jobs into `running`.
///
/// The first page's keys are locked in one statement, in key order, waiting for them; a
/// later page's keys only if no other transaction holds them: the claim holds the
/// earlier pages' keys already, so waiting for one of a lower key could close a cycle
/// with a claim that holds it and waits for one of ours (a deadlock, which PostgreSQL
/// breaks after `deadlock_timeout`). A key found busy counts as full (`i64::MAX`): its
/// jobs are left to the next claim.
async fn count_running(conn: &mut PgConnection, page: &[Candidate], running: &mut HashMap<String, i64>) -> Result<()> {
    let mut keys: Vec<String> = page
        .iter()
        .filter(|c| c.group == 1)
        .filter_map(|c| c.key.as_ref().map(|(k, _)| k.clone()))
        .filter(|k| !running.contains_key(k))
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    keys.sort();
    keys.dedup();
    if running.is_empty() {
        sqlx::query(LOCK_KEYS).bind(&keys).execute(&mut *conn).await.map_err(db(OP))?;
    } else {
        let busy: Vec<String> =
            sqlx::query_scalar(TRY_LOCK_KEYS).bind(&keys).fetch_all(&mut *conn).await.map_err(db(OP))?;
        keys.retain(|k| !busy.contains(k));
        for k in busy {
            running.insert(k, i64::MAX);
        }
        if keys.is_empty() {
            return Ok(());
        }
    }
    for k in &keys {
        running.insert(k.clone(), 0);
    }
    let rows = sqlx::query(RUNNING_PER_KEY).bind(&keys).fetch_all(&mut *conn).await.map_err(db(OP))?;
    for row in rows {
        let k: String = row.try_get("k").map_err(db(OP))?;
        running.insert(k, row.try_get("n").map_err(db(OP))?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(group: u8, key: f64, job: &str, ty: &str) -> Candidate {
        Candidate {
            group,
            sort_key: key,
            workflow_id: "w".into(),
            job_id: job.into(),
            job_type: ty.into(),
            attempt: 0,
            key: None,
        }
    }

    fn ids(c: &[Candidate]) -> Vec<&str> {
        c.iter().map(|c| c.job_id.as_str()).collect()
    }

    #[test]
    fn expired_first_then_by_score_then_key() {
        let page = vec![c(1, -5.0, "r2", "t"), c(1, -5.0, "r1", "t"), c(0, 100.0, "e1", "t"), c(1, -9.0, "r0", "t")];
        let choice = choose(page, 10, &HashMap::new(), &HashMap::new());
        assert_eq!(ids(&choice.chosen), ["e1", "r0", "r1", "r2"]);
        assert!(choice.full_types.is_empty());
    }

    #[test]
    fn caps_skip_a_type_but_keep_order() {
        let page =
            vec![c(1, 1.0, "s1", "slow"), c(1, 2.0, "s2", "slow"), c(1, 3.0, "n1", "noop"), c(1, 4.0, "s3", "slow")];
        let caps = HashMap::from([("slow".to_owned(), 1)]);
        let choice = choose(page.clone(), 10, &caps, &HashMap::new());
        assert_eq!(ids(&choice.chosen), ["s1", "n1"]);
        assert_eq!(choice.full_types, HashSet::from(["slow".to_owned()]));
        let choice = choose(page, 1, &caps, &HashMap::new());
        assert_eq!(ids(&choice.chosen), ["s1"]);
    }

    #[test]
    fn a_job_seen_twice_is_chosen_once() {
        let page = vec![c(1, 1.0, "a", "t"), c(1, 1.0, "a", "t"), c(1, 2.0, "b", "t")];
        let choice = choose(page, 10, &HashMap::new(), &HashMap::new());
        assert_eq!(ids(&choice.chosen), ["a", "b"]);
    }

    #[test]
    fn keys_at_their_limit_hold_ready_jobs_back() {
        let keyed =
            |group, key: f64, job: &str, k: &str| Candidate { key: Some((k.into(), 2)), ..c(group, key, job, "t") };
        let page = vec![
            keyed(0, 0.0, "lease", "a"),
            keyed(1, 1.0, "a1", "a"),
            keyed(1, 2.0, "a2", "a"),
            keyed(1, 3.0, "b1", "b"),
            c(1, 4.0, "free", "t"),
        ];
        let running = HashMap::from([("a".to_owned(), 1)]);
        let choice = choose(page, 10, &HashMap::new(), &running);
        assert_eq!(ids(&choice.chosen), ["lease", "a1", "b1", "free"], "an expired lease keeps its slot");
        assert_eq!(choice.full_keys, HashSet::from(["a".to_owned()]));
    }
}
