//! The cost per span of the live path, through the C ABI and in process: ingest one OTLP
//! batch (decode, assemble), judge every trace in it against the 87 library rules, and take
//! the signals out as OTLP log-record bytes. Batches of 100 and 1,000 spans from the corpus
//! generator, 5% of traces violating. Each iteration gets a fresh engine (not timed).

use std::hint::black_box;

use betrace::diagnostic::SourceFile;
use betrace::embed::ffi::*;
use betrace::embed::session::{Live, Outputs};
use betrace::engine::buffer::BufferConfig;
use betrace_corpus::{batches, encode, generate, Format};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

const HOUR: u64 = 3_600_000_000_000;

fn library() -> Vec<SourceFile> {
    betrace::rules::read_sources(&[concat!(env!("CARGO_MANIFEST_DIR"), "/examples/rules")])
        .expect("examples/rules is readable")
}

fn batch_bytes(spans: usize) -> Vec<u8> {
    let corpus = generate(21, spans, 0.05);
    let b = batches(&corpus, spans);
    encode(&b[0], Format::Proto)
}

fn live_path(c: &mut Criterion) {
    let files = library();
    let sources: Vec<betrace_source> = files
        .iter()
        .map(|f| betrace_source {
            name: f.name.as_ptr(),
            name_len: f.name.len(),
            text: f.text.as_ptr(),
            text_len: f.text.len(),
        })
        .collect();
    let mut group = c.benchmark_group("live");
    for spans in [100usize, 1000] {
        let bytes = batch_bytes(spans);
        group.throughput(Throughput::Elements(spans as u64));
        group.bench_with_input(BenchmarkId::new("in-process", spans), &bytes, |b, bytes| {
            b.iter_batched(
                || Live::new(files.clone(), BufferConfig::default(), Outputs::default()).unwrap(),
                |live| {
                    live.ingest(black_box(bytes), 0, 0).unwrap();
                    live.tick(HOUR);
                    black_box(live.take_logs());
                    live
                },
                BatchSize::PerIteration,
            )
        });
        group.bench_with_input(BenchmarkId::new("c-abi", spans), &bytes, |b, bytes| {
            b.iter_batched(
                || {
                    let mut e = std::ptr::null_mut();
                    // SAFETY: `sources` points into `files`, alive for the whole bench;
                    // `e` is a live local.
                    let rc = unsafe {
                        betrace_engine_new(
                            sources.as_ptr(),
                            sources.len(),
                            std::ptr::null(),
                            &mut e,
                            std::ptr::null_mut(),
                        )
                    };
                    assert_eq!(rc, BETRACE_OK);
                    Handle(e)
                },
                |h| {
                    let mut out = betrace_buf {
                        ptr: std::ptr::null_mut(),
                        len: 0,
                    };
                    // SAFETY: `h.0` is a live handle; `bytes` is valid for the call; the
                    // returned buffer is freed once.
                    unsafe {
                        assert_eq!(
                            betrace_engine_ingest(
                                h.0,
                                0,
                                bytes.as_ptr(),
                                bytes.len(),
                                0,
                                std::ptr::null_mut()
                            ),
                            BETRACE_OK
                        );
                        betrace_engine_tick(h.0, HOUR, std::ptr::null_mut());
                        betrace_engine_take_logs(
                            h.0,
                            &mut out,
                            std::ptr::null_mut(),
                            std::ptr::null_mut(),
                        );
                        black_box(out.len);
                        betrace_buf_free(&mut out);
                    }
                    h
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// Frees the engine when criterion drops the iteration's output (not timed).
struct Handle(*mut betrace_engine);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: a handle from betrace_engine_new, freed once, with no call running on it.
        unsafe { betrace_engine_free(self.0) }
    }
}

criterion_group!(benches, live_path);
criterion_main!(benches);
