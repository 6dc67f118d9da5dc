-- Execution safety: dead letters and concurrency keys.

-- StateStore::dead_letters: FAILED jobs by (workflow id, job id); the few discarded ones
-- (error->>'discarded_at' set) are filtered on the way.
CREATE INDEX jobs_dead_letters ON jobs (workflow_id, job_id) WHERE status = 'FAILED';

-- A job's concurrency key, {"key": ..., "limit": ...}, fixed when its workflow starts.
ALTER TABLE jobs ADD COLUMN concurrency jsonb;

-- The claim counts RUNNING jobs per key.
CREATE INDEX jobs_running_keys ON jobs ((concurrency->>'key'))
    WHERE status = 'RUNNING' AND concurrency IS NOT NULL;
