//! Starting workflows: one at a time, or many through one store call.

use super::inner::WorkflowBasics;
use super::worker::run_claimed;
use super::{Inner, StartRequest, plan};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::ids::WorkflowId;
use crate::state::{WorkflowRecord, WorkflowStatus};
use crate::store::{CreateOutcome, NewWorkflow};
use chrono::Utc;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// A workflow ready to be written, whether it is created already begun, and (see
/// `Inner::hands_over_basics`) the basics its workers will need.
struct Prepared {
    new: NewWorkflow,
    begun: bool,
    basics: Option<Arc<WorkflowBasics>>,
}

impl Inner {
    pub async fn start(&self, req: StartRequest) -> Result<WorkflowId> {
        let Prepared { new, begun, basics } = self.prepare(req).await?;
        let outcome = self.store.create_workflow(new).await?;
        self.outbox_wake.notify_one();
        self.after_create(outcome, begun, basics).await
    }

    /// [`start`](Self::start), with local dispatch (see `EngineConfig::local_dispatch`):
    /// roots claimed in the create step run on this instance (`here`), without a claim.
    pub async fn start_here(here: &Arc<Inner>, req: StartRequest) -> Result<WorkflowId> {
        let Prepared { mut new, begun, basics } = here.prepare(req).await?;
        let mut local = if begun { here.claim_at_create(&mut new) } else { Vec::new() };
        let outcome = match here.store.create_workflow(new).await {
            Ok(o) => o,
            Err(e) => {
                // Had the create been applied after all, the leases lapse and a claim
                // takes the jobs up.
                here.release_slots(local.len());
                return Err(e);
            }
        };
        here.outbox_wake.notify_one();
        if !matches!(outcome, CreateOutcome::Created(_)) {
            here.release_slots(local.len());
            local.clear();
        }
        let result = here.after_create(outcome, begun, basics).await;
        for rec in local {
            tokio::spawn(run_claimed(here.clone(), rec, false));
        }
        result
    }

    /// Starts every request with one [`create_workflows`](crate::StateStore::create_workflows)
    /// call; one result per request, in order. A request that fails (unknown template,
    /// invalid input) fails alone and writes nothing.
    pub async fn start_many(&self, reqs: Vec<StartRequest>) -> Vec<Result<WorkflowId>> {
        let mut results: Vec<Option<Result<WorkflowId>>> = Vec::with_capacity(reqs.len());
        let mut news = Vec::with_capacity(reqs.len());
        let mut slots = Vec::with_capacity(reqs.len());
        for req in reqs {
            match self.prepare(req).await {
                Ok(p) => {
                    slots.push((results.len(), p.begun, p.basics));
                    news.push(p.new);
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        if !news.is_empty() {
            let outcomes = self.store.create_workflows(news).await;
            self.outbox_wake.notify_one();
            for ((slot, begun, basics), outcome) in slots.into_iter().zip(outcomes) {
                let r = match outcome {
                    Ok(o) => self.after_create(o, begun, basics).await,
                    Err(e) => Err(e),
                };
                results[slot] = Some(r);
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::internal("the store returned fewer results than workflows"))))
            .collect()
    }

    /// Checks a request and plans its workflow (nothing is written).
    async fn prepare(&self, req: StartRequest) -> Result<Prepared> {
        let template = self.templates.get_shared(&req.template_id, req.version.as_ref()).await?;
        let compiled = self.compile(&template)?;
        let size = super::inner::json_size(&req.input);
        if size > self.config.max_input_bytes {
            return Err(Error::invalid_input(format!(
                "workflow input is {size} bytes; the limit is {} (EngineConfig.max_input_bytes)",
                self.config.max_input_bytes
            )));
        }
        compiled.validate_input(&req.input)?;
        let id = WorkflowId::generate();
        let mut jobs = plan::initial_records(&compiled, &id);
        plan::render_concurrency(&compiled, &mut jobs, &req.input)?;
        let remaining = jobs.iter().filter(|j| j.compensation_of.is_none()).count() as u64;
        let mut header = WorkflowRecord::initialized(
            id.clone(),
            template.template_id.clone(),
            compiled.version().to_owned(),
            req.input,
        );
        header.idempotency_key = req.idempotency_key;
        header.parent = req.parent.map(Box::new);
        header.remaining = remaining;
        let mut events = vec![Event::workflow(
            &id,
            WorkflowStatus::Initialized,
            Some(json!({
                "template_id": header.template_id, "template_version": header.template_version
            })),
        )];
        // Without root conditions the workflow is created already begun: one store step
        // instead of create + read + begin.
        let begun_events = plan::begin_at_create(&compiled, &mut header, &mut jobs, Utc::now());
        let begun = begun_events.is_some();
        events.extend(begun_events.into_iter().flatten());
        let basics = self
            .hands_over_basics()
            .then(|| Arc::new(WorkflowBasics { template: compiled.clone(), input: Arc::new(header.input.clone()) }));
        Ok(Prepared { new: NewWorkflow { header, jobs, template: compiled.template().clone(), events }, begun, basics })
    }

    /// Whether a start caches the basics its workers will need: on a durable store always
    /// (their read is a round trip); on an in-process store while the engine runs with a
    /// free slot, so the job runs soon and the entry is dropped when the workflow settles.
    /// A backlog's basics are not cached: they would sit in memory until its jobs run.
    fn hands_over_basics(&self) -> bool {
        self.store.capabilities().durable
            || (self.launched.load(Ordering::SeqCst)
                && self.total_running.load(Ordering::SeqCst) < self.config.concurrency)
    }

    /// After the create step: a repeated start (e.g. retried after an error) also begins
    /// the workflow in case the first call created it but could not begin it (`begin` is
    /// a no-op otherwise); a workflow this call created already begun needs nothing more.
    async fn after_create(
        &self,
        outcome: CreateOutcome,
        begun: bool,
        basics: Option<Arc<WorkflowBasics>>,
    ) -> Result<WorkflowId> {
        let (id, created) = match outcome {
            CreateOutcome::Created(id) => (id, true),
            CreateOutcome::Existing(id) => (id, false),
        };
        if created && let Some(b) = basics {
            self.remember_basics(&id, b);
        }
        if (!created || !begun)
            && let Err(e) = self.begin(&id).await
        {
            self.needs_repair(&id);
            return Err(e);
        }
        Ok(id)
    }
}
