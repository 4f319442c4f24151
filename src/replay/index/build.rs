//! Building an input's index: every record read as a replay reads it, and walked — not
//! decoded — on every core to find where its spans lie ([`crate::otlp::layout`]).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crossbeam_channel::Receiver;

use super::{trace_key, Entry, Index, Stamp};
use crate::otlp::layout::Layout;
use crate::otlp::{json, protobuf};
use crate::replay::input::{self, BadRecord, Limits, Location, Pending, Record};
use crate::trace::projected::Projection;

/// What building an index met.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Built {
    /// Records read.
    pub records: u64,
    /// Spans placed.
    pub spans: u64,
    /// Distinct traces.
    pub traces: u64,
    /// Distinct span names.
    pub names: u64,
    /// Records that could not be read (each also reported as it was met).
    pub bad_records: u64,
    /// Records that will be decoded whole by a replay (a span in them could not be placed
    /// without doubt, or their structure could not be walked).
    pub whole: u64,
}

/// One record as the walking threads leave it.
struct Walked {
    json: bool,
    location: Location,
    stored: Option<input::Stored>,
    whole: bool,
    /// Each placed span's trace key, name (a number among `names`) and service.
    spans: Vec<(u64, u32, Option<u32>)>,
    names: Vec<String>,
    services: Vec<String>,
    shape: Option<crate::otlp::layout::Shape>,
    /// The time the record stands for when inputs are merged, when asked for.
    time: Option<u64>,
}

/// What the reading thread hands on, in the input's order.
enum Step {
    Record(Receiver<Walked>),
    Bad(BadRecord),
}

/// Builds the index of the file `path` (`name` in reports), walking its records on
/// `pool`; `on_bad` hears of each record that cannot be read. Fails when the file cannot
/// be opened.
pub fn build(
    name: &str,
    path: &str,
    limits: Limits,
    pool: &Arc<rayon::ThreadPool>,
    bytes_read: Arc<AtomicU64>,
    on_bad: &mut dyn FnMut(&BadRecord),
) -> Result<(Index, Built), BadRecord> {
    let stamp =
        Stamp::of(std::path::Path::new(path), limits.max_record_bytes as u64).map_err(|e| {
            BadRecord {
                source: name.into(),
                location: Location::Whole,
                message: e.to_string(),
            }
        })?;
    let (tx, rx) = crossbeam_channel::bounded::<Step>(4 * pool.current_num_threads() + 4);
    let projection = Arc::new(Projection::new(Vec::<String>::new(), false));
    // The first records are decoded whole too, until one gives the time the input starts
    // at (a replay opens inputs in that order, and need not decode anything to know it).
    let found = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let horizon = crate::engine::signal::now_unix_nano().saturating_add(super::super::FUTURE_SLACK);
    let reader = {
        let (name, path, pool) = (name.to_string(), path.to_string(), pool.clone());
        let found = found.clone();
        let mut timed = 0;
        std::thread::Builder::new()
            .name("betrace-index-read".into())
            .spawn(move || {
                let sink = &mut |r: Record| {
                    let step = match r {
                        Record::Pending(p) => {
                            let (done, rx) = crossbeam_channel::bounded(1);
                            let time =
                                timed < 64 && !found.load(std::sync::atomic::Ordering::Relaxed);
                            timed += 1;
                            pool.spawn_fifo(move || {
                                let _ = done.send(walk(p, time.then_some(horizon)));
                            });
                            Step::Record(rx)
                        }
                        Record::Bad(b) => Step::Bad(b),
                        Record::Batch(..) => unreachable!("records are read deferred"),
                    };
                    tx.send(step).is_ok()
                };
                input::read_deferred(&name, &path, bytes_read, limits, &projection, true, sink);
            })
            .expect("spawn a reading thread")
    };
    let mut asm = Assembly::default();
    let mut built = Built::default();
    let mut bad = Vec::new();
    for step in rx {
        match step {
            Step::Bad(b) => {
                // A file that cannot be opened is no index at all.
                if b.location == Location::Whole && asm.records.is_empty() && bad.is_empty() {
                    let _ = reader.join();
                    return Err(b);
                }
                on_bad(&b);
                built.bad_records += 1;
                bad.push((asm.records.len() as u32, b.location, b.message));
            }
            Step::Record(rx) => {
                let w = rx.recv().expect("the walking thread answers");
                built.whole += u64::from(w.whole);
                if asm.first_time.is_none() && w.time.is_some() {
                    asm.first_time = w.time;
                    found.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                asm.add(w);
            }
        }
    }
    reader.join().expect("the reading thread ends");
    // A read that failed part way (an I/O error) may not fail again: an index that stops
    // where it stopped would hide the rest of the input from every replay. Not written.
    if let Some((_, location, message)) = bad
        .iter()
        .find(|(_, l, m)| *l == Location::Whole && m.starts_with("read error"))
    {
        return Err(BadRecord {
            source: name.into(),
            location: location.clone(),
            message: message.clone(),
        });
    }
    built.records = asm.records.len() as u64;
    built.spans = asm.records.iter().map(|e| u64::from(e.spans)).sum();
    let index = asm.finish(stamp, bad);
    built.traces = index.traces.len() as u64;
    built.names = index.names.len() as u64;
    Ok((index, built))
}

/// Walks one record: where its spans lie, their traces, names and services; with a
/// `horizon`, also decodes it for the time it stands for (its median plausible end).
fn walk(p: Pending, horizon: Option<u64>) -> Walked {
    let (body, json, location, stored) = p.into_parts();
    let body = body.unwrap_or_default();
    let time = horizon.and_then(|h| {
        let nothing = Arc::new(Projection::new(Vec::<String>::new(), false));
        let batch = if json {
            crate::otlp::decode_json(&body, &nothing).ok()
        } else {
            crate::otlp::decode_protobuf(&body, &nothing).ok()
        };
        crate::replay::Stamp::of(&batch?, h).time
    });
    let layout: Option<Layout> = if body.len() > u32::MAX as usize {
        None
    } else if json {
        json::layout(&body).ok()
    } else {
        protobuf::layout(&body).ok()
    };
    let mut w = Walked {
        json,
        location,
        stored,
        whole: true,
        spans: Vec::new(),
        names: Vec::new(),
        services: Vec::new(),
        shape: None,
        time,
    };
    let Some(layout) = layout else {
        return w;
    };
    w.whole = !layout.sure;
    let mut names: HashMap<&str, u32> = HashMap::new();
    let services: Vec<Option<u32>> = layout
        .services
        .iter()
        .map(|s| {
            s.as_ref().map(|s| {
                w.services.push(s.clone());
                w.services.len() as u32 - 1
            })
        })
        .collect();
    let mut span_services = Vec::with_capacity(layout.spans.len());
    for (b, block) in layout.shape.blocks.iter().enumerate() {
        let n: u32 = block.scopes.iter().map(|s| s.spans).sum();
        span_services.extend(std::iter::repeat_n(services[b], n as usize));
    }
    for ((trace, name), service) in layout.spans.iter().zip(span_services) {
        let id = *names.entry(name).or_insert_with(|| {
            w.names.push(name.to_string());
            w.names.len() as u32 - 1
        });
        w.spans.push((trace_key(trace), id, service));
    }
    // JSON text cannot be walked again cheaply: its shape goes into the index.
    if json && !w.whole && stored.is_some_and(|s| !s.zstd) {
        w.shape = Some(layout.shape);
    }
    w
}

/// The index taking shape, record by record.
#[derive(Default)]
struct Assembly {
    /// Trace key → number.
    numbers: HashMap<u64, u32>,
    traces: Vec<u64>,
    names: Table,
    services: Table,
    records: Vec<Entry>,
    first_time: Option<u64>,
}

/// Names (or services) with the traces each occurs in (repeats removed at the end).
#[derive(Default)]
struct Table {
    numbers: HashMap<String, u32>,
    lists: Vec<(String, Vec<u32>)>,
}

impl Table {
    /// The number of `name`, added if new.
    fn intern(&mut self, name: String) -> u32 {
        if let Some(&n) = self.numbers.get(&name) {
            return n;
        }
        let n = self.lists.len() as u32;
        self.numbers.insert(name.clone(), n);
        self.lists.push((name, Vec::new()));
        n
    }

    /// Notes that name `n` occurs in trace `t`.
    fn note(&mut self, n: u32, t: u32) {
        let list = &mut self.lists[n as usize].1;
        if list.last() != Some(&t) {
            list.push(t);
        }
    }

    /// The table, sorted by name, each list ascending without repeats.
    fn finish(self) -> Vec<(String, Vec<u32>)> {
        let mut v = self.lists;
        for (_, list) in &mut v {
            list.sort_unstable();
            list.dedup();
        }
        v.sort();
        v
    }
}

impl Assembly {
    fn add(&mut self, w: Walked) {
        let names: Vec<u32> = w.names.into_iter().map(|n| self.names.intern(n)).collect();
        let services: Vec<u32> = w
            .services
            .into_iter()
            .map(|n| self.services.intern(n))
            .collect();
        let mut traces = Vec::with_capacity(if w.whole { 0 } else { w.spans.len() });
        for &(key, name, service) in &w.spans {
            let next = self.traces.len() as u32;
            let t = *self.numbers.entry(key).or_insert(next);
            if t == next {
                self.traces.push(key);
            }
            if !w.whole {
                traces.push(t);
            }
            self.names.note(names[name as usize], t);
            if let Some(s) = service {
                self.services.note(services[s as usize], t);
            }
        }
        self.records.push(Entry {
            json: w.json,
            location: w.location,
            stored: w.stored,
            whole: w.whole,
            spans: w.spans.len() as u32,
            traces,
            shape: w.shape,
        });
    }

    fn finish(self, stamp: Stamp, bad: Vec<(u32, Location, String)>) -> Index {
        let mut trace_spans = vec![0u32; self.traces.len()];
        for t in self.records.iter().flat_map(|e| &e.traces) {
            trace_spans[*t as usize] += 1;
        }
        Index {
            stamp,
            first_time: self.first_time,
            trace_spans,
            traces: self.traces,
            names: self.names.finish(),
            services: self.services.finish(),
            records: self.records,
            bad,
        }
    }
}
