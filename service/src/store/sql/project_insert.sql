-- A concurrent insert of the same slug wins: nothing is returned then.
INSERT INTO projects (slug, name, hub_url, mesh_namespace, tags, allow_fanout)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (slug) DO NOTHING
RETURNING id, slug, name, hub_url, mesh_namespace, tags, allow_fanout, status AS "status: ProjectStatus",
       status_changed_at, last_heartbeat_at, hub_timestamp, agent_id, agent_version,
       heartbeat_seq, heartbeat_interval_s, created_at, updated_at, revision,
       maintenance AS "maintenance: Json<Maintenance>"
