-- Federation sync state: one circuit breaker per target and the outcome of
-- recent runs. Both live here, not in memory, so a restart or another
-- replica sees the same breaker and the same history.

-- A circuit breaker per sync target (tfvars, keycloak).
CREATE TABLE sync_breakers (
    target                TEXT        PRIMARY KEY,
    -- closed: calls go through; open: calls are refused until opened_at +
    -- the configured open duration; half_open: one trial run decides.
    state                 TEXT        NOT NULL DEFAULT 'closed',
    consecutive_failures  INTEGER     NOT NULL DEFAULT 0,
    opened_at             TIMESTAMPTZ,
    last_failure_at       TIMESTAMPTZ,
    last_error            TEXT,
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT sync_breakers_target_values CHECK (target IN ('tfvars', 'keycloak')),
    CONSTRAINT sync_breakers_state_values CHECK (state IN ('closed', 'open', 'half_open')),
    CONSTRAINT sync_breakers_open_has_time CHECK (state = 'closed' OR opened_at IS NOT NULL)
);

INSERT INTO sync_breakers (target) VALUES ('tfvars'), ('keycloak');

-- One row per target per reconcile run (pruned to the most recent ones).
CREATE TABLE sync_runs (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    target           TEXT        NOT NULL,
    -- What started the run: event, resync, retry, startup, manual.
    trigger          TEXT        NOT NULL,
    -- success | failure | skipped (breaker open or target not configured).
    result           TEXT        NOT NULL,
    -- Writes made: files written, IdPs created/updated/deleted.
    changes          INTEGER     NOT NULL DEFAULT 0,
    error            TEXT,
    started_at       TIMESTAMPTZ NOT NULL,
    finished_at      TIMESTAMPTZ NOT NULL,
    CONSTRAINT sync_runs_target_values CHECK (target IN ('tfvars', 'keycloak')),
    CONSTRAINT sync_runs_result_values CHECK (result IN ('success', 'failure', 'skipped'))
);

CREATE INDEX sync_runs_recent_idx ON sync_runs (target, id DESC);

-- The tfvars post-command (e.g. terraform apply): its last outcome, and the
-- digest of the file content it last succeeded for, so a command that failed
-- or never ran (crash) is run again at the next run even if the file did not
-- change.
CREATE TABLE sync_post_command (
    id               BOOLEAN     PRIMARY KEY DEFAULT TRUE CHECK (id),
    command          TEXT        NOT NULL,
    content_sha256   TEXT        NOT NULL,
    exit_code        INTEGER,
    -- timed_out, or the signal that ended it, when there is no exit code.
    outcome          TEXT        NOT NULL,
    output_tail      TEXT        NOT NULL,
    succeeded_sha256 TEXT,
    started_at       TIMESTAMPTZ NOT NULL,
    finished_at      TIMESTAMPTZ NOT NULL
);
