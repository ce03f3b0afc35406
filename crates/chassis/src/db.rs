//! A service's own SQLite database: WAL mode, readers beside one writer, and write
//! transactions that take the write lock up front.

use std::{path::Path, str::FromStr, time::Duration};

use sqlx::{
    Sqlite, SqlitePool, Transaction,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use crate::config::Durability;

/// A service's SQLite file: a pool of readers and one writer connection.
///
/// Writers in one process queue for the single write connection (a fair async wait)
/// rather than meeting inside SQLite, whose busy handler sleeps in steps of up to 100 ms:
/// with two write connections, the commit latency of the loser went to hundreds of ms.
#[derive(Clone, Debug)]
pub struct Database {
    reader: SqlitePool,
    writer: SqlitePool,
}

impl Database {
    /// Opens (creating if needed) the database file at `path`.
    pub async fn open(
        path: &Path,
        durability: Durability,
        readers: u32,
    ) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                Durability::Normal => SqliteSynchronous::Normal,
                Durability::Full => SqliteSynchronous::Full,
            })
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(readers)
            .connect_with(options)
            .await?;
        Ok(Database { reader, writer })
    }

    /// Connections for reading; each read sees the last commit.
    pub fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// The one connection that writes, for statements outside a transaction.
    pub fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// Begins a transaction on the write connection that holds SQLite's write lock from
    /// its first statement, so that another process's writer cannot slip in between a
    /// read and a write of it (that fails with SQLITE_BUSY instead of waiting).
    pub async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.writer.begin_with("BEGIN IMMEDIATE").await
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}
