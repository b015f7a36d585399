-- A concurrent registration of the same code (or an id collision) makes
-- this insert nothing.
INSERT INTO spokes (id, instance_code, name, base_url, idp_public_url, idp_internal_url,
                    contact, cert_fingerprint)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT DO NOTHING
RETURNING id, instance_code, name, base_url, idp_public_url, idp_internal_url, contact, cert_fingerprint,
       status AS "status: SpokeStatus", status_reason, generation, created_at, updated_at, status_changed_at
