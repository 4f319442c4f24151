//! `betrace-floor`: the decode floor of `make bench`, as it has been measured since the
//! first row of BENCHMARKS.md — prost decoding every batch into the OTLP types with the
//! system allocator. It is a binary of its own because it must not link the engine, whose
//! global allocator (mimalloc) would change the floor under the history's feet.

#[path = "../frames.rs"]
mod frames;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let inputs: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if inputs.is_empty() {
        eprintln!("usage: betrace-floor FILE_OR_DIR...  (file-exporter `format: proto` files)");
        return ExitCode::from(2);
    }
    let (batches, spans) = match frames::decode_all(&inputs) {
        Ok(counts) => counts,
        Err(e) => {
            eprintln!("betrace-floor: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{{\"batches\":{batches},\"spans\":{spans}}}");
    ExitCode::SUCCESS
}
