//! Command fixture for the socket capability: connects to `host:port` over TCP, sends "ping\n"
//! and prints the first line that comes back.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let Some(addr) = std::env::args().nth(1) else {
        eprintln!("tcp-client: expected an address argument host:port, found none");
        return ExitCode::from(2);
    };
    match ping(&addr) {
        Ok(reply) => {
            print!("{reply}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("tcp-client: {addr}: {err}");
            ExitCode::from(1)
        }
    }
}

fn ping(addr: &str) -> std::io::Result<String> {
    // std::net on wasm32-wasip2 goes through wasi:sockets (tcp, and ip-name-lookup for names).
    let mut stream = TcpStream::connect(addr)?;
    // A server that never answers should not hang a test run forever; ignore hosts that cannot
    // set a timeout, since the reply is still read either way.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    stream.write_all(b"ping\n")?;
    stream.flush()?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    Ok(reply)
}
