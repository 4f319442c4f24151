//! The playbook library in examples/rules: every invariant of the seeds' playbooks as a
//! rule, each with both kinds of example, each example judged as it expects — by the VM
//! and by the reference evaluator alike.

use betrace::eval::reference;
use betrace::rules::examples::Outcome;
use betrace::rules::Expect;
use betrace::RuleSet;

fn library() -> RuleSet {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/rules");
    match RuleSet::from_paths(&[dir]) {
        Ok((rules, warnings)) => {
            assert!(
                warnings.items.is_empty(),
                "the library should load without warnings:\n{}",
                warnings.render()
            );
            rules
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn every_playbook_invariant_has_a_rule() {
    let rules = library();
    let per_file: Vec<(String, usize)> = rules
        .files()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            (
                f.name.rsplit('/').next().unwrap().to_string(),
                rules.rules().iter().filter(|r| r.def.file == i).count(),
            )
        })
        .collect();
    // The playbooks list 15 SRE, 15 security, 15 compliance, 12 AI safety, 15 e-commerce and
    // 15 financial services invariants: 87 in all; language v2 adds four rules the
    // playbooks mean but could not write (a token budget per trace, refunds within charges,
    // retries measured apart, the slowest query against the gateway timeout).
    let expected = [
        ("ai-safety.yaml", 13),
        ("compliance.yaml", 15),
        ("ecommerce.yaml", 16),
        ("financial-services.yaml", 15),
        ("security.yaml", 15),
        ("sre.yaml", 17),
    ];
    let got: Vec<(&str, usize)> = per_file.iter().map(|(n, c)| (n.as_str(), *c)).collect();
    assert_eq!(got, expected);
    assert_eq!(rules.rules().len(), 91);
}

/// docs/library.md has one row per rule of the library, and no row for a rule that is not
/// there: a rule added, renamed or removed without its row fails here.
#[test]
fn docs_library_lists_every_rule_once() {
    let doc = include_str!("../docs/library.md");
    let mut rows: Vec<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .collect();
    rows.sort_unstable();
    let mut ids: Vec<String> = library().rules().iter().map(|r| r.def.id.clone()).collect();
    ids.sort_unstable();
    assert_eq!(rows, ids, "docs/library.md rows vs examples/rules");
}

#[test]
fn every_rule_has_both_kinds_of_example_and_a_readable_signal() {
    for r in library().rules() {
        let d = &r.def;
        assert!(
            d.examples.iter().any(|e| e.expect == Expect::Pass),
            "{} has no passing example",
            d.id
        );
        assert!(
            d.examples.iter().any(|e| e.expect == Expect::Violation),
            "{} has no violating example",
            d.id
        );
        assert!(
            d.description.as_deref().is_some_and(|s| s.len() > 20),
            "{} needs a description",
            d.id
        );
        assert_ne!(
            d.message, d.name,
            "{} needs a signal message of its own",
            d.id
        );
    }
}

#[test]
fn every_example_is_judged_as_it_expects_by_vm_and_reference() {
    let rules = library();
    let mut checked = 0;
    for (i, r) in rules.rules().iter().enumerate() {
        for ex in &r.def.examples {
            let projected = rules.project(&ex.trace);
            let mut view = rules.view(&projected);
            let vm = rules.judge_with(&mut view, i);
            let reference = reference::evaluate(&r.def.form, &ex.trace);
            assert_eq!(vm, reference, "{} / {}", r.def.id, ex.name);
            // An example the rule skips (`incomplete: skip` on an incomplete trace) was
            // never judged: it proves nothing, and the library ships none.
            let run = rules.run_example(i, ex);
            assert_ne!(
                run.outcome,
                Outcome::Skipped,
                "{} / {}: the rule skips this example (its trace is not complete): give it one root, every span reaching it",
                r.def.id,
                ex.name
            );
            assert_eq!(
                run.fired,
                ex.expect == Expect::Violation,
                "{} / {}",
                r.def.id,
                ex.name
            );
            assert_eq!(run.outcome, Outcome::Passed);
            checked += 1;
        }
    }
    assert!(checked >= 174, "{checked} examples");
}
