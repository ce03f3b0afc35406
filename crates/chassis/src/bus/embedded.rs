//! The embedded event log: a durable, partitioned, append-only log in one SQLite file.
//!
//! - Appends go through one writer task per process that commits whatever is queued in
//!   one transaction (group commit), so many small publishes cost one fsync.
//! - Consumer groups keep their committed offsets in the same file. A member holds a
//!   lease on each partition it reads, renewed while it lives, so processes sharing the
//!   file (`mall up --split`) never read the same partition for one group at once; a
//!   crashed member's leases expire and another member takes over.
//! - Consumers wait on a watch channel: bumped by this process's writer at once, and by
//!   a watcher that sees other processes' commits through `PRAGMA data_version` within
//!   a few milliseconds. Nobody sleeps on a slow poll.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::{Arc, Weak},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use contracts::Envelope;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use tokio::sync::{mpsc, oneshot, watch};

use super::{BusError, EventBus, OutgoingEvent, PartitionLag, Record, Subscription, partition_for};
use crate::{
    config::Durability,
    db::{self, Conn, SqliteFile},
    storage::StorageHealth,
};

/// A member that stops renewing loses its partitions after this long.
const LEASE: Duration = Duration::from_secs(10);
/// How often another process's commits are looked for.
const WATCH_INTERVAL: Duration = Duration::from_millis(5);
/// Most append requests folded into one transaction.
const MAX_GROUP_COMMIT: usize = 1024;
/// Rows per INSERT statement (5 parameters each, well under SQLite's limit).
const ROWS_PER_INSERT: usize = 200;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS topics (
    topic TEXT PRIMARY KEY,
    partitions INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS log (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    position INTEGER NOT NULL,
    envelope TEXT NOT NULL,
    appended_at_us INTEGER NOT NULL,
    PRIMARY KEY (topic, partition, position)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_offsets (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_position INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    member TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, partition)
) WITHOUT ROWID;
";

struct AppendRequest {
    events: Vec<OutgoingEvent>,
    done: oneshot::Sender<Result<(), BusError>>,
}

/// Handle to the log; cheap to clone and share between services.
#[derive(Clone)]
pub struct EmbeddedLog {
    db: SqliteFile,
    health: Arc<StorageHealth>,
    appends: mpsc::Sender<AppendRequest>,
    changes: watch::Receiver<u64>,
    default_partitions: u32,
}

impl EmbeddedLog {
    /// Opens the log at `path`, creating it if needed; new topics get `default_partitions`.
    pub async fn open(
        path: &Path,
        durability: Durability,
        default_partitions: u32,
    ) -> Result<Self, BusError> {
        let db = SqliteFile::open(path, durability, 8).await?;
        sqlx::raw_sql(SCHEMA).execute(db.writer()).await?;
        sqlx::raw_sql(db::WRITE_PROBE_SCHEMA.0)
            .execute(db.writer())
            .await?;
        let health = Arc::new(StorageHealth::new("the event log"));
        let (appends, requests) = mpsc::channel(4096);
        let (changed, changes) = watch::channel(0);
        let changed = Arc::new(changed);
        tokio::spawn(watch_other_writers(db.clone(), Arc::downgrade(&changed)));
        tokio::spawn(write_appends(
            db.clone(),
            health.clone(),
            requests,
            changed,
            default_partitions,
        ));
        Ok(EmbeddedLog {
            db,
            health,
            appends,
            changes,
            default_partitions,
        })
    }
}

#[async_trait]
impl EventBus for EmbeddedLog {
    // The embedded log is no messaging system OpenTelemetry names.
    fn system(&self) -> &'static str {
        "mall_log"
    }

    async fn publish(&self, events: Vec<OutgoingEvent>) -> Result<(), BusError> {
        if events.is_empty() {
            return Ok(());
        }
        let (done, committed) = oneshot::channel();
        self.appends
            .send(AppendRequest { events, done })
            .await
            .map_err(|_| BusError::Closed)?;
        committed.await.map_err(|_| BusError::Closed)?
    }

    async fn subscribe(
        &self,
        group: &str,
        member: &str,
        topics: &[&str],
    ) -> Result<Box<dyn Subscription>, BusError> {
        let mut subscription = EmbeddedSubscription {
            log: self.clone(),
            group: group.to_owned(),
            member: member.to_owned(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            positions: BTreeMap::new(),
            leases_renewed_at: None,
            first_partition: 0,
        };
        subscription.renew_leases().await?;
        Ok(Box::new(subscription))
    }

    /// Fails while the log's storage fails (checking with one write whether it recovered).
    async fn ping(&self) -> Result<(), BusError> {
        sqlx::query("SELECT 1").execute(self.db.reader()).await?;
        match self.health.failing() {
            Some(failing) if self.record(self.probe_write().await).is_err() => {
                Err(BusError::Failing(failing))
            }
            _ => Ok(()),
        }
    }

    async fn group_backlog(&self, group: &str, topics: &[&str]) -> Result<i64, BusError> {
        let mut behind = 0;
        for topic in topics {
            behind += sqlx::query_scalar::<_, i64>(
                "SELECT COALESCE(SUM(h.head - COALESCE(o.next_position, 0)), 0) FROM
                   (SELECT partition, MAX(position) + 1 AS head FROM log WHERE topic = $1
                    GROUP BY partition) h
                 LEFT JOIN group_offsets o
                   ON o.grp = $2 AND o.topic = $1 AND o.partition = h.partition",
            )
            .bind(topic)
            .bind(group)
            .fetch_one(self.db.reader())
            .await?;
        }
        Ok(behind)
    }

    async fn read_topic(&self, topic: &str) -> Result<Vec<Envelope>, BusError> {
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT partition, position, envelope FROM log WHERE topic = $1
             ORDER BY partition, position",
        )
        .bind(topic)
        .fetch_all(self.db.reader())
        .await?;
        rows.into_iter()
            .map(|(partition, offset, envelope)| {
                serde_json::from_str(&envelope).map_err(|source| BusError::Corrupt {
                    topic: topic.to_owned(),
                    partition: partition as u32,
                    offset,
                    source,
                })
            })
            .collect()
    }
}

impl EmbeddedLog {
    /// Tells the log's storage health how a write went.
    fn record<T>(&self, written: Result<T, BusError>) -> Result<T, BusError> {
        record(&self.health, &written);
        written
    }

    async fn probe_write(&self) -> Result<(), BusError> {
        let mut tx = self.db.begin_write().await?;
        db::write_probe(Conn::Sqlite(&mut tx)).await?;
        tx.commit().await?;
        Ok(())
    }
}

fn record<T>(health: &StorageHealth, written: &Result<T, BusError>) {
    match written {
        Ok(_) => health.succeeded(),
        Err(BusError::Storage(error)) => health.observe(error),
        Err(_) => {}
    }
}

/// The one writer of this process: folds queued appends into one transaction.
async fn write_appends(
    db: SqliteFile,
    health: Arc<StorageHealth>,
    mut requests: mpsc::Receiver<AppendRequest>,
    changed: Arc<watch::Sender<u64>>,
    default_partitions: u32,
) {
    let mut cache = WriterCache::default();
    while let Some(first) = requests.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP_COMMIT {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let result = append(&db, &mut cache, default_partitions, &batch).await;
        record(&health, &result);
        if result.is_err() {
            cache.heads.clear();
        }
        if result.is_ok() {
            changed.send_modify(|generation| *generation += 1);
        }
        let failure = result.err().map(|e| e.to_string());
        for request in batch {
            let outcome = match &failure {
                None => Ok(()),
                Some(message) => Err(BusError::Append(message.clone())),
            };
            let _ = request.done.send(outcome);
        }
    }
}

/// What the writer knows of the file between its transactions, so that an append does
/// not have to look it up again.
#[derive(Default)]
struct WriterCache {
    /// Partition count of each topic; fixed once the topic exists.
    partitions_of: HashMap<String, u32>,
    /// Next position of each partition; valid only while no other process appended.
    heads: HashMap<String, HashMap<u32, i64>>,
    /// `PRAGMA data_version` of the writer connection after our last commit: it changes
    /// only when another connection (another process) commits to the file.
    data_version: Option<i64>,
}

async fn append(
    db: &SqliteFile,
    cache: &mut WriterCache,
    default_partitions: u32,
    batch: &[AppendRequest],
) -> Result<(), BusError> {
    let mut tx = db.begin_write().await?;
    let data_version: i64 = sqlx::query_scalar("PRAGMA data_version")
        .fetch_one(&mut *tx)
        .await?;
    if cache.data_version != Some(data_version) {
        cache.heads.clear();
    }
    let appended_at_us = chrono::Utc::now().timestamp_micros();
    let mut rows = Vec::new();
    for event in batch.iter().flat_map(|request| &request.events) {
        let topic = event.topic.as_str();
        let partitions = match cache.partitions_of.get(topic) {
            Some(&partitions) => partitions,
            None => {
                let partitions = ensure_topic(&mut tx, topic, default_partitions).await?;
                cache.partitions_of.insert(topic.to_owned(), partitions);
                partitions
            }
        };
        let partition = partition_for(&event.envelope.subject, partitions);
        let heads = cache.heads.entry(topic.to_owned()).or_default();
        let position = match heads.get(&partition) {
            Some(&head) => head,
            None => head_of(&mut tx, topic, partition).await?,
        };
        heads.insert(partition, position + 1);
        let envelope = serde_json::to_string(&event.envelope).expect("envelopes always serialise");
        rows.push((topic, partition, position, envelope));
    }
    // Many rows per statement: per-statement overhead, not SQLite, bounds the append rate.
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        QueryBuilder::<Sqlite>::new(
            "INSERT INTO log (topic, partition, position, envelope, appended_at_us) ",
        )
        .push_values(chunk, |mut row, (topic, partition, position, envelope)| {
            row.push_bind(*topic)
                .push_bind(*partition)
                .push_bind(*position)
                .push_bind(envelope.as_str())
                .push_bind(appended_at_us);
        })
        .build()
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    cache.data_version = Some(data_version);
    Ok(())
}

/// Creates `topic` with `partitions` unless it exists; returns its partition count.
async fn ensure_topic(
    conn: &mut SqliteConnection,
    topic: &str,
    partitions: u32,
) -> Result<u32, sqlx::Error> {
    sqlx::query("INSERT INTO topics (topic, partitions) VALUES (?, ?) ON CONFLICT DO NOTHING")
        .bind(topic)
        .bind(partitions)
        .execute(&mut *conn)
        .await?;
    sqlx::query_scalar("SELECT partitions FROM topics WHERE topic = ?")
        .bind(topic)
        .fetch_one(&mut *conn)
        .await
}

/// The position the next event of a partition gets.
async fn head_of(
    conn: &mut SqliteConnection,
    topic: &str,
    partition: u32,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COALESCE(MAX(position) + 1, 0) FROM log WHERE topic = ? AND partition = ?",
    )
    .bind(topic)
    .bind(partition)
    .fetch_one(&mut *conn)
    .await
}

/// Wakes this process's consumers when another process commits to the log.
async fn watch_other_writers(db: SqliteFile, changed: Weak<watch::Sender<u64>>) {
    let mut last_version: Option<i64> = None;
    let Ok(mut conn) = db.reader().acquire().await else {
        return;
    };
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        let Some(changed) = changed.upgrade() else {
            return;
        };
        let Ok(version) = sqlx::query_scalar::<_, i64>("PRAGMA data_version")
            .fetch_one(&mut *conn)
            .await
        else {
            continue;
        };
        if last_version.is_some_and(|last| last != version) {
            changed.send_modify(|generation| *generation += 1);
        }
        last_version = Some(version);
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

struct EmbeddedSubscription {
    log: EmbeddedLog,
    group: String,
    member: String,
    topics: Vec<String>,
    /// Partitions this member holds, with the group's next position in each.
    positions: BTreeMap<(String, u32), i64>,
    leases_renewed_at: Option<Instant>,
    /// Rotates so that a busy partition cannot starve the others.
    first_partition: usize,
}

impl EmbeddedSubscription {
    /// Claims every partition of the topics that is free or whose lease ran out, renews
    /// the ones held, and reloads the group's positions in them.
    async fn renew_leases(&mut self) -> Result<(), BusError> {
        let renewed = self.claim_leases().await;
        self.log.record(renewed)
    }

    async fn claim_leases(&mut self) -> Result<(), BusError> {
        let now = now_ms();
        let expires_at = now + LEASE.as_millis() as i64;
        let mut tx = self.log.db.begin_write().await?;
        let mut positions = BTreeMap::new();
        for topic in &self.topics {
            let partitions = ensure_topic(&mut tx, topic, self.log.default_partitions).await?;
            for partition in 0..partitions {
                let held = sqlx::query(
                    "INSERT INTO leases (grp, topic, partition, member, expires_at_ms)
                     VALUES (?, ?, ?, ?, ?)
                     ON CONFLICT (grp, topic, partition) DO UPDATE
                     SET member = excluded.member, expires_at_ms = excluded.expires_at_ms
                     WHERE leases.member = excluded.member OR leases.expires_at_ms < ?",
                )
                .bind(&self.group)
                .bind(topic)
                .bind(partition)
                .bind(&self.member)
                .bind(expires_at)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if held {
                    let position: Option<i64> = sqlx::query_scalar(
                        "SELECT next_position FROM group_offsets WHERE grp = ? AND topic = ? AND partition = ?",
                    )
                    .bind(&self.group)
                    .bind(topic)
                    .bind(partition)
                    .fetch_optional(&mut *tx)
                    .await?;
                    positions.insert((topic.clone(), partition), position.unwrap_or(0));
                }
            }
        }
        tx.commit().await?;
        self.positions = positions;
        self.leases_renewed_at = Some(Instant::now());
        Ok(())
    }

    async fn commit_offsets(&mut self, records: &[Record]) -> Result<(), BusError> {
        let mut next: BTreeMap<(&str, u32), i64> = BTreeMap::new();
        for record in records {
            let entry = next.entry((&record.topic, record.partition)).or_default();
            *entry = (*entry).max(record.offset + 1);
        }
        if next.is_empty() {
            return Ok(());
        }
        let mut tx = self.log.db.begin_write().await?;
        for (&(topic, partition), &position) in &next {
            // Only a member still holding the lease may move the group's offset.
            sqlx::query(
                "INSERT INTO group_offsets (grp, topic, partition, next_position)
                 SELECT ?, ?, ?, ? WHERE EXISTS (
                     SELECT 1 FROM leases WHERE grp = ? AND topic = ? AND partition = ? AND member = ?)
                 ON CONFLICT (grp, topic, partition) DO UPDATE SET next_position = excluded.next_position",
            )
            .bind(&self.group)
            .bind(topic)
            .bind(partition)
            .bind(position)
            .bind(&self.group)
            .bind(topic)
            .bind(partition)
            .bind(&self.member)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        for ((topic, partition), position) in next {
            if let Some(held) = self.positions.get_mut(&(topic.to_owned(), partition)) {
                *held = position;
            }
        }
        Ok(())
    }

    async fn read(&mut self, max: usize) -> Result<Vec<Record>, BusError> {
        let mut records = Vec::new();
        let held: Vec<_> = self
            .positions
            .iter()
            .map(|(k, &v)| (k.clone(), v))
            .collect();
        if held.is_empty() {
            return Ok(records);
        }
        self.first_partition = (self.first_partition + 1) % held.len();
        for ((topic, partition), position) in held
            .iter()
            .cycle()
            .skip(self.first_partition)
            .take(held.len())
        {
            let remaining = max - records.len();
            if remaining == 0 {
                break;
            }
            let rows: Vec<(i64, String)> = sqlx::query_as(
                "SELECT position, envelope FROM log
                 WHERE topic = ? AND partition = ? AND position >= ?
                 ORDER BY position LIMIT ?",
            )
            .bind(topic)
            .bind(partition)
            .bind(position)
            .bind(remaining as i64)
            .fetch_all(self.log.db.reader())
            .await?;
            for (offset, envelope) in rows {
                let envelope: Envelope =
                    serde_json::from_str(&envelope).map_err(|source| BusError::Corrupt {
                        topic: topic.clone(),
                        partition: *partition,
                        offset,
                        source,
                    })?;
                records.push(Record {
                    topic: topic.clone(),
                    partition: *partition,
                    offset,
                    envelope,
                });
            }
        }
        Ok(records)
    }
}

#[async_trait]
impl Subscription for EmbeddedSubscription {
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, BusError> {
        if self
            .leases_renewed_at
            .is_none_or(|at| at.elapsed() > LEASE / 3)
        {
            self.renew_leases().await?;
        }
        // Any commit to the file wakes us (offset commits too), so look again until
        // records come or the wait is over.
        let deadline = tokio::time::Instant::now() + wait;
        let mut changes = self.log.changes.clone();
        loop {
            changes.borrow_and_update();
            let records = self.read(max).await?;
            if !records.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(records);
            }
            let _ = tokio::time::timeout_at(deadline, changes.changed()).await;
        }
    }

    async fn commit(&mut self, records: &[Record]) -> Result<(), BusError> {
        let committed = self.commit_offsets(records).await;
        self.log.record(committed)
    }

    async fn lag(&mut self) -> Result<Vec<PartitionLag>, BusError> {
        let mut lags = Vec::with_capacity(self.positions.len());
        let mut conn = self.log.db.reader().acquire().await?;
        for ((topic, partition), position) in &self.positions {
            let head = head_of(&mut conn, topic, *partition).await?;
            lags.push(PartitionLag {
                topic: topic.clone(),
                partition: *partition,
                lag: head - position,
            });
        }
        Ok(lags)
    }

    async fn close(&mut self) -> Result<(), BusError> {
        sqlx::query("DELETE FROM leases WHERE grp = ? AND member = ?")
            .bind(&self.group)
            .bind(&self.member)
            .execute(self.log.db.writer())
            .await?;
        self.positions.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use contracts::{Envelope, events::OrderConfirmed};
    use uuid::Uuid;

    use super::*;

    fn event(topic: &str, key: Uuid) -> OutgoingEvent {
        OutgoingEvent {
            topic: topic.to_owned(),
            envelope: Envelope::new("test", key, &OrderConfirmed { order_id: key }, key),
        }
    }

    async fn open(dir: &tempfile::TempDir) -> EmbeddedLog {
        EmbeddedLog::open(&dir.path().join("bus.db"), Durability::Normal, 4)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn events_of_one_key_arrive_in_order_and_committed_ones_are_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(&dir).await;
        let key = Uuid::now_v7();
        let sent: Vec<_> = (0..10).map(|_| event("t", key)).collect();
        log.publish(sent.clone()).await.unwrap();

        let mut subscription = log.subscribe("g", "m", &["t"]).await.unwrap();
        let batch = subscription.next_batch(100, Duration::ZERO).await.unwrap();
        let ids: Vec<_> = batch.iter().map(|r| r.envelope.id).collect();
        assert_eq!(ids, sent.iter().map(|e| e.envelope.id).collect::<Vec<_>>());

        subscription.commit(&batch[..4]).await.unwrap();
        let rest = subscription.next_batch(100, Duration::ZERO).await.unwrap();
        assert_eq!(rest.len(), 6);
        assert_eq!(rest[0].envelope.id, sent[4].envelope.id);
    }

    #[tokio::test]
    async fn committed_offsets_survive_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = Uuid::now_v7();
        {
            let log = open(&dir).await;
            log.publish((0..3).map(|_| event("t", key)).collect())
                .await
                .unwrap();
            let mut subscription = log.subscribe("g", "m", &["t"]).await.unwrap();
            let batch = subscription.next_batch(2, Duration::ZERO).await.unwrap();
            subscription.commit(&batch).await.unwrap();
        }
        let log = open(&dir).await;
        let mut subscription = log.subscribe("g", "m", &["t"]).await.unwrap();
        let batch = subscription.next_batch(100, Duration::ZERO).await.unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].offset, 2);
    }

    #[tokio::test]
    async fn each_group_sees_every_event_and_a_second_member_gets_no_partition_twice() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(&dir).await;
        log.publish((0..20).map(|_| event("t", Uuid::now_v7())).collect())
            .await
            .unwrap();
        let mut first = log.subscribe("a", "m1", &["t"]).await.unwrap();
        let mut second_member = log.subscribe("a", "m2", &["t"]).await.unwrap();
        let mut other_group = log.subscribe("b", "m1", &["t"]).await.unwrap();
        assert_eq!(
            first.next_batch(100, Duration::ZERO).await.unwrap().len(),
            20
        );
        assert!(
            second_member
                .next_batch(100, Duration::ZERO)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            other_group
                .next_batch(100, Duration::ZERO)
                .await
                .unwrap()
                .len(),
            20
        );

        first.close().await.unwrap();
        let mut third = log.subscribe("a", "m3", &["t"]).await.unwrap();
        assert_eq!(
            third.next_batch(100, Duration::ZERO).await.unwrap().len(),
            20
        );
    }

    #[tokio::test]
    async fn a_waiting_consumer_is_woken_by_a_publish() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(&dir).await;
        let mut subscription = log.subscribe("g", "m", &["t"]).await.unwrap();
        let publisher = log.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            publisher
                .publish(vec![event("t", Uuid::now_v7())])
                .await
                .unwrap();
        });
        let started = Instant::now();
        let batch = subscription
            .next_batch(10, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(batch.len(), 1);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_consumer_sees_what_another_process_appends() {
        let dir = tempfile::tempdir().unwrap();
        let reader = open(&dir).await;
        let other_process = open(&dir).await;
        let mut subscription = reader.subscribe("g", "m", &["t"]).await.unwrap();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            other_process
                .publish(vec![event("t", Uuid::now_v7())])
                .await
                .unwrap();
        });
        let batch = subscription
            .next_batch(10, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(batch.len(), 1);
    }

    #[tokio::test]
    async fn two_processes_appending_to_one_partition_interleave_without_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (open(&dir).await, open(&dir).await);
        let key = Uuid::now_v7();
        for round in 0..5 {
            let writer = if round % 2 == 0 { &first } else { &second };
            writer
                .publish(vec![event("t", key), event("t", key)])
                .await
                .unwrap();
        }
        let mut subscription = first.subscribe("g", "m", &["t"]).await.unwrap();
        let offsets: Vec<_> = subscription
            .next_batch(100, Duration::ZERO)
            .await
            .unwrap()
            .iter()
            .map(|r| r.offset)
            .collect();
        assert_eq!(offsets, (0..10).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn lag_counts_what_is_not_committed() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(&dir).await;
        let key = Uuid::now_v7();
        log.publish((0..5).map(|_| event("t", key)).collect())
            .await
            .unwrap();
        let mut subscription = log.subscribe("g", "m", &["t"]).await.unwrap();
        let batch = subscription.next_batch(2, Duration::ZERO).await.unwrap();
        subscription.commit(&batch).await.unwrap();
        let total: i64 = subscription
            .lag()
            .await
            .unwrap()
            .iter()
            .map(|l| l.lag)
            .sum();
        assert_eq!(total, 3);
    }
}
