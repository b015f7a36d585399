-- The project catalog: one row per hub.
CREATE TABLE projects (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug               TEXT        NOT NULL,
    name               TEXT        NOT NULL,
    hub_url            TEXT        NOT NULL,
    mesh_namespace     TEXT        NOT NULL,
    tags               TEXT[]      NOT NULL DEFAULT '{}',
    allow_fanout       TEXT[]      NOT NULL DEFAULT '{}',
    -- online | degraded | offline; a project never heard from is offline.
    status             TEXT        NOT NULL DEFAULT 'offline',
    status_changed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The service's receive time of the latest heartbeat (never the hub's clock).
    last_heartbeat_at  TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT projects_slug_key UNIQUE (slug),
    CONSTRAINT projects_slug_rule CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    CONSTRAINT projects_namespace_rule CHECK (mesh_namespace = 'hub.' || slug),
    CONSTRAINT projects_status_values CHECK (status IN ('online', 'degraded', 'offline'))
);

-- The stale sweeper's index: hubs not yet offline, oldest heartbeat first.
-- It finds both the hubs past a deadline and the next deadline to wake at.
CREATE INDEX projects_liveness_idx ON projects (last_heartbeat_at) WHERE status <> 'offline';

-- The list route's tag filter (tags @> ARRAY[tag]).
CREATE INDEX projects_tags_idx ON projects USING GIN (tags);
