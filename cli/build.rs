//! Links the `gridreg` executable as a position-independent executable (the toolchain's
//! default), so ASLR also randomises its own code and data: `gridreg serve` faces the network.
//!
//! Packagers who prefer start-up time may opt out with `GRIDREG_LINK_NO_PIE=1 cargo build
//! --release`: a fixed-address executable skips the roughly 80,000 relative relocations the
//! dynamic loader otherwise applies at every start (about 300 page faults, 1.4 ms of a
//! `gridreg --version` on the bench machine; bench/RESULTS.md, "verify"), at the cost of ASLR for
//! the executable's own image (heap, stacks, libraries and wasmtime's compiled code stay
//! randomised either way).

fn main() {
    println!("cargo:rerun-if-env-changed=GRIDREG_LINK_NO_PIE");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if linux && std::env::var_os("GRIDREG_LINK_NO_PIE").is_some_and(|v| !v.is_empty()) {
        println!("cargo:rustc-link-arg-bin=gridreg=-no-pie");
    }
}
