//! Black-box tests: each starts a real shop (`mall up`) on free ports in a temporary
//! folder and speaks HTTP to its gateway; some also read the shop's files, as an operator
//! would, to prove that nothing was stored or published.

mod api_document;
mod auth;
mod bad_input;
mod canary;
mod chaos;
mod documents;
mod front_door;
mod full_disk;
mod helpers;
mod hostile;
mod hostile_logins;
mod kafka;
mod metrics;
mod monitoring;
mod mypage;
mod operations;
mod operator;
mod orders;
mod outage;
mod races;
mod recovery;
mod replicas;
mod resilience;
mod saga;
mod shutdown;
mod traces;
