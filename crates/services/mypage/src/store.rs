//! My page's own tables, written only by the projection.

use chassis::{
    db::{AsConn, Conn, Database, Tx},
    execute, on_conn,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::AssertSqlSafe;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::projection::{Change, Column};

/// The table the page reads.
pub const LIVE: &str = "mypage_orders";
/// Where a rebuild replays the log before it is swapped in.
pub const REBUILD: &str = "mypage_orders_rebuild";

/// Applies `change` to `table` ([`LIVE`] or [`REBUILD`]).
pub async fn apply(
    conn: &mut impl AsConn,
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
            let sql = format!(
                "INSERT INTO {table} (order_id, customer_id, product_id, quantity, amount, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (order_id) DO UPDATE SET customer_id = excluded.customer_id,
                     product_id = excluded.product_id, quantity = excluded.quantity,
                     amount = excluded.amount"
            );
            execute!(
                conn,
                sqlx::query(AssertSqlSafe(sql.clone()))
                    .bind(order_id)
                    .bind(customer_id)
                    .bind(product_id)
                    .bind(i64::from(*quantity))
                    .bind(*amount as i64)
                    .bind(now)
            )?;
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
                Column::Cancellation => ("cancellation_status", "cancellation_rank"),
            };
            let sql = format!(
                "INSERT INTO {table} (order_id, {status_column}, {rank_column}, updated_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (order_id) DO UPDATE SET {status_column} = excluded.{status_column},
                     {rank_column} = excluded.{rank_column}, updated_at = excluded.updated_at
                 WHERE excluded.{rank_column} > {table}.{rank_column}"
            );
            execute!(
                conn,
                sqlx::query(AssertSqlSafe(sql.clone()))
                    .bind(order_id)
                    .bind(*status)
                    .bind(rank)
                    .bind(now)
            )?;
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
    /// The customer's request to cancel after confirmation: REQUESTED until delivery
    /// answers, REFUSED when the parcel was already delivered.
    pub cancellation_status: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// The customer's newest orders first.
pub async fn orders_of(db: &Database, customer_id: Uuid) -> Result<Vec<MyOrder>, sqlx::Error> {
    let mut conn = db.read().await?;
    on_conn!(&mut conn, c => sqlx::query_as(
            "SELECT order_id, product_id, quantity, amount, order_status, payment_status,
                    delivery_status, cancellation_status, updated_at
             FROM mypage_orders WHERE customer_id = $1 ORDER BY order_id DESC LIMIT 200",
        )
        .bind(customer_id)
        .fetch_all(c)
        .await)
}

/// Makes an empty [`REBUILD`] table shaped like the live one.
pub async fn create_rebuild_table(tx: &mut Tx) -> Result<(), sqlx::Error> {
    execute!(
        &mut *tx,
        sqlx::query(AssertSqlSafe(format!("DROP TABLE IF EXISTS {REBUILD}")))
    )?;
    let create = match tx.conn() {
        Conn::Sqlite(c) => {
            let live_schema: String = sqlx::query_scalar(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = $1",
            )
            .bind(LIVE)
            .fetch_one(c)
            .await?;
            live_schema.replacen(LIVE, REBUILD, 1)
        }
        Conn::Postgres(_) => format!("CREATE TABLE {REBUILD} (LIKE {LIVE} INCLUDING ALL)"),
    };
    execute!(tx, sqlx::query(AssertSqlSafe(create.clone())))?;
    Ok(())
}

/// Keeps the live consumer from writing the live table until the transaction ends, so
/// that nothing it applies can fall between the rebuild's last catch-up and the swap.
/// SQLite's write lock does that already.
pub async fn hold_live_table(tx: &mut Tx) -> Result<(), sqlx::Error> {
    if let Conn::Postgres(c) = tx.conn() {
        sqlx::query(AssertSqlSafe(format!(
            "LOCK TABLE {LIVE} IN SHARE ROW EXCLUSIVE MODE"
        )))
        .execute(c)
        .await?;
    }
    Ok(())
}

/// Puts the [`REBUILD`] table in place of the live one, in the caller's transaction.
pub async fn swap_in_rebuild(tx: &mut Tx) -> Result<(), sqlx::Error> {
    // Index names are global: each generation gets its own.
    let index = format!("mypage_by_customer_{}", Utc::now().timestamp_micros());
    for statement in [
        format!("CREATE INDEX {index} ON {REBUILD} (customer_id, order_id)"),
        format!("DROP TABLE {LIVE}"),
        format!("ALTER TABLE {REBUILD} RENAME TO {LIVE}"),
    ] {
        execute!(&mut *tx, sqlx::query(AssertSqlSafe(statement.clone())))?;
    }
    Ok(())
}
