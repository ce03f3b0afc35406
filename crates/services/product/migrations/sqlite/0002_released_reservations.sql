-- A reservation can now be released again (order rejected or cancelled). SQLite cannot
-- change a CHECK in place, so the table is rebuilt.
CREATE TABLE reservations_v2 (
    order_id BLOB PRIMARY KEY,
    product_id BLOB NOT NULL REFERENCES products (id),
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    status TEXT NOT NULL CHECK (status IN ('RESERVED', 'SOLD', 'RELEASED')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
INSERT INTO reservations_v2 SELECT * FROM reservations;
DROP TABLE reservations;
ALTER TABLE reservations_v2 RENAME TO reservations;
