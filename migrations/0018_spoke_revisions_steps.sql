-- Verified onboarding (issue 12): update in place (revisions of a spoke's
-- URLs and certificate that wait for an admin, then roll out without a
-- gap), and the record of every step the onboarding took or undid.

-- A change a spoke asks for. While it is `pending` the approved
-- configuration (the `spokes` row) stays live; once `approved`, the
-- reconciler verifies the new IdP (discovery, issuer, JWKS) and only then
-- rolls it in: the spoke row takes the new values at generation
-- `base_generation + 1` and the managed IdP is updated in place, never
-- deleted. A revision whose IdP cannot be reached stays `approved`
-- (rollout held, the old configuration live) and is tried again each run.
CREATE TABLE spoke_revisions (
    id                BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    spoke_id          TEXT        NOT NULL REFERENCES spokes (id) ON DELETE CASCADE,
    base_url          TEXT        NOT NULL,
    idp_public_url    TEXT        NOT NULL,
    idp_internal_url  TEXT,
    cert_fingerprint  TEXT,
    -- pending → approved → rolled_out; pending → rejected; pending or
    -- approved → superseded (a newer revision) or withdrawn (the spoke was
    -- revoked first).
    state             TEXT        NOT NULL DEFAULT 'pending',
    -- The spoke generation it was proposed against.
    base_generation   BIGINT      NOT NULL,
    proposed_by       TEXT        NOT NULL,
    proposed_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    decided_by        TEXT,
    decision_reason   TEXT,
    decided_at        TIMESTAMPTZ,
    -- Rollout attempts whose verification of the new IdP failed.
    rollout_attempts  INTEGER     NOT NULL DEFAULT 0,
    last_error_code   TEXT,
    last_error        TEXT,
    rolled_out_at     TIMESTAMPTZ,
    CONSTRAINT spoke_revisions_state_values CHECK (state IN ('pending', 'approved', 'rolled_out',
        'rejected', 'superseded', 'withdrawn')),
    CONSTRAINT spoke_revisions_fingerprint_shape CHECK (cert_fingerprint IS NULL OR cert_fingerprint ~ '^[0-9a-f]{64}$'),
    CONSTRAINT spoke_revisions_attempts_positive CHECK (rollout_attempts >= 0)
);
-- At most one open revision per spoke.
CREATE UNIQUE INDEX spoke_revisions_open_key ON spoke_revisions (spoke_id)
    WHERE state IN ('pending', 'approved');
CREATE INDEX spoke_revisions_spoke_idx ON spoke_revisions (spoke_id, id DESC);

-- Every change of a spoke's condition: the steps its onboarding took (a
-- condition becoming True), failed (False) or undid (a withdrawal's
-- reasons), in the order they happened. Written by a trigger, so every
-- writer (registry, reconciler, the spoke's own confirmation) is recorded
-- the same way.
CREATE TABLE spoke_steps (
    id                   BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    spoke_id             TEXT        NOT NULL REFERENCES spokes (id) ON DELETE CASCADE,
    type                 TEXT        NOT NULL,
    status               TEXT        NOT NULL,
    reason               TEXT        NOT NULL,
    message              TEXT        NOT NULL,
    observed_generation  BIGINT      NOT NULL,
    at                   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX spoke_steps_spoke_idx ON spoke_steps (spoke_id, id);

CREATE FUNCTION spoke_conditions_step() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT'
       OR NEW.status IS DISTINCT FROM OLD.status
       OR NEW.reason IS DISTINCT FROM OLD.reason
       OR NEW.observed_generation IS DISTINCT FROM OLD.observed_generation THEN
        INSERT INTO spoke_steps (spoke_id, type, status, reason, message, observed_generation)
        VALUES (NEW.spoke_id, NEW.type, NEW.status, NEW.reason, NEW.message, NEW.observed_generation);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER spoke_conditions_step AFTER INSERT OR UPDATE ON spoke_conditions
    FOR EACH ROW EXECUTE FUNCTION spoke_conditions_step();

-- What is already there is the first step of each spoke's record.
INSERT INTO spoke_steps (spoke_id, type, status, reason, message, observed_generation, at)
SELECT spoke_id, type, status, reason, message, observed_generation, last_transition_time
FROM spoke_conditions ORDER BY last_transition_time, spoke_id, type;
