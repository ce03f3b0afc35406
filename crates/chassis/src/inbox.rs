//! Idempotent inbox: a consumer group records each event id in the same transaction as
//! the event's effect, so a redelivered event is recognised and changes nothing.

use crate::{db::AsConn, execute};
use uuid::Uuid;

/// The inbox table, for SQLite and for PostgreSQL.
pub(crate) const SCHEMA: (&str, &str) = (
    "CREATE TABLE IF NOT EXISTS inbox (
        grp TEXT NOT NULL,
        event_id BLOB NOT NULL,
        handled_at_us INTEGER NOT NULL,
        PRIMARY KEY (grp, event_id)
    ) WITHOUT ROWID;",
    "CREATE TABLE IF NOT EXISTS inbox (
        grp TEXT NOT NULL,
        event_id UUID NOT NULL,
        handled_at_us BIGINT NOT NULL,
        PRIMARY KEY (grp, event_id)
    );",
);

/// Records `event_id` for `group`; false when it was recorded before (a redelivery).
pub async fn first_delivery(
    conn: &mut impl AsConn,
    group: &str,
    event_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let now = chrono::Utc::now().timestamp_micros();
    let inserted = execute!(
        conn,
        sqlx::query(
            "INSERT INTO inbox (grp, event_id, handled_at_us) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(group)
        .bind(event_id)
        .bind(now)
    )?;
    Ok(inserted == 1)
}
