-- One sweep: hubs silent since $1 become degraded, those silent since $2
-- offline ($3: whether offline is allowed at all), as of $4, with their
-- transition rows and events ($5, $6: the event's type and subject).
-- A hub in a maintenance window is not judged; after one, its silence
-- counts from the window's end (maintenance_ended_at), not from its last
-- heartbeat before it.
WITH due AS (
    SELECT id, status AS old_status,
           CASE WHEN $3 AND silent_since < $2 THEN 'offline' ELSE 'degraded' END AS new_status
    FROM (SELECT *, GREATEST(last_heartbeat_at, maintenance_ended_at) AS silent_since
          FROM projects
          -- (implied by the outer conditions; lets the liveness index serve)
          WHERE status <> 'offline' AND last_heartbeat_at < $1
            AND (maintenance IS NULL OR (maintenance ->> 'until')::timestamptz <= $4)) AS p
    WHERE status <> 'offline'
      AND silent_since < $1
      AND (status = 'online' OR ($3 AND silent_since < $2))
    ORDER BY id
    FOR UPDATE
),
upd AS (
    UPDATE projects p SET status = d.new_status, status_changed_at = $4, revision = p.revision + 1
    FROM due d
    WHERE p.id = d.id AND d.new_status <> d.old_status
    RETURNING p.*, d.old_status, d.new_status
),
history AS (
    INSERT INTO project_transitions (project_id, from_status, to_status, cause, actor, at)
    SELECT id, old_status, new_status, 'sweeper', 'system:sweeper', $4 FROM upd
),
events AS (
    INSERT INTO outbox (id, event_type, subject, ce_subject, data)
    SELECT gen_random_uuid(), $5, $6, slug,
           project_status_data(slug, old_status, new_status, 'sweeper', $4, last_heartbeat_at)
    FROM upd
)
SELECT
       id AS "id!", slug AS "slug!", name AS "name!", hub_url AS "hub_url!",
       mesh_namespace AS "mesh_namespace!", tags AS "tags!", allow_fanout AS "allow_fanout!",
       status AS "status!: ProjectStatus", status_changed_at AS "status_changed_at!",
       last_heartbeat_at, hub_timestamp, agent_id, agent_version, heartbeat_seq,
       heartbeat_interval_s, created_at AS "created_at!", updated_at AS "updated_at!",
       revision AS "revision!", maintenance AS "maintenance: Json<Maintenance>"
FROM upd ORDER BY slug
