//! The payment service's own database: one payment row per order.

use chassis::{db::AsConn, execute, on_conn};
use chrono::Utc;
use uuid::Uuid;

#[derive(Debug, sqlx::FromRow)]
pub struct Payment {
    pub payment_id: Option<Uuid>,
    pub amount: Option<i64>,
    pub status: String,
}

pub async fn find(conn: &mut impl AsConn, order_id: Uuid) -> Result<Option<Payment>, sqlx::Error> {
    on_conn!(conn, c => sqlx::query_as(
            "SELECT payment_id, amount, status FROM payments WHERE order_id = $1",
        )
        .bind(order_id)
        .fetch_optional(c)
        .await)
}

pub struct NewPayment<'a> {
    pub order_id: Uuid,
    pub payment_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
    pub amount: Option<u64>,
    pub status: &'static str,
    pub reason: Option<&'a str>,
}

pub async fn insert(conn: &mut impl AsConn, payment: NewPayment<'_>) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    execute!(
        conn,
        sqlx::query(
            "INSERT INTO payments (order_id, payment_id, customer_id, amount, status, reason, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(payment.order_id)
        .bind(payment.payment_id)
        .bind(payment.customer_id)
        .bind(payment.amount.map(|a| a as i64))
        .bind(payment.status)
        .bind(payment.reason)
        .bind(now)
        .bind(now)
    )?;
    Ok(())
}

pub async fn set_status(
    conn: &mut impl AsConn,
    order_id: Uuid,
    status: &'static str,
) -> Result<(), sqlx::Error> {
    execute!(
        conn,
        sqlx::query("UPDATE payments SET status = $1, updated_at = $2 WHERE order_id = $3")
            .bind(status)
            .bind(Utc::now())
            .bind(order_id)
    )?;
    Ok(())
}
