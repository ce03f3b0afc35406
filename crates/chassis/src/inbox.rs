//! Idempotent inbox: a consumer group records each event id in the same transaction as
//! the event's effect, so a redelivered event is recognised and changes nothing.

use sqlx::SqliteConnection;
use uuid::Uuid;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS inbox (
    grp TEXT NOT NULL,
    event_id BLOB NOT NULL,
    handled_at_us INTEGER NOT NULL,
    PRIMARY KEY (grp, event_id)
) WITHOUT ROWID;
";

/// Records `event_id` for `group`; false when it was recorded before (a redelivery).
pub async fn first_delivery(
    conn: &mut SqliteConnection,
    group: &str,
    event_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO inbox (grp, event_id, handled_at_us) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(group)
    .bind(event_id)
    .bind(chrono::Utc::now().timestamp_micros())
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}
