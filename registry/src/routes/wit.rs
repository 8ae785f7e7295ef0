//! A release's WIT text, extracted on its first read rather than at publish.
//!
//! The text is a pure function of the content, and decoding it re-validates the component's
//! sections (`wit_component::decode` runs its own validator). At publish that was a fifth of
//! the CPU of every publish; most releases' WIT is read rarely or never. So a publish stores
//! none, and the first read of a component's release (the release endpoint or its page)
//! extracts it from the stored content and keeps it in the release's row. Modules carry no WIT.

use gridreg_protocol::Digest;

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::ReleaseRow;

/// The release with its WIT filled in where the content has one.
pub async fn release_with_wit(
    state: &AppState,
    package: &str,
    version: &str,
) -> Result<Option<ReleaseRow>, ApiError> {
    let Some(mut release) = state.store.release(package, version).await? else {
        return Ok(None);
    };
    if release.wit.is_some() || release.kind != "component" {
        return Ok(Some(release));
    }
    let digest = Digest::parse(&release.row.digest)
        .map_err(|e| ApiError::Internal(format!("stored digest of {package}@{version}: {e}")))?;
    let Some(bytes) = state.blobs.read(digest).await? else {
        // The row stays readable without its content; the WIT is simply not there to show.
        tracing::warn!(%package, %version, %digest, "content missing; no WIT to extract");
        return Ok(Some(release));
    };
    let wit = tokio::task::spawn_blocking(move || gridreg_verifier::wit_text(&bytes))
        .await
        .map_err(|e| ApiError::Internal(format!("WIT task: {e}")))?;
    match wit {
        Ok(text) => {
            state.store.set_wit(package, version, &text).await?;
            release.wit = Some(text);
        }
        // The audit accepted this component, so this is a decoder limit, not bad input; the
        // release is shown without WIT (as before extraction moved here), and the next read
        // tries again.
        Err(e) => tracing::warn!(%package, %version, "no WIT extracted: {e}"),
    }
    Ok(Some(release))
}
