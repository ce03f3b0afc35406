//! A service's own database: a SQLite file (the embedded default) or a PostgreSQL
//! database of its own (database per service: no service can reach another's tables).
//!
//! Stores write their SQL once, with `$1`-style parameters that both backends read, and
//! run it through [`on_conn!`], which compiles the statement for each backend.

use std::{
    path::{Path, PathBuf},
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use futures::future::BoxFuture;
use sqlx::{
    Connection, PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool, Transaction,
    migrate::{MigrateError, Migrator},
    pool::{PoolConnection, PoolConnectionMetadata},
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use uuid::Uuid;

use crate::{
    config::{DatabaseLocation, Durability},
    spans::{self, Span, SpanKind},
    storage::StorageHealth,
};

/// How long the first connection to a PostgreSQL server may take at start.
const FIRST_CONNECT: Duration = Duration::from_secs(5);

/// A service's database, and whether its storage takes work now.
#[derive(Clone, Debug)]
pub struct Database {
    backend: Backend,
    health: Arc<StorageHealth>,
}

#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqliteFile),
    Postgres(PgPool),
}

/// A SQLite file in WAL mode: a pool of readers and one writer connection.
///
/// Writers in one process queue for the single write connection (a fair async wait)
/// rather than meeting inside SQLite, whose busy handler sleeps in steps of up to 100 ms:
/// with two write connections, the commit latency of the loser went to hundreds of ms.
#[derive(Clone, Debug)]
pub struct SqliteFile {
    path: PathBuf,
    reader: SqlitePool,
    writer: SqlitePool,
}

impl SqliteFile {
    /// Opens (creating if needed) the file at `path`.
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
            .before_acquire(out_of_transaction)
            .connect_with(options.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(readers)
            .connect_with(options)
            .await?;
        Ok(SqliteFile {
            path: path.to_owned(),
            reader,
            writer,
        })
    }

    /// Runs `migrator` with no other process migrating this file meanwhile. sqlx guards
    /// PostgreSQL migrations with an advisory lock but SQLite ones with nothing: two
    /// instances of a service starting together both applied migration 1, and the
    /// second failed on "table already exists".
    async fn migrate(&self, migrator: &Migrator) -> Result<(), MigrateError> {
        let lock_path = self.path.with_extension("db.migrating");
        let migrating = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::create(lock_path)?;
            file.lock()?;
            Ok::<_, std::io::Error>(file)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|locked| locked)
        .map_err(|error| MigrateError::Execute(sqlx::Error::Io(error)))?;
        let migrated = migrator.run(&self.writer).await;
        drop(migrating);
        migrated
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

/// A pool's check before it hands out a connection: one still inside a transaction is
/// closed and replaced. A COMMIT that fails with a full disk makes SQLite roll back by
/// itself, sqlx's own ROLLBACK then fails, and sqlx would count the connection inside a
/// transaction for good ("begin_with at non-zero transaction depth" on every later write).
fn out_of_transaction<C: Connection>(
    conn: &mut C,
    _: PoolConnectionMetadata,
) -> BoxFuture<'_, Result<bool, sqlx::Error>> {
    let usable = !conn.is_in_transaction();
    Box::pin(async move { Ok(usable) })
}

/// The connections of one pool of a [`Database`] at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolUse {
    /// `read` and `write` (SQLite: readers, and the one writer), or `read_write` (the one
    /// PostgreSQL pool).
    pub pool: &'static str,
    pub in_use: u32,
    pub idle: u32,
    pub max: u32,
}

impl PoolUse {
    fn of<DB: sqlx::Database>(pool: &'static str, connections: &sqlx::Pool<DB>) -> Self {
        let open = connections.size();
        let idle = u32::try_from(connections.num_idle())
            .unwrap_or(open)
            .min(open);
        PoolUse {
            pool,
            in_use: open - idle,
            idle,
            max: connections.options().get_max_connections(),
        }
    }
}

/// How a service's database is opened.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// Most connections of the pool (readers, for SQLite).
    pub max_connections: u32,
    pub durability: Durability,
}

/// Runs `$body` with `$c` bound to the connection behind `$conn` (anything [`AsConn`]):
/// `&mut SqliteConnection` or `&mut PgConnection`. The body is compiled once per backend.
#[macro_export]
macro_rules! on_conn {
    ($conn:expr, $c:ident => $body:expr) => {
        match $crate::db::AsConn::conn($conn) {
            $crate::db::Conn::Sqlite($c) => $body,
            $crate::db::Conn::Postgres($c) => $body,
        }
    };
}

/// Runs the statement `$query` on `$conn` (anything [`AsConn`]) and returns how many
/// rows it changed. The statement is built once per backend.
#[macro_export]
macro_rules! execute {
    ($conn:expr, $query:expr) => {
        $crate::on_conn!($conn, c => $query.execute(c).await.map(|done| done.rows_affected()))
    };
}

/// A connection of either backend, borrowed for one statement or a few.
pub enum Conn<'c> {
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

/// Something statements can run on: a write transaction or a reading connection.
pub trait AsConn: Send {
    fn conn(&mut self) -> Conn<'_>;
}

impl AsConn for Conn<'_> {
    fn conn(&mut self) -> Conn<'_> {
        match self {
            Conn::Sqlite(c) => Conn::Sqlite(c),
            Conn::Postgres(c) => Conn::Postgres(c),
        }
    }
}

/// A write transaction: on SQLite it holds the write lock from its first statement; on
/// PostgreSQL writers of one aggregate take [`lock`] on it first. Its commit tells the
/// database's [`StorageHealth`] whether the storage took it.
pub struct Tx {
    transaction: BackendTx,
    health: Arc<StorageHealth>,
    on_commit: Vec<Box<dyn FnOnce() + Send>>,
    /// The transaction's span, under the request or event it serves; it ends when the
    /// transaction does.
    span: Option<TxSpan>,
}

enum BackendTx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl AsConn for Tx {
    fn conn(&mut self) -> Conn<'_> {
        match &mut self.transaction {
            BackendTx::Sqlite(tx) => Conn::Sqlite(tx),
            BackendTx::Postgres(tx) => Conn::Postgres(tx),
        }
    }
}

impl Tx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        let committed = match self.transaction {
            BackendTx::Sqlite(tx) => tx.commit().await,
            BackendTx::Postgres(tx) => tx.commit().await,
        };
        match &committed {
            Ok(()) => {
                self.health.succeeded();
                self.on_commit.into_iter().for_each(|then| then());
            }
            Err(error) => self.health.commit_failed(error),
        }
        if let Some(mut span) = self.span {
            span.committed = true;
            match &committed {
                Ok(()) => span.span.set(OUTCOME, "commit"),
                Err(error) => span.span.fail(format!("commit failed: {error}")),
            }
        }
        committed
    }

    /// Runs `then` once this transaction has committed, and never if it rolls back: for
    /// counting what it did (an order confirmed, a payment declined), so that an attempt
    /// rolled back and retried, or a batch handled again event by event, counts once.
    pub fn on_commit(&mut self, then: impl FnOnce() + Send + 'static) {
        self.on_commit.push(Box::new(then));
    }
}

/// The attribute that tells how a transaction ended: `commit`, or `rollback` when it was
/// dropped (its work failed, or found nothing to do); a failed commit is an error status.
const OUTCOME: &str = "mall.db.outcome";

/// A transaction's span, which tells at its end whether the transaction was committed.
struct TxSpan {
    span: Span,
    committed: bool,
}

impl Drop for TxSpan {
    fn drop(&mut self) {
        if !self.committed {
            self.span.set(OUTCOME, "rollback");
        }
    }
}

/// A connection for reading; each read sees the last commit.
pub enum ReadConn {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

impl AsConn for ReadConn {
    fn conn(&mut self) -> Conn<'_> {
        match self {
            ReadConn::Sqlite(conn) => Conn::Sqlite(conn),
            ReadConn::Postgres(conn) => Conn::Postgres(conn),
        }
    }
}

impl<T: AsConn> AsConn for &mut T {
    fn conn(&mut self) -> Conn<'_> {
        (**self).conn()
    }
}

/// A database error's code, read by the rules of the backend that raised it: an
/// all-digit PostgreSQL SQLSTATE (`08006`) is no SQLite result code.
enum ErrorCode {
    /// The SQLSTATE.
    Postgres(String),
    /// The extended result code; its low byte is the primary one.
    Sqlite(u32),
}

fn error_code(error: &sqlx::Error) -> Option<ErrorCode> {
    let sqlx::Error::Database(error) = error else {
        return None;
    };
    let code = error.code()?;
    if error
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .is_some()
    {
        Some(ErrorCode::Postgres(code.into_owned()))
    } else {
        code.parse().ok().map(ErrorCode::Sqlite)
    }
}

/// Whether `error` says the storage cannot take writes now (a full disk, an I/O error, a
/// lost or refused server connection): the same request can succeed later, so it is a
/// 503 to retry rather than a 500.
pub fn is_storage_failure(error: &sqlx::Error) -> bool {
    if matches!(
        error,
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
    ) {
        return true;
    }
    match error_code(error) {
        // Classes 08 (connection), 53 (insufficient resources: disk full, out of memory,
        // too many connections), 57P (shutdown), 58 (I/O), and 25006: a read-only server
        // (a standby, after a failover).
        Some(ErrorCode::Postgres(code)) => ["08", "53", "57P", "58", "25006"]
            .iter()
            .any(|class| code.starts_with(class)),
        // SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN.
        Some(ErrorCode::Sqlite(code)) => matches!(code & 0xff, 10 | 13 | 14),
        None => false,
    }
}

/// Whether `error` says the data itself cannot be stored (a value the column refuses, a
/// broken constraint other than a duplicate key): the same statement fails the same way
/// however often it is tried. A duplicate key is not counted: a retry after a concurrent
/// writer usually sees the row and goes another way.
pub fn is_data_error(error: &sqlx::Error) -> bool {
    match error_code(error) {
        // Class 22 (data exception: a NUL byte, a value out of range, bad encoding) and
        // class 23 (integrity constraint) but 23505 (unique violation).
        Some(ErrorCode::Postgres(code)) => {
            code.starts_with("22") || (code.starts_with("23") && code != "23505")
        }
        // SQLITE_TOOBIG, SQLITE_MISMATCH, and SQLITE_CONSTRAINT unless it is
        // SQLITE_CONSTRAINT_UNIQUE or _PRIMARYKEY.
        Some(ErrorCode::Sqlite(code)) => {
            matches!(code & 0xff, 18 | 20) || (code & 0xff == 19 && !matches!(code, 2067 | 1555))
        }
        None => false,
    }
}

/// Serialises the writers of one aggregate until the transaction ends. SQLite's write
/// lock does that already; PostgreSQL takes a transaction-scoped advisory lock on the id,
/// so that a read-decide-write (stock, an order's next version) never decides on a state
/// another transaction is changing.
pub async fn lock(tx: &mut Tx, aggregate: Uuid) -> Result<(), sqlx::Error> {
    if let Conn::Postgres(c) = tx.conn() {
        let (high, low) = aggregate.as_u64_pair();
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind((high ^ low) as i64)
            .execute(c)
            .await?;
    }
    Ok(())
}

/// The table readiness writes to, while the storage fails, to learn whether it takes
/// writes again (with nobody else writing, nothing else would tell).
pub(crate) const WRITE_PROBE_SCHEMA: (&str, &str) = (
    "CREATE TABLE IF NOT EXISTS write_probe (
        id INTEGER PRIMARY KEY,
        written_at_us INTEGER NOT NULL
    );",
    "CREATE TABLE IF NOT EXISTS write_probe (
        id INTEGER PRIMARY KEY,
        written_at_us BIGINT NOT NULL
    );",
);

/// Writes the one row of [`WRITE_PROBE_SCHEMA`]'s table.
pub(crate) async fn write_probe(mut conn: impl AsConn) -> Result<(), sqlx::Error> {
    execute!(
        &mut conn,
        sqlx::query(
            "INSERT INTO write_probe (id, written_at_us) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET written_at_us = excluded.written_at_us"
        )
        .bind(chrono::Utc::now().timestamp_micros())
    )
    .map(drop)
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the database {location}: {source}")]
    Open {
        location: String,
        source: sqlx::Error,
    },
    #[error("cannot create the database {name}: {source}")]
    Create { name: String, source: sqlx::Error },
    #[error("no answer from the database server {location} within {seconds} s")]
    NoAnswer { location: String, seconds: u64 },
}

impl Database {
    /// Opens (creating if needed) service `service`'s database at `location`: the file
    /// `<service>.db` in the folder, or the PostgreSQL database `<name>_<service>`.
    pub async fn open(
        location: &DatabaseLocation,
        data_dir: &Path,
        service: &str,
        settings: PoolSettings,
    ) -> Result<Self, OpenError> {
        let backend = match location {
            DatabaseLocation::Embedded => {
                Self::open_sqlite(&data_dir.join(format!("{service}.db")), settings).await
            }
            DatabaseLocation::Sqlite(folder) => {
                Self::open_sqlite(&folder.join(format!("{service}.db")), settings).await
            }
            DatabaseLocation::Postgres { server, .. } => {
                Self::open_postgres(server, service, settings).await
            }
        }?;
        Ok(Database {
            backend,
            health: Arc::new(StorageHealth::new(format!("the {service} database"))),
        })
    }

    async fn open_sqlite(path: &Path, settings: PoolSettings) -> Result<Backend, OpenError> {
        SqliteFile::open(path, settings.durability, settings.max_connections)
            .await
            .map(Backend::Sqlite)
            .map_err(|source| OpenError::Open {
                location: path.display().to_string(),
                source,
            })
    }

    /// Connects to the service's own PostgreSQL database, creating it on first start.
    async fn open_postgres(
        server: &PgConnectOptions,
        service: &str,
        settings: PoolSettings,
    ) -> Result<Backend, OpenError> {
        let name = postgres_name(server, service);
        let options = server.clone().database(&name);
        if !postgres_database_exists(server, &name).await? {
            create_database(server, &name).await?;
        }
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .before_acquire(out_of_transaction)
            .connect_lazy_with(options);
        pool.acquire().await.map_err(|source| OpenError::Open {
            location: format!("{}:{}/{name}", server.get_host(), server.get_port()),
            source,
        })?;
        Ok(Backend::Postgres(pool))
    }

    /// Whether service `service` has a database at `location` yet (without creating it).
    pub async fn exists(
        location: &DatabaseLocation,
        data_dir: &Path,
        service: &str,
    ) -> Result<bool, OpenError> {
        match location {
            DatabaseLocation::Postgres { server, .. } => {
                let name = postgres_name(server, service);
                postgres_database_exists(server, &name).await
            }
            _ => Ok(location
                .sqlite_file(data_dir, service)
                .is_some_and(|file| file.exists())),
        }
    }

    /// The connections of each of the database's pools now, for the metrics.
    pub(crate) fn pools(&self) -> Vec<PoolUse> {
        match &self.backend {
            Backend::Sqlite(file) => vec![
                PoolUse::of("read", &file.reader),
                PoolUse::of("write", &file.writer),
            ],
            Backend::Postgres(pool) => vec![PoolUse::of("read_write", pool)],
        }
    }

    /// Whether the storage takes work now; every call through this database tells it.
    pub fn health(&self) -> &StorageHealth {
        &self.health
    }

    pub async fn read(&self) -> Result<ReadConn, sqlx::Error> {
        let conn = match &self.backend {
            Backend::Sqlite(file) => file.reader.acquire().await.map(ReadConn::Sqlite),
            Backend::Postgres(pool) => pool.acquire().await.map(ReadConn::Postgres),
        };
        conn.inspect_err(|error| self.health.observe(error))
    }

    /// Begins a write transaction (on SQLite, holding the write lock from the start): a
    /// span under the current one, when there is one, from the wait for the lock to the
    /// end.
    pub async fn begin_write(&self) -> Result<Tx, sqlx::Error> {
        let span = spans::child_of_current("db transaction", SpanKind::Internal);
        if let Some(span) = &span {
            span.set(
                "db.system.name",
                match self.backend {
                    Backend::Sqlite(_) => "sqlite",
                    Backend::Postgres(_) => "postgresql",
                },
            );
        }
        let transaction = match &self.backend {
            Backend::Sqlite(file) => file.begin_write().await.map(BackendTx::Sqlite),
            Backend::Postgres(pool) => pool.begin().await.map(BackendTx::Postgres),
        };
        let transaction = transaction.inspect_err(|error| {
            self.health.observe(error);
            if let Some(span) = &span {
                span.fail(format!("cannot begin: {error}"));
            }
        })?;
        Ok(Tx {
            transaction,
            health: self.health.clone(),
            on_commit: Vec::new(),
            span: span.map(|span| TxSpan {
                span,
                committed: false,
            }),
        })
    }

    /// Whether the storage takes a write now: one tiny write, recorded in [`Self::health`].
    pub async fn probe_write(&self) -> Result<(), sqlx::Error> {
        let mut tx = self.begin_write().await?;
        write_probe(&mut tx)
            .await
            .inspect_err(|error| self.health.observe(error))?;
        tx.commit().await
    }

    /// Runs the service's migrations for this backend.
    pub async fn migrate(
        &self,
        sqlite: &Migrator,
        postgres: &Migrator,
    ) -> Result<(), MigrateError> {
        match &self.backend {
            Backend::Sqlite(file) => file.migrate(sqlite).await,
            Backend::Postgres(pool) => postgres.run(pool).await,
        }
    }

    /// Runs a schema script (statements separated by `;`) of this backend's dialect.
    pub async fn apply_schema(
        &self,
        sqlite: &'static str,
        postgres: &'static str,
    ) -> Result<(), sqlx::Error> {
        match &self.backend {
            Backend::Sqlite(file) => sqlx::raw_sql(sqlite).execute(file.writer()).await.map(drop),
            Backend::Postgres(pool) => {
                // `CREATE ... IF NOT EXISTS` is not safe against a concurrent creator: two
                // instances starting together failed on pg_class's unique index. One at a
                // time, then.
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(SCHEMA_LOCK)
                    .execute(&mut *tx)
                    .await?;
                sqlx::raw_sql(postgres).execute(&mut *tx).await?;
                tx.commit().await
            }
        }
    }

    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(file) => file.close().await,
            Backend::Postgres(pool) => pool.close().await,
        }
    }
}

/// The advisory lock key that serialises schema scripts on one PostgreSQL database
/// (apart from aggregates' keys, which are folded UUIDs).
const SCHEMA_LOCK: i64 = 0x5eed_5c4e_3a00_0001;

/// Service `service`'s database on the server: `<name>_<service>`.
fn postgres_name(server: &PgConnectOptions, service: &str) -> String {
    format!("{}_{service}", server.get_database().unwrap_or("mall"))
}

/// Whether database `name` exists, by connecting to it once with a deadline: a pool
/// retries a server that is not there until its acquire timeout, and then says only
/// "pool timed out".
async fn postgres_database_exists(
    server: &PgConnectOptions,
    name: &str,
) -> Result<bool, OpenError> {
    let options = server.clone().database(name);
    match tokio::time::timeout(FIRST_CONNECT, PgConnection::connect_with(&options)).await {
        Err(_) => Err(OpenError::NoAnswer {
            location: format!("{}:{}", server.get_host(), server.get_port()),
            seconds: FIRST_CONNECT.as_secs(),
        }),
        Ok(Ok(first)) => {
            let _ = first.close().await;
            Ok(true)
        }
        Ok(Err(sqlx::Error::Database(error))) if error.code().as_deref() == Some("3D000") => {
            Ok(false)
        }
        Ok(Err(source)) => Err(OpenError::Open {
            location: format!("{}:{}/{name}", server.get_host(), server.get_port()),
            source,
        }),
    }
}

/// `CREATE DATABASE`, from the server's maintenance database; another process creating
/// it at the same moment is no failure.
async fn create_database(server: &PgConnectOptions, name: &str) -> Result<(), OpenError> {
    use sqlx::Connection;
    let failed = |source| OpenError::Create {
        name: name.to_owned(),
        source,
    };
    let mut admin = PgConnection::connect_with(&server.clone().database("postgres"))
        .await
        .map_err(failed)?;
    let created = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE \"{}\"",
        name.replace('"', "\"\"")
    )))
    .execute(&mut admin)
    .await;
    match created {
        Ok(_) => Ok(()),
        // 42P04: exists already; 23505: lost a race with another creator.
        Err(sqlx::Error::Database(error))
            if matches!(error.code().as_deref(), Some("42P04" | "23505")) =>
        {
            Ok(())
        }
        Err(error) => Err(failed(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `PRAGMA synchronous` on a reading connection of `db` and on its writer.
    async fn synchronous_levels(db: &Database) -> (i64, i64) {
        let pragma = "PRAGMA synchronous";
        let mut read = db.read().await.unwrap();
        let reader = on_conn!(&mut read, c => sqlx::query_scalar::<_, i64>(pragma).fetch_one(c).await.unwrap());
        drop(read);
        let mut write = db.begin_write().await.unwrap();
        let writer = on_conn!(&mut write, c => sqlx::query_scalar::<_, i64>(pragma).fetch_one(c).await.unwrap());
        write.commit().await.unwrap();
        (reader, writer)
    }

    #[tokio::test]
    async fn what_waits_for_a_commit_runs_after_it_and_never_after_a_rollback() {
        use std::sync::atomic::{AtomicU32, Ordering};

        let dir = tempfile::tempdir().unwrap();
        let settings = PoolSettings {
            max_connections: 2,
            durability: Durability::Normal,
        };
        let db = Database::open(&DatabaseLocation::Embedded, dir.path(), "hooks", settings)
            .await
            .unwrap();
        let ran = Arc::new(AtomicU32::new(0));
        let count = || {
            let ran = ran.clone();
            move || {
                ran.fetch_add(1, Ordering::SeqCst);
            }
        };
        let mut rolled_back = db.begin_write().await.unwrap();
        rolled_back.on_commit(count());
        drop(rolled_back);
        let mut committed = db.begin_write().await.unwrap();
        committed.on_commit(count());
        committed.on_commit(count());
        assert_eq!(ran.load(Ordering::SeqCst), 0, "not before the commit");
        committed.commit().await.unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 2);
        db.close().await;
    }

    #[tokio::test]
    async fn every_sqlite_connection_syncs_as_its_durability_says() {
        let dir = tempfile::tempdir().unwrap();
        // SQLite's levels: 1 is NORMAL, 2 is FULL.
        for (service, durability, level) in [
            ("normal", Durability::Normal, 1),
            ("full", Durability::Full, 2),
        ] {
            let settings = PoolSettings {
                max_connections: 2,
                durability,
            };
            let db = Database::open(&DatabaseLocation::Embedded, dir.path(), service, settings)
                .await
                .unwrap();
            assert_eq!(synchronous_levels(&db).await, (level, level), "{service}");
            db.close().await;
        }
    }
}
