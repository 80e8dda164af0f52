//! Integration tests against the real nats-server and Postgres started by `scripts/test.sh`.
//! Each test gets its own database and namespace from [`helpers::spawn_app`].

mod access;
mod activation;
mod bench;
mod catalog;
mod categories;
mod command_cache;
mod commands;
mod console;
mod consumer;
mod fixtures;
mod flags;
mod helpers;
mod http;
mod http_client;
mod http_seed;
mod identity;
mod indexer;
mod ofrep;
mod openapi;
mod ops;
mod outage;
mod permissions;
mod policies;
mod projections;
mod projector_faults;
mod quarantine;
mod relay;
mod runs;
