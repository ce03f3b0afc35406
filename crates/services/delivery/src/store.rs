//! The delivery service's own database: one delivery per order.

use chrono::Utc;
use sqlx::SqliteConnection;
use uuid::Uuid;

#[derive(Debug, sqlx::FromRow)]
pub struct Delivery {
    pub delivery_id: Uuid,
    pub address: String,
    pub status: String,
}

pub async fn find(
    conn: &mut SqliteConnection,
    order_id: Uuid,
) -> Result<Option<Delivery>, sqlx::Error> {
    sqlx::query_as("SELECT delivery_id, address, status FROM deliveries WHERE order_id = ?")
        .bind(order_id)
        .fetch_optional(conn)
        .await
}

/// Deliveries on their way (STARTED), oldest first: what an operator has to complete.
pub async fn on_their_way(
    pool: &sqlx::SqlitePool,
    limit: i64,
) -> Result<Vec<(Uuid, Uuid, String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT order_id, delivery_id, address, updated_at FROM deliveries
         WHERE status = 'STARTED' ORDER BY updated_at LIMIT ?",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}

pub async fn insert_awaiting(
    conn: &mut SqliteConnection,
    order_id: Uuid,
    address: &str,
) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    sqlx::query(
        "INSERT INTO deliveries (order_id, delivery_id, address, status, created_at, updated_at)
         VALUES (?, ?, ?, 'AWAITING', ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(order_id)
    .bind(Uuid::now_v7())
    .bind(address)
    .bind(now)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Sends a delivery not yet handed over to `address`.
pub async fn change_address(
    conn: &mut SqliteConnection,
    order_id: Uuid,
    address: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE deliveries SET address = ?, updated_at = ? WHERE order_id = ? AND status IN ('AWAITING', 'STARTED')",
    )
    .bind(address)
    .bind(Utc::now())
    .bind(order_id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_status(
    conn: &mut SqliteConnection,
    order_id: Uuid,
    status: &'static str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE deliveries SET status = ?, updated_at = ? WHERE order_id = ?")
        .bind(status)
        .bind(Utc::now())
        .bind(order_id)
        .execute(conn)
        .await?;
    Ok(())
}
