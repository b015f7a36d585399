-- Tenant routing (issue 11, seed 001): which federation node (a database,
-- served by a hub) each tenant's requests go to, by tenant and region.
--
-- The seed's three tables, with its columns and constraints, except:
-- - tenant ids are text (UUIDs fit; there is no tenants table here);
-- - `database_url` is never stored in plain text: `database_url_sealed` is
--   nonce || XChaCha20-Poly1305 ciphertext under `routing.url_key`, with the
--   node id as associated data; `database_host` and `database_fingerprint`
--   are what the API answers instead. A node without a URL (the `default`
--   node) is served by the gateway's own default database;
-- - `hub` names the project (hub) whose liveness is the node's: online or
--   degraded → usable, offline, in maintenance or not in the catalog →
--   skipped. No foreign key: the sweeper may deregister a hub, and a node
--   whose hub is gone is simply skipped. NULL: no hub, always usable;
-- - `status` is the administrative state (`active` or `disabled`); the
--   effective one combines it with the hub's liveness.
CREATE TABLE federation_nodes (
    id                   UUID         PRIMARY KEY DEFAULT gen_random_uuid(),
    node_id              VARCHAR(255) NOT NULL UNIQUE,
    region               VARCHAR(100) NOT NULL,
    hub                  TEXT,
    database_url_sealed  BYTEA,
    database_host        TEXT,
    database_fingerprint TEXT,
    status               VARCHAR(50)  NOT NULL DEFAULT 'active',
    priority             INTEGER      NOT NULL DEFAULT 0,
    metadata             JSONB        NOT NULL DEFAULT '{}',
    created_at           TIMESTAMPTZ  NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ  NOT NULL DEFAULT now(),
    CONSTRAINT federation_nodes_id_rule CHECK (node_id ~ '^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$'),
    CONSTRAINT federation_nodes_region_rule CHECK (region ~ '^[a-z0-9]([a-z0-9-]{0,98}[a-z0-9])?$'),
    CONSTRAINT federation_nodes_hub_rule CHECK (hub ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    CONSTRAINT federation_nodes_status_rule CHECK (status IN ('active', 'disabled')),
    CONSTRAINT federation_nodes_url_parts CHECK (
        (database_url_sealed IS NULL) = (database_host IS NULL)
        AND (database_url_sealed IS NULL) = (database_fingerprint IS NULL))
);

-- The node every unrouted tenant goes to: the gateway's own default database.
INSERT INTO federation_nodes (node_id, region, metadata)
VALUES ('default', 'default', '{"description": "the gateway''s own default database"}');

CREATE TABLE federation_routing (
    id         UUID         PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id  VARCHAR(128) NOT NULL,
    region     VARCHAR(100) NOT NULL,
    node_id    VARCHAR(255) NOT NULL REFERENCES federation_nodes (node_id),
    is_primary BOOLEAN      NOT NULL DEFAULT false,
    weight     INTEGER      NOT NULL DEFAULT 100,
    created_at TIMESTAMPTZ  NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ  NOT NULL DEFAULT now(),
    CONSTRAINT federation_routing_key UNIQUE (tenant_id, region, node_id),
    CONSTRAINT federation_routing_tenant_rule CHECK (tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'),
    CONSTRAINT federation_routing_region_rule CHECK (region ~ '^[a-z0-9]([a-z0-9-]{0,98}[a-z0-9])?$'),
    CONSTRAINT federation_routing_weight_rule CHECK (weight >= 0)
);
CREATE INDEX federation_routing_node_idx ON federation_routing (node_id);

CREATE TABLE tenant_federation_map (
    id                  UUID         PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           VARCHAR(128) NOT NULL UNIQUE,
    primary_node_id     VARCHAR(255) NOT NULL REFERENCES federation_nodes (node_id),
    primary_region      VARCHAR(100) NOT NULL,
    federation_metadata JSONB        NOT NULL DEFAULT '{}',
    created_at          TIMESTAMPTZ  NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ  NOT NULL DEFAULT now(),
    CONSTRAINT tenant_federation_map_tenant_rule CHECK (tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'),
    CONSTRAINT tenant_federation_map_region_rule CHECK (primary_region ~ '^[a-z0-9]([a-z0-9-]{0,98}[a-z0-9])?$')
);
CREATE INDEX tenant_federation_map_node_idx ON tenant_federation_map (primary_node_id);

-- Every statement that changes the routing tables bumps `routing_version`
-- and says so on channel `routing_changes` (payload: the new version), in
-- commit order: each replica reloads its routing tables (a few rows) and
-- republishes the gateways' snapshot. A trigger, so that no writer (the API,
-- an operator's psql) can forget it.
CREATE SEQUENCE routing_version;

CREATE FUNCTION notify_routing_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('routing_changes', nextval('routing_version')::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER federation_nodes_changed AFTER INSERT OR UPDATE OR DELETE ON federation_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION notify_routing_changes();
CREATE TRIGGER federation_routing_changed AFTER INSERT OR UPDATE OR DELETE ON federation_routing
    FOR EACH STATEMENT EXECUTE FUNCTION notify_routing_changes();
CREATE TRIGGER tenant_federation_map_changed AFTER INSERT OR UPDATE OR DELETE ON tenant_federation_map
    FOR EACH STATEMENT EXECUTE FUNCTION notify_routing_changes();
