//! Small value types a policy is written in: name globs and calendar dates, each with a parser
//! whose error says what was expected and what was found (byte sizes are [`crate::size`]'s).

use std::fmt;

/// A name pattern where `*` matches any run of characters (including `/`, `:` and `@`), so
/// `wasi:sockets/*` covers every socket interface at every version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

/// Characters a glob may contain besides letters and digits: everything that occurs in WIT
/// interface names, semver versions and core-module `module.field` names.
const GLOB_PUNCTUATION: &str = "-:/@._+*";

impl Glob {
    /// Parses a glob; only `*` is a wildcard, so characters that mean something in other glob
    /// dialects (`?`, `[`, `{`, `!`) are rejected rather than silently taken literally.
    pub fn parse(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err(
                "bad glob \"\": expected a name or a pattern with *, found an empty string"
                    .to_string(),
            );
        }
        if let Some(c) = pattern
            .chars()
            .find(|c| !c.is_ascii_alphanumeric() && !GLOB_PUNCTUATION.contains(*c))
        {
            return Err(format!(
                "bad glob {pattern:?}: expected letters, digits, `-:/@._+` and `*` as the only wildcard, found {c:?}"
            ));
        }
        Ok(Glob(pattern.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        glob_match(self.0.as_bytes(), text.as_bytes())
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Iterative wildcard matching: on a mismatch after a `*`, retry with the star eating one more
/// byte. Linear in practice and never recursive, so hostile patterns cannot blow the stack.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// A calendar date (proleptic Gregorian), as exemptions expire on. Ordered chronologically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: i32,
    month: u8,
    day: u8,
}

impl Date {
    /// `None` when the day does not exist (month 13, February 30, ...).
    pub fn from_ymd(year: i32, month: u8, day: u8) -> Option<Date> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Date { year, month, day })
    }

    /// The UTC date of a Unix timestamp, so callers can pass "today" without a date library.
    pub fn from_unix_seconds(seconds: i64) -> Date {
        civil_from_days(seconds.div_euclid(86_400))
    }

    /// Parses `YYYY-MM-DD` exactly.
    pub fn parse(text: &str) -> Result<Date, String> {
        let bad = || {
            format!(
                "bad date {text:?}: expected a calendar date written YYYY-MM-DD, e.g. 2027-03-31"
            )
        };
        let b = text.as_bytes();
        let shape_ok = b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && b.iter()
                .enumerate()
                .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
        if !shape_ok {
            return Err(bad());
        }
        let num = |r: std::ops::Range<usize>| text.get(r).and_then(|s| s.parse::<u32>().ok());
        let (Some(y), Some(m), Some(d)) = (num(0..4), num(5..7), num(8..10)) else {
            return Err(bad());
        };
        let (Ok(y), Ok(m), Ok(d)) = (i32::try_from(y), u8::try_from(m), u8::try_from(d)) else {
            return Err(bad());
        };
        Date::from_ymd(y, m, d).ok_or_else(|| {
            format!("bad date {text:?}: expected a day that exists in the calendar, found day {d} of month {m} in {y}")
        })
    }

    pub fn year(&self) -> i32 {
        self.year
    }

    pub fn month(&self) -> u8 {
        self.month
    }

    pub fn day(&self) -> u8 {
        self.day
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 to a civil date, counting in 400-year eras (146 097 days each) that
/// start on March 1st so the leap day falls at the end of the era's year.
fn civil_from_days(days: i64) -> Date {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // Timestamps beyond i32 years do not occur in practice; clamp rather than wrap.
    let year = i32::try_from(year).unwrap_or(if year < 0 { i32::MIN } else { i32::MAX });
    Date {
        year,
        month: u8::try_from(month).unwrap_or(1),
        day: u8::try_from(day).unwrap_or(1),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        let g = Glob::parse("wasi:filesystem/preopens@0.2.*").unwrap();
        assert!(g.matches("wasi:filesystem/preopens@0.2.0"));
        assert!(g.matches("wasi:filesystem/preopens@0.2.12"));
        assert!(!g.matches("wasi:filesystem/preopens@0.3.0"));
        assert!(!g.matches("wasi:filesystem/types@0.2.0"));
        let g = Glob::parse("wasi:sockets/*").unwrap();
        assert!(g.matches("wasi:sockets/tcp@0.2.0"));
        assert!(!g.matches("wasi:socketsx/tcp"));
        let g = Glob::parse("acme:*").unwrap();
        assert!(g.matches("acme:ledger"));
        assert!(!g.matches("acme"));
        let g = Glob::parse("a*b*c").unwrap();
        assert!(g.matches("abc"));
        assert!(g.matches("a-b-b-c"));
        assert!(!g.matches("a-c-b"));
        assert!(Glob::parse("*").unwrap().matches(""));
        assert!(Glob::parse("exact").unwrap().matches("exact"));
        assert!(!Glob::parse("exact").unwrap().matches("exactly"));
    }

    #[test]
    fn bad_globs_say_what_is_wrong() {
        assert!(Glob::parse("").unwrap_err().contains("empty"));
        let e = Glob::parse("wasi:sockets/[tcp]").unwrap_err();
        assert!(e.contains("'['"), "{e}");
        assert!(Glob::parse("wasi:sockets/?cp").is_err());
    }

    #[test]
    fn dates_parse_and_order() {
        let d = Date::parse("2027-03-31").unwrap();
        assert_eq!((d.year(), d.month(), d.day()), (2027, 3, 31));
        assert_eq!(d.to_string(), "2027-03-31");
        assert!(Date::parse("2024-02-29").is_ok());
        assert!(Date::parse("2023-02-29").unwrap_err().contains("exists"));
        for bad in [
            "2027-3-31",
            "2027/03/31",
            "27-03-31",
            "2027-13-01",
            "2027-00-10",
            "",
            "2027-03-31x",
        ] {
            assert!(Date::parse(bad).is_err(), "{bad}");
        }
        assert!(Date::parse("2027-03-30").unwrap() < d);
        assert!(Date::parse("2026-12-31").unwrap() < d);
    }

    #[test]
    fn unix_seconds_map_to_utc_dates() {
        assert_eq!(Date::from_unix_seconds(0).to_string(), "1970-01-01");
        assert_eq!(Date::from_unix_seconds(-1).to_string(), "1969-12-31");
        assert_eq!(
            Date::from_unix_seconds(951_782_400).to_string(),
            "2000-02-29"
        );
        assert_eq!(
            Date::from_unix_seconds(1_700_000_000).to_string(),
            "2023-11-14"
        );
        assert_eq!(
            Date::from_unix_seconds(4_102_444_800).to_string(),
            "2100-01-01"
        );
    }
}
