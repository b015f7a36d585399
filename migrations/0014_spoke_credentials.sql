-- Spoke credentials (issue 15, item 5): a spoke's own REST token, issued,
-- stored (only its SHA-256 and a fingerprint), refreshed, revoked and
-- audited by the same code as a hub's, in the same table, told apart by
-- `kind`. For kind 'spoke', `slug` holds the spoke's id. A spoke has no
-- NATS user. There is no foreign key to spokes, as there is none to
-- projects: revoking the spoke revokes its credentials (the rows stay, as
-- the record); a token whose spoke is gone, suspended or revoked is refused.
ALTER TABLE hub_credentials
    ADD COLUMN kind text NOT NULL DEFAULT 'hub',
    ADD CONSTRAINT hub_credentials_kind_values CHECK (kind IN ('hub', 'spoke')),
    ADD CONSTRAINT hub_credentials_spoke_has_no_nats_user
        CHECK (kind = 'hub' OR cardinality(nats_users) = 0);

-- Fingerprints name a credential within its subject, and a hub's slug and a
-- spoke's id could be the same text.
ALTER TABLE hub_credentials DROP CONSTRAINT hub_credentials_slug_fingerprint_key;
ALTER TABLE hub_credentials ADD CONSTRAINT hub_credentials_kind_slug_fingerprint_key
    UNIQUE (kind, slug, fingerprint);
