-- The order aggregate is stored only as its events. (order_id, version) is unique:
-- two writers appending the same version means one of them decided on stale state.
CREATE TABLE order_events (
    order_id UUID NOT NULL,
    version BIGINT NOT NULL CHECK (version > 0),
    event_type TEXT NOT NULL,
    event TEXT NOT NULL,
    changes TEXT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (order_id, version)
);

-- The first answer to each Idempotency-Key of a customer, replayed for repeats.
CREATE TABLE idempotency_keys (
    customer_id UUID NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_fingerprint TEXT NOT NULL,
    order_id UUID NOT NULL,
    response TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (customer_id, idempotency_key)
);

-- Orders whose saga has not answered yet, kept beside the event store (same transaction)
-- so that the deadline watch does not have to fold every stream to find them.
CREATE TABLE pending_orders (
    order_id UUID PRIMARY KEY,
    placed_at TIMESTAMPTZ NOT NULL
);
