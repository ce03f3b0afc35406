-- The read model of my page: one row per order, fed only by events. Events from
-- different services may arrive in any order, so each status only ever moves forward
-- (by rank), and a row may exist before the order's own OrderPlaced arrived.
CREATE TABLE mypage_orders (
    order_id BLOB PRIMARY KEY,
    customer_id BLOB,
    product_id BLOB,
    quantity INTEGER,
    amount INTEGER,
    order_status TEXT,
    order_rank INTEGER NOT NULL DEFAULT -1,
    payment_status TEXT,
    payment_rank INTEGER NOT NULL DEFAULT -1,
    delivery_status TEXT,
    delivery_rank INTEGER NOT NULL DEFAULT -1,
    updated_at TEXT NOT NULL
);
CREATE INDEX mypage_orders_by_customer ON mypage_orders (customer_id, order_id);
