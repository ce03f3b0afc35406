//! The product service's own database: products with their stock, and reservations.

use chassis::{
    db::{AsConn, Database},
    execute, on_conn,
};
use chrono::{DateTime, Utc};
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

pub async fn insert_product(conn: &mut impl AsConn, product: &Product) -> Result<(), sqlx::Error> {
    execute!(
        conn,
        sqlx::query(
            "INSERT INTO products (id, name, description, price, available, reserved, sold, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
    )?;
    Ok(())
}

pub async fn find_product(
    conn: &mut impl AsConn,
    id: Uuid,
) -> Result<Option<Product>, sqlx::Error> {
    on_conn!(conn, c => sqlx::query_as("SELECT * FROM products WHERE id = $1")
        .bind(id)
        .fetch_optional(c)
        .await)
}

/// Products in the order they were added, after `cursor` when given.
pub async fn list_products(
    db: &Database,
    cursor: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Product>, sqlx::Error> {
    let mut conn = db.read().await?;
    on_conn!(&mut conn, c => sqlx::query_as(
            "SELECT * FROM products WHERE $1 IS NULL OR id > $1 ORDER BY id LIMIT $2",
        )
        .bind(cursor)
        .bind(i64::from(limit))
        .fetch_all(c)
        .await)
}

pub async fn save_stock(conn: &mut impl AsConn, id: Uuid, stock: Stock) -> Result<(), sqlx::Error> {
    execute!(
        conn,
        sqlx::query(
            "UPDATE products SET available = $1, reserved = $2, sold = $3, updated_at = $4
             WHERE id = $5",
        )
        .bind(i64::from(stock.available))
        .bind(i64::from(stock.reserved))
        .bind(i64::from(stock.sold))
        .bind(Utc::now())
        .bind(id)
    )?;
    Ok(())
}

pub async fn count_products(db: &Database) -> Result<i64, sqlx::Error> {
    let mut conn = db.read().await?;
    on_conn!(&mut conn, c => sqlx::query_scalar("SELECT COUNT(*) FROM products")
        .fetch_one(c)
        .await)
}

pub async fn insert_reservation(
    conn: &mut impl AsConn,
    order_id: Uuid,
    product_id: Uuid,
    quantity: Quantity,
) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    execute!(
        conn,
        sqlx::query(
            "INSERT INTO reservations (order_id, product_id, quantity, status, created_at, updated_at)
             VALUES ($1, $2, $3, 'RESERVED', $4, $5)",
        )
        .bind(order_id)
        .bind(product_id)
        .bind(i64::from(quantity.units()))
        .bind(now)
        .bind(now)
    )?;
    Ok(())
}

pub async fn find_reservation(
    conn: &mut impl AsConn,
    order_id: Uuid,
) -> Result<Option<Reservation>, sqlx::Error> {
    on_conn!(conn, c => sqlx::query_as(
            "SELECT product_id, quantity, status FROM reservations WHERE order_id = $1",
        )
        .bind(order_id)
        .fetch_optional(c)
        .await)
}

/// Moves a reservation to `status` (`SOLD` or `RELEASED`).
pub async fn set_reservation_status(
    conn: &mut impl AsConn,
    order_id: Uuid,
    status: &'static str,
) -> Result<(), sqlx::Error> {
    execute!(
        conn,
        sqlx::query("UPDATE reservations SET status = $1, updated_at = $2 WHERE order_id = $3")
            .bind(status)
            .bind(Utc::now())
            .bind(order_id)
    )?;
    Ok(())
}
