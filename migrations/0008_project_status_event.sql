-- The data of a `project.status` event, built here once for both writers of
-- status changes: the heartbeat statement and the stale sweeper, which
-- record the change and its event in one statement. Its shape is
-- `protocol::events::ProjectStatusData`; a test reads events of both writers
-- back into that type.
CREATE FUNCTION project_status_data(slug text, from_status text, to_status text, cause text,
                                    at timestamptz, last_heartbeat_at timestamptz)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object('slug', slug, 'from', from_status, 'to', to_status, 'cause', cause,
                              'at', at, 'last_heartbeat_at', last_heartbeat_at)
$$;
