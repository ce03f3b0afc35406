//! The order event store: append-only streams with optimistic concurrency, and the
//! answers given to idempotency keys.

use chassis::{
    db::{AsConn, Database},
    execute, on_conn,
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::{FieldChange, Order, OrderEvent, OrderStatus, apply, diff};

/// An event as stored: its place in the stream, when, and what it changed.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct StoredEvent {
    pub version: u32,
    #[serde(flatten)]
    pub event: OrderEvent,
    pub changes: Vec<FieldChange>,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Someone appended to the stream since it was read; decide again on fresh state.
    #[error("order {0} changed concurrently")]
    Conflict(Uuid),
    #[error("stored event of order {order_id} is unreadable: {source}")]
    Corrupt {
        order_id: Uuid,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The order's stream and the state it folds into (`None` when there is no such order).
pub async fn load(
    conn: &mut impl AsConn,
    order_id: Uuid,
) -> Result<(Option<Order>, Vec<StoredEvent>), StoreError> {
    let rows: Vec<(i64, String, String, DateTime<Utc>)> = on_conn!(conn, c => sqlx::query_as(
            "SELECT version, event, changes, recorded_at FROM order_events WHERE order_id = $1
             ORDER BY version",
        )
        .bind(order_id)
        .fetch_all(c)
        .await)?;
    let corrupt = |source| StoreError::Corrupt { order_id, source };
    let mut order = None;
    let mut stream = Vec::with_capacity(rows.len());
    for (version, event, changes, recorded_at) in rows {
        let event: OrderEvent = serde_json::from_str(&event).map_err(corrupt)?;
        let changes = serde_json::from_str(&changes).map_err(corrupt)?;
        order = Some(apply(order, order_id, &event, recorded_at));
        stream.push(StoredEvent {
            version: u32::try_from(version).expect("versions are checked positive by the table"),
            event,
            changes,
            recorded_at,
        });
    }
    Ok((order, stream))
}

/// Appends `events` after `order` (the state they were decided on) and returns the new
/// state. Fails with [`StoreError::Conflict`] when the stream moved on in between.
pub async fn append(
    conn: &mut impl AsConn,
    order_id: Uuid,
    mut order: Option<Order>,
    events: &[OrderEvent],
) -> Result<Option<Order>, StoreError> {
    for event in events {
        let now = Utc::now();
        let next = apply(order.clone(), order_id, event, now);
        let changes = diff(order.as_ref(), &next);
        let stored = serde_json::to_string(event).expect("order events always serialise");
        let changes = serde_json::to_string(&changes).expect("changes always serialise");
        execute!(
            &mut *conn,
            sqlx::query(
                "INSERT INTO order_events (order_id, version, event_type, event, changes, recorded_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(order_id)
            .bind(i64::from(next.version))
            .bind(event.name())
            .bind(&stored)
            .bind(&changes)
            .bind(now)
        )
        .map_err(|error| match error.as_database_error() {
            Some(db) if db.is_unique_violation() => StoreError::Conflict(order_id),
            _ => StoreError::Database(error),
        })?;
        match (order.as_ref().map(|o| o.status), next.status) {
            (None, OrderStatus::Pending) => {
                execute!(
                    &mut *conn,
                    sqlx::query("INSERT INTO pending_orders (order_id, placed_at) VALUES ($1, $2)")
                        .bind(order_id)
                        .bind(now)
                )?;
            }
            (Some(OrderStatus::Pending), status) if status != OrderStatus::Pending => {
                execute!(
                    &mut *conn,
                    sqlx::query("DELETE FROM pending_orders WHERE order_id = $1").bind(order_id)
                )?;
            }
            _ => {}
        }
        order = Some(next);
    }
    Ok(order)
}

/// Orders still PENDING that were placed before `placed_before`.
pub async fn pending_since(
    db: &Database,
    placed_before: DateTime<Utc>,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let mut conn = db.read().await?;
    on_conn!(&mut conn, c => sqlx::query_scalar(
            "SELECT order_id FROM pending_orders WHERE placed_at < $1 ORDER BY placed_at LIMIT 500",
        )
        .bind(placed_before)
        .fetch_all(c)
        .await)
}

/// The first answer given to `key`, with the fingerprint of the request it answered.
pub async fn find_idempotent_answer(
    conn: &mut impl AsConn,
    customer_id: Uuid,
    key: &str,
) -> Result<Option<(String, String)>, sqlx::Error> {
    on_conn!(conn, c => sqlx::query_as(
            "SELECT request_fingerprint, response FROM idempotency_keys
             WHERE customer_id = $1 AND idempotency_key = $2",
        )
        .bind(customer_id)
        .bind(key)
        .fetch_optional(c)
        .await)
}

pub async fn save_idempotent_answer(
    conn: &mut impl AsConn,
    customer_id: Uuid,
    key: &str,
    fingerprint: &str,
    order_id: Uuid,
    response: &str,
) -> Result<(), sqlx::Error> {
    execute!(
        conn,
        sqlx::query(
            "INSERT INTO idempotency_keys
             (customer_id, idempotency_key, request_fingerprint, order_id, response, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(customer_id)
        .bind(key)
        .bind(fingerprint)
        .bind(order_id)
        .bind(response)
        .bind(Utc::now())
    )?;
    Ok(())
}
