-- The order aggregate is stored only as its events. (order_id, version) is unique:
-- two writers appending the same version means one of them decided on stale state.
CREATE TABLE order_events (
    order_id BLOB NOT NULL,
    version INTEGER NOT NULL CHECK (version > 0),
    event_type TEXT NOT NULL,
    event TEXT NOT NULL,
    changes TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (order_id, version)
);

-- The first answer to each Idempotency-Key of a customer, replayed for repeats.
CREATE TABLE idempotency_keys (
    customer_id BLOB NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_fingerprint TEXT NOT NULL,
    order_id BLOB NOT NULL,
    response TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (customer_id, idempotency_key)
);
