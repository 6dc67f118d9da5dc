//! Shared by the integration tests: a fresh schema per test on the server at
//! `BASESHIFT_POSTGRES_URL`, dropped when the test's store is dropped.

#![allow(dead_code)]

use async_trait::async_trait;
use baseshift_core::store::{
    Applied, ClaimRequest, Claimed, CreateOutcome, DeadLetterFilter, NewWorkflow, OutboxEntry, StateStore,
    StoreCapabilities, Transition, WorkflowFilter,
};
use baseshift_core::templates::TemplateSummary;
use baseshift_core::{JobKey, JobRecord, Result, TemplateStore, WorkflowId, WorkflowRecord, WorkflowTemplate};
use baseshift_postgres::{Postgres, PostgresConfig};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// A schema name no other test uses.
pub fn unique_schema() -> String {
    format!("bst_{}", uuid::Uuid::now_v7().simple())
}

/// The config of a test schema (URL from `BASESHIFT_POSTGRES_URL` or the default).
pub fn test_config(schema: &str, max_connections: u32) -> PostgresConfig {
    PostgresConfig::builder()
        .schema(schema)
        .max_connections(max_connections)
        .build()
        .unwrap_or_else(|e| panic!("test config: {e}"))
}

/// Connects, failing (never skipping) with a hint when the server is unreachable.
pub async fn connect(config: &PostgresConfig) -> Postgres {
    match Postgres::connect(config).await {
        Ok(pg) => pg,
        Err(e) => panic!(
            "PostgreSQL is unreachable ({e}); start it with `scripts/services.sh` at the repo root \
             or point BASESHIFT_POSTGRES_URL at a server"
        ),
    }
}

/// A migrated, empty schema of its own.
pub async fn fresh(max_connections: u32) -> Scoped {
    let schema = unique_schema();
    let pg = connect(&test_config(&schema, max_connections)).await;
    pg.migrate().await.unwrap_or_else(|e| panic!("migrating schema {schema}: {e}"));
    Scoped { pg }
}

/// A test's schema: the stores of it, and the schema dropped on drop.
pub struct Scoped {
    pub pg: Postgres,
}

impl Drop for Scoped {
    fn drop(&mut self) {
        // Dropped inside the test's runtime, so the cleanup gets a runtime and a
        // connection of its own on another thread.
        let config = self.pg.config().clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                let mut config = config;
                config.listen = false;
                config.max_connections = 1;
                if let Ok(pg) = Postgres::connect(&config).await {
                    let _ = pg.drop_schema().await;
                    pg.close().await;
                }
            });
        })
        .join();
    }
}

/// Forwards every method, defaults included, so the conformance checks run the
/// PostgreSQL store's own code (the lint keeps a new trait method from being missed).
#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl StateStore for Scoped {
    fn capabilities(&self) -> StoreCapabilities {
        self.pg.state_store().capabilities()
    }
    async fn create_workflow(&self, new: NewWorkflow) -> Result<CreateOutcome> {
        self.pg.state_store().create_workflow(new).await
    }
    async fn create_workflows(&self, news: Vec<NewWorkflow>) -> Vec<Result<CreateOutcome>> {
        self.pg.state_store().create_workflows(news).await
    }
    async fn workflow(&self, id: &WorkflowId) -> Result<WorkflowRecord> {
        self.pg.state_store().workflow(id).await
    }
    async fn workflows(&self, ids: &[WorkflowId]) -> Result<Vec<WorkflowRecord>> {
        self.pg.state_store().workflows(ids).await
    }
    async fn job(&self, key: &JobKey) -> Result<JobRecord> {
        self.pg.state_store().job(key).await
    }
    async fn jobs(&self, id: &WorkflowId, ids: Option<&[String]>) -> Result<Vec<JobRecord>> {
        self.pg.state_store().jobs(id, ids).await
    }
    async fn jobs_of(&self, ids: &[WorkflowId]) -> Result<Vec<Vec<JobRecord>>> {
        self.pg.state_store().jobs_of(ids).await
    }
    async fn template(&self, template_id: &str, version: &str) -> Result<WorkflowTemplate> {
        self.pg.state_store().template(template_id, version).await
    }
    async fn apply(&self, step: Transition) -> Result<Applied> {
        self.pg.state_store().apply(step).await
    }
    async fn claim(&self, req: ClaimRequest) -> Result<Claimed> {
        self.pg.state_store().claim(req).await
    }
    async fn renew_lease(&self, key: &JobKey, token: &str, ttl: Duration) -> Result<DateTime<Utc>> {
        self.pg.state_store().renew_lease(key, token, ttl).await
    }
    async fn list_workflows(&self, filter: WorkflowFilter) -> Result<Vec<WorkflowRecord>> {
        self.pg.state_store().list_workflows(filter).await
    }
    async fn dead_letters(&self, filter: DeadLetterFilter) -> Result<Vec<JobRecord>> {
        self.pg.state_store().dead_letters(filter).await
    }
    async fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxEntry>> {
        self.pg.state_store().outbox_pending(limit).await
    }
    async fn outbox_ack(&self, seqs: &[u64]) -> Result<()> {
        self.pg.state_store().outbox_ack(seqs).await
    }
    async fn wait_for_work(&self, timeout: Duration) {
        self.pg.state_store().wait_for_work(timeout).await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl TemplateStore for Scoped {
    async fn create(&self, template: &WorkflowTemplate) -> Result<()> {
        self.pg.template_store().create(template).await
    }
    async fn get(&self, template_id: &str, version: Option<&semver::Version>) -> Result<WorkflowTemplate> {
        self.pg.template_store().get(template_id, version).await
    }
    async fn get_shared(
        &self,
        template_id: &str,
        version: Option<&semver::Version>,
    ) -> Result<std::sync::Arc<WorkflowTemplate>> {
        self.pg.template_store().get_shared(template_id, version).await
    }
    async fn update(&self, template: &WorkflowTemplate) -> Result<()> {
        self.pg.template_store().update(template).await
    }
    async fn create_compiled(&self, compiled: &baseshift_core::template::CompiledTemplate) -> Result<()> {
        self.pg.template_store().create_compiled(compiled).await
    }
    async fn update_compiled(&self, compiled: &baseshift_core::template::CompiledTemplate) -> Result<()> {
        self.pg.template_store().update_compiled(compiled).await
    }
    async fn list(&self) -> Result<Vec<TemplateSummary>> {
        self.pg.template_store().list().await
    }
    async fn delete(&self, template_id: &str) -> Result<()> {
        self.pg.template_store().delete(template_id).await
    }
}
