//! What the workers' relays published: the run's Redis streams (`<prefix>:events:<topic>`,
//! the [`RedisEventBus`](baseshift_redis::RedisEventBus) layout), read back with `XRANGE`
//! so every entry keeps its stream id (publish order, and a millisecond clock shared by
//! the streams of one server).

use baseshift_core::{Error, ErrorKind, Event, Result, Topic};
use std::collections::HashMap;

/// One distinct event, at its first publication.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The server's millisecond of the first publication.
    pub ms: u64,
    /// The event.
    pub event: Event,
}

/// The distinct events of the run, grouped.
#[derive(Debug, Default)]
pub struct Published {
    /// Workflow events by workflow id, in first-publication order.
    pub workflows: HashMap<String, Vec<Seen>>,
    /// Job events by (workflow id, job id), in first-publication order.
    pub jobs: HashMap<(String, String), Vec<Seen>>,
    /// Entries read in all (duplicates included).
    pub entries: usize,
    /// Entries that repeated an earlier one (at-least-once delivery).
    pub duplicates: usize,
}

fn unavailable(e: redis::RedisError) -> Error {
    Error::new(ErrorKind::Unavailable, format!("reading the event streams: {e}"))
}

/// Reads both streams of the run under `prefix`.
pub async fn read(url: &str, prefix: &str) -> Result<Published> {
    let client = redis::Client::open(url).map_err(unavailable)?;
    let mut con = client.get_multiplexed_async_connection().await.map_err(unavailable)?;
    let mut out = Published::default();
    for topic in [Topic::WorkflowEvents, Topic::JobEvents] {
        let key = format!("{prefix}:events:{topic}");
        let mut seen = std::collections::HashSet::new();
        let mut start = "-".to_owned();
        loop {
            let page: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                .arg(&key)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(5_000)
                .query_async(&mut con)
                .await
                .map_err(unavailable)?;
            let Some((last, _)) = page.last() else { break };
            start = format!("({last}");
            for (id, fields) in &page {
                out.entries += 1;
                let Some((_, json)) = fields.iter().find(|(f, _)| f == "e") else {
                    return Err(Error::internal(format!("stream entry {id} of {key} has no `e` field")));
                };
                if !seen.insert(json.clone()) {
                    out.duplicates += 1;
                    continue;
                }
                let event: Event = serde_json::from_str(json)?;
                let ms = id.split('-').next().and_then(|m| m.parse().ok()).unwrap_or(0);
                let wf = event.payload.workflow_id.to_string();
                let entry = Seen { ms, event };
                match (&entry.event.payload.job_id, topic) {
                    (Some(job), Topic::JobEvents) => out.jobs.entry((wf, job.to_string())).or_default().push(entry),
                    _ => out.workflows.entry(wf).or_default().push(entry),
                }
            }
        }
    }
    Ok(out)
}
