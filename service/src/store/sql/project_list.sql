-- Projects matching the list route's filters (absent ones match all; $2:
-- every one of these tags, through the GIN index).
SELECT id, slug, name, hub_url, mesh_namespace, tags, allow_fanout, status AS "status: ProjectStatus",
       status_changed_at, last_heartbeat_at, hub_timestamp, agent_id, agent_version,
       heartbeat_seq, heartbeat_interval_s, created_at, updated_at, revision,
       maintenance AS "maintenance: Json<Maintenance>"
FROM projects
WHERE ($1::text IS NULL OR status = $1) AND tags @> $2::text[]
ORDER BY slug
