//! The gateway of the example microservice: an HTTP handler that checks the caller with the
//! `neon:cybergrid/authenticator` it imports and converts amounts with the imported
//! `neon:cybergrid/converter`. Composed with both (`gridreg compose gateway.wasm --plug
//! authenticator.wasm --plug converter.wasm`) it is one component `gridreg run --listen` serves.
//!
//! | route | answer |
//! |---|---|
//! | `GET /healthz` | 200 `ok`, no credentials needed |
//! | `GET /convert?amount=A&from=F&to=T` | 200 `{"amount":A,"from":F,"to":T,"result":R}` |
//! | `GET /fetch?url=U` | 200 with the upstream's status and body: outgoing HTTP for allow-list checks |
//!
//! Every route but `/healthz` needs `Authorization: Basic base64(user:token)` (what `curl -u
//! user:token` sends) that the authenticator accepts; otherwise 401 with `WWW-Authenticate`.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse, ResponseOutparam,
    Scheme,
};
use wasip2::io::streams::StreamError;

wit_bindgen::generate!({
    path: "../../wit/neon-cybergrid",
    world: "gateway",
});

use neon::cybergrid::{authenticator, converter};

/// Largest upstream body relayed by `/fetch`.
const MAX_RELAY: usize = 1 << 20;

struct Gateway;

/// An answer: status, content type, body.
struct Answer {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    challenge: bool,
}

impl Answer {
    fn text(status: u16, body: impl Into<String>) -> Self {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
            challenge: false,
        }
    }
}

impl wasip2::exports::http::incoming_handler::Guest for Gateway {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let answer = route(&request);
        respond(response_out, answer);
    }
}

fn route(request: &IncomingRequest) -> Answer {
    let target = request.path_with_query().unwrap_or_else(|| "/".to_string());
    let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
    if path == "/healthz" {
        return Answer::text(200, "ok\n");
    }
    if path != "/convert" && path != "/fetch" {
        return Answer::text(404, "not found\n");
    }
    let credentials = request
        .headers()
        .get("authorization")
        .into_iter()
        .next()
        .and_then(|v| basic_credentials(&v));
    let Some((user, token)) = credentials else {
        let mut a = Answer::text(401, "expected an Authorization: Basic header (curl -u user:token)\n");
        a.challenge = true;
        return a;
    };
    if !authenticator::authenticate(&user, &token) {
        let mut a = Answer::text(401, "the authenticator refused these credentials\n");
        a.challenge = true;
        return a;
    }
    match path {
        "/convert" => convert(query),
        _ => fetch(query),
    }
}

fn convert(query: &str) -> Answer {
    let (Some(amount), Some(from), Some(to)) =
        (param(query, "amount"), param(query, "from"), param(query, "to"))
    else {
        return Answer::text(400, "expected ?amount=A&from=F&to=T\n");
    };
    let Ok(value) = amount.parse::<f64>() else {
        return Answer::text(400, format!("expected a number for amount, found {amount:?}\n"));
    };
    match converter::convert(value, &from, &to) {
        Some(result) => Answer {
            status: 200,
            content_type: "application/json",
            body: format!(
                "{{\"amount\":{value},\"from\":{},\"to\":{},\"result\":{:.2}}}\n",
                json_string(&from),
                json_string(&to),
                result
            )
            .into_bytes(),
            challenge: false,
        },
        None => Answer::text(422, format!("cannot convert {from} to {to}: unknown currency\n")),
    }
}

/// GET an upstream URL and relay its status and body.
fn fetch(query: &str) -> Answer {
    let Some(url) = param(query, "url") else {
        return Answer::text(400, "expected ?url=http://host/path\n");
    };
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else {
        return Answer::text(400, format!("expected an http:// or https:// URL, found {url:?}\n"));
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    if request.set_scheme(Some(&scheme)).is_err()
        || request.set_authority(Some(authority)).is_err()
        || request.set_path_with_query(Some(path)).is_err()
    {
        return Answer::text(400, format!("the host rejected the URL {url:?}\n"));
    }
    let pending = match outgoing_handler::handle(request, None) {
        Ok(p) => p,
        Err(e) => return Answer::text(502, format!("upstream {authority}: {e:?}\n")),
    };
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(e))) => return Answer::text(502, format!("upstream {authority}: {e:?}\n")),
        _ => return Answer::text(502, format!("upstream {authority}: no response\n")),
    };
    let status = response.status();
    let mut body = Vec::new();
    if let Ok(incoming) = response.consume()
        && let Ok(stream) = incoming.stream()
    {
        loop {
            match stream.blocking_read(16 * 1024) {
                Ok(bytes) if body.len() + bytes.len() <= MAX_RELAY => body.extend_from_slice(&bytes),
                Ok(_) => return Answer::text(502, "upstream body too large\n"),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Answer::text(502, format!("upstream body: {}\n", e.to_debug_string()));
                }
            }
        }
    }
    Answer {
        status: 200,
        content_type: "text/plain; charset=utf-8",
        body: [format!("upstream status {status}\n").into_bytes(), body].concat(),
        challenge: false,
    }
}

/// `user:token` from `Basic base64(user:token)`.
fn basic_credentials(header: &[u8]) -> Option<(String, String)> {
    let header = std::str::from_utf8(header).ok()?;
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64_decode(encoded.trim())?).ok()?;
    let (user, token) = decoded.split_once(':')?;
    Some((user.to_string(), token.to_string()))
}

/// Standard base64 with padding (RFC 4648 section 4); None for anything else.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if s.len() % 4 != 0 {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for (i, quad) in s.chunks(4).enumerate() {
        let last = i + 1 == s.len() / 4;
        let pad = quad.iter().rev().take_while(|c| **c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

/// The percent-decoded value of `name` in a `k=v&k=v` query.
fn param(query: &str, name: &str) -> Option<String> {
    let raw = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)?
        .1;
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn respond(out: ResponseOutparam, answer: Answer) {
    let mut fields = vec![("content-type".to_string(), answer.content_type.as_bytes().to_vec())];
    if answer.challenge {
        fields.push(("www-authenticate".to_string(), b"Basic realm=\"gridreg\"".to_vec()));
    }
    let headers = Fields::from_list(&fields).unwrap_or_else(|_| Fields::new());
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(answer.status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        for chunk in answer.body.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

wasip2::http::proxy::export!(Gateway with_types_in wasip2);
