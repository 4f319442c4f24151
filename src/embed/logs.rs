//! The engine's own log events (`tracing`), captured for the caller instead of printed.
//!
//! Embedded in the collector, BeTrace's warnings must land in the collector's log with its
//! level filtering, not on stderr. A `tracing` layer keeps events at or above a level in a
//! bounded queue; the host drains it (as JSON lines) on its own schedule and logs each
//! event through its own logger. Pulling, rather than calling back, keeps foreign threads
//! out of the host's runtime.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::OnceLock;

use parking_lot::Mutex;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Most events kept between drains; older ones are dropped and counted.
pub const MAX_EVENTS: usize = 10_000;

static QUEUE: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// 0 off, 1 error, 2 warn, 3 info, 4 debug, 5 trace.
static MAX_LEVEL: AtomicU8 = AtomicU8::new(3);
static INSTALLED: OnceLock<bool> = OnceLock::new();

/// Installs the capturing layer as the process's default subscriber, once. Returns false
/// when another subscriber was installed first (events then go there).
pub fn install() -> bool {
    *INSTALLED.get_or_init(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Capture))
            .is_ok()
    })
}

/// Sets the most verbose level kept: 0 off, 1 error, 2 warn, 3 info (default), 4 debug,
/// 5 trace.
pub fn set_max_level(level: u8) {
    MAX_LEVEL.store(level.min(5), Relaxed);
}

/// Takes the captured events as JSON lines: `{"level","target","message",…fields}`.
pub fn drain() -> String {
    let mut q = QUEUE.lock();
    let mut out = String::new();
    let dropped = DROPPED.swap(0, Relaxed);
    if dropped > 0 {
        let _ = writeln!(
            out,
            "{}",
            serde_json::json!({"level": "WARN", "target": "betrace", "message": format!("{dropped} log events dropped: not drained in time")})
        );
    }
    for line in q.drain(..) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn rank(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

struct Capture;

#[derive(Default)]
struct Fields {
    message: String,
    extra: serde_json::Map<String, serde_json::Value>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.extra.insert(
                field.name().to_string(),
                serde_json::Value::String(format!("{value:?}")),
            );
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.extra.insert(
                field.name().to_string(),
                serde_json::Value::String(value.to_string()),
            );
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.extra.insert(field.name().to_string(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.extra.insert(field.name().to_string(), value.into());
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if rank(meta.level()) > MAX_LEVEL.load(Relaxed) {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut obj = fields.extra;
        obj.insert("level".into(), meta.level().as_str().into());
        obj.insert("target".into(), meta.target().into());
        obj.insert("message".into(), fields.message.into());
        let line = serde_json::Value::Object(obj).to_string();
        let mut q = QUEUE.lock();
        if q.len() >= MAX_EVENTS {
            q.pop_front();
            DROPPED.fetch_add(1, Relaxed);
        }
        q.push_back(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_captured_as_json_lines_with_level_filtering() {
        assert!(install());
        set_max_level(2);
        tracing::info!(target: "betrace", "not kept at warn");
        tracing::warn!(target: "betrace", dropped = 3u64, "signals dropped");
        let out = drain();
        // Other tests in this process may log concurrently: look for ours only.
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(
            !lines.iter().any(|l| l["message"] == "not kept at warn"),
            "{out}"
        );
        let ours: Vec<&serde_json::Value> = lines
            .iter()
            .filter(|l| l["message"] == "signals dropped")
            .collect();
        assert_eq!(ours.len(), 1, "{out}");
        assert_eq!(ours[0]["level"], "WARN");
        assert_eq!(ours[0]["target"], "betrace");
        assert_eq!(ours[0]["dropped"], 3);
        assert!(!drain().contains("signals dropped"), "drained once");
        set_max_level(3);
    }
}
