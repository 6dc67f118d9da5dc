//! STUB (helper C replaces): in-memory state store.
use super::*;
use crate::state::JobRecord;

/// The in-memory [`StateStore`]: the embedded default. Same semantics as the durable
/// backends (versions, conflicts, leases, outbox), state lost when the process exits.
#[derive(Debug, Default)]
pub struct MemoryStateStore {}

impl MemoryStateStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl StateStore for MemoryStateStore {
    fn capabilities(&self) -> StoreCapabilities {
        StoreCapabilities::new("memory", false, false)
    }
    async fn create_workflow(&self, new: NewWorkflow) -> Result<CreateOutcome> {
        let _ = new;
        todo!()
    }
    async fn workflow(&self, id: &WorkflowId) -> Result<WorkflowRecord> {
        let _ = id;
        todo!()
    }
    async fn job(&self, key: &JobKey) -> Result<JobRecord> {
        let _ = key;
        todo!()
    }
    async fn jobs(&self, id: &WorkflowId, ids: Option<&[String]>) -> Result<Vec<JobRecord>> {
        let _ = (id, ids);
        todo!()
    }
    async fn template(&self, template_id: &str, version: &str) -> Result<WorkflowTemplate> {
        let _ = (template_id, version);
        todo!()
    }
    async fn apply(&self, step: Transition) -> Result<Applied> {
        let _ = step;
        todo!()
    }
    async fn claim(&self, req: ClaimRequest) -> Result<Claimed> {
        let _ = req;
        todo!()
    }
    async fn renew_lease(&self, key: &JobKey, token: &str, ttl: Duration) -> Result<DateTime<Utc>> {
        let _ = (key, token, ttl);
        todo!()
    }
    async fn list_workflows(&self, filter: WorkflowFilter) -> Result<Vec<WorkflowRecord>> {
        let _ = filter;
        todo!()
    }
    async fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxEntry>> {
        let _ = limit;
        todo!()
    }
    async fn outbox_ack(&self, seqs: &[u64]) -> Result<()> {
        let _ = seqs;
        todo!()
    }
    async fn wait_for_work(&self, timeout: Duration) {
        tokio::time::sleep(timeout).await
    }
}
