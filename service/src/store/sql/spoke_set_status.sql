UPDATE spokes SET status = $2, status_reason = $3, status_changed_at = now(), updated_at = now()
WHERE id = $1
RETURNING id, instance_code, name, base_url, idp_public_url, idp_internal_url, contact, cert_fingerprint,
       status AS "status: SpokeStatus", status_reason, generation, created_at, updated_at, status_changed_at
