//! HTTP handler fixture (`wasi:http/incoming-handler`) for `gridreg run --listen`: a hello
//! answer for benchmarks, and routes that test the server's isolation and limits.
//!
//! | route | answer |
//! |---|---|
//! | `/` | `hello from gridreg` |
//! | `/count` | `calls: N`, N counting calls in this instance (1 when every request gets a fresh one) |
//! | `/sleep?ms=N` | waits N milliseconds on the monotonic clock, then `slept N ms` |
//! | `/echo` | the request body, read to its end |
//! | `/spin` | never answers: loops forever (time budget) |
//! | `/hog` | allocates 1 MiB blocks until refused (memory cap) |
//! | `/trap` | traps (`unreachable`): the server must answer 500 and go on |
//! | other | 404 `not found` |
//!
//! It is `no_std` with a bump allocator: std's panic and out-of-memory reports would import
//! stderr, the environment and the terminal interfaces, and this handler should import only what
//! the `wasi:http/proxy` world offers (it passes `policies/http-proxy.toml`). An instance lives
//! for one request, so memory that is never freed is returned when the instance goes.

#![no_std]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use wasip2::clocks::monotonic_clock;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::StreamError;

/// Requests this instance has handled.
static CALLS: AtomicU32 = AtomicU32::new(0);

/// Longest `/sleep` accepted, so a typo cannot park an instance for hours.
const MAX_SLEEP_MS: u64 = 60_000;

struct Hello;

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let calls = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        let path_with_query = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let (path, query) = path_with_query
            .split_once('?')
            .unwrap_or((path_with_query.as_str(), ""));
        let (status, body) = match path {
            "/" => (200, "hello from gridreg\n".to_string()),
            "/count" => (200, format!("calls: {calls}\n")),
            "/sleep" => match param(query, "ms").and_then(|v| v.parse::<u64>().ok()) {
                Some(ms) if ms <= MAX_SLEEP_MS => {
                    monotonic_clock::subscribe_duration(ms * 1_000_000).block();
                    (200, format!("slept {ms} ms\n"))
                }
                _ => (400, format!("expected ?ms=N with N at most {MAX_SLEEP_MS}\n")),
            },
            "/echo" => match read_body(request) {
                Ok(bytes) => (200, String::from_utf8_lossy(&bytes).into()),
                Err(e) => (400, format!("cannot read the body: {e}\n")),
            },
            "/spin" => loop {
                core::hint::black_box(calls);
            },
            "/hog" => {
                let mut blocks: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut block = Vec::new();
                    // try_reserve: a refused allocation traps here instead of going through
                    // the allocation-error path.
                    if block.try_reserve_exact(1 << 20).is_err() {
                        trap();
                    }
                    // Touch every page so the memory is really used, not only reserved.
                    block.resize(1 << 20, 0xA5);
                    blocks.push(core::hint::black_box(block));
                }
            }
            "/trap" => trap(),
            _ => (404, "not found\n".to_string()),
        };
        respond(response_out, status, body.as_bytes());
    }
}

/// Ends the instance with a trap.
fn trap() -> ! {
    core::arch::wasm32::unreachable()
}

/// A panic (an index out of bounds, say) traps: there is nowhere to report it.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    trap()
}

/// Hands out memory from the end of linear memory, growing it in 64 KiB pages; never frees.
struct Bump;

/// The next free address and the end of the memory grown so far (0 before the first call).
static NEXT: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
static END: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

const PAGE: usize = 65536;

unsafe impl core::alloc::GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
        // One instance runs one request on one thread, so plain loads and stores suffice.
        let mut next = NEXT.load(Ordering::Relaxed);
        let mut end = END.load(Ordering::Relaxed);
        if end == 0 {
            next = core::arch::wasm32::memory_size(0) * PAGE;
            end = next;
        }
        let start = (next + layout.align() - 1) & !(layout.align() - 1);
        let Some(stop) = start.checked_add(layout.size()) else {
            return core::ptr::null_mut();
        };
        if stop > end {
            let pages = (stop - end).div_ceil(PAGE);
            if core::arch::wasm32::memory_grow(0, pages) == usize::MAX {
                return core::ptr::null_mut();
            }
            end += pages * PAGE;
        }
        NEXT.store(stop, Ordering::Relaxed);
        END.store(end, Ordering::Relaxed);
        start as *mut u8
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: core::alloc::Layout) {}
}

#[global_allocator]
static ALLOCATOR: Bump = Bump;

/// The canonical ABI's allocation entry point, which the host calls to pass strings and lists
/// in. On wasm32-wasip2 it normally comes from wasi-libc, which a no_std build does not link.
///
/// # Safety
/// Called by the host as the component model's canonical ABI specifies.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabi_realloc(
    old_ptr: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    use core::alloc::{GlobalAlloc, Layout};
    if new_len == 0 {
        return align as *mut u8;
    }
    let Ok(layout) = Layout::from_size_align(new_len, align) else {
        trap()
    };
    // SAFETY: the layout has a non-zero size.
    let new = unsafe { ALLOCATOR.alloc(layout) };
    if new.is_null() {
        trap();
    }
    if old_len > 0 {
        // SAFETY: the host owns `old_ptr..old_ptr + old_len`, and the new block, just handed
        // out by a bump allocator, cannot overlap it.
        unsafe { core::ptr::copy_nonoverlapping(old_ptr, new, old_len.min(new_len)) };
    }
    new
}

/// The value of `name` in a `k=v&k=v` query, undecoded.
fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn read_body(request: IncomingRequest) -> Result<Vec<u8>, String> {
    let body = request
        .consume()
        .map_err(|()| "the body was already taken".to_string())?;
    let stream = body
        .stream()
        .map_err(|()| "the body stream was already taken".to_string())?;
    let mut out = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(bytes) => out.extend_from_slice(&bytes),
            Err(StreamError::Closed) => return Ok(out),
            Err(StreamError::LastOperationFailed(e)) => return Err(e.to_debug_string()),
        }
    }
}

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::from_list(&[(
        "content-type".to_string(),
        b"text/plain; charset=utf-8".to_vec(),
    )])
    .unwrap_or_else(|_| Fields::new());
    let response = OutgoingResponse::new(headers);
    // Every status used above is valid, so this cannot fail.
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        // Writes in pieces the stream accepts; a client that went away ends the answer early.
        for chunk in body.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

wasip2::http::proxy::export!(Hello with_types_in wasip2);
