DROP INDEX IF EXISTS jobs_dead_letters;
