SELECT id, instance_code, name, base_url, idp_public_url, idp_internal_url, contact, cert_fingerprint,
       status AS "status: SpokeStatus", status_reason, generation, created_at, updated_at, status_changed_at
FROM spokes WHERE id = $1 FOR UPDATE
