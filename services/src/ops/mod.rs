//! What operators run Gatehouse with: Prometheus metrics, readiness, and `gatehouse doctor`.
//!
//! Layout:
//! - [`metrics`]: the process's counters and histograms (recorded by [`crate::api::Operation::call`])
//!   and the gauges read from JetStream and Postgres at scrape time.
//! - [`expected`]: the streams and consumers the code creates, as configuration to compare with.
//! - [`queues`]: what JetStream says about them now (pending, redeliveries, dead letters, drift).
//! - [`ready`]: the readiness checks `/readyz` answers and `gatehouse doctor` starts with.
//! - [`doctor`]: `gatehouse doctor`'s checks (permissions, queue health, a synthetic journey).

pub mod doctor;
pub mod expected;
mod journey;
pub mod metrics;
pub mod queues;
pub mod ready;
