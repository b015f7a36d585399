-- Deregistration: hubs offline since before $1 and silent since, not in a
-- maintenance window nor out of one since, at most $2 of them (the oldest
-- first), deleted; returns them as they were. Hubs never heard from
-- (registered, never beating) are kept: an operator put them there. Rows a
-- writer holds are skipped (a heartbeat on its way wins; the next sweep
-- looks again).
DELETE FROM projects
WHERE id IN (SELECT id FROM projects
              WHERE status = 'offline' AND status_changed_at < $1
                AND last_heartbeat_at < $1
                AND maintenance IS NULL
                AND (maintenance_ended_at IS NULL OR maintenance_ended_at < $1)
              ORDER BY status_changed_at
              LIMIT $2
              FOR UPDATE SKIP LOCKED)
RETURNING id, slug, name, hub_url, mesh_namespace, tags, allow_fanout, status AS "status: ProjectStatus",
       status_changed_at, last_heartbeat_at, hub_timestamp, agent_id, agent_version,
       heartbeat_seq, heartbeat_interval_s, created_at, updated_at, revision,
       maintenance AS "maintenance: Json<Maintenance>"
