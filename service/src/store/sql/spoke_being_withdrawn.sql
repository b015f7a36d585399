-- Revoked spokes whose onboarding is still being undone: a step still
-- done, or an identity provider not yet known to be gone.
SELECT id, instance_code, name, base_url, idp_public_url, idp_internal_url, contact, cert_fingerprint,
       status AS "status: SpokeStatus", status_reason, generation, created_at, updated_at, status_changed_at
FROM spokes s
WHERE s.status = 'revoked'
  AND EXISTS (SELECT 1 FROM spoke_conditions c
              WHERE c.spoke_id = s.id
                AND ((c.status = 'True' AND c.type IN ('TfvarsRendered', 'TerraformApplied', 'IdpConfigured'))
                     OR (c.type = 'IdpConfigured'
                         AND c.reason NOT IN ('IDP_REMOVED', 'KEYCLOAK_NOT_CONFIGURED', 'NOT_OBSERVED'))))
ORDER BY instance_code, id
