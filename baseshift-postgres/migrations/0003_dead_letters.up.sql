-- StateStore::dead_letters: FAILED jobs by (workflow id, job id); the few discarded ones
-- (error->>'discarded_at' set) are filtered on the way.
CREATE INDEX jobs_dead_letters ON jobs (workflow_id, job_id) WHERE status = 'FAILED';
