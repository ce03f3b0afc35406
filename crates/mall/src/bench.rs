//! `mall bench`: figures measured on this machine, printed for the reader.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use chassis::{
    bus::{EventBus, OutgoingEvent, embedded::EmbeddedLog},
    config::Durability,
};
use clap::Subcommand;
use contracts::{Envelope, events::OrderConfirmed};
use hdrhistogram::Histogram;
use uuid::Uuid;

#[derive(Subcommand)]
pub enum Target {
    /// The embedded event log: events/s from publish to consume, and the delivery
    /// latency (publish call to consumer receipt) percentiles.
    Bus {
        /// Events to publish in all.
        #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..))]
        events: u64,
        /// Concurrent publishers, each awaiting every publish (as the outbox relays do).
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        producers: u64,
        /// Events per publish call.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        batch: u64,
        /// Partitions of the topic.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
        partitions: u32,
        #[arg(long, value_enum, default_value_t = Durability::Normal)]
        durability: Durability,
    },
    /// The storage's commit rate: small transactions (one row each) on one service
    /// database, as the shop's services make them. The physical bound of the saga.
    Commits {
        /// Commits to make.
        #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
        commits: u64,
        #[arg(long, value_enum, default_value_t = Durability::Normal)]
        durability: Durability,
    },
}

pub async fn run(target: Target) -> anyhow::Result<()> {
    match target {
        Target::Bus {
            events,
            producers,
            batch,
            partitions,
            durability,
        } => bus(events, producers, batch, partitions, durability).await,
        Target::Commits {
            commits,
            durability,
        } => commit_rate(commits, durability).await,
    }
}

const TOPIC: &str = "bench.events.v1";

async fn bus(
    events: u64,
    producers: u64,
    batch: u64,
    partitions: u32,
    durability: Durability,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let log =
        Arc::new(EmbeddedLog::open(&dir.path().join("bus.db"), durability, partitions).await?);
    let mut subscription = log.subscribe("bench", "bench-0", &[TOPIC]).await?;
    let per_producer = events / producers / batch;
    let total = per_producer * producers * batch;
    println!(
        "embedded log: {total} events, {producers} publishers x {per_producer} publishes of {batch}, \
         {partitions} partitions, synchronous={durability:?}"
    );

    let started = Instant::now();
    let mut publishers = tokio::task::JoinSet::new();
    for _ in 0..producers {
        let log = log.clone();
        publishers.spawn(async move {
            for _ in 0..per_producer {
                let events = (0..batch)
                    .map(|_| {
                        let key = Uuid::now_v7();
                        OutgoingEvent {
                            topic: TOPIC.to_owned(),
                            envelope: Envelope::new(
                                "bench",
                                key,
                                &OrderConfirmed { order_id: key },
                                key,
                            ),
                        }
                    })
                    .collect();
                log.publish(events).await?;
            }
            anyhow::Ok(())
        });
    }

    let mut latency = Histogram::<u64>::new(3)?;
    let mut received = 0;
    while received < total {
        let records = subscription
            .next_batch(2_000, Duration::from_secs(10))
            .await?;
        if records.is_empty() {
            while let Some(published) = publishers.try_join_next() {
                published.context("a publisher panicked")??;
            }
            anyhow::bail!("no events for 10 s after {received}");
        }
        let now = chrono::Utc::now();
        for record in &records {
            let micros = (now - record.envelope.time)
                .num_microseconds()
                .unwrap_or(0)
                .max(1);
            latency.record(micros as u64)?;
        }
        received += records.len() as u64;
        subscription.commit(&records).await?;
    }
    let elapsed = started.elapsed();
    while let Some(published) = publishers.join_next().await {
        published.context("a publisher panicked")??;
    }
    let ms = |micros: u64| micros as f64 / 1_000.0;
    println!(
        "throughput: {:.0} events/s published and consumed ({total} in {:.2} s)",
        total as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!(
        "delivery latency: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(latency.value_at_quantile(0.50)),
        ms(latency.value_at_quantile(0.90)),
        ms(latency.value_at_quantile(0.99)),
        ms(latency.max())
    );
    Ok(())
}

async fn commit_rate(commits: u64, durability: Durability) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = chassis::db::SqliteFile::open(&dir.path().join("commits.db"), durability, 1).await?;
    sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
        .execute(db.writer())
        .await?;
    let started = Instant::now();
    for i in 0..commits {
        let mut tx = db.begin_write().await?;
        sqlx::query("INSERT INTO t (id, payload) VALUES (?, ?)")
            .bind(i as i64)
            .bind("an event's worth of text")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{commits} commits (BEGIN IMMEDIATE, one INSERT, COMMIT; synchronous={durability:?}) in {elapsed:.2} s: {:.0} commits/s",
        commits as f64 / elapsed
    );
    Ok(())
}
