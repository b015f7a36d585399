-- Per-hub history served (GET /api/fed/projects/{slug}/history) and planned
-- downtime (PUT/DELETE /api/fed/projects/{slug}/maintenance).

-- Causes: heartbeat (the hub said so, or came back), agent_shutdown (the
-- hub's agent said `offline` on its way out), sweeper (silence), api (an
-- operator's request), maintenance (a window started or ended; from and to
-- are then the status at that moment).
ALTER TABLE project_transitions DROP CONSTRAINT project_transitions_cause_check;
ALTER TABLE project_transitions ADD CONSTRAINT project_transitions_cause_check
    CHECK (cause IN ('heartbeat', 'agent_shutdown', 'sweeper', 'api', 'maintenance'));
-- Who, where known: an API key's fingerprint (sha256:xxxxxxxx), hub:<slug>,
-- or system:<what>; and a note (a maintenance window's reason).
ALTER TABLE project_transitions
    ADD COLUMN actor  TEXT CHECK (actor IS NULL OR (actor <> '' AND length(actor) <= 200)),
    ADD COLUMN detail TEXT;
-- Keyset pages of one project's history, newest first (`before=<id>`).
CREATE INDEX project_transitions_page_idx ON project_transitions (project_id, id DESC);
-- Pruning by age (catalog.history_retention).
CREATE INDEX project_transitions_at_idx ON project_transitions (at);

-- The window a hub is in, or NULL: {"since", "until", "reason", "by"}.
-- While `until` is ahead, the sweeper does not judge the hub's silence; the
-- sweeper ends a window that ran out (maintenance = NULL).
ALTER TABLE projects
    ADD COLUMN maintenance JSONB
        CHECK (maintenance IS NULL OR (jsonb_typeof(maintenance) = 'object'
                                       AND maintenance ? 'until' AND maintenance ? 'reason')),
    -- When the latest window ended (ran out or was stopped), until the next
    -- heartbeat clears it: silence is judged from then, not from the last
    -- heartbeat before the window.
    ADD COLUMN maintenance_ended_at TIMESTAMPTZ;
-- Both sets are small: the sweeper's deadlines read them whole.
CREATE INDEX projects_in_maintenance_idx ON projects (id) WHERE maintenance IS NOT NULL;
CREATE INDEX projects_maintenance_ended_idx ON projects (id) WHERE maintenance_ended_at IS NOT NULL;
