-- The claim floor: a lower bound on the queue_score of every READY job, so the claim's
-- ready scan starts at it (`queue_score >= floor`) instead of at the front of jobs_ready,
-- where every claimed job leaves a dead index entry until VACUUM (the claims take the
-- best-scored jobs, so the dead entries pile up exactly where each scan starts).
--
-- The invariant "no committed READY job scores below floor" is kept by two sides that
-- exclude each other with a transaction-scoped advisory lock on (1651730944, jobs' oid):
-- - a write making a job READY (insert, or an update changing its status or score)
--   takes the lock SHARED in a trigger and lowers floor to the job's score if it is below;
--   the lock is held until the writer commits;
-- - claim_floor_raise() takes it EXCLUSIVE (try-lock, never waits), and only then, in a
--   fresh snapshot, sets floor to the lowest score among READY jobs. Any writer either
--   committed before the lock was granted (its job is in that snapshot) or takes its
--   shared lock after the raise committed (and sees the raised floor).

CREATE TABLE claim_floor (
    one   boolean PRIMARY KEY DEFAULT true CHECK (one),
    floor double precision NOT NULL
);

-- A write made a job READY with score NEW.queue_score: lower the floor if needed.
CREATE FUNCTION claim_floor_lower() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1651730944, (TG_RELID::int8 % 2147483647)::int4);
    IF current_setting('transaction_isolation') = 'read committed' THEN
        -- A fresh snapshot: sees any raise that committed before the lock was granted.
        UPDATE claim_floor SET floor = NEW.queue_score WHERE floor > NEW.queue_score;
    ELSE
        -- The transaction's snapshot may predate a raise: write the row unconditionally,
        -- so a raise committed since fails this transaction (serialization error)
        -- instead of being missed.
        UPDATE claim_floor SET floor = least(floor, NEW.queue_score);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_claim_floor_insert AFTER INSERT ON jobs
    FOR EACH ROW WHEN (NEW.status = 'READY') EXECUTE FUNCTION claim_floor_lower();
CREATE TRIGGER jobs_claim_floor_update AFTER UPDATE ON jobs
    FOR EACH ROW WHEN (NEW.status = 'READY'
        AND (OLD.status <> 'READY' OR OLD.queue_score <> NEW.queue_score))
    EXECUTE FUNCTION claim_floor_lower();

-- Raises the floor to the lowest score among READY jobs, but not above `hint` (any value
-- at or below that lowest score keeps the invariant; the claims pass the best score they
-- just claimed, so a queue they emptied gets that, not +Infinity, and jobs readied next
-- rarely have to lower it, which would make concurrent writers queue on this row), nor
-- below the floor it had; returns it. NULL when a writer or another raise holds the
-- lock, or outside READ COMMITTED (the statements below need a snapshot taken after the
-- lock is granted).
CREATE FUNCTION claim_floor_raise(hint double precision DEFAULT 'Infinity') RETURNS double precision
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    raised double precision;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed'
       OR NOT pg_try_advisory_xact_lock(1651730944, ('jobs'::regclass::oid::int8 % 2147483647)::int4) THEN
        RETURN NULL;
    END IF;
    UPDATE claim_floor SET floor = greatest(floor, least(hint, coalesce(
        (SELECT min(queue_score) FROM jobs WHERE status = 'READY' AND queue_score >= claim_floor.floor),
        'Infinity')))
    RETURNING floor INTO raised;
    RETURN raised;
END $$;

-- Creating the triggers locked jobs against writes (SHARE ROW EXCLUSIVE), so this sees
-- every READY job there is.
INSERT INTO claim_floor (floor)
    SELECT coalesce(min(queue_score), 'Infinity') FROM jobs WHERE status = 'READY';
