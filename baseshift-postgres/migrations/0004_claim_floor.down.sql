DROP TRIGGER IF EXISTS jobs_claim_floor_update ON jobs;
DROP TRIGGER IF EXISTS jobs_claim_floor_insert ON jobs;
DROP FUNCTION IF EXISTS claim_floor_raise(double precision);
DROP FUNCTION IF EXISTS claim_floor_lower();
DROP TABLE IF EXISTS claim_floor;
