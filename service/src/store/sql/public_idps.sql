-- The IdPs a login page should offer: approved spokes whose HUB_TO_SPOKE
-- link is ACTIVE (the IdP is configured and reachable) and whose hub (the
-- catalog project lower(instance_code)) is known and not offline.
SELECT lower(s.instance_code) || '-idp' AS "alias!", s.instance_code, s.name AS display_name,
       s.idp_public_url AS idp_url, s.base_url, s.id AS spoke_id,
       p.status AS "hub_status: ProjectStatus"
FROM spokes s
JOIN projects p ON p.slug = lower(s.instance_code)
JOIN federation_links l ON l.spoke_id = s.id AND l.direction = 'HUB_TO_SPOKE' AND l.status = 'ACTIVE'
WHERE s.status = 'approved' AND p.status <> 'offline'
ORDER BY s.instance_code
