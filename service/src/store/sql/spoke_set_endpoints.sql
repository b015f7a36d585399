UPDATE spokes SET base_url = $2, idp_public_url = $3, idp_internal_url = $4, cert_fingerprint = $5,
       generation = generation + 1, updated_at = now()
WHERE id = $1
RETURNING id, instance_code, name, base_url, idp_public_url, idp_internal_url, contact, cert_fingerprint,
       status AS "status: SpokeStatus", status_reason, generation, created_at, updated_at, status_changed_at
