-- Starts (or replaces) a project's maintenance window ($2, or NULL to end
-- it, then $3 is when it ended). The caller holds the row's lock.
UPDATE projects SET maintenance = $2,
       maintenance_ended_at = COALESCE($3, maintenance_ended_at),
       revision = revision + 1
WHERE slug = $1
RETURNING id, slug, name, hub_url, mesh_namespace, tags, allow_fanout, status AS "status: ProjectStatus",
       status_changed_at, last_heartbeat_at, hub_timestamp, agent_id, agent_version,
       heartbeat_seq, heartbeat_interval_s, created_at, updated_at, revision,
       maintenance AS "maintenance: Json<Maintenance>"
