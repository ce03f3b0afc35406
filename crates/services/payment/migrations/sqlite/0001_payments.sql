-- One row per order: at most one charge, whatever is delivered twice. A row in CANCELLED
-- is an order cancelled before its payment, which must then never be charged.
CREATE TABLE payments (
    order_id BLOB PRIMARY KEY,
    payment_id BLOB,
    customer_id BLOB,
    amount INTEGER CHECK (amount >= 0),
    status TEXT NOT NULL CHECK (status IN ('AUTHORIZED', 'DECLINED', 'REFUNDED', 'CANCELLED')),
    reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
