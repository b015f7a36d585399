-- Per-hub credentials (issue 15): a REST token that lets a hub read the
-- catalog and register or update only its own project, and the NATS users
-- issued with it. The token itself is never stored: only its SHA-256 (the
-- token is 256 random bits, so a plain digest is enough) and a short
-- fingerprint to name it.
--
-- There is no foreign key to projects: a credential may be issued before its
-- hub first registers, and deleting the project revokes its credentials (the
-- rows stay, so the NATS revocations they imply can still be derived).
CREATE TABLE hub_credentials (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug         text        NOT NULL,
    token_hash   bytea       NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    fingerprint  text        NOT NULL,
    -- Public NKeys of every NATS user issued with this credential (the
    -- first at issue, one more per refresh), newest last; empty when the
    -- service had no NATS authority (identity.dir) configured.
    nats_users   text[]      NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- Updated at most once a minute per credential and replica.
    last_used_at timestamptz,
    -- The token and the newest NATS user expire together; a refresh moves it.
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    UNIQUE (slug, fingerprint)
);

-- The revocations the federation account JWT must carry: NATS users of
-- revoked credentials that have not expired yet.
CREATE INDEX hub_credentials_revoked ON hub_credentials (expires_at)
    WHERE revoked_at IS NOT NULL;
