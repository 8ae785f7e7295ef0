//! Command fixture that imports `neon:cybergrid/converter@0.1.0`: on its own it cannot be
//! instantiated, and plugged with the `converter` component it runs and prints a conversion.

use std::process::ExitCode;

wit_bindgen::generate!({
    path: "../../wit/neon-cybergrid",
    world: "processor",
});

use neon::cybergrid::converter::convert;

fn main() -> ExitCode {
    let (amount, from, to) = (100.0, "EUR", "USD");
    match convert(amount, from, to) {
        Some(converted) => {
            println!("{amount:.2} {from} = {converted:.2} {to}");
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("processor: the converter does not know {from} or {to}");
            ExitCode::from(1)
        }
    }
}
