//! Byte sizes as people write them (`64MiB`, `64M`, `100MB`, `65536`): the one parser behind a
//! policy's `[limits].max_size`, `gridreg run --max-memory` and `gridreg serve --max-blob-size`.

/// The units a size may carry. `K`, `M` and `G` are the binary units (as in `--max-memory 64M`);
/// a number without a unit is bytes.
const UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("B", 1),
    ("KB", 1_000),
    ("kB", 1_000),
    ("K", 1 << 10),
    ("KiB", 1 << 10),
    ("MB", 1_000_000),
    ("M", 1 << 20),
    ("MiB", 1 << 20),
    ("GB", 1_000_000_000),
    ("G", 1 << 30),
    ("GiB", 1 << 30),
];

/// Parses a byte size: a whole number, optionally followed (after spaces, if you like) by a
/// unit of [`UNITS`]. `64M`, `64MiB`, `64 MiB` and `67108864` are the same size.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "bad size {text:?}: expected a whole number followed by one of B, KB, KiB, MB, MiB, GB, GiB, e.g. \"50MiB\""
        )
    };
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits_end);
    if number.is_empty() {
        return Err(bad());
    }
    let Some(&(_, factor)) = UNITS.iter().find(|(u, _)| *u == unit.trim_start()) else {
        return Err(bad());
    };
    let too_large = || format!("bad size {text:?}: expected at most {} bytes", u64::MAX);
    let n: u64 = number.parse().map_err(|_| too_large())?;
    n.checked_mul(factor).ok_or_else(too_large)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_spelling_of_a_size_means_the_same() {
        for same in ["64M", "64MiB", "64 MiB", " 64M ", "67108864", "67108864B"] {
            assert_eq!(parse_size(same).unwrap(), 64 << 20, "{same}");
        }
        assert_eq!(parse_size("65536").unwrap(), 65536);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("100MiB").unwrap(), 100 << 20);
        assert_eq!(parse_size("64K").unwrap(), parse_size("64KiB").unwrap());
        assert_eq!(parse_size("1G").unwrap(), parse_size("1GiB").unwrap());
        assert_eq!(parse_size("1 GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("3KiB").unwrap(), 3072);
        assert_eq!(parse_size("7B").unwrap(), 7);
        assert_eq!(parse_size("0").unwrap(), 0);
        // The decimal units are decimal.
        assert_eq!(parse_size("2KB").unwrap(), 2000);
        assert_eq!(parse_size("10kB").unwrap(), 10_000);
        assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
        assert_eq!(parse_size("50MB").unwrap(), 50_000_000);
        assert_eq!(parse_size("2GB").unwrap(), 2_000_000_000);
    }

    #[test]
    fn bad_sizes_say_what_was_expected_and_found() {
        for bad in [
            "50MB?",
            "MiB",
            "50 mib",
            "-1MiB",
            "1.5GiB",
            "",
            "ten",
            "10 parsecs",
            "12XB",
            "lots",
        ] {
            let e = parse_size(bad).unwrap_err();
            assert_eq!(
                e,
                format!(
                    "bad size {bad:?}: expected a whole number followed by one of B, KB, KiB, MB, MiB, GB, GiB, e.g. \"50MiB\""
                )
            );
        }
        for huge in [
            "99999999999GiB",
            "99999999999999999999GiB",
            "99999999999999999999",
        ] {
            let e = parse_size(huge).unwrap_err();
            assert_eq!(
                e,
                format!("bad size {huge:?}: expected at most 18446744073709551615 bytes")
            );
        }
    }
}
