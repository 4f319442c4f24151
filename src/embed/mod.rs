//! BeTrace inside another program, the collector first:
//!
//! * [`session`] is the live engine as a host drives it — OTLP bytes in per batch, a clock
//!   tick, signals out as OTLP bytes — in safe code;
//! * [`ffi`] is the C ABI over it (`ffi/betrace.h`), and the only `unsafe` in the crate;
//! * `journal` tells a host with storage which stored batches it still needs;
//! * `outbox` holds signals until the host takes them, bounded;
//! * [`logs`] captures the engine's own log events for the host's logger.

pub mod ffi;
pub(crate) mod journal;
pub mod logs;
pub(crate) mod outbox;
pub mod session;
