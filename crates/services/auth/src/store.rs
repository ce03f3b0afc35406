//! The auth service's own database: customer accounts.

use chassis::{
    db::{AsConn, Database},
    execute, on_conn,
};
use chrono::Utc;
use uuid::Uuid;

#[derive(Debug, sqlx::FromRow)]
pub struct Account {
    pub id: Uuid,
    pub password_hash: String,
    pub is_admin: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("this email is already registered")]
    EmailTaken,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub async fn insert_customer(
    conn: &mut impl AsConn,
    id: Uuid,
    email: &str,
    name: &str,
    password_hash: &str,
    is_admin: bool,
) -> Result<(), StoreError> {
    execute!(
        conn,
        sqlx::query(
            "INSERT INTO customers (id, email, name, password_hash, is_admin, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(email)
        .bind(name)
        .bind(password_hash)
        .bind(is_admin)
        .bind(Utc::now())
    )
    .map_err(|error| match error.as_database_error() {
        Some(db) if db.is_unique_violation() => StoreError::EmailTaken,
        _ => StoreError::Database(error),
    })?;
    Ok(())
}

pub async fn find_by_email(db: &Database, email: &str) -> Result<Option<Account>, sqlx::Error> {
    let mut conn = db.read().await?;
    on_conn!(&mut conn, c => sqlx::query_as(
            "SELECT id, password_hash, is_admin FROM customers WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(c)
        .await)
}
