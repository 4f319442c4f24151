//! Compliance evidence: how often each rule held, overall and by day, `service.name` and
//! `service.version` — what `betrace replay --format summary` and `--report` show.
//!
//! A rule *applies* to a trace when its `when` part holds (an invariant), or to every trace
//! judged (a violation-form rule); it is *violated* on a trace it fired on. Each (rule,
//! trace) counts once however often the trace is judged (late spans), and is attributed to
//! one span — the first trigger span when the rule fired, else the span a signal would
//! have named (`eval::vm::View::subject`): its start's UTC day, its resource's
//! `service.name` and `service.version` ("unknown" when absent). A trace that first counts
//! as applied and later violates the rule (after a late span) keeps that first
//! attribution, so per group `violated ≤ applied` always holds.
//!
//! Memory is bounded: at most [`MAX_GROUPS`] distinct (service, version) groups are told
//! apart; traces beyond them count under "(other)" and [`Evidence::groups_overflowed`]
//! says how many. Only the labels depend on that bound: the totals per rule and per day
//! are kept apart from the groups and never do. Each rule keeps the [`MAX_TRACE_IDS`]
//! earliest violating trace ids (by the attributed span's start, then id — the same set
//! whatever order traces were judged in; the CSV has them all).

use std::collections::{BTreeMap, HashMap};

use crate::trace::TraceId;

/// Most distinct (service, version) groups told apart.
pub const MAX_GROUPS: usize = 1_000_000;

/// Most violating trace ids kept per rule.
pub const MAX_TRACE_IDS: usize = 1_000;

/// What evidence is grouped by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Group {
    /// The attributed span's resource's `service.name`, or "unknown".
    pub service: String,
    /// Its resource's `service.version`, or "unknown".
    pub version: String,
}

impl Group {
    /// The group of an overflow: every group beyond [`MAX_GROUPS`].
    fn other() -> Group {
        Group {
            service: "(other)".into(),
            version: "(other)".into(),
        }
    }
}

/// Traces a rule applied to, and of them the ones that violated it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Traces the rule applied to.
    pub applied: u64,
    /// Traces that violated it (a subset of `applied`).
    pub violated: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.applied += other.applied;
        self.violated += other.violated;
    }
}

/// One rule's evidence.
#[derive(Debug, Clone, Default)]
pub struct RuleEvidence {
    /// Over everything judged.
    pub total: Tally,
    /// By group id (an index into [`Evidence::groups`]).
    by_group: HashMap<u32, Tally>,
    /// By UTC day (days since 1970-01-01) of the attributed span's start.
    by_day: BTreeMap<u64, Tally>,
    /// The earliest and latest violation (start of the attributed span, ns).
    pub first_violation: Option<u64>,
    /// See `first_violation`.
    pub last_violation: Option<u64>,
    /// The earliest violating trace ids (by the attributed span's start, then id), at
    /// most [`MAX_TRACE_IDS`].
    pub violating_traces: Vec<TraceId>,
    /// `violating_traces` with their times, sorted: where the next one goes.
    earliest: Vec<(u64, TraceId)>,
}

impl RuleEvidence {
    /// Keeps `trace` among the earliest violating traces if it is one of them.
    fn keep_trace(&mut self, time: u64, trace: TraceId) {
        let key = (time, trace);
        let at = match self.earliest.binary_search(&key) {
            Ok(_) => return,
            Err(at) => at,
        };
        if at >= MAX_TRACE_IDS {
            return;
        }
        self.earliest.insert(at, key);
        self.violating_traces.insert(at, trace);
        if self.earliest.len() > MAX_TRACE_IDS {
            self.earliest.pop();
            self.violating_traces.pop();
        }
    }
}

/// Evidence for every rule that applied to something.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    groups: Vec<Group>,
    group_ids: HashMap<Group, u32>,
    /// By rule id.
    pub rules: BTreeMap<String, RuleEvidence>,
    /// Traces counted under "(other)" because [`MAX_GROUPS`] groups were already told
    /// apart.
    pub groups_overflowed: u64,
}

/// One breakdown of a rule's evidence: a key (a day, a service, a service and version)
/// and its tally, sorted by key.
pub type Breakdown = Vec<(String, Tally)>;

impl Evidence {
    /// The id of a group, interned; the overflow group's beyond [`MAX_GROUPS`].
    pub fn group(&mut self, g: Group) -> u32 {
        let (id, overflowed) = self.intern(g);
        if overflowed {
            self.groups_overflowed += 1;
        }
        id
    }

    /// The id of a group, and whether it was told apart no more (the bound reached, so
    /// it counts under the overflow group).
    fn intern(&mut self, g: Group) -> (u32, bool) {
        if let Some(&id) = self.group_ids.get(&g) {
            return (id, false);
        }
        let overflowed = self.groups.len() >= MAX_GROUPS;
        let g = if overflowed { Group::other() } else { g };
        if let Some(&id) = self.group_ids.get(&g) {
            return (id, overflowed);
        }
        let id = self.groups.len() as u32;
        self.groups.push(g.clone());
        self.group_ids.insert(g, id);
        (id, overflowed)
    }

    /// Counts a rule newly applying to a trace, attributed to `group` and `day`.
    pub fn applied(&mut self, rule: &str, group: u32, day: u64) {
        let r = self.rule(rule);
        r.total.applied += 1;
        r.by_group.entry(group).or_default().applied += 1;
        r.by_day.entry(day).or_default().applied += 1;
    }

    /// Counts a rule newly violated on a trace (already counted as applied to `group` and
    /// `day`); `time` is the attributed span's start.
    pub fn violated(&mut self, rule: &str, group: u32, day: u64, trace: TraceId, time: u64) {
        let r = self.rule(rule);
        r.total.violated += 1;
        r.by_group.entry(group).or_default().violated += 1;
        r.by_day.entry(day).or_default().violated += 1;
        r.first_violation = Some(r.first_violation.map_or(time, |t| t.min(time)));
        r.last_violation = Some(r.last_violation.map_or(time, |t| t.max(time)));
        r.keep_trace(time, trace);
    }

    fn rule(&mut self, rule: &str) -> &mut RuleEvidence {
        if !self.rules.contains_key(rule) {
            self.rules.insert(rule.to_string(), RuleEvidence::default());
        }
        self.rules.get_mut(rule).expect("inserted")
    }

    /// Adds the evidence another engine kept (replay judges on several, one per partition
    /// of trace ids): groups are matched by name, so the result does not depend on how
    /// traces were partitioned — up to [`MAX_GROUPS`], past which only labels may differ.
    pub fn merge(&mut self, other: Evidence) {
        self.groups_overflowed += other.groups_overflowed;
        // An overflow was counted by the engine that met it, not again here.
        let ids: Vec<u32> = other.groups.into_iter().map(|g| self.intern(g).0).collect();
        for (name, theirs) in other.rules {
            let r = self.rule(&name);
            r.total.add(theirs.total);
            for (g, t) in theirs.by_group {
                r.by_group.entry(ids[g as usize]).or_default().add(t);
            }
            for (d, t) in theirs.by_day {
                r.by_day.entry(d).or_default().add(t);
            }
            r.first_violation = match (r.first_violation, theirs.first_violation) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            r.last_violation = match (r.last_violation, theirs.last_violation) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            for (time, trace) in theirs.earliest {
                r.keep_trace(time, trace);
            }
        }
    }

    /// A rule's tally over everything judged (zero for a rule that applied to nothing).
    pub fn total(&self, rule: &str) -> Tally {
        self.rules.get(rule).map(|e| e.total).unwrap_or_default()
    }

    /// A rule's tallies by one part of the group, sorted by that key.
    fn breakdown(&self, rule: &str, key: impl Fn(&Group) -> String) -> Breakdown {
        let mut out: BTreeMap<String, Tally> = BTreeMap::new();
        if let Some(r) = self.rules.get(rule) {
            for (&g, t) in &r.by_group {
                out.entry(key(&self.groups[g as usize]))
                    .or_default()
                    .add(*t);
            }
        }
        out.into_iter().collect()
    }

    /// A rule's tallies by UTC day (`YYYY-MM-DD`): never capped, whatever the groups.
    pub fn by_day(&self, rule: &str) -> Breakdown {
        self.rules.get(rule).map_or_else(Vec::new, |r| {
            r.by_day.iter().map(|(&d, &t)| (day_name(d), t)).collect()
        })
    }

    /// A rule's tallies by `service.name`.
    pub fn by_service(&self, rule: &str) -> Breakdown {
        self.breakdown(rule, |g| g.service.clone())
    }

    /// A rule's tallies by `service.name` and `service.version` ("checkout 1.4.2").
    pub fn by_version(&self, rule: &str) -> Breakdown {
        self.breakdown(rule, |g| {
            if *g == Group::other() {
                "(other)".into()
            } else {
                format!("{} {}", g.service, g.version)
            }
        })
    }
}

/// Nanoseconds in a day.
const DAY: u64 = 86_400_000_000_000;

/// The UTC day (days since 1970-01-01) a time in nanoseconds falls on.
pub fn day_of(unix_nano: u64) -> u64 {
    unix_nano / DAY
}

/// The UTC calendar date of a day number (days since 1970-01-01), as `YYYY-MM-DD`.
pub fn day_name(day: u64) -> String {
    let full = crate::engine::signal::rfc3339(day.saturating_mul(DAY));
    full.get(..10).unwrap_or(&full).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(service: &str) -> Group {
        Group {
            service: service.into(),
            version: "1".into(),
        }
    }

    #[test]
    fn tallies_group_by_day_service_and_version() {
        let mut e = Evidence::default();
        let checkout = e.group(g("checkout"));
        let payments = e.group(g("payments"));
        for (group, day, violated) in [
            (checkout, 20_000, false),
            (checkout, 20_001, true),
            (checkout, 20_001, false),
            (payments, 20_001, true),
        ] {
            e.applied("r", group, day);
            if violated {
                e.violated("r", group, day, TraceId([group as u8; 16]), 5);
            }
        }
        let day = |d: &str| e.by_day("r").into_iter().find(|(k, _)| k == d).unwrap().1;
        assert_eq!(
            day("2024-10-05"),
            Tally {
                applied: 3,
                violated: 2
            }
        );
        assert_eq!(day("2024-10-04").violated, 0);
        assert_eq!(
            e.by_service("r")
                .iter()
                .map(|(k, t)| (k.as_str(), t.applied, t.violated))
                .collect::<Vec<_>>(),
            [("checkout", 3, 1), ("payments", 1, 1)]
        );
        assert_eq!(
            e.rules["r"].total,
            Tally {
                applied: 4,
                violated: 2
            }
        );
        assert_eq!(e.rules["r"].violating_traces.len(), 2);
    }

    #[test]
    fn a_violation_beyond_the_group_bound_still_shows_on_its_day() {
        let mut e = Evidence::default();
        for i in 0..MAX_GROUPS as u64 + 5 {
            let id = e.group(g(&format!("s{i}")));
            e.applied("r", id, 20_000);
        }
        assert_eq!(e.groups_overflowed, 5);
        // A later violation whose service is past the bound: its label is "(other)", but
        // its day's tally still shows it.
        let late = e.group(g("late"));
        e.applied("r", late, 20_001);
        e.violated("r", late, 20_001, TraceId([1; 16]), 7);
        let days = e.by_day("r");
        assert_eq!(days.len(), 2);
        assert_eq!(
            days[1].1,
            Tally {
                applied: 1,
                violated: 1
            },
            "the day with the violation is not 100% compliant"
        );
        assert_eq!(
            e.by_service("r")
                .iter()
                .find(|(k, _)| k == "(other)")
                .unwrap()
                .1
                .applied,
            6
        );
        assert_eq!(e.rules["r"].total.applied, MAX_GROUPS as u64 + 6);
    }

    #[test]
    fn merged_evidence_equals_evidence_kept_in_one_whatever_the_split() {
        // Violations judged in one engine, or split over two in either order, keep the
        // same tallies and the same earliest trace ids.
        let events: Vec<(String, u64, u8, bool)> = (0..3000u64)
            .map(|i| {
                (
                    format!("s{}", i % 7),
                    20_000 + i % 3,
                    (i % 251) as u8,
                    i % 2 == 0,
                )
            })
            .collect();
        let keep = |e: &mut Evidence, ev: &[(String, u64, u8, bool)]| {
            for (s, day, t, violated) in ev {
                let id = e.group(g(s));
                e.applied("r", id, *day);
                if *violated {
                    let mut trace = [*t; 16];
                    trace[0] = (*day % 256) as u8;
                    e.violated("r", id, *day, TraceId(trace), *day * 10 + *t as u64);
                }
            }
        };
        let mut one = Evidence::default();
        keep(&mut one, &events);
        for split in [1000, 2000] {
            let (a, b) = events.split_at(split);
            let (mut x, mut y) = (Evidence::default(), Evidence::default());
            keep(&mut x, b);
            keep(&mut y, a);
            x.merge(y);
            let rule = "r";
            assert_eq!(x.by_day(rule), one.by_day(rule));
            assert_eq!(x.by_service(rule), one.by_service(rule));
            assert_eq!(x.by_version(rule), one.by_version(rule));
            assert_eq!(x.total(rule), one.total(rule));
            assert_eq!(
                x.rules[rule].violating_traces,
                one.rules[rule].violating_traces
            );
            assert_eq!(
                x.rules[rule].first_violation,
                one.rules[rule].first_violation
            );
        }
    }
}
