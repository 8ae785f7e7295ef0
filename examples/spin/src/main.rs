//! Command fixture for time limits: it never returns, so only fuel or epoch interruption stops it.

fn main() {
    let mut counter: u64 = 0;
    loop {
        // black_box keeps the optimiser from proving the loop has no effect and deleting it.
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}
