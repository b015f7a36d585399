-- What the latest heartbeat said, kept for diagnosis. Liveness uses
-- last_heartbeat_at (the service's receive time) only.
ALTER TABLE projects
    ADD COLUMN hub_timestamp   TIMESTAMPTZ,   -- the hub's own clock, never trusted
    ADD COLUMN agent_id        TEXT,
    ADD COLUMN agent_version   TEXT,
    ADD COLUMN heartbeat_seq   BIGINT,
    ADD COLUMN heartbeat_interval_s INTEGER;

-- Every status change, with its time and cause, in the transaction that
-- made it (the outbox carries the same change as an event).
CREATE TABLE project_transitions (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id  BIGINT      NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    from_status TEXT        NOT NULL,
    to_status   TEXT        NOT NULL,
    -- heartbeat: the hub said so, or came back; sweeper: silence.
    cause       TEXT        NOT NULL CHECK (cause IN ('heartbeat', 'sweeper')),
    at          TIMESTAMPTZ NOT NULL
);

CREATE INDEX project_transitions_project_idx ON project_transitions (project_id, at DESC);
