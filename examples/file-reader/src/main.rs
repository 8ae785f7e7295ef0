//! Command fixture for the file-system capability: reads one file, and with `--write` tries to
//! write one, so tests can tell a read-only grant from a read-write one.

use std::process::ExitCode;

const DEFAULT_INPUT: &str = "/data/input.txt";
const OUTPUT: &str = "/data/output.txt";

fn main() -> ExitCode {
    let mut write = false;
    let mut input = None;
    for arg in std::env::args().skip(1) {
        if arg == "--write" {
            write = true;
        } else if input.is_none() {
            input = Some(arg);
        } else {
            eprintln!("file-reader: expected at most one path, found another: {arg}");
            return ExitCode::from(2);
        }
    }
    let input = input.unwrap_or_else(|| DEFAULT_INPUT.to_owned());

    match std::fs::read(&input) {
        Ok(bytes) => print!("{}", String::from_utf8_lossy(&bytes)),
        Err(err) => {
            eprintln!("file-reader: cannot read {input}: {err}");
            return ExitCode::from(1);
        }
    }

    if write {
        match std::fs::write(OUTPUT, b"written by file-reader\n") {
            Ok(()) => println!("file-reader: wrote {OUTPUT}"),
            Err(err) => {
                eprintln!("file-reader: cannot write {OUTPUT}: {err}");
                return ExitCode::from(3);
            }
        }
    }
    ExitCode::SUCCESS
}
