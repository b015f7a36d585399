-- Catalog changes pushed to every replica's in-memory view.
--
-- `revision` grows by one with every update of a row (row locks serialise
-- updates of one row, so it orders them); with the identity `id` (a
-- re-created project has a larger one) it tells a view which of two copies of
-- a project is newer, whatever order they arrive in.
ALTER TABLE projects ADD COLUMN revision BIGINT NOT NULL DEFAULT 1;

-- After each statement that changes projects, the slugs it touched go out on
-- channel `catalog_changes`, in commit order, as
-- "<application_name>\n<slug>,<slug>,..." (at most 100 slugs a notification,
-- well under the 8000-byte payload limit). A replica re-reads those rows; it
-- skips the notifications of its own writers, which applied their rows to its
-- view directly. A trigger, so that no writer (the API, the heartbeat
-- flusher, the sweeper, an operator's psql) can forget it.
CREATE FUNCTION notify_catalog_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('catalog_changes',
                      current_setting('application_name') || E'\n' || string_agg(slug, ','))
    FROM (SELECT slug, (row_number() OVER ()) / 100 AS chunk FROM changed_rows) AS c
    GROUP BY chunk;
    RETURN NULL;
END
$$;

CREATE TRIGGER projects_inserted AFTER INSERT ON projects
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION notify_catalog_changes();
CREATE TRIGGER projects_updated AFTER UPDATE ON projects
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION notify_catalog_changes();
CREATE TRIGGER projects_deleted AFTER DELETE ON projects
    REFERENCING OLD TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION notify_catalog_changes();
