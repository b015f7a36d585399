-- Where the sweeper's next deadlines come from, per class of hubs sharing a
-- heartbeat interval (class 0: none said, the global thresholds): the start
-- of silence of the longest-silent online hub (`online`) and of the
-- longest-silent hub not offline (`live`). The classes are found by a loose
-- index scan over projects_liveness_idx (one probe per class, however many
-- hubs), each class's oldest by one more probe. Hubs in a maintenance window
-- are left out; hubs silent since a window ended (few: a heartbeat clears
-- maintenance_ended_at) are read apart, one row each, their silence counted
-- from the window's end.
WITH RECURSIVE classes AS (
    (SELECT COALESCE(heartbeat_interval_s, 0) AS class FROM projects
      WHERE status <> 'offline'
      ORDER BY COALESCE(heartbeat_interval_s, 0) LIMIT 1)
    UNION ALL
    SELECT (SELECT COALESCE(heartbeat_interval_s, 0) FROM projects
             WHERE status <> 'offline' AND COALESCE(heartbeat_interval_s, 0) > c.class
             ORDER BY COALESCE(heartbeat_interval_s, 0) LIMIT 1)
    FROM classes c WHERE c.class IS NOT NULL
)
SELECT c.class AS "class!",
       (SELECT last_heartbeat_at FROM projects
         WHERE status <> 'offline' AND COALESCE(heartbeat_interval_s, 0) = c.class
           AND status = 'online' AND last_heartbeat_at IS NOT NULL
           AND maintenance IS NULL AND maintenance_ended_at IS NULL
         ORDER BY last_heartbeat_at LIMIT 1) AS online,
       (SELECT last_heartbeat_at FROM projects
         WHERE status <> 'offline' AND COALESCE(heartbeat_interval_s, 0) = c.class
           AND last_heartbeat_at IS NOT NULL
           AND maintenance IS NULL AND maintenance_ended_at IS NULL
         ORDER BY last_heartbeat_at LIMIT 1) AS live
FROM classes c WHERE c.class IS NOT NULL
UNION ALL
SELECT COALESCE(heartbeat_interval_s, 0),
       CASE WHEN status = 'online' THEN GREATEST(last_heartbeat_at, maintenance_ended_at) END,
       GREATEST(last_heartbeat_at, maintenance_ended_at)
FROM projects
WHERE maintenance_ended_at IS NOT NULL AND maintenance IS NULL
  AND status <> 'offline' AND last_heartbeat_at IS NOT NULL
