-- Ends every maintenance window whose `until` is not after $1, as of its
-- `until`: the transition, the event ($2, $3: its type and subject) and the
-- audit row, in one statement. Silence is judged from `until` on.
WITH due AS (
    SELECT id, maintenance AS win
    FROM projects
    WHERE maintenance IS NOT NULL AND (maintenance ->> 'until')::timestamptz <= $1
    ORDER BY id
    FOR UPDATE
),
ended AS (
    UPDATE projects p SET maintenance = NULL,
           maintenance_ended_at = (d.win ->> 'until')::timestamptz,
           revision = p.revision + 1
    FROM due d
    WHERE p.id = d.id
    RETURNING p.*, d.win, (d.win ->> 'until')::timestamptz AS ended_at
),
history AS (
    INSERT INTO project_transitions (project_id, from_status, to_status, cause, actor, detail, at)
    SELECT id, status, status, 'maintenance', 'system:maintenance', 'ended: the window ran out', ended_at
    FROM ended
),
events AS (
    INSERT INTO outbox (id, event_type, subject, ce_subject, data)
    SELECT gen_random_uuid(), $2, $3, slug,
           jsonb_build_object('slug', slug, 'change', 'ended', 'at', win -> 'until',
                              'since', win -> 'since', 'until', win -> 'until',
                              'reason', win -> 'reason', 'by', win -> 'by',
                              'ended_by', 'system:maintenance', 'status', status)
    FROM ended
),
audited AS (
    INSERT INTO audit_log (actor, action, target, outcome, detail)
    SELECT 'system:maintenance', 'project.maintenance.end', 'project:' || slug, 'success',
           'the window ran out'
    FROM ended
)
SELECT
       id AS "id!", slug AS "slug!", name AS "name!", hub_url AS "hub_url!",
       mesh_namespace AS "mesh_namespace!", tags AS "tags!", allow_fanout AS "allow_fanout!",
       status AS "status!: ProjectStatus", status_changed_at AS "status_changed_at!",
       last_heartbeat_at, hub_timestamp, agent_id, agent_version, heartbeat_seq,
       heartbeat_interval_s, created_at AS "created_at!", updated_at AS "updated_at!",
       revision AS "revision!", maintenance AS "maintenance: Json<Maintenance>"
FROM ended ORDER BY slug
