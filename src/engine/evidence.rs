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
//! Memory is bounded: at most [`MAX_GROUPS`] distinct (day, service, version) groups are
//! told apart; traces beyond them count under "(other)" and [`Evidence::groups_overflowed`]
//! says how many. Each rule keeps at most [`MAX_TRACE_IDS`] violating trace ids (the CSV
//! has them all).

use std::collections::{BTreeMap, HashMap};

use crate::trace::TraceId;

/// Most distinct (day, service, version) groups told apart.
pub const MAX_GROUPS: usize = 10_000;

/// Most violating trace ids kept per rule.
pub const MAX_TRACE_IDS: usize = 1_000;

/// What evidence is grouped by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Group {
    /// Days since 1970-01-01 (UTC) of the attributed span's start.
    pub day: u64,
    /// Its resource's `service.name`, or "unknown".
    pub service: String,
    /// Its resource's `service.version`, or "unknown".
    pub version: String,
}

impl Group {
    /// The group of an overflow: every group beyond [`MAX_GROUPS`].
    fn other() -> Group {
        Group {
            day: u64::MAX,
            service: "(other)".into(),
            version: "(other)".into(),
        }
    }

    /// Whether this is the overflow group.
    pub fn is_other(&self) -> bool {
        self.day == u64::MAX
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
    /// The earliest and latest violation (start of the attributed span, ns).
    pub first_violation: Option<u64>,
    /// See `first_violation`.
    pub last_violation: Option<u64>,
    /// Violating trace ids, in the order found, at most [`MAX_TRACE_IDS`].
    pub violating_traces: Vec<TraceId>,
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
        if let Some(&id) = self.group_ids.get(&g) {
            return id;
        }
        let g = if self.groups.len() >= MAX_GROUPS {
            self.groups_overflowed += 1;
            Group::other()
        } else {
            g
        };
        if let Some(&id) = self.group_ids.get(&g) {
            return id;
        }
        let id = self.groups.len() as u32;
        self.groups.push(g.clone());
        self.group_ids.insert(g, id);
        id
    }

    /// Counts a rule newly applying to a trace, attributed to `group`.
    pub fn applied(&mut self, rule: &str, group: u32) {
        let r = self.rules.entry(rule.to_string()).or_default();
        r.total.applied += 1;
        r.by_group.entry(group).or_default().applied += 1;
    }

    /// Counts a rule newly violated on a trace (already counted as applied to `group`);
    /// `time` is the attributed span's start.
    pub fn violated(&mut self, rule: &str, group: u32, trace: TraceId, time: u64) {
        let r = self.rules.entry(rule.to_string()).or_default();
        r.total.violated += 1;
        r.by_group.entry(group).or_default().violated += 1;
        r.first_violation = Some(r.first_violation.map_or(time, |t| t.min(time)));
        r.last_violation = Some(r.last_violation.map_or(time, |t| t.max(time)));
        if r.violating_traces.len() < MAX_TRACE_IDS {
            r.violating_traces.push(trace);
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

    /// A rule's tallies by UTC day (`YYYY-MM-DD`).
    pub fn by_day(&self, rule: &str) -> Breakdown {
        self.breakdown(rule, |g| {
            if g.is_other() {
                "(other)".into()
            } else {
                day_name(g.day)
            }
        })
    }

    /// A rule's tallies by `service.name`.
    pub fn by_service(&self, rule: &str) -> Breakdown {
        self.breakdown(rule, |g| g.service.clone())
    }

    /// A rule's tallies by `service.name` and `service.version` ("checkout 1.4.2").
    pub fn by_version(&self, rule: &str) -> Breakdown {
        self.breakdown(rule, |g| {
            if g.is_other() {
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

    fn g(day: u64, service: &str) -> Group {
        Group {
            day,
            service: service.into(),
            version: "1".into(),
        }
    }

    #[test]
    fn tallies_group_by_day_service_and_version() {
        let mut e = Evidence::default();
        let a = e.group(g(20_000, "checkout"));
        let b = e.group(g(20_001, "checkout"));
        let c = e.group(g(20_001, "payments"));
        for (group, violated) in [(a, false), (b, true), (b, false), (c, true)] {
            e.applied("r", group);
            if violated {
                e.violated("r", group, TraceId([group as u8; 16]), 5);
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
    fn groups_beyond_the_bound_count_under_other() {
        let mut e = Evidence::default();
        for i in 0..MAX_GROUPS as u64 + 5 {
            let id = e.group(g(i, "s"));
            e.applied("r", id);
        }
        assert_eq!(e.groups_overflowed, 5);
        let days = e.by_day("r");
        assert_eq!(days.len(), MAX_GROUPS + 1);
        assert_eq!(
            days.iter().find(|(k, _)| k == "(other)").unwrap().1.applied,
            5
        );
        assert_eq!(e.rules["r"].total.applied, MAX_GROUPS as u64 + 5);
    }
}
