//! A replay through indexes gives exactly what a replay without them gives (docs/replay.md,
//! "The index"): the same signals byte for byte, the same evidence, the same bad records
//! and exit code — for every format, for input out of order, and whatever state the
//! indexes are in: fresh, missing for some inputs, stale, damaged, truncated, another
//! file's, or of another version.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use betrace::lang::hir::{required_names, NameMatch};
use betrace::RuleSet;
use betrace_corpus::{batches, encode, generate, write, Compression, Format};
use common::{replay, tmp, write_records, Rng};

/// The library's rules that need some span name (a rule that can apply to any trace
/// turns the index off), cut out of examples/rules as written, in one file.
fn indexable_rules(dir: &Path) -> PathBuf {
    let (rules, _) = RuleSet::from_paths(&["examples/rules"]).unwrap();
    let ids: Vec<&str> = rules
        .rules()
        .iter()
        .filter(|r| {
            required_names(&r.def.form)
                .is_some_and(|n| !n.is_empty() && !n.iter().any(|m| matches!(m, NameMatch::Any)))
        })
        .map(|r| r.def.id.as_str())
        .collect();
    let mut out = String::from("rules:\n");
    let mut kept = 0;
    for entry in std::fs::read_dir("examples/rules").unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for block in text.split("\n  - id: ").skip(1) {
            let id = block.split_whitespace().next().unwrap();
            if ids.contains(&id) {
                out.push_str(&format!("  - id: {}\n", block.trim_end()));
                kept += 1;
            }
        }
    }
    assert!(kept >= 10, "most of the library can use an index ({kept})");
    let path = dir.join("indexable.yaml");
    std::fs::write(&path, out).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_betrace"))
        .args(["check", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    path
}

/// A rule on names few traces have: most of the corpus is never decoded.
fn selective_rule(dir: &Path) -> PathBuf {
    let path = dir.join("selective.yaml");
    std::fs::write(
        &path,
        "rules:\n  - id: approval-audited\n    name: x\n    severity: high\n    condition: |\n      when { human.approval }\n        always { audit.log }\n",
    )
    .unwrap();
    path
}

fn index(inputs: &[&Path]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_betrace"))
        .arg("index")
        .args(inputs)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What a replay gives, as jsonl signals and as the evidence summary, with its exit code
/// and the errors it reported.
#[derive(Debug, PartialEq)]
struct Outcome {
    code: i32,
    signals: String,
    summary: String,
    errors: Vec<String>,
}

fn outcome(rules: &Path, inputs: &[PathBuf], extra: &[&str]) -> (Outcome, String) {
    let names: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
    let run = |format: &str| {
        let mut args = vec!["--rules", rules.to_str().unwrap(), "--format", format];
        args.extend_from_slice(extra);
        args.extend(names.iter().map(String::as_str));
        replay(&args, None)
    };
    let (code, signals, err) = run("jsonl");
    let (code2, summary, _) = run("summary");
    assert_eq!(code, code2);
    let errors = err
        .lines()
        .filter(|l| l.starts_with("error:"))
        .map(String::from)
        .collect();
    (
        Outcome {
            code,
            signals,
            summary,
            errors,
        },
        err,
    )
}

/// Replays with and without the index, and checks they agree; returns the indexed run's
/// standard error.
fn same(rules: &Path, inputs: &[PathBuf], extra: &[&str]) -> String {
    let mut plain_args = vec!["--no-index"];
    plain_args.extend_from_slice(extra);
    let (want, _) = outcome(rules, inputs, &plain_args);
    let (got, err) = outcome(rules, inputs, extra);
    assert_eq!(got, want, "indexed ≠ plain for {inputs:?} {extra:?}\n{err}");
    err
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.display().to_string().ends_with(".betrace-idx"))
        .collect();
    v.sort();
    v
}

/// The corpus written as the exporter writes it, rotated into several files.
fn corpus_dir(root: &Path, name: &str, format: Format, compression: Compression) -> PathBuf {
    let corpus = generate(17, 1500, 0.08);
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    write(&dir, &corpus, format, compression, 128, 40).unwrap();
    dir
}

#[test]
fn indexed_replay_equals_plain_replay_in_every_format() {
    let root = tmp("index-formats");
    let rules = [indexable_rules(&root), selective_rule(&root)];
    for (name, format, compression) in [
        ("json", Format::Json, Compression::None),
        ("proto", Format::Proto, Compression::None),
        ("zstd", Format::Proto, Compression::Zstd),
    ] {
        let dir = corpus_dir(&root, name, format, compression);
        let inputs = files_in(&dir);
        assert!(inputs.len() >= 3, "rotated: {inputs:?}");
        let refs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
        let (code, out, err) = index(&refs);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.lines().count(), inputs.len(), "{out}");
        for r in &rules {
            let err = same(r, &inputs, &[]);
            assert!(
                err.contains(&format!(
                    "indexes: inputs read through an index {},",
                    inputs.len()
                )),
                "{name}: the indexes are used: {err}"
            );
        }
        // The selective rule leaves most spans undecoded.
        let (_, err) = outcome(&rules[1], &inputs, &[]);
        let skipped: u64 = err
            .split("traces (")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(skipped > 10_000, "{name}: spans never decoded: {err}");
    }
    // Compressed whole: read through in order, cut where the index says.
    let dir = corpus_dir(&root, "gz", Format::Json, Compression::None);
    let mut gz = Vec::new();
    for f in files_in(&dir) {
        let z = PathBuf::from(format!("{}.gz", f.display()));
        let status = Command::new("gzip")
            .args(["-kf", f.to_str().unwrap()])
            .status();
        if !status.is_ok_and(|s| s.success()) {
            return; // no gzip here: the other formats were checked
        }
        std::fs::remove_file(&f).unwrap();
        gz.push(z);
    }
    let refs: Vec<&Path> = gz.iter().map(PathBuf::as_path).collect();
    assert_eq!(index(&refs).0, 0);
    for r in &rules {
        same(r, &gz, &[]);
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn shuffled_replicas_with_indexes_in_every_state_give_the_plain_replay() {
    let root = tmp("index-states");
    let rules = [indexable_rules(&root), selective_rule(&root)];
    let corpus = generate(29, 600, 0.1);
    for seed in 1..=6u64 {
        let format = if seed % 2 == 0 {
            Format::Json
        } else {
            Format::Proto
        };
        let mut records: Vec<Vec<u8>> = batches(&corpus, 48)
            .iter()
            .map(|b| encode(b, format))
            .collect();
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        for i in (1..records.len()).rev() {
            records.swap(i, rng.below(i + 1));
        }
        // A retried export: some records twice.
        let again: Vec<Vec<u8>> = records.iter().step_by(9).cloned().collect();
        records.extend(again);
        let files = 2 + seed as usize % 3;
        let mut parts: Vec<Vec<Vec<u8>>> = vec![Vec::new(); files];
        for r in records {
            parts[rng.below(files)].push(r);
        }
        let dir = root.join(format!("seed-{seed}"));
        std::fs::create_dir_all(&dir).unwrap();
        let inputs: Vec<PathBuf> = parts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let path = dir.join(format!("replica-{i}"));
                write_records(&path, p, format);
                path
            })
            .collect();
        // Partial: only some inputs indexed (the others are indexed in memory).
        let some: Vec<&Path> = inputs.iter().skip(1).map(PathBuf::as_path).collect();
        assert_eq!(index(&some).0, 0);
        for r in &rules {
            let err = same(r, &inputs, &[]);
            assert!(err.contains("has no index"), "{err}");
            assert!(err.contains("spilled"), "shuffled input spills: {err}");
        }
        same(
            &rules[1],
            &inputs,
            &["--max-traces", "5", "--max-spans", "60"],
        );

        // Every index in a state it cannot be used in, but the last input's: damaged,
        // truncated, another file's, its input changed since.
        let all: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
        assert_eq!(index(&all).0, 0);
        let idx = |i: usize| PathBuf::from(format!("{}.betrace-idx", inputs[i].display()));
        let fresh = std::fs::read(idx(files - 1)).unwrap();
        for (i, input) in inputs.iter().enumerate().take(files - 1) {
            match i {
                0 => {
                    let mut bytes = std::fs::read(idx(0)).unwrap();
                    let at = bytes.len() / 2 + seed as usize;
                    bytes[at] ^= 0x10;
                    std::fs::write(idx(0), &bytes).unwrap();
                }
                1 => {
                    let bytes = std::fs::read(idx(1)).unwrap();
                    std::fs::write(idx(1), &bytes[..bytes.len() - 7]).unwrap();
                }
                2 => std::fs::write(idx(2), &fresh).unwrap(),
                _ => {
                    let mut f = std::fs::OpenOptions::new()
                        .append(true)
                        .open(input)
                        .unwrap();
                    f.write_all(&parts[0][0]).unwrap();
                    if format == Format::Json {
                        f.write_all(b"\n").unwrap();
                    }
                }
            }
        }
        for r in &rules {
            let err = same(r, &inputs, &[]);
            assert!(err.contains("is damaged"), "{err}");
            assert!(
                err.contains("indexes: inputs read through an index 1,"),
                "{err}"
            );
            if files > 3 {
                assert!(err.contains("is stale"), "{err}");
            }
        }
        // None usable: read as without an index, the index files named.
        std::fs::write(idx(files - 1), b"BETRACEi garbage").unwrap();
        let err = same(&rules[1], &inputs, &[]);
        assert!(!err.contains("indexes:"), "{err}");
        assert!(err.contains("ignored"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn bad_records_are_reported_alike_with_and_without_the_index() {
    let root = tmp("index-bad");
    let rules = [indexable_rules(&root), selective_rule(&root)];
    let corpus = generate(5, 300, 0.1);
    let mut lines: Vec<Vec<u8>> = batches(&corpus, 32)
        .iter()
        .map(|b| encode(b, Format::Json))
        .collect();
    lines.insert(
        3,
        b"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"traceId\":".to_vec(),
    );
    lines.insert(5, b"not json at all".to_vec());
    // A span whose ids cannot be read: its record is decoded whole.
    let bad_span = String::from_utf8(lines[7].clone()).unwrap().replacen(
        "\"spanId\":\"",
        "\"spanId\":\"zz",
        1,
    );
    lines[7] = bad_span.into_bytes();
    // A scope that is not a scope: the decoder refuses the record.
    lines.insert(
        9,
        br#"{"resourceSpans":[{"scopeSpans":[{"scope":{"name":5},"spans":[]}]}]}"#.to_vec(),
    );
    let input = root.join("bad.jsonl");
    write_records(&input, &lines, Format::Json);
    let (code, _, err) = index(&[&input]);
    assert_eq!(code, 2, "bad records make `betrace index` exit 2: {err}");
    assert!(err.contains("bad.jsonl:4"), "{err}");
    for r in &rules {
        same(r, std::slice::from_ref(&input), &[]);
    }
    // Beside it, an input that cannot be read at all (a gzip stream cut after its magic):
    // reported as a bad input, the rest judged, as without the index.
    let broken = root.join("broken.gz");
    std::fs::write(&broken, [0x1f, 0x8b]).unwrap();
    for r in &rules {
        let err = same(r, &[input.clone(), broken.clone()], &[]);
        assert!(err.contains("broken.gz"), "{err}");
    }
    let (code, _, err) = index(&[&broken]);
    assert_eq!(code, 2, "{err}");
    assert!(
        !root.join("broken.gz.betrace-idx").exists(),
        "no index of a read that failed"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn what_cannot_be_indexed_is_refused_with_exit_code_2() {
    let root = tmp("index-refused");
    let (code, _, err) = index(&[Path::new("-")]);
    assert_eq!(code, 2);
    assert!(err.contains("standard input cannot be indexed"), "{err}");
    let (code, _, err) = index(&[&root.join("missing")]);
    assert_eq!(code, 2);
    assert!(err.contains("no such file"), "{err}");
    // An index file is never read as traces, named or found in a directory.
    let corpus = generate(3, 50, 0.0);
    let rules = selective_rule(&root);
    let root = root.join("traces");
    std::fs::create_dir_all(&root).unwrap();
    let input = root.join("t.jsonl");
    let lines: Vec<Vec<u8>> = batches(&corpus, 64)
        .iter()
        .map(|b| encode(b, Format::Json))
        .collect();
    write_records(&input, &lines, Format::Json);
    assert_eq!(index(&[&input]).0, 0);
    let idx = root.join("t.jsonl.betrace-idx");
    for args in [
        vec![root.to_str().unwrap()],
        vec![input.to_str().unwrap(), idx.to_str().unwrap()],
    ] {
        let mut all = vec!["--rules", rules.to_str().unwrap()];
        all.extend(args);
        let (code, _, err) = replay(&all, None);
        assert_eq!(code, 0, "{err}");
        assert!(err.contains("replay: 1 input"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&root);
}
