//! Behaviour of `#[redis_locked]` against real redis-server processes.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod smoke;
