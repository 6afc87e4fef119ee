//! The lock engine, written once for every topology: taking a lock (the
//! in-process line, attempts, waiting, handoffs), the life of a held lease (its
//! heartbeat and local deadline), releasing it, and the background releases
//! that clean up after cut-short requests. It talks to Redis only through
//! [`Backend`](crate::backend::Backend).
//!
//! Within the engine, imports run one way: `acquire` → `heartbeat`, `handoff`,
//! `line`; `release` → `heartbeat`, `line`; `heartbeat` → `lease` → `line` →
//! `pending`.

pub(crate) mod acquire;
mod handoff;
mod heartbeat;
pub(crate) mod lease;
pub(crate) mod line;
mod pending;
pub(crate) mod release;
