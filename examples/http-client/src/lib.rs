//! Command fixture for outgoing HTTP: a GET through `wasi:http/outgoing-handler` to the URL given
//! as the first argument, printing the status line and then the body.

use wasip2::cli::environment::get_arguments;
use wasip2::cli::stderr::get_stderr;
use wasip2::cli::stdout::get_stdout;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, OutgoingRequest, Scheme};
use wasip2::io::streams::StreamError;

/// Bytes asked for per read of the response body.
const CHUNK: u64 = 16 * 1024;

struct HttpClient;

impl wasip2::exports::cli::run::Guest for HttpClient {
    fn run() -> Result<(), ()> {
        let url = get_arguments().into_iter().nth(1);
        let result = match url {
            Some(url) => fetch(&url),
            None => {
                Err("expected a URL argument such as http://127.0.0.1:8080/, found none".into())
            }
        };
        result.map_err(|message| {
            // Nothing useful is left to do if stderr itself fails, so that error is dropped.
            let _ = get_stderr()
                .blocking_write_and_flush(format!("http-client: {message}\n").as_bytes());
        })
    }
}

/// The parts of an absolute http(s) URL that an outgoing request is built from.
struct Target<'a> {
    scheme: Scheme,
    authority: &'a str,
    path_with_query: &'a str,
}

fn parse_url(url: &str) -> Result<Target<'_>, String> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else {
        return Err(format!(
            "expected a URL starting with http:// or https://, found {url:?}"
        ));
    };
    let (authority, path_with_query) = match rest.find(['/', '?']) {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("expected a host in the URL, found none in {url:?}"));
    }
    Ok(Target {
        scheme,
        authority,
        path_with_query,
    })
}

fn fetch(url: &str) -> Result<(), String> {
    let target = parse_url(url)?;
    let request = OutgoingRequest::new(Fields::new());
    // A query straight after the host still needs the root path in front of it.
    let path = if target.path_with_query.starts_with('?') {
        format!("/{}", target.path_with_query)
    } else {
        target.path_with_query.to_owned()
    };
    request
        .set_scheme(Some(&target.scheme))
        .and_then(|()| request.set_authority(Some(target.authority)))
        .and_then(|()| request.set_path_with_query(Some(&path)))
        .map_err(|()| format!("the host rejected the URL {url:?}"))?;

    let pending = outgoing_handler::handle(request, None)
        .map_err(|err| format!("request failed: {err:?}"))?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(err))) => return Err(format!("request failed: {err:?}")),
        Some(Err(())) => return Err("the response was already taken".into()),
        None => return Err("expected a response after waiting, found none".into()),
    };

    let stdout = get_stdout();
    let write = |bytes: &[u8]| {
        stdout
            .blocking_write_and_flush(bytes)
            .map_err(|err| format!("cannot write stdout: {err:?}"))
    };
    write(format!("status {}\n", response.status()).as_bytes())?;

    let body = response
        .consume()
        .map_err(|()| "the response body was already taken".to_string())?;
    let stream = body
        .stream()
        .map_err(|()| "the body stream was already taken".to_string())?;
    loop {
        match stream.blocking_read(CHUNK) {
            Ok(bytes) => write(&bytes)?,
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(err)) => {
                return Err(format!(
                    "reading the body failed: {}",
                    err.to_debug_string()
                ));
            }
        }
    }
    Ok(())
}

wasip2::cli::command::export!(HttpClient with_types_in wasip2);
