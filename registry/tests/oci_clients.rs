//! `oci-client` + `oci-wasm`, the libraries wkg, wash and spin pull with, against the registry
//! served on a loopback socket (docs/protocol.md §7.11): pulls by tag and by digest, tags and
//! referrers, on a public registry and on a private one with a read token. skopeo and oras are
//! driven against the `gridreg serve` binary in cli/tests/oci.rs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::StatusCode;
use common::*;
use gridreg_protocol::Digest;
use gridreg_registry::auth::{Scope, create_token};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use oci_wasm::WasmClient;

fn client() -> WasmClient {
    WasmClient::new(Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..ClientConfig::default()
    }))
}

/// Serves `h`'s router on a free loopback port; returns `127.0.0.1:<port>`.
async fn listen(h: &Harness) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let app = h.app.clone();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_wasm_pulls_by_tag_and_digest_from_a_public_registry() {
    let h = harness().await;
    let alice = key("alice");
    let claimed = h.post_record(&claim(&h.app, &alice, "acme").await).await;
    assert_eq!(claimed.status, StatusCode::OK);
    let hello = fixture("hello.wasm");
    h.publish(&alice, "acme:hello", "1.0.0", &hello).await;
    h.publish(&alice, "acme:hello", "1.1.0", &hello).await;
    let served = h.get("/v2/acme/hello/manifests/1.0.0").await;
    let digest = Digest::of(&served.body).to_string();
    let imports: Vec<String> = gridreg_verifier::audit(&hello)
        .unwrap()
        .imports
        .iter()
        .map(|i| i.name.clone())
        .collect();
    let addr = listen(&h).await;
    let anonymous = RegistryAuth::Anonymous;
    let c = client();

    let by_tag = Reference::try_from(format!("{addr}/acme/hello:1.0.0")).unwrap();
    let image = c.pull(&by_tag, &anonymous).await.unwrap();
    assert_eq!(image.layers.len(), 1);
    assert_eq!(&image.layers[0].data[..], &hello[..]);
    assert_eq!(image.digest.as_deref(), Some(digest.as_str()));
    let (manifest, config, d) = c
        .pull_manifest_and_config(&by_tag, &anonymous)
        .await
        .unwrap();
    assert_eq!(d, digest);
    assert_eq!(manifest.layers[0].digest, Digest::of(&hello).to_string());
    assert_eq!(
        (config.os.as_str(), config.architecture.as_str()),
        ("wasip2", "wasm")
    );
    assert_eq!(config.author.as_deref(), Some("alice"));
    let component = config.component.unwrap();
    assert_eq!(component.imports, imports);
    assert!(
        component
            .exports
            .iter()
            .any(|e| e.starts_with("wasi:cli/run")),
        "{:?}",
        component.exports
    );

    let by_digest = Reference::try_from(format!("{addr}/acme/hello@{digest}")).unwrap();
    let again = c.pull(&by_digest, &anonymous).await.unwrap();
    assert_eq!(&again.layers[0].data[..], &hello[..]);

    let inner: Client = c.into();
    let tags = inner
        .list_tags(&by_tag, &anonymous, None, None)
        .await
        .unwrap();
    assert_eq!(tags.tags, ["1.0.0", "1.1.0"]);
    let page = inner
        .list_tags(&by_tag, &anonymous, Some(1), Some("1.0.0"))
        .await
        .unwrap();
    assert_eq!(page.tags, ["1.1.0"]);
    let referrers = inner.pull_referrers(&by_digest, None).await.unwrap();
    assert_eq!(referrers.manifests.len(), 1);
    assert_eq!(
        referrers.manifests[0].artifact_type.as_deref(),
        Some(gridreg_protocol::oci::BUNDLE_MEDIA_TYPE)
    );

    // A tag that is no version, and another package's repository, are errors, not bytes.
    let missing = Reference::try_from(format!("{addr}/acme/hello:latest")).unwrap();
    assert!(client().pull(&missing, &anonymous).await.is_err());
    let other = Reference::try_from(format!("{addr}/acme/nothing:1.0.0")).unwrap();
    assert!(client().pull(&other, &anonymous).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_wasm_pulls_from_a_private_registry_with_a_read_token_only() {
    let (h, _admin) = private_with_hello().await;
    let store = h.registry.state.store.as_ref();
    let hello = fixture("hello.wasm");
    let (read, _) = create_token(store, Scope::Read, None).await.unwrap();
    let addr = listen(&h).await;
    let image = Reference::try_from(format!("{addr}/acme/hello:1.0.0")).unwrap();

    let refused = client().pull(&image, &RegistryAuth::Anonymous).await;
    assert!(
        refused.is_err(),
        "an anonymous pull from a private registry succeeded"
    );
    let wrong = RegistryAuth::Basic("ci".into(), "grt_0123456789abcdef_00".into());
    assert!(client().pull(&image, &wrong).await.is_err());
    let auth = RegistryAuth::Basic("ci".into(), read);
    let pulled = client().pull(&image, &auth).await.unwrap();
    assert_eq!(&pulled.layers[0].data[..], &hello[..]);
}
