//! [`RedisEventBus`]: the [`EventBus`] on Redis Streams.

use crate::config::RedisConfig;
use crate::connection::{self, Conn};
use crate::error::{corrupt, map_redis};
use crate::keys::Keys;
use crate::store::{array, text};
use async_trait::async_trait;
use baseshift_core::bus::{AckHandle, BusCapabilities, Delivery, Subscription};
use baseshift_core::{Error, Event, EventBus, Result, Topic};
use redis::Value;
use redis::aio::MultiplexedConnection;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Entries read (or taken over) per command.
const BATCH: usize = 100;
/// How long one blocking read waits; also how soon a departed subscriber's task notices.
const BLOCK: Duration = Duration::from_millis(500);
/// How often a subscriber looks for deliveries abandoned by other members.
const RECLAIM_EVERY: Duration = Duration::from_millis(1000);

/// Events on Redis Streams: one stream per topic (`<prefix>:events:<topic>`), one Redis
/// consumer group per bus group, created at the start of the stream so a new group gets
/// every event still retained (streams are trimmed to about `event_stream_max_len`).
///
/// Each subscription reads with `XREADGROUP` on a connection of its own (a blocking read
/// would stall a shared one) and acknowledges with `XACK`. A delivery dropped without
/// acknowledgement is handed to the same subscriber again at once; one whose subscriber
/// went away is taken over (`XAUTOCLAIM`) by another member of the group once it has been
/// idle for `event_claim_idle_ms` (a departing subscriber marks its deliveries idle, so
/// that happens within about a second). A delivery held unacknowledged longer than that by
/// a live subscriber may be delivered twice: at least once, as the contract says.
///
/// Order: events of one topic reach a lone subscriber in publish order; with several
/// members, each member's share keeps that order.
#[derive(Clone)]
pub struct RedisEventBus {
    conn: Conn,
    client: redis::Client,
    keys: Keys,
    config: RedisConfig,
}

impl std::fmt::Debug for RedisEventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEventBus").field("key_prefix", &self.keys.prefix()).finish_non_exhaustive()
    }
}

impl RedisEventBus {
    /// Connects with `config` (validated first).
    pub async fn connect(config: &RedisConfig) -> Result<Self> {
        config.validate()?;
        let conn = connection::connect(config).await?;
        Ok(RedisEventBus {
            conn,
            client: config.client()?,
            keys: Keys::new(&config.key_prefix),
            config: config.clone(),
        })
    }

    async fn reader(&self) -> Result<MultiplexedConnection> {
        let settings = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.config.connect_timeout()))
            .set_response_timeout(Some(self.config.command_timeout() + BLOCK));
        self.client
            .get_multiplexed_async_connection_with_config(&settings)
            .await
            .map_err(|e| map_redis(e, "EventBus::subscribe"))
    }
}

#[async_trait]
impl EventBus for RedisEventBus {
    fn capabilities(&self) -> BusCapabilities {
        BusCapabilities::new(crate::BACKEND, true)
    }

    async fn publish(&self, event: &Event) -> Result<()> {
        let json = serde_json::to_string(event)?;
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.keys.topic(event.topic()))
            .arg("MAXLEN")
            .arg("~")
            .arg(self.config.event_stream_max_len)
            .arg("*")
            .arg("e")
            .arg(json);
        self.conn.query::<Value>(&cmd, "EventBus::publish").await.map(|_| ())
    }

    async fn subscribe(&self, topics: &[Topic], group: &str) -> Result<Subscription> {
        const OP: &str = "EventBus::subscribe";
        if topics.is_empty() || group.is_empty() {
            return Err(Error::invalid_input("subscribe needs at least one topic and a group name")
                .with_operation(OP)
                .with_backend(crate::BACKEND));
        }
        let mut topics = topics.to_vec();
        topics.sort();
        topics.dedup();
        for topic in &topics {
            let mut cmd = redis::cmd("XGROUP");
            cmd.arg("CREATE").arg(self.keys.topic(*topic)).arg(group).arg("0").arg("MKSTREAM");
            match self.conn.query::<Value>(&cmd, OP).await {
                Ok(_) => {}
                Err(e) if e.message().contains("BUSYGROUP") => {}
                Err(e) => return Err(e),
            }
        }
        let reader = self.reader().await?;
        let (tx, mut rx) = mpsc::channel(BATCH * 2);
        let member = Member {
            bus: self.clone(),
            group: group.to_owned(),
            consumer: uuid::Uuid::now_v7().simple().to_string(),
            streams: topics.iter().map(|t| (*t, self.keys.topic(*t))).collect(),
            tx,
        };
        tokio::spawn(member.run(reader));
        Ok(Subscription::new(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))))
    }
}

/// One subscriber's reading task.
struct Member {
    bus: RedisEventBus,
    group: String,
    consumer: String,
    streams: Vec<(Topic, String)>,
    tx: mpsc::Sender<Result<Delivery>>,
}

impl Member {
    async fn run(self, mut reader: MultiplexedConnection) {
        let mut last_reclaim: Option<Instant> = None;
        let mut backoff = Duration::from_millis(50);
        while !self.tx.is_closed() {
            match self.step(&mut reader, &mut last_reclaim).await {
                Ok(()) => backoff = Duration::from_millis(50),
                Err(e) => {
                    tracing::warn!(error = %e, group = %self.group, "reading events failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    if let Ok(fresh) = self.bus.reader().await {
                        reader = fresh;
                    }
                }
            }
        }
        if let Err(e) = self.release(&mut reader).await {
            tracing::debug!(error = %e, group = %self.group, "releasing a departed subscriber's deliveries failed");
        }
    }

    /// Takes over abandoned deliveries (about once a second), then reads new entries.
    async fn step(&self, reader: &mut MultiplexedConnection, last_reclaim: &mut Option<Instant>) -> Result<()> {
        if last_reclaim.is_none_or(|t| t.elapsed() >= RECLAIM_EVERY) {
            *last_reclaim = Some(Instant::now());
            self.reclaim(reader).await?;
        }
        self.read_new(reader).await
    }

    /// Delivers entries new to the group.
    async fn read_new(&self, reader: &mut MultiplexedConnection) -> Result<()> {
        const OP: &str = "EventBus::subscribe";
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP").arg(&self.group).arg(&self.consumer).arg("COUNT").arg(BATCH);
        cmd.arg("BLOCK").arg(BLOCK.as_millis() as u64).arg("STREAMS");
        for (_, key) in &self.streams {
            cmd.arg(key);
        }
        for _ in &self.streams {
            cmd.arg(">");
        }
        let reply: Value = cmd.query_async(reader).await.map_err(|e| map_redis(e, OP))?;
        let per_stream: Vec<(Value, Value)> = match reply {
            Value::Map(pairs) => pairs,
            other => array(OP, other)?
                .into_iter()
                .filter_map(|s| {
                    let mut parts = array(OP, s).ok()?.into_iter();
                    Some((parts.next()?, parts.next()?))
                })
                .collect(),
        };
        for (name, entries) in per_stream {
            let name = text(&name).unwrap_or_default();
            let Some((topic, key)) = self.streams.iter().find(|(_, k)| *k == name).cloned() else { continue };
            self.deliver(topic, &key, array(OP, entries)?).await?;
        }
        Ok(())
    }

    /// Takes over deliveries other members left unacknowledged for too long.
    async fn reclaim(&self, reader: &mut MultiplexedConnection) -> Result<()> {
        const OP: &str = "EventBus::subscribe";
        let idle = self.bus.config.event_claim_idle_ms;
        for (topic, key) in &self.streams {
            let mut cmd = redis::cmd("XAUTOCLAIM");
            cmd.arg(key).arg(&self.group).arg(&self.consumer).arg(idle).arg("0-0").arg("COUNT").arg(BATCH);
            let reply = array(OP, cmd.query_async(reader).await.map_err(|e| map_redis(e, OP))?)?;
            if let Some(entries) = reply.into_iter().nth(1) {
                self.deliver(*topic, key, array(OP, entries)?).await?;
            }
        }
        Ok(())
    }

    async fn deliver(&self, topic: Topic, key: &str, entries: Vec<Value>) -> Result<()> {
        const OP: &str = "EventBus::subscribe";
        for entry in entries {
            let mut parts = array(OP, entry)?.into_iter();
            let (Some(id), Some(fields)) = (parts.next().as_ref().and_then(text), parts.next()) else { continue };
            let fields: Vec<Value> = match fields {
                Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
                other => array(OP, other)?,
            };
            let json = fields
                .chunks(2)
                .find(|pair| pair.first().and_then(text).as_deref() == Some("e"))
                .and_then(|pair| pair.get(1).and_then(text));
            let handle = Handle {
                conn: self.bus.conn.clone(),
                stream: key.to_owned(),
                group: self.group.clone(),
                id,
                redeliver: Some((topic, self.tx.clone())),
                event: None,
                acked: false,
            };
            let event: Event = match json.map(|j| serde_json::from_str(&j)) {
                Some(Ok(event)) => event,
                other => {
                    // An entry that is not an event can never be processed: drop it from the group.
                    let e = match other {
                        Some(Err(e)) => corrupt(OP, "event", e).to_string(),
                        _ => "no `e` field".to_owned(),
                    };
                    tracing::warn!(stream = key, id = %handle.id, error = %e, "skipping an unreadable event");
                    Box::new(handle).ack().await?;
                    continue;
                }
            };
            let mut handle = handle;
            handle.event = Some(event.clone());
            if self.tx.send(Ok(Delivery::new(topic, event, Box::new(handle)))).await.is_err() {
                break;
            }
        }
        Ok(())
    }

    /// Marks this departed subscriber's unacknowledged deliveries as long idle, so the
    /// next member's takeover does not wait out `event_claim_idle_ms`.
    async fn release(&self, reader: &mut MultiplexedConnection) -> Result<()> {
        const OP: &str = "EventBus::subscribe";
        let idle = self.bus.config.event_claim_idle_ms.saturating_mul(10).max(3_600_000);
        for (_, key) in &self.streams {
            let mut pending = redis::cmd("XPENDING");
            pending.arg(key).arg(&self.group).arg("-").arg("+").arg(1000).arg(&self.consumer);
            let rows = array(OP, pending.query_async(reader).await.map_err(|e| map_redis(e, OP))?)?;
            let ids: Vec<String> =
                rows.into_iter().filter_map(|row| array(OP, row).ok()?.first().and_then(text)).collect();
            if ids.is_empty() {
                let mut forget = redis::cmd("XGROUP");
                forget.arg("DELCONSUMER").arg(key).arg(&self.group).arg(&self.consumer);
                let _: Value = forget.query_async(reader).await.map_err(|e| map_redis(e, OP))?;
                continue;
            }
            let mut claim = redis::cmd("XCLAIM");
            claim.arg(key).arg(&self.group).arg(&self.consumer).arg(0).arg(&ids).arg("IDLE").arg(idle).arg("JUSTID");
            let _: Value = claim.query_async(reader).await.map_err(|e| map_redis(e, OP))?;
        }
        Ok(())
    }
}

/// Acknowledges one entry; dropped unacknowledged, it hands the event to its subscriber again.
struct Handle {
    conn: Conn,
    stream: String,
    group: String,
    id: String,
    redeliver: Option<(Topic, mpsc::Sender<Result<Delivery>>)>,
    event: Option<Event>,
    acked: bool,
}

#[async_trait]
impl AckHandle for Handle {
    async fn ack(mut self: Box<Self>) -> Result<()> {
        let mut cmd = redis::cmd("XACK");
        cmd.arg(&self.stream).arg(&self.group).arg(&self.id);
        self.conn.query::<i64>(&cmd, "Delivery::ack").await?;
        self.acked = true;
        Ok(())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.acked {
            return;
        }
        let (Some((topic, tx)), Some(event)) = (self.redeliver.take(), self.event.take()) else { return };
        // A full or closed channel leaves the entry pending: a group member takes it over
        // later. Reserving first means a delivery is only built when it can be sent, so a
        // closing channel never drops (and re-enters) another handle from here.
        let Ok(permit) = tx.try_reserve() else { return };
        let again = Handle {
            conn: self.conn.clone(),
            stream: std::mem::take(&mut self.stream),
            group: std::mem::take(&mut self.group),
            id: std::mem::take(&mut self.id),
            redeliver: Some((topic, tx.clone())),
            event: Some(event.clone()),
            acked: false,
        };
        permit.send(Ok(Delivery::new(topic, event, Box::new(again))));
    }
}
