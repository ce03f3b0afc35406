//! The product service's own database: products with their stock, and reservations.

use chrono::{DateTime, Utc};
use sqlx::{SqliteConnection, SqlitePool};
use uuid::Uuid;

use crate::domain::{Quantity, Stock};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Product {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub price: i64,
    pub available: i64,
    pub reserved: i64,
    pub sold: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Product {
    /// The row's stock; the table's CHECKs keep every count within range.
    pub fn stock(&self) -> Stock {
        let units = |n: i64| u32::try_from(n).expect("stock counts are checked by the table");
        Stock {
            available: units(self.available),
            reserved: units(self.reserved),
            sold: units(self.sold),
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Reservation {
    pub product_id: Uuid,
    pub quantity: i64,
    pub status: String,
}

pub async fn insert_product(
    conn: &mut SqliteConnection,
    product: &Product,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO products (id, name, description, price, available, reserved, sold, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(product.id)
    .bind(&product.name)
    .bind(&product.description)
    .bind(product.price)
    .bind(product.available)
    .bind(product.reserved)
    .bind(product.sold)
    .bind(product.created_at)
    .bind(product.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn find_product(
    conn: &mut SqliteConnection,
    id: Uuid,
) -> Result<Option<Product>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM products WHERE id = ?")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Products in the order they were added, after `cursor` when given.
pub async fn list_products(
    pool: &SqlitePool,
    cursor: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Product>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM products WHERE ? IS NULL OR id > ? ORDER BY id LIMIT ?")
        .bind(cursor)
        .bind(cursor)
        .bind(limit)
        .fetch_all(pool)
        .await
}

pub async fn save_stock(
    conn: &mut SqliteConnection,
    id: Uuid,
    stock: Stock,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE products SET available = ?, reserved = ?, sold = ?, updated_at = ? WHERE id = ?",
    )
    .bind(stock.available)
    .bind(stock.reserved)
    .bind(stock.sold)
    .bind(Utc::now())
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn count_products(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM products")
        .fetch_one(pool)
        .await
}

pub async fn insert_reservation(
    conn: &mut SqliteConnection,
    order_id: Uuid,
    product_id: Uuid,
    quantity: Quantity,
) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    sqlx::query(
        "INSERT INTO reservations (order_id, product_id, quantity, status, created_at, updated_at)
         VALUES (?, ?, ?, 'RESERVED', ?, ?)",
    )
    .bind(order_id)
    .bind(product_id)
    .bind(quantity.units())
    .bind(now)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn find_reservation(
    conn: &mut SqliteConnection,
    order_id: Uuid,
) -> Result<Option<Reservation>, sqlx::Error> {
    sqlx::query_as("SELECT product_id, quantity, status FROM reservations WHERE order_id = ?")
        .bind(order_id)
        .fetch_optional(conn)
        .await
}

/// Moves a reservation to `status` (`SOLD` or `RELEASED`).
pub async fn set_reservation_status(
    conn: &mut SqliteConnection,
    order_id: Uuid,
    status: &'static str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE reservations SET status = ?, updated_at = ? WHERE order_id = ?")
        .bind(status)
        .bind(Utc::now())
        .bind(order_id)
        .execute(conn)
        .await?;
    Ok(())
}
