-- Verified onboarding (issue 12): a lease per spoke with a fencing token.
-- Only the holder of a spoke's lease acts on it; every write the reconciler
-- makes for a spoke (conditions, links) names its token and is refused when
-- the row holds another, so a holder that was paused or cut off past its
-- lease cannot overwrite what a newer holder wrote.
CREATE TABLE spoke_leases (
    spoke_id    TEXT        PRIMARY KEY REFERENCES spokes (id) ON DELETE CASCADE,
    -- The engine instance holding it (one per process and engine).
    holder      TEXT        NOT NULL,
    -- The PostgreSQL backend of the holder's run (the session holding the
    -- reconcile lock): once that session is gone, its holder is dead or
    -- cut off and the lease may be taken over before it expires.
    holder_pid  INT,
    -- One more at each acquisition, never reused.
    token       BIGINT      NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Renewed by each acquisition, cut short on release; a holder that dies
    -- keeps it only until then.
    expires_at  TIMESTAMPTZ NOT NULL,
    CONSTRAINT spoke_leases_token_positive CHECK (token >= 1)
);
