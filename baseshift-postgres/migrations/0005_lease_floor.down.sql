DROP TRIGGER IF EXISTS jobs_lease_floor_update ON jobs;
DROP TRIGGER IF EXISTS jobs_lease_floor_insert ON jobs;
DROP FUNCTION IF EXISTS lease_floor_raise(timestamptz);
DROP FUNCTION IF EXISTS lease_floor_lower();
DROP TABLE IF EXISTS lease_floor;
