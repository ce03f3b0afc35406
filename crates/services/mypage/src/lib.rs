//! My page: a CQRS read model of each customer's orders with their payment and delivery,
//! fed only by events (DESIGN.md section 8). It never asks another service anything.

mod api;
pub mod projection;
mod store;

use std::sync::Arc;

use chassis::{
    ServiceRuntime,
    consumer::{Delivery, EventHandler, HandlerError},
    server,
};
use contracts::topics;
use sqlx::SqliteConnection;
use tokio::net::TcpListener;

pub const NAME: &str = "mypage";

/// Every topic my page reads.
pub const TOPICS: [&str; 3] = [topics::ORDER, topics::PAYMENT, topics::DELIVERY];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("migrating the mypage database failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("serving HTTP failed: {0}")]
    Serve(#[from] std::io::Error),
}

struct Projection;

impl EventHandler for Projection {
    async fn handle(
        &self,
        conn: &mut SqliteConnection,
        delivery: &Delivery<'_>,
    ) -> Result<(), HandlerError> {
        for change in projection::changes(delivery.envelope)? {
            store::apply(conn, &change).await?;
        }
        Ok(())
    }
}

/// Migrates the database, projects events and serves the page until shutdown.
pub async fn run(rt: Arc<ServiceRuntime>, listener: TcpListener) -> Result<(), Error> {
    sqlx::migrate!("./migrations").run(rt.db.writer()).await?;
    rt.consume(&TOPICS, Projection);
    server::serve(rt.clone(), listener, api::router(rt.clone())).await?;
    rt.stopped().await;
    Ok(())
}
