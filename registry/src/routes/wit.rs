//! A release's WIT text, extracted on its first read rather than at publish.
//!
//! The text is a pure function of the content, and decoding it re-validates the component's
//! sections (`wit_component::decode` runs its own validator). At publish that was a fifth of
//! the CPU of every publish; most releases' WIT is read rarely or never. So a publish stores
//! none, and the first read of a component's release (the release endpoint or its page)
//! extracts it from the stored content and keeps it in the release's row. Modules carry no WIT.
//! The extraction reads the whole blob, so it goes through [`crate::audits::Audits::wit`]: once
//! per content at a time, within the audit memory budget.

use gridreg_protocol::Digest;

use crate::audits::AuditFailure;
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
    // One extraction per content at a time, within the audits' memory budget: the first reads
    // of a large component's release, however many at once, hold its bytes once.
    match state
        .audits
        .wit(&state.blobs, digest, release.row.size)
        .await
    {
        Ok(Some(text)) => {
            state.store.set_wit(package, version, &text).await?;
            release.wit = Some(text.to_string());
        }
        // The audit accepted this component, so this is a decoder limit, not bad input; the
        // release is shown without WIT (as before extraction moved here).
        Ok(None) => {}
        // The row stays readable without its content; the WIT is simply not there to show.
        Err(AuditFailure::Missing(_)) => {
            tracing::warn!(%package, %version, %digest, "content missing; no WIT to extract");
        }
        Err(e) => {
            return Err(ApiError::Internal(format!(
                "WIT of {package}@{version}: {e}"
            )));
        }
    }
    Ok(Some(release))
}
