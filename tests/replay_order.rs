//! Replay is exact in any order (docs/replay.md, "Order"): the same traffic, its lines
//! shuffled, spread over several replicas' files, duplicated, given in any order or on
//! standard input, under tiny memory limits, gives byte for byte the signals (and the
//! counts) of the same traffic in time order in one file.

mod common;

use std::path::PathBuf;

use betrace_corpus::{batches, encode, generate, Format};
use common::{replay, tmp, write_records, Rng};

/// The lines of the summary that count what was judged (not timings, not how).
fn counts(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| {
            l.contains(" spans in ") || l.contains("traces judged") || l.contains("late spans") || {
                // A rule's count: "      12  rule-id".
                let mut words = l.split_whitespace();
                words.next().is_some_and(|n| n.parse::<u64>().is_ok())
                    && words.next().is_some_and(|id| !id.is_empty())
                    && words.next().is_none()
            }
        })
        .map(|l| l.replace(' ', ""))
        // "replay: 3 inputs, 0.8 MB, …": the number of files and bytes differ.
        .map(|l| match l.find("MB,") {
            Some(i) => l[i + 3..].to_string(),
            None => l,
        })
        .collect()
}

struct Case {
    records: Vec<Vec<u8>>,
    format: Format,
}

fn case(seed: u64, traces: usize, format: Format) -> Case {
    let corpus = generate(seed, traces, 0.1);
    let mut records: Vec<Vec<u8>> = batches(&corpus, 64)
        .iter()
        .map(|b| encode(b, format))
        .collect();
    // Retried exports: some records twice, right after the first.
    let mut with_dups = Vec::new();
    for (i, r) in records.drain(..).enumerate() {
        if i % 11 == 3 {
            with_dups.push(r.clone());
        }
        with_dups.push(r);
    }
    Case {
        records: with_dups,
        format,
    }
}

fn run(extra: &[&str], inputs: &[PathBuf], stdin: Option<&[u8]>) -> (String, String) {
    let mut args = vec!["--rules", "examples/rules"];
    args.extend_from_slice(extra);
    let names: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    if stdin.is_some() {
        args.push("-");
    }
    let (code, out, err) = replay(&args, stdin);
    assert_eq!(code, 0, "{err}");
    (out, err)
}

/// Shuffles the records of `c` with `seed` into `files` files (and standard input when
/// `stdin`), replays them with `extra`, and checks the result equals the time-ordered one.
fn check_permutation(c: &Case, name: &str, seed: u64, files: usize, stdin: bool, extra: &[&str]) {
    let dir = tmp(&format!("{name}-{seed}"));
    let ordered = dir.join("ordered");
    write_records(&ordered, &c.records, c.format);
    let (want_out, want_err) = run(extra, std::slice::from_ref(&ordered), None);
    assert!(!want_out.is_empty(), "the corpus has violations");
    if !extra.contains(&"--max-traces") {
        assert!(
            !want_err.contains("spilled"),
            "time order streams: {want_err}"
        );
    }

    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut shuffled = c.records.clone();
    rng.shuffle(&mut shuffled);
    let parts = files + usize::from(stdin);
    let mut split: Vec<Vec<Vec<u8>>> = vec![Vec::new(); parts];
    for r in shuffled {
        split[rng.below(parts)].push(r);
    }
    let mut paths = Vec::new();
    for (i, part) in split.iter().take(files).enumerate() {
        let p = dir.join(format!("replica-{i}"));
        write_records(&p, part, c.format);
        paths.push(p);
    }
    rng.shuffle(&mut paths);
    let piped = stdin.then(|| {
        let p = dir.join("piped");
        write_records(&p, &split[files], c.format);
        std::fs::read(&p).unwrap()
    });
    let (out, err) = run(extra, &paths, piped.as_deref());
    assert_eq!(
        out, want_out,
        "seed {seed}, {files} files, stdin {stdin}, {extra:?}: signals differ from time order\n{err}"
    );
    assert_eq!(
        counts(&err),
        counts(&want_err),
        "seed {seed}: counts differ\n{err}\n---\n{want_err}"
    );
    assert!(
        err.contains("spilled"),
        "a shuffled input is spilled: {err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shuffled_lines_files_and_arguments_give_the_signals_of_time_order() {
    let c = case(21, 400, Format::Json);
    for seed in 1..=4 {
        check_permutation(&c, "json", seed, 1 + seed as usize % 3, seed % 2 == 0, &[]);
    }
}

#[test]
fn shuffled_protobuf_under_tiny_limits_and_short_timeouts_is_exact() {
    let c = case(5, 300, Format::Proto);
    // A 20 ms idle timeout makes many spans late (judged again with their trace, or after
    // it was released): those decisions too must not depend on the order.
    let short = ["--trace-idle-timeout", "20ms", "--max-trace-age", "200ms"];
    let tiny = ["--max-traces", "7", "--max-spans", "40"];
    for seed in 5..=7 {
        check_permutation(&c, "proto", seed, 3, seed == 6, &short);
    }
    check_permutation(&c, "tiny", 8, 2, false, &tiny);
    let both: Vec<&str> = short.iter().chain(&tiny).copied().collect();
    check_permutation(&c, "both", 9, 4, true, &both);
}

#[test]
fn one_to_many_threads_give_the_same_bytes() {
    let c = case(33, 300, Format::Json);
    let dir = tmp("threads");
    let mut rng = Rng(77);
    let mut shuffled = c.records.clone();
    rng.shuffle(&mut shuffled);
    let ordered = dir.join("ordered");
    let mixed = dir.join("mixed");
    write_records(&ordered, &c.records, c.format);
    write_records(&mixed, &shuffled, c.format);
    let (want, _) = run(&["--threads", "1"], std::slice::from_ref(&ordered), None);
    for threads in ["2", "3", "7"] {
        for input in [&ordered, &mixed] {
            let (out, err) = run(&["--threads", threads], std::slice::from_ref(input), None);
            assert_eq!(out, want, "--threads {threads} {}\n{err}", input.display());
        }
    }
}

#[test]
fn a_spill_directory_that_cannot_be_made_is_a_usage_error() {
    let c = case(3, 50, Format::Json);
    let dir = tmp("nospill");
    let mut shuffled = c.records.clone();
    Rng(5).shuffle(&mut shuffled);
    let input = dir.join("mixed");
    write_records(&input, &shuffled, c.format);
    let blocker = dir.join("file");
    std::fs::write(&blocker, "not a directory").unwrap();
    let (code, _, err) = replay(
        &[
            "--rules",
            "examples/rules",
            "--max-traces",
            "2",
            "--spill-dir",
            blocker.join("sub").to_str().unwrap(),
            input.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("spill directory"), "{err}");
}
