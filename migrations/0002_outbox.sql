-- Transactional outbox: every state change inserts its event here in the
-- same transaction; the relay publishes them to JetStream in `seq` order.
CREATE TABLE outbox (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- CloudEvents id, and the Nats-Msg-Id the relay publishes with.
    id            UUID        NOT NULL UNIQUE,
    -- CloudEvents type, e.g. federation.project.registered.
    event_type    TEXT        NOT NULL,
    -- NATS subject, e.g. fed.events.project.registered.
    subject       TEXT        NOT NULL,
    -- CloudEvents subject: the slug or spoke id the event is about.
    ce_subject    TEXT,
    data          JSONB       NOT NULL,
    occurred_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    published_at  TIMESTAMPTZ
);

CREATE INDEX outbox_unpublished_idx ON outbox (seq) WHERE published_at IS NULL;
