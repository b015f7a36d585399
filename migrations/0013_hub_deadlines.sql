-- Per-hub deadlines and deregistration.
--
-- A hub's deadlines follow the interval it says in its heartbeats
-- (heartbeat_interval_s, stored since 0003): the sweeper reads hubs by class
-- of interval (0: none said, the global thresholds), each class by range of
-- last heartbeat. So the liveness index leads with the class.
DROP INDEX projects_liveness_idx;
CREATE INDEX projects_liveness_idx
    ON projects ((COALESCE(heartbeat_interval_s, 0)), last_heartbeat_at)
    WHERE status <> 'offline';

-- heartbeat.deregister_after: hubs offline the longest, first.
CREATE INDEX projects_offline_since_idx ON projects (status_changed_at) WHERE status = 'offline';
