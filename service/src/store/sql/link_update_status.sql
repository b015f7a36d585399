-- The sync worker's view of one link ($3 the new status, $4 and $5 the
-- error of a failure). A DISABLED link is left alone. The reconciler passes
-- its fencing token $6: nothing is written unless the spoke's lease still
-- holds it (share-locked, so an acquisition racing this statement waits or
-- wins). NULL: a write outside the reconciler (the spoke's own confirmation).
UPDATE federation_links SET status = $3, updated_at = now(),
       retry_count = CASE $3 WHEN 'FAILED' THEN retry_count + 1 WHEN 'ACTIVE' THEN 0 ELSE retry_count END,
       last_error_code = CASE $3 WHEN 'FAILED' THEN $4 WHEN 'ACTIVE' THEN NULL ELSE last_error_code END,
       last_error = CASE $3 WHEN 'FAILED' THEN $5 WHEN 'ACTIVE' THEN NULL ELSE last_error END,
       last_verified_at = CASE $3 WHEN 'ACTIVE' THEN now() ELSE last_verified_at END
WHERE spoke_id = $1 AND direction = $2 AND status <> 'DISABLED'
  AND ($6::bigint IS NULL
       OR EXISTS (SELECT 1 FROM spoke_leases l WHERE l.spoke_id = $1 AND l.token = $6 FOR SHARE))
RETURNING id, spoke_id, direction AS "direction: LinkDirection", source_code, target_code,
       status AS "status: LinkStatus", retry_count, last_error_code, last_error, last_verified_at,
       created_at, updated_at
