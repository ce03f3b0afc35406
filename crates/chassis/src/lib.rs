//! The chassis: everything a 12st mall service gets for free, so that service code is
//! business logic only (DESIGN.md section 3).
//!
//! - [`config`]: settings from the environment with defaults, validated at start;
//! - [`server`]: the axum stack (request id, trace context, metrics, body limit, timeout,
//!   problem+json for every error, health and metrics endpoints, graceful shutdown);
//! - [`bus`]: the event bus trait and its embedded, SQLite-backed log;
//! - [`outbox`] and [`inbox`]: state change and its events in one transaction, and
//!   redelivered events recognised and skipped;
//! - [`consumer`]: runs an event handler with retries and a dead-letter topic;
//! - [`dead_letters`]: what consumers gave up on, listed and replayed over HTTP;
//! - [`faults`]: latency, errors and crashes injected for tests, refused in production;
//! - [`flows`]: what a service declares it reacts to and emits, which its consumer obeys;
//! - [`breaker`]: a circuit breaker for synchronous calls to other services;
//! - [`instances`]: the base URLs of a service that runs as several, taken in turn;
//! - [`auth`]: bearer token verification against the issuer's JWKS, and the `Caller`;
//! - [`openapi`]: each service's API document, generated from its handlers;
//! - [`ui`]: the service's web components, embedded, for the shell page to compose;
//! - [`retry`]: backoff for loops that retry until the trouble passes, logged once;
//! - [`storage`]: whether a database takes work now, for logs, readiness and metrics;
//! - [`text`]: free text from clients, normalised and cleaned of what poisons or fools;
//! - [`spans`]: OpenTelemetry spans of every request, event and transaction, exported
//!   over OTLP and kept in a bounded store for `/debug/traces`;
//! - [`logs`]: JSON log lines as Cloud Logging reads them, tied to their trace;
//! - [`problem`], [`telemetry`], [`trace`]: errors, logs and metrics, W3C trace context;
//!   `collectors`: the metrics read at scrape time (the process's, the database pools').

pub mod auth;
pub mod breaker;
pub mod bus;
mod collectors;
pub mod config;
pub mod consumer;
pub mod db;
pub mod dead_letters;
pub mod faults;
pub mod flows;
pub mod inbox;
pub mod instances;
pub mod logs;
pub mod openapi;
pub mod outbox;
pub mod problem;
pub mod retry;
pub mod runtime;
pub mod server;
pub mod spans;
pub mod storage;
pub mod telemetry;
pub mod text;
pub mod trace;
pub mod ui;

pub use runtime::ServiceRuntime;
