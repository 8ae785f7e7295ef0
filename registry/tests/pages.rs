//! The human pages against a real SQLite file and a real PostgreSQL database (each test runs on
//! both): real components published through the API show up with their versions, capability
//! classes, record and WIT; publisher-controlled text (import names, export names, yank
//! reasons) comes out escaped; bad and unknown names get HTML error pages; a private registry
//! guards the pages like the JSON reads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::Router;
use axum::http::{Method, StatusCode};
use common::*;
use gridreg_protocol::record::Yank;
use gridreg_protocol::{PackageName, Record, SignerKey, Timestamp};
use gridreg_registry::auth::{Scope, create_token};

/// Asserts an HTML answer with this status and returns its text.
fn html(r: &Reply, status: StatusCode) -> String {
    let text = r.text();
    assert_eq!(r.status, status, "{text}");
    assert_eq!(
        r.headers["content-type"], "text/html; charset=utf-8",
        "{text}"
    );
    assert!(text.starts_with("<!DOCTYPE html>"), "{text}");
    assert!(
        !text.contains("<script"),
        "pages never carry scripts: {text}"
    );
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    text
}

fn leb(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn name(s: &str, out: &mut Vec<u8>) {
    leb(s.len(), out);
    out.extend_from_slice(s.as_bytes());
}

fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    leb(body.len(), out);
    out.extend_from_slice(body);
}

/// A valid core module importing `module.field` (a function) and exporting it as `export`.
fn hostile_module(module: &str, field: &str, export: &str) -> Vec<u8> {
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    // One type: () -> ().
    section(1, &[1, 0x60, 0, 0], &mut m);
    let mut imports = vec![1];
    name(module, &mut imports);
    name(field, &mut imports);
    imports.extend_from_slice(&[0x00, 0x00]);
    section(2, &imports, &mut m);
    let mut exports = vec![1];
    name(export, &mut exports);
    exports.extend_from_slice(&[0x00, 0x00]);
    section(7, &exports, &mut m);
    m
}

backend_tests!(
    pages_show_packages_versions_capabilities_and_wit,
    publisher_text_is_escaped_everywhere,
    bad_and_unknown_names_get_html_error_pages,
    private_registry_guards_the_pages,
);

async fn yank_with(
    app: &Router,
    key: &SignerKey,
    package: &str,
    version: &str,
    reason: &str,
) -> String {
    Record::Yank(Yank {
        package: PackageName::parse(package).unwrap(),
        prev: head(app, &format!("package {package}")).await,
        version: semver::Version::parse(version).unwrap(),
        reason: reason.into(),
        time: Timestamp::now(),
    })
    .sign(&[key])
    .unwrap()
}

async fn pages_show_packages_versions_capabilities_and_wit(backend: Backend) {
    let h = harness_on(backend).await;
    let alice = key("alice");
    let r = h.post_record(&claim(&h.app, &alice, "acme").await).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let hello = fixture("hello.wasm");
    let tcp = fixture("tcp-client.wasm");
    h.publish(&alice, "acme:hello", "1.0.0", &hello).await;
    h.publish(&alice, "acme:hello", "1.2.0", &hello).await;
    h.publish(&alice, "acme:hello", "1.10.0-rc.1", &hello).await;
    h.publish(&alice, "acme:tcp", "0.1.0", &tcp).await;
    let hello_audit = gridreg_verifier::audit(&hello).unwrap();
    let tcp_audit = gridreg_verifier::audit(&tcp).unwrap();
    assert!(
        tcp_audit
            .capabilities
            .iter()
            .any(|c| c.to_string() == "network"),
        "fixture changed: {tcp_audit:?}"
    );
    assert!(
        !hello_audit
            .capabilities
            .iter()
            .any(|c| c.to_string() == "network"),
        "fixture changed: {hello_audit:?}"
    );

    // The front page: origin, log size, checkpoint, search form, both packages.
    let index = html(&h.get("/").await, StatusCode::OK);
    assert!(index.contains("gridreg.local/log"), "{index}");
    assert!(index.contains("10 entries"), "{index}");
    let checkpoint = h.get("/v1/log/checkpoint").await.text();
    let first_line = checkpoint.lines().next().unwrap();
    assert!(index.contains(first_line), "{index}");
    assert!(
        index.contains("<form method=\"get\" action=\"/\">")
            && index.contains("name=\"q\"")
            && index.contains("name=\"capability\""),
        "{index}"
    );
    assert!(index.contains("href=\"/packages/acme:hello\""), "{index}");
    assert!(index.contains("href=\"/packages/acme:tcp\""), "{index}");
    // Newest by semver (1.10 > 1.2), not by text or by publish order alone.
    assert!(
        index.contains("href=\"/packages/acme:hello/1.10.0-rc.1\""),
        "{index}"
    );
    assert!(index.contains(">network</a>"), "{index}");
    for class in &hello_audit.capabilities {
        assert!(index.contains(&format!(">{class}</a>")), "{class}: {index}");
    }

    // Search by capability and by name.
    let net = html(&h.get("/?capability=network").await, StatusCode::OK);
    assert!(net.contains("acme:tcp"), "{net}");
    assert!(!net.contains("acme:hello"), "{net}");
    assert!(net.contains("value=\"network\""), "{net}");
    let by_name = html(&h.get("/?q=hel&capability=").await, StatusCode::OK);
    assert!(by_name.contains("acme:hello") && !by_name.contains("acme:tcp"));
    let none = html(&h.get("/?q=nothing-like-this").await, StatusCode::OK);
    assert!(none.contains("No packages."), "{none}");

    // A package's versions with digest, size, log index and capabilities.
    let versions = html(&h.get("/packages/acme:hello").await, StatusCode::OK);
    let digest = gridreg_protocol::Digest::of(&hello).to_string();
    for v in ["1.0.0", "1.2.0", "1.10.0-rc.1"] {
        assert!(
            versions.contains(&format!("href=\"/packages/acme:hello/{v}\">{v}</a>")),
            "{v}: {versions}"
        );
    }
    assert!(versions.contains(&digest), "{versions}");
    assert!(
        versions.contains(&format!("<td>{}</td>", hello.len())),
        "{versions}"
    );
    // Log indexes 2, 4, 6 (0 is the claim; each record is followed by its batch's map entry).
    for i in [2, 4, 6] {
        assert!(versions.contains(&format!("<td>{i}</td>")), "{versions}");
    }
    assert!(!versions.contains("acme:tcp"));

    // One release: signed record, log index, imports with classes, exports, WIT.
    let page = html(&h.get("/packages/acme:tcp/0.1.0").await, StatusCode::OK);
    let json = h.get("/v1/packages/acme:tcp/0.1.0").await.json();
    assert_eq!(json["log_index"], 8);
    assert!(page.contains("<th>Log index</th><td>8 "), "{page}");
    // Beside the gridreg reference, the OCI one and the manifest digest OCI clients get.
    let manifest = h.get("/v2/acme/tcp/manifests/0.1.0").await;
    assert_eq!(manifest.status, StatusCode::OK);
    let digest = gridreg_protocol::Digest::of(&manifest.body);
    for row in [
        "<th>gridreg reference</th><td><code>acme:tcp@0.1.0</code>".to_string(),
        "<th>OCI reference</th><td><code>localhost/acme/tcp:0.1.0</code>".to_string(),
        format!("<th>OCI manifest</th><td><code>{digest}</code>"),
        format!("href=\"/v2/acme/tcp/manifests/{digest}\""),
    ] {
        assert!(page.contains(&row), "{row} missing: {page}");
    }
    let record = json["record"].as_str().unwrap();
    // The record's first lines verbatim (no markup in them), and its signature line.
    for line in record.lines().filter(|l| !l.is_empty()) {
        assert!(page.contains(line), "record line {line:?} missing: {page}");
    }
    for import in &tcp_audit.imports {
        assert!(
            page.contains(&format!("<code>{}</code>", import.name)),
            "{page}"
        );
        assert!(page.contains(&format!(">{}</a>", import.class)), "{page}");
    }
    for export in &tcp_audit.exports {
        assert!(page.contains(&format!("<code>{export}</code>")), "{page}");
    }
    let wit = json["wit"].as_str().expect("a component has WIT");
    assert!(!wit.is_empty());
    let escaped_wit = wit
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;");
    assert!(
        page.contains(&format!("<pre>{escaped_wit}</pre>")),
        "WIT missing: {page}"
    );

    // The log page: checkpoint, size, newest entries first with links.
    let log = html(&h.get("/log").await, StatusCode::OK);
    assert!(log.contains("10 entries"), "{log}");
    assert!(log.contains("map entry: head map root"), "{log}");
    assert!(log.contains(first_line), "{log}");
    let key = h.get("/v1/log/key").await.text();
    assert!(log.contains(key.trim()), "{log}");
    let newest = log.find("acme:tcp@0.1.0").expect("newest entry listed");
    let oldest = log
        .find("namespace <code>acme</code> claim owner")
        .expect("claim listed");
    assert!(newest < oldest, "newest first: {log}");
    assert!(log.contains("href=\"/packages/acme:hello/1.0.0\""), "{log}");
}

async fn publisher_text_is_escaped_everywhere(backend: Backend) {
    let h = harness_on(backend).await;
    let alice = key("alice");
    assert_eq!(
        h.post_record(&claim(&h.app, &alice, "acme").await)
            .await
            .status,
        StatusCode::OK
    );
    // Import and export names come straight from the binary; the record format only forbids
    // whitespace and control characters in them.
    let module = hostile_module(
        "<script>alert(1)</script>",
        "x\"onmouseover='y'&",
        "</pre><img/src=x/onerror=alert(2)>",
    );
    let audit = gridreg_verifier::audit(&module).unwrap();
    assert_eq!(audit.imports.len(), 1, "{audit:?}");
    h.publish(&alice, "acme:evil", "1.0.0", &module).await;
    let reason = "<script>alert(\"yank\")</script> & </td></tr></table><b>bold</b>";
    let r = h
        .post_record(&yank_with(&h.app, &alice, "acme:evil", "1.0.0", reason).await)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    let escaped_reason = "&lt;script&gt;alert(&quot;yank&quot;)&lt;/script&gt; &amp; &lt;/td&gt;&lt;/tr&gt;&lt;/table&gt;&lt;b&gt;bold&lt;/b&gt;";
    let pages = [
        "/",
        "/?q=evil",
        "/packages/acme:evil",
        "/packages/acme:evil/1.0.0",
        "/log",
    ];
    for uri in pages {
        let page = html(&h.get(uri).await, StatusCode::OK);
        for raw in [
            "<script>",
            "<img",
            "<b>bold",
            "onmouseover='",
            "x\"onmouseover",
        ] {
            assert!(!page.contains(raw), "{uri} carries raw {raw:?}: {page}");
        }
        assert!(page.contains("acme:evil"), "{uri}: {page}");
    }
    let release = html(&h.get("/packages/acme:evil/1.0.0").await, StatusCode::OK);
    assert!(
        release.contains(
            "<code>&lt;script&gt;alert(1)&lt;/script&gt;.x&quot;onmouseover=&#39;y&#39;&amp;</code>"
        ),
        "{release}"
    );
    assert!(
        release.contains("<code>&lt;/pre&gt;&lt;img/src=x/onerror=alert(2)&gt;</code>"),
        "{release}"
    );
    assert!(release.contains(escaped_reason), "{release}");
    assert!(
        release.contains("No WIT: this is a core module."),
        "{release}"
    );
    let versions = html(&h.get("/packages/acme:evil").await, StatusCode::OK);
    assert!(versions.contains(escaped_reason), "{versions}");
    let log = html(&h.get("/log").await, StatusCode::OK);
    assert!(log.contains(escaped_reason), "{log}");
    // The foreign-import class carries the hostile module name; in a link it is percent-encoded.
    let index = html(&h.get("/").await, StatusCode::OK);
    assert!(
        index.contains("href=\"/?capability=import%3A%3Cscript%3Ealert%281%29%3C%2Fscript%3E\""),
        "{index}"
    );
    assert!(
        index.contains(">import:&lt;script&gt;alert(1)&lt;/script&gt;</a>"),
        "{index}"
    );
    // Searching for hostile text echoes it back escaped in the form.
    let echoed = html(
        &h.get("/?q=%22%3E%3Cscript%3Ealert(3)%3C%2Fscript%3E").await,
        StatusCode::OK,
    );
    assert!(
        echoed.contains("value=\"&quot;&gt;&lt;script&gt;alert(3)&lt;/script&gt;\""),
        "{echoed}"
    );
}

async fn bad_and_unknown_names_get_html_error_pages(backend: Backend) {
    let h = harness_on(backend).await;
    let alice = key("alice");
    assert_eq!(
        h.post_record(&claim(&h.app, &alice, "acme").await)
            .await
            .status,
        StatusCode::OK
    );
    h.publish(&alice, "acme:hello", "1.0.0", &fixture("hello.wasm"))
        .await;
    let cases = [
        ("/packages/acme:nothing", StatusCode::NOT_FOUND),
        ("/packages/acme:hello/9.9.9", StatusCode::NOT_FOUND),
        ("/packages/Not_A_Name", StatusCode::BAD_REQUEST),
        ("/packages/acme", StatusCode::BAD_REQUEST),
        ("/packages/%3Cscript%3E:x", StatusCode::BAD_REQUEST),
        ("/packages/acme:hello/not-semver", StatusCode::BAD_REQUEST),
        ("/packages/acme:hello/%3Cb%3E1.0", StatusCode::BAD_REQUEST),
        ("/packages/%FF%FE:x", StatusCode::BAD_REQUEST),
    ];
    for (uri, status) in cases {
        let page = html(&h.get(uri).await, status);
        assert!(page.contains("<h1>"), "{uri}: {page}");
        assert!(!page.contains("<b>"), "{uri} echoed markup: {page}");
        for internal in ["sqlite", "SELECT", "database", "panicked"] {
            assert!(!page.contains(internal), "{uri} leaked {internal}: {page}");
        }
    }
    // Non-UTF-8 query text is a 400 page too, not a 500.
    let r = h.get("/?q=%FF").await;
    assert!(r.status == StatusCode::OK || r.status == StatusCode::BAD_REQUEST);
    assert_ne!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    // Nothing changed.
    assert_eq!(h.snapshot().await.0, 4);
}

async fn private_registry_guards_the_pages(backend: Backend) {
    let h = harness_with(backend, |c| c.require_token = true).await;
    for uri in [
        "/",
        "/log",
        "/packages/acme:hello",
        "/packages/acme:hello/1.0.0",
    ] {
        h.get(uri)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    let store = h.registry.state.store.as_ref();
    let (read, _) = create_token(store, Scope::Read, None).await.unwrap();
    let r = send(&h.app, Method::GET, "/", Vec::new(), Some(&read)).await;
    let page = html(&r, StatusCode::OK);
    assert!(page.contains("0 packages"), "{page}");
    let r = send(&h.app, Method::GET, "/log", Vec::new(), Some(&read)).await;
    assert!(html(&r, StatusCode::OK).contains("The log is empty."));
    let r = send(&h.app, Method::GET, "/", Vec::new(), Some("not-a-token")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}
