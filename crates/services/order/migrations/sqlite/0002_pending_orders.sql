-- Orders whose saga has not answered yet, kept beside the event store (same transaction)
-- so that the deadline watch does not have to fold every stream to find them.
CREATE TABLE pending_orders (
    order_id BLOB PRIMARY KEY,
    placed_at TEXT NOT NULL
);
INSERT INTO pending_orders (order_id, placed_at)
SELECT order_id, MIN(recorded_at) FROM order_events GROUP BY order_id HAVING MAX(version) = 1;
