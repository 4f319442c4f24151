//! Stable codes for every diagnostic BeTrace builds, grouped by the layer that finds the
//! problem: `E0xx` the YAML reader, `E1xx` the condition parser, `E2xx` the checker (`W2xx`
//! its warnings), `E3xx` the rule-file loader. Each has an entry in `docs/errors.md` (a `### E101` heading, anchor
//! `#e101`); a test keeps the two lists equal.
//!
//! A code is never reused for another problem once released: a retired one stays listed as
//! retired, and a new problem gets a new number.

use std::fmt;

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $prefix:literal $number:literal,)*) => {
        /// What kind of problem a diagnostic reports, as a stable code (`E101`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum Code {
            $($(#[$doc])* $name = $number,)*
        }

        impl Code {
            /// Every code, in order.
            pub const ALL: &'static [Code] = &[$(Code::$name,)*];

            /// The code as shown: `E101`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$name => concat!($prefix, stringify!($number)),)*
                }
            }

            /// The name of the variant (`ParseSyntax`), for tests that list them.
            pub fn name(self) -> &'static str {
                match self {
                    $(Code::$name => stringify!($name),)*
                }
            }
        }
    };
}

codes! {
    /// The YAML of a rule file does not parse.
    YamlSyntax = "E00" 1,
    /// A rule file nests deeper than the reader allows.
    YamlTooDeep = "E00" 2,
    /// A rule file's aliases expand to too many nodes.
    YamlTooLarge = "E00" 3,
    /// A mapping holds the same key twice.
    YamlRepeatedKey = "E00" 4,
    /// The YAML parses but cannot be read as values.
    YamlUnreadable = "E00" 5,

    /// A condition does not parse.
    ParseSyntax = "E" 101,
    /// A condition nests deeper than the parser allows.
    ParseTooDeep = "E" 102,
    /// A number literal is not a number.
    ParseNotANumber = "E" 103,
    /// A duration literal is out of range.
    ParseDurationRange = "E" 104,
    /// An integer literal does not fit in 64 bits.
    ParseIntegerRange = "E" 105,
    /// A float literal does not fit in 64 bits.
    ParseFloatRange = "E" 106,
    /// A nonzero number or duration literal reads as zero.
    ParseRoundsToZero = "E" 107,
    /// A bound value inside a list literal.
    BoundInList = "E" 108,

    /// `when` without `always` or `never`.
    WhenWithoutBlock = "E" 201,
    /// A duration compared with a plain number.
    DurationVsNumber = "E" 202,
    /// A time bound after something other than `before`/`after`.
    BoundPlacement = "E" 203,
    /// A negative time bound.
    NegativeBound = "E" 204,
    /// A time bound that is not a duration.
    BoundNotDuration = "E" 205,
    /// An aggregate of something that is never a number.
    NeverNumeric = "E" 206,
    /// Two `== unique` in one count.
    TwoUnique = "E" 207,
    /// An aggregate given a list of attributes.
    AggregateList = "E" 208,
    /// A reserved word used as a span name.
    ReservedSpanName = "E" 209,
    /// A non-boolean attribute used as a condition.
    NotBoolean = "E" 210,
    /// `unique` outside `trace.count(…)`.
    UniqueOutsideCount = "E" 211,
    /// `in` without a list.
    InWithoutList = "E" 212,
    /// A list after an operator that takes one value.
    ListNotAllowed = "E" 213,
    /// `matches` on an attribute that is not a string.
    MatchesNotString = "E" 214,
    /// A regex that does not compile.
    InvalidRegex = "E" 215,
    /// `matches` without a quoted regex.
    MatchesNeedsRegex = "E" 216,
    /// `contains` on a duration attribute.
    ContainsOnDuration = "E" 217,
    /// `contains` with a duration value.
    ContainsDuration = "E" 218,
    /// `contains` without a value.
    ContainsNeedsValue = "E" 219,
    /// Two attributes of different types compared.
    DifferentTypes = "E" 220,
    /// An order comparison on an attribute without order.
    NoOrder = "E" 221,
    /// A duration attribute compared with a value of another type.
    DurationComparedWith = "E" 222,
    /// A string attribute compared with a value of another type.
    StringComparedWith = "E" 223,
    /// An unknown span status.
    UnknownStatus = "E" 224,
    /// An unknown span kind.
    UnknownKind = "E" 225,
    /// An order comparison on booleans.
    BooleanOrder = "E" 226,
    /// A reserved word used as an attribute.
    ReservedAttribute = "E" 227,
    /// An unknown intrinsic (`span:…`, `trace:…`).
    UnknownIntrinsic = "E" 228,
    /// A time bound of zero, which can never hold.
    ZeroBound = "E" 229,
    /// `as $name` where a binding may not stand.
    BindingPlacement = "E" 230,
    /// A second binding in one rule.
    TwoBindings = "E" 231,
    /// A `$name` that no `as` binds.
    UnboundName = "E" 232,
    /// A `$name` used in its own binding selector.
    BoundInOwnBinding = "E" 233,
    /// A relation filter as a side of a trace-level relation.
    FilterAsSide = "E" 234,
    /// `own` where it may not stand, or without `before`/`after $x`.
    OwnPlacement = "E" 235,
    /// A bound value compared with other than `==` inside `own`.
    OwnJoinNotEq = "E" 236,
    /// `since` with `after`, `until` with `before`, or a scope after a structural filter.
    ScopeMismatch = "E" 237,
    /// A bound value where it cannot be used (`matches $a.x`, a type the checker can see).
    BoundValueMisuse = "E" 238,
    /// A relation filter inside a `since`/`until` scope or on `$x within S`.
    FilterPlacement = "E" 239,
    /// A condition that fires on every trace having some spans.
    FiresOnPresence = "W" 250,
    /// `always { X after W }` without a binding: only the earliest `W` is checked.
    AfterTrap = "W" 251,

    /// An empty rule file.
    EmptyFile = "E" 301,
    /// A rule file that is not a mapping.
    NotAMapping = "E" 302,
    /// A top-level key other than `rules`.
    UnknownTopKey = "E" 303,
    /// No `rules:` list.
    NoRules = "E" 304,
    /// An unknown key in a rule, example or span.
    UnknownKey = "E" 305,
    /// A required key missing.
    MissingKey = "E" 306,
    /// A value of the wrong type.
    WrongType = "E" 307,
    /// A value that is not one of those allowed.
    InvalidValue = "E" 308,
    /// A rule id with characters other than letters, digits, `_`, `.` and `-`.
    InvalidId = "E" 309,
    /// Two rules with the same id.
    DuplicateId = "E" 310,
    /// An example whose trace cannot be built.
    BadExample = "E" 311,
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Code {
    /// The anchor of the code's entry in `docs/errors.md` (`e101`).
    pub fn anchor(self) -> String {
        self.as_str().to_ascii_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::Code;

    /// Every code has its entry in docs/errors.md, and every entry there is a code.
    #[test]
    fn every_code_has_its_page_and_every_page_its_code() {
        let doc = include_str!("../../docs/errors.md");
        let documented: Vec<&str> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("### "))
            .filter_map(|h| h.split_whitespace().next())
            .filter(|w| w.starts_with(['E', 'W']) && w[1..].bytes().all(|b| b.is_ascii_digit()))
            .collect();
        let codes: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        for c in &codes {
            assert!(documented.contains(c), "{c} has no entry in docs/errors.md");
        }
        for d in &documented {
            assert!(
                codes.contains(d),
                "docs/errors.md lists {d}, which is no code"
            );
        }
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), codes.len(), "a code appears twice");
        assert!(codes.iter().all(|c| c.len() == 4));
    }

    /// Every code is built somewhere in src/ (none listed that nothing emits).
    #[test]
    fn every_code_is_emitted_by_the_code_base() {
        fn sources(dir: &std::path::Path, out: &mut String) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    sources(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs")
                    && !p.ends_with("diagnostic/code.rs")
                {
                    out.push_str(&std::fs::read_to_string(&p).unwrap());
                }
            }
        }
        let mut src = String::new();
        sources(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut src,
        );
        for c in Code::ALL {
            let used = format!("Code::{}", c.name());
            let word_end = |i: usize| {
                !src[i + used.len()..].starts_with(|ch: char| ch.is_alphanumeric() || ch == '_')
            };
            assert!(
                src.match_indices(&used).any(|(i, _)| word_end(i)),
                "{} ({}) is emitted nowhere in src/",
                c.as_str(),
                c.name()
            );
        }
    }
}
