//! Duration literals (`250ms`, `1.5s`, `1d`): read from rule text and attribute strings,
//! written back the way a user would write them.

/// Parses a duration literal such as `250ms`, `1.5s`, `1m`, `1d`; `None` when it is not one.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))?;
    let (num, unit) = s.split_at(split);
    let scale: f64 = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        "d" => 86400e9,
        _ => return None,
    };
    if num.is_empty() || num == "-" {
        return None;
    }
    if let Ok(i) = num.parse::<i64>() {
        return i.checked_mul(scale as i64);
    }
    let f: f64 = num.parse().ok()?;
    let ns = f * scale;
    (ns.is_finite() && ns.abs() < 9.2e18).then_some(ns.round() as i64)
}

/// Formats nanoseconds the way a user would write them (`250ms`, `1.5s`).
pub fn format_duration(ns: i64) -> String {
    const UNITS: [(i64, &str); 6] = [
        (86_400_000_000_000, "d"),
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
    ];
    for (scale, unit) in UNITS {
        if ns != 0 && ns % scale == 0 {
            return format!("{}{unit}", ns / scale);
        }
    }
    for (scale, unit) in UNITS {
        if ns.abs() >= scale {
            return format!("{}{unit}", ns as f64 / scale as f64);
        }
    }
    format!("{ns}ns")
}
