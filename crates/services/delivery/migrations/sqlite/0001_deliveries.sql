-- At most one delivery per order. AWAITING: placed, not yet confirmed (the address is
-- kept for when it is); STARTED: on its way; COMPLETED: handed over; CANCELLED.
CREATE TABLE deliveries (
    order_id BLOB PRIMARY KEY,
    delivery_id BLOB NOT NULL UNIQUE,
    address TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('AWAITING', 'STARTED', 'COMPLETED', 'CANCELLED')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
