//! The key layout. Every key starts with the configured prefix; the keys of one workflow
//! share the hash tag `{<workflow id>}`, so they would live in one Redis Cluster slot.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<p>:wf:{<id>}` | hash | `h` header JSON; `v` version, `s` status, `r` remaining and `f` finish time, which win over it; `q` compensation queue not empty; `o` job order (JSON array) |
//! | `<p>:jobs:{<id>}` | hash | one field per job id: the record's head (status, version, attempt, flags, lease, start, queue member), then its JSON without its output (see `decode_job` in `store/codec.rs`) |
//! | `<p>:out:{<id>}` | hash | one field per job id that has an output: the output JSON |
//! | `<p>:tpl:<template id>:<version>` | string | the template snapshot JSON |
//! | `<p>:idem:<key>` | string | the workflow id created with an idempotency key |
//! | `<p>:idx:all`, `<p>:idx:<STATUS>` | sorted set | workflow ids (score 0, ordered by id) |
//! | `<p>:q:ready` | sorted set | due `READY` jobs by [`JobRecord::queue_score`](baseshift_core::JobRecord::queue_score) |
//! | `<p>:q:delayed` | sorted set | `READY` jobs not yet due, by `ready_at` in epoch ms |
//! | `<p>:q:leases` | sorted set | leased `RUNNING` jobs by lease expiry in epoch ms |
//! | `<p>:ckeys` | hash | `RUNNING` jobs per concurrency key |
//! | `<p>:dead` | sorted set | dead-lettered jobs (score 0, member `<workflow id>\0<job id>`, so ordered by both) |
//! | `<p>:outbox`, `<p>:outbox:seq` | stream, counter | pending events (entry id `0-<seq>`) |
//! | `<p>:wake` | pub/sub channel | published when a job becomes claimable |
//! | `<p>:events:<topic>` | stream | [`RedisEventBus`](crate::RedisEventBus) events, one consumer group per bus group |
//!
//! Queue members are JSON arrays `[workflow id, job id, job type, priority]` (plus
//! `concurrency key, limit` for a job with a key), so a claim can skip excluded types and
//! held-back keys, and a due retry can be scored, without reading its record.

use baseshift_core::{WorkflowId, WorkflowStatus};

/// Key names under one prefix.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Keys { prefix: prefix.to_owned() }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn workflow(&self, id: &WorkflowId) -> String {
        format!("{}:wf:{{{id}}}", self.prefix)
    }

    pub(crate) fn jobs(&self, id: &WorkflowId) -> String {
        format!("{}:jobs:{{{id}}}", self.prefix)
    }

    pub(crate) fn outputs(&self, id: &WorkflowId) -> String {
        format!("{}:out:{{{id}}}", self.prefix)
    }

    pub(crate) fn template(&self, template_id: &str, version: &str) -> String {
        format!("{}:tpl:{template_id}:{version}", self.prefix)
    }

    pub(crate) fn index_all(&self) -> String {
        format!("{}:idx:all", self.prefix)
    }

    pub(crate) fn index(&self, status: WorkflowStatus) -> String {
        format!("{}:idx:{status}", self.prefix)
    }

    pub(crate) fn ready(&self) -> String {
        format!("{}:q:ready", self.prefix)
    }

    pub(crate) fn delayed(&self) -> String {
        format!("{}:q:delayed", self.prefix)
    }

    pub(crate) fn leases(&self) -> String {
        format!("{}:q:leases", self.prefix)
    }

    pub(crate) fn dead_letters(&self) -> String {
        format!("{}:dead", self.prefix)
    }

    pub(crate) fn outbox(&self) -> String {
        format!("{}:outbox", self.prefix)
    }

    pub(crate) fn outbox_seq(&self) -> String {
        format!("{}:outbox:seq", self.prefix)
    }

    pub(crate) fn wake_channel(&self) -> String {
        format!("{}:wake", self.prefix)
    }

    /// The event stream of one topic.
    pub(crate) fn topic(&self, topic: baseshift_core::Topic) -> String {
        format!("{}:events:{topic}", self.prefix)
    }

    /// The template cache's generation key of one template id.
    pub(crate) fn cache_generation(&self, template_id: &str) -> String {
        format!("{}:tplc:gen:{{{template_id}}}", self.prefix)
    }

    /// The common start of a template id's cache entries (the generation follows).
    pub(crate) fn cache_entry_prefix(&self, template_id: &str) -> String {
        format!("{}:tplc:{{{template_id}}}:", self.prefix)
    }

    /// The template cache's entry for one generation of a template id (`latest` or a version).
    pub(crate) fn cache_entry(&self, template_id: &str, generation: &str, version: &str) -> String {
        format!("{}{generation}:{version}", self.cache_entry_prefix(template_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_keys_share_a_hash_tag() {
        let keys = Keys::new("app");
        let id = WorkflowId::new("w-1");
        for key in [keys.workflow(&id), keys.jobs(&id), keys.outputs(&id)] {
            assert!(key.starts_with("app:") && key.ends_with("{w-1}"), "{key}");
        }
        assert_eq!(keys.index(WorkflowStatus::Running), "app:idx:RUNNING");
        assert_eq!(keys.cache_entry("t", "g1", "latest"), "app:tplc:{t}:g1:latest");
    }
}
