DROP INDEX IF EXISTS jobs_running_keys;
ALTER TABLE jobs DROP COLUMN IF EXISTS concurrency;
DROP INDEX IF EXISTS jobs_dead_letters;
