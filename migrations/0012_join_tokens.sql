-- Join tokens (issue 15, enrollment): an admin makes one for a slug; a new
-- hub exchanges it once at POST /api/fed/enroll for its credential (a row in
-- hub_credentials). Like hub tokens, the join token itself is never stored,
-- only its SHA-256 (256 random bits, so a plain digest is enough) and a
-- short fingerprint to name it in the audit log.
CREATE TABLE join_tokens (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug         text        NOT NULL,
    token_hash   bytea       NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    fingerprint  text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    -- Set once, by the exchange that wins; a used token is refused.
    used_at      timestamptz,
    -- The credential the exchange issued (hub_credentials.fingerprint).
    credential   text,
    CONSTRAINT join_tokens_used_with_credential
        CHECK ((used_at IS NULL) = (credential IS NULL))
);
