-- Absent name, tags and fan-out keep their stored values.
UPDATE projects SET name = COALESCE($2, name), hub_url = $3, mesh_namespace = $4,
       tags = COALESCE($5, tags), allow_fanout = COALESCE($6, allow_fanout),
       updated_at = now(), revision = revision + 1
WHERE slug = $1
RETURNING id, slug, name, hub_url, mesh_namespace, tags, allow_fanout, status AS "status: ProjectStatus",
       status_changed_at, last_heartbeat_at, hub_timestamp, agent_id, agent_version,
       heartbeat_seq, heartbeat_interval_s, created_at, updated_at, revision,
       maintenance AS "maintenance: Json<Maintenance>"
