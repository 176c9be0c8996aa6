//! Calendar helpers: plan quotas count per UTC calendar month.

use jiff::{Timestamp, tz::TimeZone};

/// The quota period containing `t`: `YYYY-MM` (UTC).
pub fn period_of(t: Timestamp) -> String {
    t.to_zoned(TimeZone::UTC).strftime("%Y-%m").to_string()
}

/// Seconds from `t` to the start of the next UTC month (at least 1).
pub fn secs_to_next_month(t: Timestamp) -> u64 {
    let z = t.to_zoned(TimeZone::UTC);
    let next = z
        .first_of_month()
        .ok()
        .and_then(|d| d.start_of_day().ok())
        .and_then(|d| d.checked_add(jiff::Span::new().months(1)).ok());
    match next {
        Some(n) => (n.timestamp().as_second() - t.as_second()).max(1) as u64,
        None => 1,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn months() {
        let t: Timestamp = "2026-11-30T23:59:30Z".parse().unwrap();
        assert_eq!(period_of(t), "2026-11");
        assert_eq!(secs_to_next_month(t), 30);
        let t: Timestamp = "2026-12-15T00:00:00Z".parse().unwrap();
        assert_eq!(secs_to_next_month(t), 17 * 86_400);
    }
}
