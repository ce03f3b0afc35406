//! My page's own tables, written only by the projection.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{SqliteConnection, SqlitePool};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::projection::{Change, Column};

pub async fn apply(conn: &mut SqliteConnection, change: &Change) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    match change {
        Change::Placed {
            order_id,
            customer_id,
            product_id,
            quantity,
            amount,
        } => {
            sqlx::query(
                "INSERT INTO mypage_orders (order_id, customer_id, product_id, quantity, amount, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?)
                 ON CONFLICT (order_id) DO UPDATE SET customer_id = excluded.customer_id,
                     product_id = excluded.product_id, quantity = excluded.quantity,
                     amount = excluded.amount",
            )
            .bind(order_id)
            .bind(customer_id)
            .bind(product_id)
            .bind(quantity)
            .bind(*amount as i64)
            .bind(now)
            .execute(conn)
            .await?;
        }
        Change::Status {
            order_id,
            column,
            status,
            rank,
        } => {
            // A status only moves to a higher rank: late or repeated events change nothing.
            let sql = match column {
                Column::Order => {
                    "INSERT INTO mypage_orders (order_id, order_status, order_rank, updated_at) VALUES (?, ?, ?, ?)
                     ON CONFLICT (order_id) DO UPDATE SET order_status = excluded.order_status,
                         order_rank = excluded.order_rank, updated_at = excluded.updated_at
                     WHERE excluded.order_rank > mypage_orders.order_rank"
                }
                Column::Payment => {
                    "INSERT INTO mypage_orders (order_id, payment_status, payment_rank, updated_at) VALUES (?, ?, ?, ?)
                     ON CONFLICT (order_id) DO UPDATE SET payment_status = excluded.payment_status,
                         payment_rank = excluded.payment_rank, updated_at = excluded.updated_at
                     WHERE excluded.payment_rank > mypage_orders.payment_rank"
                }
                Column::Delivery => {
                    "INSERT INTO mypage_orders (order_id, delivery_status, delivery_rank, updated_at) VALUES (?, ?, ?, ?)
                     ON CONFLICT (order_id) DO UPDATE SET delivery_status = excluded.delivery_status,
                         delivery_rank = excluded.delivery_rank, updated_at = excluded.updated_at
                     WHERE excluded.delivery_rank > mypage_orders.delivery_rank"
                }
            };
            sqlx::query(sql)
                .bind(order_id)
                .bind(*status)
                .bind(rank)
                .bind(now)
                .execute(conn)
                .await?;
        }
    }
    Ok(())
}

/// One order as my page shows it.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct MyOrder {
    pub order_id: Uuid,
    pub product_id: Uuid,
    pub quantity: i64,
    pub amount: i64,
    pub order_status: Option<String>,
    pub payment_status: Option<String>,
    pub delivery_status: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// The customer's newest orders first.
pub async fn orders_of(pool: &SqlitePool, customer_id: Uuid) -> Result<Vec<MyOrder>, sqlx::Error> {
    sqlx::query_as(
        "SELECT order_id, product_id, quantity, amount, order_status, payment_status, delivery_status, updated_at
         FROM mypage_orders WHERE customer_id = ? ORDER BY order_id DESC LIMIT 200",
    )
    .bind(customer_id)
    .fetch_all(pool)
    .await
}
