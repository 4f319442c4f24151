//! The engine's own log events (`tracing`), captured for the caller instead of printed.
//!
//! Embedded in the collector, BeTrace's warnings must land in the collector's log with its
//! level filtering, not on stderr. A `tracing` layer keeps events in bounded queues; the
//! host drains them (as JSON lines) on its own schedule and logs each event through its own
//! logger. Pulling, rather than calling back, keeps foreign threads out of the host's
//! runtime.
//!
//! Each engine has its own queue and level ([`EngineLog`]): an event raised while a call
//! into an engine runs on this thread ([`EngineLog::enter`]) goes to that engine's queue,
//! if the engine's level keeps it, so two components of one collector each log their own
//! events under their own name and level. Events outside any engine's call go to a
//! process-wide queue ([`drain`]).

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

/// The events raised outside any engine's call.
static OUTSIDE: EngineLog = EngineLog::new();
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
    OUTSIDE.set_level(level);
}

/// One engine's log events and the most verbose level it keeps.
#[derive(Debug)]
pub struct EngineLog {
    queue: Mutex<VecDeque<String>>,
    dropped: AtomicU64,
    level: AtomicU8,
}

impl Default for EngineLog {
    fn default() -> Self {
        EngineLog::new()
    }
}

thread_local! {
    /// The engine whose call runs on this thread, if any.
    static CURRENT: std::cell::RefCell<Option<std::sync::Arc<EngineLog>>> =
        const { std::cell::RefCell::new(None) };
}

/// While alive, events on this thread go to one engine's log; dropping it restores what
/// was there before (calls may nest).
pub struct Entered {
    previous: Option<std::sync::Arc<EngineLog>>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

impl EngineLog {
    /// An empty log keeping info and above.
    pub const fn new() -> EngineLog {
        EngineLog {
            queue: Mutex::new(VecDeque::new()),
            dropped: AtomicU64::new(0),
            level: AtomicU8::new(3),
        }
    }

    /// Routes this thread's events to this log until the guard is dropped.
    pub fn enter(self: &std::sync::Arc<Self>) -> Entered {
        let previous = CURRENT.with(|c| c.borrow_mut().replace(self.clone()));
        Entered { previous }
    }

    /// Sets the most verbose level kept: 0 off, 1 error, 2 warn, 3 info (default), 4 debug,
    /// 5 trace — the level the host's logger asks for.
    pub fn set_level(&self, level: u8) {
        self.level.store(level.min(5), Relaxed);
    }

    /// Takes this log's events as JSON lines: `{"level","target","message",…fields}`.
    pub fn drain(&self) -> String {
        let mut q = self.queue.lock();
        let mut out = String::new();
        let dropped = self.dropped.swap(0, Relaxed);
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

    /// Keeps an event if this log's level does, dropping (and counting) the oldest when
    /// [`MAX_EVENTS`] are waiting.
    fn push(&self, level: &Level, line: impl FnOnce() -> String) {
        if rank(level) > self.level.load(Relaxed) {
            return;
        }
        let line = line();
        let mut q = self.queue.lock();
        if q.len() >= MAX_EVENTS {
            q.pop_front();
            self.dropped.fetch_add(1, Relaxed);
        }
        q.push_back(line);
    }
}

/// Takes the events raised outside any engine's call as JSON lines:
/// `{"level","target","message",…fields}`.
pub fn drain() -> String {
    OUTSIDE.drain()
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

/// An event as a JSON line.
fn line(event: &Event<'_>) -> String {
    let meta = event.metadata();
    let mut fields = Fields::default();
    event.record(&mut fields);
    let mut obj = fields.extra;
    obj.insert("level".into(), meta.level().as_str().into());
    obj.insert("target".into(), meta.target().into());
    obj.insert("message".into(), fields.message.into());
    serde_json::Value::Object(obj).to_string()
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = event.metadata().level();
        let current = CURRENT.with(|c| c.borrow().clone());
        match current {
            Some(log) => log.push(level, || line(event)),
            None => OUTSIDE.push(level, || line(event)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The process-wide queue and level are shared: the tests that read or set them take
    /// turns.
    static OUTSIDE_IN_USE: Mutex<()> = Mutex::new(());

    #[test]
    fn events_are_captured_as_json_lines_with_level_filtering() {
        let _turn = OUTSIDE_IN_USE.lock();
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

    #[test]
    fn events_inside_an_engine_s_call_go_to_that_engine_at_its_level() {
        let _turn = OUTSIDE_IN_USE.lock();
        assert!(install());
        let (a, b) = (
            std::sync::Arc::new(EngineLog::default()),
            std::sync::Arc::new(EngineLog::default()),
        );
        b.set_level(4);
        {
            let _in_a = a.enter();
            tracing::warn!(target: "betrace", "from a");
            tracing::debug!(target: "betrace", "a's debug, below a's level");
            {
                let _in_b = b.enter();
                tracing::debug!(target: "betrace", "b's debug");
            }
            tracing::info!(target: "betrace", "a again");
        }
        tracing::warn!(target: "betrace", "outside both");
        let (a, b) = (a.drain(), b.drain());
        assert!(a.contains("from a") && a.contains("a again"), "{a}");
        assert!(!a.contains("debug") && !a.contains("outside"), "{a}");
        assert!(b.contains("b's debug") && !b.contains("from a"), "{b}");
        assert!(drain().contains("outside both"));
    }
}
