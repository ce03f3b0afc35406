//! The payment service's own database: one payment row per order.

use chrono::Utc;
use sqlx::SqliteConnection;
use uuid::Uuid;

#[derive(Debug, sqlx::FromRow)]
pub struct Payment {
    pub payment_id: Option<Uuid>,
    pub amount: Option<i64>,
    pub status: String,
}

pub async fn find(
    conn: &mut SqliteConnection,
    order_id: Uuid,
) -> Result<Option<Payment>, sqlx::Error> {
    sqlx::query_as("SELECT payment_id, amount, status FROM payments WHERE order_id = ?")
        .bind(order_id)
        .fetch_optional(conn)
        .await
}

pub struct NewPayment<'a> {
    pub order_id: Uuid,
    pub payment_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
    pub amount: Option<u64>,
    pub status: &'static str,
    pub reason: Option<&'a str>,
}

pub async fn insert(
    conn: &mut SqliteConnection,
    payment: NewPayment<'_>,
) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    sqlx::query(
        "INSERT INTO payments (order_id, payment_id, customer_id, amount, status, reason, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(payment.order_id)
    .bind(payment.payment_id)
    .bind(payment.customer_id)
    .bind(payment.amount.map(|a| a as i64))
    .bind(payment.status)
    .bind(payment.reason)
    .bind(now)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_status(
    conn: &mut SqliteConnection,
    order_id: Uuid,
    status: &'static str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE payments SET status = ?, updated_at = ? WHERE order_id = ?")
        .bind(status)
        .bind(Utc::now())
        .bind(order_id)
        .execute(conn)
        .await?;
    Ok(())
}
