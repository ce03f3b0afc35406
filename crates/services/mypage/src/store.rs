//! My page's own tables, written only by the projection.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{AssertSqlSafe, SqliteConnection, SqlitePool};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::projection::{Change, Column};

/// The table the page reads.
pub const LIVE: &str = "mypage_orders";
/// Where a rebuild replays the log before it is swapped in.
pub const REBUILD: &str = "mypage_orders_rebuild";

/// Applies `change` to `table` ([`LIVE`] or [`REBUILD`]).
pub async fn apply(
    conn: &mut SqliteConnection,
    table: &'static str,
    change: &Change,
) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    match change {
        Change::Placed {
            order_id,
            customer_id,
            product_id,
            quantity,
            amount,
        } => {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {table} (order_id, customer_id, product_id, quantity, amount, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?)
                 ON CONFLICT (order_id) DO UPDATE SET customer_id = excluded.customer_id,
                     product_id = excluded.product_id, quantity = excluded.quantity,
                     amount = excluded.amount"
            )))
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
            let (status_column, rank_column) = match column {
                Column::Order => ("order_status", "order_rank"),
                Column::Payment => ("payment_status", "payment_rank"),
                Column::Delivery => ("delivery_status", "delivery_rank"),
            };
            let sql = format!(
                "INSERT INTO {table} (order_id, {status_column}, {rank_column}, updated_at) VALUES (?, ?, ?, ?)
                 ON CONFLICT (order_id) DO UPDATE SET {status_column} = excluded.{status_column},
                     {rank_column} = excluded.{rank_column}, updated_at = excluded.updated_at
                 WHERE excluded.{rank_column} > {table}.{rank_column}"
            );
            sqlx::query(AssertSqlSafe(sql))
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

/// Makes an empty [`REBUILD`] table shaped like the live one.
pub async fn create_rebuild_table(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query(AssertSqlSafe(format!("DROP TABLE IF EXISTS {REBUILD}")))
        .execute(&mut *conn)
        .await?;
    let live_schema: String =
        sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?")
            .bind(LIVE)
            .fetch_one(&mut *conn)
            .await?;
    let rebuild_schema = live_schema.replacen(LIVE, REBUILD, 1);
    sqlx::query(AssertSqlSafe(rebuild_schema))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Puts the [`REBUILD`] table in place of the live one, in the caller's transaction.
pub async fn swap_in_rebuild(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    // Index names are global: each generation gets its own.
    let index = format!("mypage_by_customer_{}", Utc::now().timestamp_micros());
    for statement in [
        format!("CREATE INDEX {index} ON {REBUILD} (customer_id, order_id)"),
        format!("DROP TABLE {LIVE}"),
        format!("ALTER TABLE {REBUILD} RENAME TO {LIVE}"),
    ] {
        sqlx::query(AssertSqlSafe(statement))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
