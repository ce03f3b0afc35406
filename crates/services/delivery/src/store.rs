//! The delivery service's own database: one delivery per order.

use chassis::{
    db::{AsConn, Database},
    execute, on_conn,
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::DeliveryStatus;

#[derive(Debug)]
pub struct Delivery {
    pub delivery_id: Uuid,
    pub address: String,
    pub status: DeliveryStatus,
}

pub async fn find(conn: &mut impl AsConn, order_id: Uuid) -> Result<Option<Delivery>, sqlx::Error> {
    let row: Option<(Uuid, String, String)> = on_conn!(conn, c => sqlx::query_as(
            "SELECT delivery_id, address, status FROM deliveries WHERE order_id = $1",
        )
        .bind(order_id)
        .fetch_optional(c)
        .await)?;
    row.map(|(delivery_id, address, status)| {
        let status = DeliveryStatus::parse(&status).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown delivery status {status:?}").into())
        })?;
        Ok(Delivery {
            delivery_id,
            address,
            status,
        })
    })
    .transpose()
}

/// Deliveries on their way (STARTED), oldest first: what an operator has to complete.
pub async fn on_their_way(
    db: &Database,
    limit: i64,
) -> Result<Vec<(Uuid, Uuid, String, DateTime<Utc>)>, sqlx::Error> {
    let mut conn = db.read().await?;
    on_conn!(&mut conn, c => sqlx::query_as(
            "SELECT order_id, delivery_id, address, updated_at FROM deliveries
             WHERE status = 'STARTED' ORDER BY updated_at LIMIT $1",
        )
        .bind(limit)
        .fetch_all(c)
        .await)
}

pub async fn insert_awaiting(
    conn: &mut impl AsConn,
    order_id: Uuid,
    address: &str,
) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    execute!(
        conn,
        sqlx::query(
            "INSERT INTO deliveries (order_id, delivery_id, address, status, created_at, updated_at)
             VALUES ($1, $2, $3, 'AWAITING', $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(order_id)
        .bind(Uuid::now_v7())
        .bind(address)
        .bind(now)
        .bind(now)
    )?;
    Ok(())
}

/// Sends the delivery to `address`.
pub async fn change_address(
    conn: &mut impl AsConn,
    order_id: Uuid,
    address: &str,
) -> Result<(), sqlx::Error> {
    execute!(
        conn,
        sqlx::query(
            "UPDATE deliveries SET address = $1, updated_at = $2
             WHERE order_id = $3",
        )
        .bind(address)
        .bind(Utc::now())
        .bind(order_id)
    )?;
    Ok(())
}

pub async fn set_status(
    conn: &mut impl AsConn,
    order_id: Uuid,
    status: DeliveryStatus,
) -> Result<(), sqlx::Error> {
    execute!(
        conn,
        sqlx::query("UPDATE deliveries SET status = $1, updated_at = $2 WHERE order_id = $3")
            .bind(status.as_str())
            .bind(Utc::now())
            .bind(order_id)
    )?;
    Ok(())
}
