//! Host-side helper for `build.sh`: turns one `.wat` text module into a binary `.wasm` file.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        eprintln!(
            "usage: wat2wasm INPUT.wat OUTPUT.wasm (expected 2 arguments, found {})",
            args.len()
        );
        return ExitCode::from(2);
    };
    // `wat::parse_file` resolves and reports errors with line and column, which is all we need.
    match wat::parse_file(PathBuf::from(input)) {
        Ok(bytes) => match std::fs::write(output, bytes) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("cannot write {output}: {err}");
                ExitCode::FAILURE
            }
        },
        Err(err) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
    }
}
