//! `POST /v1/records`: one signed release, namespace or yank record. Everything that can be
//! checked without the log's order or a database query is checked here, in parallel across
//! requests (note syntax, signatures, content, audit, declared surface); then the sequencer
//! decides, once per batch, what depends on order or shared state (versions taken, who is
//! authorised at the record's index, the namespace's policy) and answers once the record is
//! durable.

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::routing::post;
use axum::{Json, Router};
use gridreg_protocol::api::{ErrorCode, PublishResponse, encode_hashes};
use gridreg_protocol::note::{self, NoteError};
use gridreg_protocol::record::MAX_VALUE_LEN;
use gridreg_protocol::{NamespaceOp, Note, Record, Release};
use gridreg_verifier::{Audit, Kind};
use http_body_util::BodyExt as _;
use tokio::sync::oneshot;

use crate::audits::AuditFailure;
use crate::auth::Scope;
use crate::error::{ApiError, namespace_error};
use crate::log::inclusion_proof;
use crate::routes::Caller;
use crate::sequencer::Submission;
use crate::state::AppState;
use crate::store::{Derived, NewRelease};

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/records", post(submit))
}

async fn submit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Result<Json<PublishResponse>, ApiError> {
    let result = publish(&state, &caller, body).await;
    if let Err(e) = &result {
        state.metrics.rejection(&e.code());
    }
    result.map(Json)
}

async fn read_body(body: Body) -> Result<Vec<u8>, ApiError> {
    // Every log entry fits a tlog-tiles entry bundle (docs/protocol.md §7.12).
    let limit = gridreg_protocol::tiles::MAX_ENTRY_LEN;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes().to_vec()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::TooLarge(format!(
            "expected a signed record of at most {limit} bytes, found more"
        ))),
        Err(e) => Err(ApiError::BadRequest(format!("reading the record: {e}"))),
    }
}

async fn publish(
    state: &AppState,
    caller: &Caller,
    body: Body,
) -> Result<PublishResponse, ApiError> {
    let leaf = read_body(body).await?;
    let parsed = Note::parse(&leaf).map_err(|e| ApiError::MalformedRecord(e.to_string()))?;
    let record =
        Record::from_note(&parsed).map_err(|e| ApiError::MalformedRecord(e.to_string()))?;
    let namespace = record.namespace().to_string();
    let is_claim = matches!(&record, Record::Namespace(n) if n.op == NamespaceOp::Claim);
    // A private registry hands out namespaces through its admins; an open one first come.
    let scope = if is_claim && state.require_token {
        Scope::Admin
    } else {
        Scope::Publish
    };
    caller.require(state, scope, Some(&namespace))?;

    // Which of the signatures verify, against every key the namespace ever had (plus the
    // claimed key for a claim). Roles at the record's index are the sequencer's decision.
    let mut signers = verified_signers(state, &record, &leaf)?;
    // With replicas, this view may miss what another replica acknowledged a moment ago (a
    // grant, a claim): when the record does not pass as things look here, catch up with the
    // stored log and look again. Records that pass need no extra query.
    let passes = !signers.is_empty()
        && match &record {
            Record::Release(_) | Record::Yank(_) => {
                precheck_publisher(state, &record, &signers).is_ok()
            }
            Record::Namespace(_) => true,
        };
    if !passes {
        state.view.catch_up(state.store.as_ref()).await?;
        signers = verified_signers(state, &record, &leaf)?;
    }

    // Held until this publish is answered, so the collector of unnamed uploads leaves the
    // content alone while the release is checked and sequenced.
    let _pin = match &record {
        Record::Release(r) => Some(state.pins.pin(r.digest).ok_or_else(|| {
            ApiError::ContentMissing(format!(
                "content {} was not named by any release within the upload TTL and is being deleted; upload it again",
                r.digest
            ))
        })?),
        _ => None,
    };
    let (derived, audit) = match &record {
        Record::Release(r) => {
            // Fail fast on what the sequencer would refuse anyway, before reading the content.
            precheck_publisher(state, &record, &signers)?;
            // Whether the version is taken and the namespace's policy are the sequencer's to
            // judge, once per batch: a publish makes no query of its own here.
            let (row, audit) = check_release(state, r).await?;
            (Derived::Release(Box::new(row)), Some(Box::new(audit)))
        }
        Record::Yank(y) => {
            precheck_publisher(state, &record, &signers)?;
            match state
                .store
                .release_state(&y.package.to_string(), &y.version.to_string())
                .await?
            {
                None => {
                    return Err(ApiError::NotFound(format!(
                        "{}@{} does not exist, so it cannot be yanked",
                        y.package, y.version
                    )));
                }
                Some(true) => {
                    return Err(ApiError::Conflict {
                        code: ErrorCode::AlreadyYanked,
                        message: format!("{}@{} is already yanked", y.package, y.version),
                    });
                }
                Some(false) => {}
            }
            let yank = Derived::Yank {
                package: y.package.to_string(),
                version: y.version.to_string(),
                reason: y.reason.chars().take(MAX_VALUE_LEN).collect(),
            };
            (yank, None)
        }
        Record::Namespace(_) => (Derived::Namespace, None),
    };

    let named = match &record {
        Record::Release(r) => Some(r.digest),
        _ => None,
    };
    let (reply, answer) = oneshot::channel();
    state
        .submit
        .send(Submission {
            leaf,
            record,
            signers,
            derived,
            audit,
            reply,
        })
        .await
        .map_err(|_| ApiError::Unavailable("the registry is shutting down".into()))?;
    let accepted = answer
        .await
        .map_err(|_| ApiError::Unavailable("the registry is shutting down".into()))??;
    // The release names its content: the upload is no longer pending.
    if let Some(digest) = named {
        state.uploads.named(&digest);
    }
    let proof = inclusion_proof(
        state.store.as_ref(),
        accepted.checkpoint.size,
        accepted.index,
    )
    .await?;
    // Answering witnesses cosign the checkpoint before the publisher hears back (bounded), so
    // a client that requires a witness quorum can pull what was just published.
    state.witnesses.wait_for(accepted.checkpoint.size).await;
    Ok(PublishResponse {
        index: accepted.index,
        checkpoint: state
            .witnesses
            .serve(&state.timestamp, &accepted.checkpoint.body),
        proof: encode_hashes(&proof),
    })
}

/// The keys whose signatures on `leaf` verify, among those that can matter for `record`.
fn verified_signers(
    state: &AppState,
    record: &Record,
    leaf: &[u8],
) -> Result<Vec<gridreg_protocol::VerifierKey>, ApiError> {
    let keys = state.view.with_namespaces(|ns| ns.keys_for(record));
    match note::verify(leaf, &keys) {
        Ok(v) => Ok(v.verified_by),
        Err(NoteError::NoVerifiedSignature { .. }) => Ok(Vec::new()),
        Err(e) => Err(ApiError::NotAuthorised {
            code: ErrorCode::BadSignature,
            message: e.to_string(),
        }),
    }
}

/// Refuses a release or yank that no signer could publish as things stand now: at the next log
/// index, the lowest the record can get. The sequencer checks again at the record's real index.
fn precheck_publisher(
    state: &AppState,
    record: &Record,
    signers: &[gridreg_protocol::VerifierKey],
) -> Result<(), ApiError> {
    let next = state.view.latest().size;
    state
        .view
        .with_namespaces(|ns| ns.check_publish(record.namespace(), next, signers))
        .map_err(namespace_error)
}

/// The content checks of a release: uploaded, same size, valid wasm, declared surface equal to
/// the binary's. Returns the derived row to store with the entry, and the audit the sequencer
/// judges the namespace's policy on.
async fn check_release(state: &AppState, r: &Release) -> Result<(NewRelease, Audit), ApiError> {
    let Some(size) = state.blobs.get(r.digest).await?.map(|s| s.size()) else {
        return Err(ApiError::ContentMissing(format!(
            "expected content {} to be uploaded first (PUT /v1/content/{}), found none",
            r.digest, r.digest
        )));
    };
    if size != r.size {
        return Err(ApiError::SizeMismatch(format!(
            "the record says size {}, the uploaded content {} has {size} bytes",
            r.size, r.digest
        )));
    }
    // One audit per digest at a time, admitted within the memory budget: 32 publishes naming
    // one 100 MiB blob read and audit it once.
    let audit = state
        .audits
        .audit(&state.blobs, r.digest, size)
        .await
        .map_err(|e| match e {
            AuditFailure::Missing(_) => ApiError::ContentMissing(e.to_string()),
            AuditFailure::Invalid { .. } => ApiError::InvalidWasm(e.to_string()),
            AuditFailure::Internal(m) => ApiError::Internal(m),
        })?;
    let audit = Audit::clone(&audit);
    if let Some(diff) = audit.surface_diff(&r.imports, &r.exports) {
        return Err(ApiError::SurfaceMismatch(format!(
            "expected the record's {} lines to equal the binary's; {diff}",
            diff.what
        )));
    }
    let row = NewRelease {
        package: r.package.to_string(),
        version: r.version.to_string(),
        digest: r.digest.to_string(),
        size: r.size,
        kind: match audit.kind {
            Kind::Component => "component",
            Kind::Module => "module",
        }
        .to_string(),
        capabilities: audit
            .capabilities
            .iter()
            .map(|c| c.as_str().to_string())
            .collect(),
        audit_json: serde_json::to_string(&audit)
            .map_err(|e| ApiError::Internal(format!("encoding the audit: {e}")))?,
        imports: audit
            .imports
            .iter()
            .map(|i| (i.name.clone(), i.class.as_str().to_string()))
            .collect(),
        exports: audit.exports.clone(),
    };
    Ok((row, audit))
}
