-- Verified onboarding (issue 12, item 1): per-spoke status conditions in
-- the Kubernetes style, and the spoke generation they are observed against.

-- The spec's generation: 1 at registration, one more on each change of what
-- the spoke asks for (URLs, certificate). Lifecycle moves do not change it.
ALTER TABLE spokes ADD COLUMN generation BIGINT NOT NULL DEFAULT 1;
ALTER TABLE spokes ADD CONSTRAINT spokes_generation_positive CHECK (generation >= 1);

-- One row per spoke and condition type. `last_transition_time` moves only
-- when `status` changes; `observed_generation` is the spoke generation the
-- writer looked at. Links are derived from these rows (see
-- docs/federation-sync.md, "Conditions and links").
CREATE TABLE spoke_conditions (
    spoke_id              TEXT        NOT NULL REFERENCES spokes (id) ON DELETE CASCADE,
    type                  TEXT        NOT NULL,
    status                TEXT        NOT NULL,
    -- One word, SCREAMING_SNAKE_CASE (e.g. KEYCLOAK_UNREACHABLE).
    reason                TEXT        NOT NULL,
    message               TEXT        NOT NULL DEFAULT '',
    last_transition_time  TIMESTAMPTZ NOT NULL DEFAULT now(),
    observed_generation   BIGINT      NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (spoke_id, type),
    CONSTRAINT spoke_conditions_type_values CHECK (type IN ('Approved', 'TfvarsRendered',
        'TerraformApplied', 'IdpConfigured', 'IdpReachable', 'SpokeTrustsHub')),
    CONSTRAINT spoke_conditions_status_values CHECK (status IN ('True', 'False', 'Unknown'))
);

-- Spokes registered before conditions existed: every condition Unknown but
-- Approved, which the status says.
INSERT INTO spoke_conditions (spoke_id, type, status, reason, message, observed_generation)
SELECT s.id, t.type,
       CASE WHEN t.type <> 'Approved' THEN 'Unknown'
            WHEN s.status = 'approved' THEN 'True' ELSE 'False' END,
       CASE WHEN t.type <> 'Approved' THEN 'NOT_OBSERVED' ELSE upper(s.status) END,
       '', s.generation
FROM spokes s
CROSS JOIN (VALUES ('Approved'), ('TfvarsRendered'), ('TerraformApplied'), ('IdpConfigured'),
                   ('IdpReachable'), ('SpokeTrustsHub')) AS t (type);
