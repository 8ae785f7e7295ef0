//! Links the `gridreg` executable at a fixed address (non-PIE), unless `GRIDREG_LINK_PIE` is set.
//!
//! A position-independent executable this size carries about 80,000 relative relocations, which
//! the dynamic loader applies at every start, copying each page they touch: about 300 extra page
//! faults, 1.5 ms of the 4.8 ms a `gridreg --version` took (bench/RESULTS.md, "verify"). That
//! start-up is most of what separates `gridreg verify` from `wasm-tools validate` on a typical
//! component. The cost of a fixed address is that the executable's own code and data are not
//! randomised by ASLR (heap, stacks, libraries and wasmtime's compiled code still are); it is
//! the same trade-off Go makes by default for its tools (cosign among them). Packagers who want a
//! PIE build `GRIDREG_LINK_PIE=1 cargo build --release`.

fn main() {
    println!("cargo:rerun-if-env-changed=GRIDREG_LINK_PIE");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if linux && std::env::var_os("GRIDREG_LINK_PIE").is_none() {
        println!("cargo:rustc-link-arg-bin=gridreg=-no-pie");
    }
}
