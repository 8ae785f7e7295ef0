//! Library component fixture exporting `neon:cybergrid/converter@0.1.0`: pure arithmetic over a
//! fixed table, so it needs no WASI at all.

wit_bindgen::generate!({
    path: "../../wit/neon-cybergrid",
    world: "converter-provider",
});

use exports::neon::cybergrid::converter::Guest;

/// Value of one unit of each currency in euros; fixed so that outputs are reproducible in tests.
const RATES: &[(&str, f64)] = &[
    ("EUR", 1.0),
    ("USD", 0.92),
    ("GBP", 1.17),
    ("JPY", 0.0062),
    ("CHF", 1.05),
    ("NCR", 0.25),
];

fn rate(code: &str) -> Option<f64> {
    RATES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(code))
        .map(|(_, rate)| *rate)
}

struct Converter;

impl Guest for Converter {
    fn convert(amount: f64, from: String, to: String) -> Option<f64> {
        if !amount.is_finite() {
            return None;
        }
        Some(amount * rate(&from)? / rate(&to)?)
    }
}

export!(Converter);
