-- Writes a batch of heartbeats in one statement (see store/heartbeats.rs).
-- $1..$9: one array element per hub; $10: register unknown hubs;
-- $11, $12: the status-change event's type and subject; $13, $14: the
-- registration event's.
WITH input AS (
    SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::text[], $4::timestamptz[],
                         $5::text[], $6::bigint[], $7::int[], $8::text[], $9::text[])
        AS i(slug, received_at, reported, hub_ts, agent_id, seq, interval_s, version, hub_url)
),
locked AS (
    SELECT p.id, p.status AS old_status, i.*,
           (p.last_heartbeat_at IS NULL OR i.received_at >= p.last_heartbeat_at) AS fresher
    FROM projects p JOIN input i ON i.slug = p.slug
    ORDER BY p.id
    FOR UPDATE OF p
),
upd AS (
    UPDATE projects p SET
        last_heartbeat_at = GREATEST(p.last_heartbeat_at, l.received_at),
        status = CASE WHEN l.fresher THEN l.reported ELSE p.status END,
        status_changed_at = CASE WHEN l.fresher AND l.reported <> p.status
                                 THEN l.received_at ELSE p.status_changed_at END,
        hub_timestamp = CASE WHEN l.fresher THEN COALESCE(l.hub_ts, p.hub_timestamp) ELSE p.hub_timestamp END,
        agent_id = CASE WHEN l.fresher THEN COALESCE(l.agent_id, p.agent_id) ELSE p.agent_id END,
        agent_version = CASE WHEN l.fresher THEN COALESCE(l.version, p.agent_version) ELSE p.agent_version END,
        heartbeat_seq = CASE WHEN l.fresher THEN COALESCE(l.seq, p.heartbeat_seq) ELSE p.heartbeat_seq END,
        heartbeat_interval_s = CASE WHEN l.fresher THEN COALESCE(l.interval_s, p.heartbeat_interval_s)
                                    ELSE p.heartbeat_interval_s END,
        -- Heard from again: silence no longer counts from a window's end.
        maintenance_ended_at = CASE WHEN l.fresher THEN NULL ELSE p.maintenance_ended_at END,
        revision = p.revision + 1
    FROM locked l
    WHERE p.id = l.id
    RETURNING p.*, l.old_status, l.received_at
),
registered AS (
    INSERT INTO projects (slug, name, hub_url, mesh_namespace, status, status_changed_at,
                          last_heartbeat_at, hub_timestamp, agent_id, agent_version,
                          heartbeat_seq, heartbeat_interval_s)
    SELECT i.slug, i.slug, i.hub_url, 'hub.' || i.slug, i.reported, i.received_at,
           i.received_at, i.hub_ts, i.agent_id, i.version, i.seq, i.interval_s
    FROM input i
    WHERE $10 AND i.hub_url IS NOT NULL AND NOT EXISTS (SELECT 1 FROM locked l WHERE l.slug = i.slug)
    ON CONFLICT (slug) DO NOTHING
    RETURNING *
),
changed AS (
    SELECT * FROM upd WHERE status <> old_status
),
history AS (
    INSERT INTO project_transitions (project_id, from_status, to_status, cause, actor, at)
    SELECT id, old_status, status,
           -- An agent says `offline` only on its way out.
           CASE WHEN status = 'offline' THEN 'agent_shutdown' ELSE 'heartbeat' END,
           'hub:' || slug, received_at
    FROM changed
),
events AS (
    INSERT INTO outbox (id, event_type, subject, ce_subject, data)
    SELECT gen_random_uuid(), $11, $12, slug,
           project_status_data(slug, old_status, status, 'heartbeat', received_at, last_heartbeat_at)
    FROM changed
    UNION ALL
    SELECT gen_random_uuid(), $13, $14, slug, to_jsonb(registered) - 'revision' - 'maintenance_ended_at'
    FROM registered
)
SELECT 'updated' AS "kind!", old_status AS "old_status: ProjectStatus",
       id AS "id!", slug AS "slug!", name AS "name!", hub_url AS "hub_url!",
       mesh_namespace AS "mesh_namespace!", tags AS "tags!", allow_fanout AS "allow_fanout!",
       status AS "status!: ProjectStatus", status_changed_at AS "status_changed_at!",
       last_heartbeat_at, hub_timestamp, agent_id, agent_version, heartbeat_seq,
       heartbeat_interval_s, created_at AS "created_at!", updated_at AS "updated_at!",
       revision AS "revision!", maintenance AS "maintenance: Json<Maintenance>"
FROM upd
UNION ALL
SELECT 'registered', NULL,
       id, slug, name, hub_url, mesh_namespace, tags, allow_fanout, status, status_changed_at,
       last_heartbeat_at, hub_timestamp, agent_id, agent_version, heartbeat_seq,
       heartbeat_interval_s, created_at, updated_at, revision, maintenance
FROM registered
