-- The audit log: one row per mutation, written in the transaction that makes
-- it (store::audit::record), so a row exists if and only if its change
-- committed. Refusals of a state change (409) are recorded too, with
-- outcome 'refused' and the reason. Keys never appear here: an API key is
-- named by its fingerprint (sha256:xxxxxxxx).
CREATE TABLE audit_log (
    -- Newest first by id; GET /api/fed/audit pages with `before=<id>`.
    id       BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    -- sha256:xxxxxxxx (an API key's fingerprint), hub:<slug>, enrollment,
    -- or system:<what> (the service itself, e.g. system:projects_file).
    actor    TEXT        NOT NULL,
    -- <resource>.<verb>, e.g. project.update, spoke.approve.
    action   TEXT        NOT NULL,
    -- <kind>:<id>, e.g. project:alpha, spoke:spoke-fra-ee18ad42.
    target   TEXT        NOT NULL,
    outcome  TEXT        NOT NULL,
    -- Why it was refused, or the reason given with a transition.
    detail   TEXT,
    CONSTRAINT audit_log_outcome_values CHECK (outcome IN ('success', 'refused')),
    CONSTRAINT audit_log_actor_shape CHECK (actor <> '' AND length(actor) <= 200),
    CONSTRAINT audit_log_target_shape CHECK (target <> '' AND length(target) <= 200)
);
CREATE INDEX audit_log_target_idx ON audit_log (target, id);
CREATE INDEX audit_log_actor_idx ON audit_log (actor, id);
-- Pruning by age (audit.retention).
CREATE INDEX audit_log_at_idx ON audit_log (at);
