//! Integration tests of clerk-bridge: one binary, one module per area (see `support` for the
//! in-process harness and `process` for the real binary).

mod binary;
mod clerk_api;
mod cli;
mod consumers;
mod damage;
mod durability;
mod edge;
mod fake_clerk;
mod fixtures;
mod ingest_first;
mod jetstream;
mod jetstream_faults;
mod lifecycle;
mod limits;
mod nats;
mod operations;
mod process;
mod snapshot;
mod subscription;
mod support;
mod sync;
mod webhooks;
