-- Workflow state: one header row per workflow, one row per job, the template snapshots
-- workflows run, the events outbox and the idempotency keys.
-- Ids use the "C" collation so that ORDER BY matches the byte order of Rust strings.

CREATE TABLE workflows (
    id                 text COLLATE "C" PRIMARY KEY,
    template_id        text COLLATE "C" NOT NULL,
    template_version   text NOT NULL,
    status             text NOT NULL
        CHECK (status IN ('INITIALIZED', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED')),
    version            bigint NOT NULL,
    input              jsonb NOT NULL,
    idempotency_key    text,
    parent             jsonb,
    remaining          bigint NOT NULL,
    compensation_queue text[] NOT NULL DEFAULT '{}',
    error              text,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    finished_at        timestamptz
);

-- list_workflows with a status filter, paged by id.
CREATE INDEX workflows_status_id ON workflows (status, id);
-- Retention: finished workflows by finish time.
CREATE INDEX workflows_finished ON workflows (finished_at)
    WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED');
-- Analytics per template.
CREATE INDEX workflows_template ON workflows (template_id, status);

CREATE TABLE jobs (
    workflow_id       text COLLATE "C" NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    job_id            text COLLATE "C" NOT NULL,
    ordinal           integer NOT NULL,
    job_type          text NOT NULL,
    status            text NOT NULL
        CHECK (status IN ('PENDING', 'READY', 'RUNNING', 'SUCCEEDED', 'FAILED', 'SKIPPED', 'CANCELLED')),
    version           bigint NOT NULL,
    attempt           bigint NOT NULL,
    priority          integer NOT NULL,
    join_rule         text NOT NULL,
    has_condition     boolean NOT NULL,
    deps_total        bigint NOT NULL,
    deps_succeeded    bigint NOT NULL,
    deps_failed       bigint NOT NULL,
    deps_skipped      bigint NOT NULL,
    eligible          boolean NOT NULL,
    propagated        boolean NOT NULL,
    ready_at          timestamptz,
    -- JobRecord::queue_score, fixed when the job becomes ready (lower is served first).
    queue_score       double precision NOT NULL,
    lease_owner       text,
    lease_token       text,
    lease_expires_at  timestamptz,
    awaiting_external boolean NOT NULL,
    output            jsonb,
    error             jsonb,
    compensation_of   text,
    started_at        timestamptz,
    finished_at       timestamptz,
    PRIMARY KEY (workflow_id, job_id),
    CHECK ((lease_owner IS NULL) = (lease_token IS NULL) AND (lease_token IS NULL) = (lease_expires_at IS NULL))
);

-- jobs(id, None): a workflow's jobs in template order.
CREATE UNIQUE INDEX jobs_workflow_ordinal ON jobs (workflow_id, ordinal);
-- The claim: ready jobs by queue score, then key.
CREATE INDEX jobs_ready ON jobs (queue_score, workflow_id, job_id) WHERE status = 'READY';
-- The claim's next_ready_at: the earliest delayed (retrying) job.
CREATE INDEX jobs_ready_at ON jobs (ready_at) WHERE status = 'READY';
-- The claim: expired leases by expiry, then key.
CREATE INDEX jobs_leases ON jobs (lease_expires_at, workflow_id, job_id)
    WHERE status = 'RUNNING' AND NOT awaiting_external;

CREATE TABLE template_snapshots (
    template_id text COLLATE "C" NOT NULL,
    version     text COLLATE "C" NOT NULL,
    body        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (template_id, version)
);

CREATE TABLE outbox (
    seq         bigserial PRIMARY KEY,
    workflow_id text COLLATE "C" NOT NULL,
    event       jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Retention deletes a workflow's events with it.
CREATE INDEX outbox_workflow ON outbox (workflow_id);

CREATE TABLE idempotency_keys (
    key         text COLLATE "C" PRIMARY KEY,
    -- Deferred: the key is claimed first, then the workflow it names is inserted.
    workflow_id text COLLATE "C" NOT NULL
        REFERENCES workflows (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idempotency_keys_workflow ON idempotency_keys (workflow_id);
