-- One sweep as of $4: for each class of hubs sharing a heartbeat interval
-- ($1, 0: none said), hubs silent since before the class's $2 become
-- degraded, those silent since before its $3 offline ($3 NULL: offline not
-- allowed for that class yet), with their transition rows and events ($5,
-- $6: the event's type and subject). A few classes, each read from the
-- liveness index by range (class, last_heartbeat_at < cutoff): only hubs
-- past a deadline are visited.
-- A hub in a maintenance window is not judged; after one, its silence
-- counts from the window's end (maintenance_ended_at), not from its last
-- heartbeat before it.
WITH due AS (
    SELECT p.id, p.status AS old_status,
           CASE WHEN j.offline_cutoff IS NOT NULL
                     AND GREATEST(p.last_heartbeat_at, p.maintenance_ended_at) < j.offline_cutoff
                THEN 'offline' ELSE 'degraded' END AS new_status
    FROM UNNEST($1::int[], $2::timestamptz[], $3::timestamptz[])
             AS j(class, degraded_cutoff, offline_cutoff)
    JOIN projects p
      ON p.status <> 'offline'
     AND COALESCE(p.heartbeat_interval_s, 0) = j.class
     AND p.last_heartbeat_at < j.degraded_cutoff
    WHERE (p.maintenance IS NULL OR (p.maintenance ->> 'until')::timestamptz <= $4)
      AND GREATEST(p.last_heartbeat_at, p.maintenance_ended_at) < j.degraded_cutoff
      AND (p.status = 'online'
           OR (j.offline_cutoff IS NOT NULL
               AND GREATEST(p.last_heartbeat_at, p.maintenance_ended_at) < j.offline_cutoff))
    ORDER BY p.id
    FOR UPDATE OF p
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
