//! The delivery service: at most one delivery per order, started when the order is
//! confirmed, completed by an admin, cancelled when the order is.

mod api;
mod consumers;
mod store;

use std::sync::Arc;

use chassis::{ServiceRuntime, server};
use contracts::topics;
use tokio::net::TcpListener;

pub const NAME: &str = "delivery";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("migrating the delivery database failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("serving HTTP failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// Migrates the database, consumes order events and serves the API until shutdown.
pub async fn run(rt: Arc<ServiceRuntime>, listener: TcpListener) -> Result<(), Error> {
    sqlx::migrate!("./migrations").run(rt.db.writer()).await?;
    rt.consume(&[topics::ORDER], consumers::OrderEvents);
    server::serve(rt.clone(), listener, api::router(rt.clone())).await?;
    rt.stopped().await;
    Ok(())
}
