//! Command fixture for memory limits: keeps allocating and touching 1 MiB blocks until the host
//! refuses to grow memory, then reports how far it got.

use std::process::ExitCode;

const BLOCK: usize = 1 << 20;

fn main() -> ExitCode {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = Vec::new();
        // try_reserve turns a refused memory.grow into an error instead of an abort, so the
        // component can say how much it held when the limit hit.
        if block.try_reserve_exact(BLOCK).is_err() {
            println!("hog: allocation failed after {} MiB", blocks.len());
            return ExitCode::from(1);
        }
        // Writing every page makes the memory really used, not just reserved.
        block.resize(BLOCK, 0xA5);
        blocks.push(std::hint::black_box(block));
    }
}
