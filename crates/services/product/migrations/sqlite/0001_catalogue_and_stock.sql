-- The catalogue and its stock. Units are available, reserved for a PENDING order, or
-- sold; together they are every unit ever added.
CREATE TABLE products (
    id BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    price INTEGER NOT NULL CHECK (price > 0),
    available INTEGER NOT NULL CHECK (available >= 0),
    reserved INTEGER NOT NULL CHECK (reserved >= 0),
    sold INTEGER NOT NULL CHECK (sold >= 0),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- At most one reservation per order, whatever is delivered twice.
CREATE TABLE reservations (
    order_id BLOB PRIMARY KEY,
    product_id BLOB NOT NULL REFERENCES products (id),
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    status TEXT NOT NULL CHECK (status IN ('RESERVED', 'SOLD')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
