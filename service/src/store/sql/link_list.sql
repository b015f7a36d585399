-- Links matching the list route's filters (absent ones match all).
SELECT id, spoke_id, direction AS "direction: LinkDirection", source_code, target_code,
       status AS "status: LinkStatus", retry_count, last_error_code, last_error, last_verified_at,
       created_at, updated_at
FROM federation_links
WHERE ($1::text IS NULL OR spoke_id = $1) AND ($2::text IS NULL OR status = $2)
ORDER BY spoke_id, direction
