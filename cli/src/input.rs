//! Reading inputs named on the command line: a path, or `-` for standard input, with a size cap so
//! a huge file is refused with a clear message instead of exhausting memory.

use std::io::Read;

use anyhow::{Context, bail};

/// The most a command reads into memory from one input. Components in the wild are a few MB; the
/// largest sandboxes are tens of MB.
pub const MAX_INPUT: u64 = 1 << 30;

/// One input file, read whole.
#[derive(Debug)]
pub struct Input {
    /// How to name it in messages and reports: the path as given, or `<stdin>`.
    pub name: String,
    pub bytes: Vec<u8>,
}

pub fn read(path: &str) -> anyhow::Result<Input> {
    if path == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .take(MAX_INPUT + 1)
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
        if bytes.len() as u64 > MAX_INPUT {
            bail!(
                "standard input is larger than {}, the most gridreg reads",
                human_size(MAX_INPUT)
            );
        }
        return Ok(Input {
            name: "<stdin>".to_string(),
            bytes,
        });
    }
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read `{path}`"))?;
    if meta.is_dir() {
        bail!("`{path}` is a directory: expected a .wasm file");
    }
    if meta.len() > MAX_INPUT {
        bail!(
            "`{path}` is {}: larger than {}, the most gridreg reads",
            human_size(meta.len()),
            human_size(MAX_INPUT)
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read `{path}`"))?;
    Ok(Input {
        name: path.to_string(),
        bytes,
    })
}

/// `1.5 MiB`-style sizes for messages.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}
