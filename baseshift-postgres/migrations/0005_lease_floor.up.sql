-- The lease floor: a lower bound on the lease_expires_at of every RUNNING job not
-- awaiting an external completion, so the claim's expired-lease scan starts at it
-- instead of at the front of jobs_leases. Every job that finishes leaves a dead
-- jobs_leases entry at its lease's expiry; once that time has passed, the entry lies in
-- the range every expired-lease scan reads (up to now), so without the floor each claim
-- steps over the entries of every job finished more than a lease TTL ago.
--
-- Kept like claim_floor (0004), with its own advisory lock (1651730945, jobs' oid): a
-- write giving a job such a lease lowers the floor under the lock SHARED;
-- lease_floor_raise() takes it EXCLUSIVE (try-lock) before reading the lowest lease.

CREATE TABLE lease_floor (
    one   boolean PRIMARY KEY DEFAULT true CHECK (one),
    floor timestamptz NOT NULL
);

CREATE FUNCTION lease_floor_lower() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1651730945, (TG_RELID::int8 % 2147483647)::int4);
    IF current_setting('transaction_isolation') = 'read committed' THEN
        UPDATE lease_floor SET floor = NEW.lease_expires_at WHERE floor > NEW.lease_expires_at;
    ELSE
        UPDATE lease_floor SET floor = least(floor, NEW.lease_expires_at);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_lease_floor_insert AFTER INSERT ON jobs
    FOR EACH ROW WHEN (NEW.status = 'RUNNING' AND NOT NEW.awaiting_external AND NEW.lease_expires_at IS NOT NULL)
    EXECUTE FUNCTION lease_floor_lower();
CREATE TRIGGER jobs_lease_floor_update AFTER UPDATE ON jobs
    FOR EACH ROW WHEN (NEW.status = 'RUNNING' AND NOT NEW.awaiting_external AND NEW.lease_expires_at IS NOT NULL
        AND (OLD.status <> 'RUNNING' OR OLD.awaiting_external
             OR OLD.lease_expires_at IS DISTINCT FROM NEW.lease_expires_at))
    EXECUTE FUNCTION lease_floor_lower();

-- Raises the floor to the earliest such lease, but not above `hint` (the claims pass the
-- expiry of the leases they just gave out) nor below the floor it had, returning it in
-- epoch seconds; NULL when the lock is busy or outside READ COMMITTED.
CREATE FUNCTION lease_floor_raise(hint timestamptz DEFAULT 'infinity') RETURNS double precision
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    raised timestamptz;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed'
       OR NOT pg_try_advisory_xact_lock(1651730945, ('jobs'::regclass::oid::int8 % 2147483647)::int4) THEN
        RETURN NULL;
    END IF;
    UPDATE lease_floor SET floor = greatest(floor, least(hint, coalesce(
        (SELECT min(lease_expires_at) FROM jobs
          WHERE status = 'RUNNING' AND NOT awaiting_external AND lease_expires_at >= lease_floor.floor),
        'infinity')))
    RETURNING floor INTO raised;
    RETURN extract(epoch FROM raised)::float8;
END $$;

-- Creating the triggers locked jobs against writes, so this sees every lease there is.
INSERT INTO lease_floor (floor)
    SELECT coalesce(min(lease_expires_at), 'infinity') FROM jobs WHERE status = 'RUNNING' AND NOT awaiting_external;
