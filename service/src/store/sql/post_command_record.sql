-- The post-command's last run ($6: whether it succeeded, which then
-- records $2 as the content it succeeded for).
INSERT INTO sync_post_command (id, command, content_sha256, exit_code, outcome, output_tail,
                               succeeded_sha256, started_at, finished_at)
VALUES (TRUE, $1, $2, $3, $4, $5, CASE WHEN $6 THEN $2 END, $7, now())
ON CONFLICT (id) DO UPDATE SET command = EXCLUDED.command, content_sha256 = EXCLUDED.content_sha256,
    exit_code = EXCLUDED.exit_code, outcome = EXCLUDED.outcome, output_tail = EXCLUDED.output_tail,
    succeeded_sha256 = CASE WHEN $6 THEN $2 ELSE sync_post_command.succeeded_sha256 END,
    started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at
