-- One row per order: at most one charge, whatever is delivered twice. A row in CANCELLED
-- is an order cancelled before its payment, which must then never be charged.
CREATE TABLE payments (
    order_id UUID PRIMARY KEY,
    payment_id UUID,
    customer_id UUID,
    amount BIGINT CHECK (amount >= 0),
    status TEXT NOT NULL CHECK (status IN ('AUTHORIZED', 'DECLINED', 'REFUNDED', 'CANCELLED')),
    reason TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
