-- Identity federation: the spoke registry, its transition log, the operational
-- links, and the outbox changes that give events one commit-consistent order.

-- Partner spokes. The registry the tfvars/Keycloak sync renders from.
CREATE TABLE spokes (
    -- spoke-<lower(instance_code)>-<8 hex>, e.g. spoke-fra-ee18ad42.
    id                 TEXT        PRIMARY KEY,
    -- ISO 3166-1 alpha-3, upper case (the list of assigned codes is checked by the service).
    instance_code      TEXT        NOT NULL,
    name               TEXT        NOT NULL,
    base_url           TEXT        NOT NULL,
    idp_public_url     TEXT        NOT NULL,
    idp_internal_url   TEXT,
    contact            TEXT,
    -- SHA-256 of the spoke's certificate, 64 lower-case hex digits.
    cert_fingerprint   TEXT,
    status             TEXT        NOT NULL DEFAULT 'pending',
    -- The reason given for the latest transition.
    status_reason      TEXT,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    status_changed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT spokes_id_rule CHECK (id ~ '^spoke-[a-z]{3}-[0-9a-f]{8}$' AND substr(id, 7, 3) = lower(instance_code)),
    CONSTRAINT spokes_code_shape CHECK (instance_code ~ '^[A-Z]{3}$'),
    CONSTRAINT spokes_fingerprint_shape CHECK (cert_fingerprint IS NULL OR cert_fingerprint ~ '^[0-9a-f]{64}$'),
    CONSTRAINT spokes_status_values CHECK (status IN ('pending', 'approved', 'suspended', 'revoked'))
);

-- At most one live (non-revoked) spoke per instance code; a revoked one may
-- register again as a fresh record.
CREATE UNIQUE INDEX spokes_live_code_key ON spokes (instance_code) WHERE status <> 'revoked';
CREATE INDEX spokes_status_idx ON spokes (status);

-- Every state change of a spoke, registration included (from_status NULL).
CREATE TABLE spoke_transitions (
    id               BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    spoke_id         TEXT        NOT NULL REFERENCES spokes (id) ON DELETE CASCADE,
    from_status      TEXT,
    to_status        TEXT        NOT NULL,
    reason           TEXT        NOT NULL,
    -- The operator name supplied with the request, else the key fingerprint.
    actor            TEXT        NOT NULL,
    -- The fingerprint of the API key that made the change (sha256:xxxxxxxx).
    key_fingerprint  TEXT        NOT NULL,
    at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT spoke_transitions_to_values CHECK (to_status IN ('pending', 'approved', 'suspended', 'revoked')),
    CONSTRAINT spoke_transitions_from_values CHECK (from_status IS NULL OR from_status IN ('pending', 'approved', 'suspended', 'revoked'))
);
CREATE INDEX spoke_transitions_spoke_idx ON spoke_transitions (spoke_id, id);

-- Operational state of the two directed links of each approved spoke.
CREATE TABLE federation_links (
    id                BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    spoke_id          TEXT        NOT NULL REFERENCES spokes (id) ON DELETE CASCADE,
    direction         TEXT        NOT NULL,
    -- Upper-case instance codes: HUB_TO_SPOKE is hub → spoke, SPOKE_TO_HUB spoke → hub.
    source_code       TEXT        NOT NULL,
    target_code       TEXT        NOT NULL,
    status            TEXT        NOT NULL DEFAULT 'CREATING',
    retry_count       INTEGER     NOT NULL DEFAULT 0,
    last_error_code   TEXT,
    last_error        TEXT,
    last_verified_at  TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT federation_links_spoke_direction_key UNIQUE (spoke_id, direction),
    CONSTRAINT federation_links_direction_values CHECK (direction IN ('HUB_TO_SPOKE', 'SPOKE_TO_HUB')),
    CONSTRAINT federation_links_status_values CHECK (status IN ('CREATING', 'ACTIVE', 'FAILED', 'DISABLED')),
    CONSTRAINT federation_links_retry_count_positive CHECK (retry_count >= 0)
);
CREATE INDEX federation_links_status_idx ON federation_links (status);

-- Outbox order. Identity values are assigned at insert, not at commit, so
-- `seq` alone is not a safe cursor: seq 11 can commit before seq 10. Each row
-- records the id of the transaction that wrote it; readers deliver in
-- (xid, seq) order and only rows whose transaction is older than every
-- transaction of this database still running (xid < outbox_horizon()). A
-- row that is not yet readable can only ever appear after every row already
-- read, so a (xid, seq) cursor never skips an event that commits late.
-- See docs/decisions.md, "Event order".
ALTER TABLE outbox ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();

-- The readable horizon, as of the calling statement's snapshot: every
-- transaction with a smaller id has finished. Like pg_snapshot_xmin, but
-- transactions that provably belong to another database of the cluster
-- (CREATE DATABASE, other applications) do not hold it back, since they can
-- never write to this outbox. An in-progress id that cannot be attributed
-- (its session ended since, a prepared transaction, a subtransaction, or
-- statistics hidden from this role) counts as ours: that only delays.
CREATE FUNCTION outbox_horizon() RETURNS xid8 LANGUAGE sql STABLE AS $$
    SELECT least(
        pg_snapshot_xmax(pg_current_snapshot()),
        (SELECT min(x) FROM pg_snapshot_xip(pg_current_snapshot()) AS x
          WHERE NOT EXISTS (
              SELECT 1 FROM pg_stat_activity a
               WHERE a.backend_xid = x::xid
                 AND a.datname IS DISTINCT FROM current_database())))
$$;

DROP INDEX outbox_unpublished_idx;
CREATE INDEX outbox_unpublished_idx ON outbox (xid, seq) WHERE published_at IS NULL;
-- Watch-stream resume and tail (cursor scans), and pruning by age.
CREATE INDEX outbox_order_idx ON outbox (xid, seq);
CREATE INDEX outbox_published_at_idx ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Wake the relay and the watch feeds when events commit (NOTIFY is delivered
-- at commit, once per transaction and channel). They also poll, so a lost
-- notification only delays.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
