//! Times as signals and replay's `--from`/`--to` write them: RFC 3339, UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Formats nanoseconds since the epoch as RFC 3339 UTC with nanoseconds.
pub fn rfc3339(unix_nano: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_nanos(unix_nano);
    humantime::format_rfc3339_nanos(t).to_string()
}

/// The wall clock in nanoseconds since the epoch (0 before it, saturating after 2554).
pub fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos().min(u64::MAX as u128) as u64)
        .unwrap_or(0)
}

/// Parses an RFC 3339 time or a date (`2024-11-25`, midnight UTC) into nanoseconds.
pub fn parse_time(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.len() == 10 {
        return parse_time(&format!("{s}T00:00:00Z"));
    }
    // humantime reads UTC only: take a numeric offset off, and apply it after.
    let (local, offset_secs) = match s.as_bytes() {
        [.., b'Z' | b'z'] => (&s[..s.len() - 1], 0i64),
        [.., sign @ (b'+' | b'-'), h1, h2, b':', m1, m2]
            if [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit()) =>
        {
            let hours = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
            let minutes = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
            if hours > 23 || minutes > 59 {
                return None;
            }
            let secs = hours * 3600 + minutes * 60;
            (&s[..s.len() - 6], if *sign == b'+' { secs } else { -secs })
        }
        _ => (s, 0),
    };
    let t: SystemTime = humantime::parse_rfc3339_weak(&local.replacen(' ', "T", 1)).ok()?;
    let nanos = t.duration_since(UNIX_EPOCH).ok()?.as_nanos();
    let utc = nanos as i128 - i128::from(offset_secs) * 1_000_000_000;
    u64::try_from(utc).ok()
}
