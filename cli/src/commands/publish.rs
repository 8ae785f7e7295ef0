//! `gridreg publish`: audit a component locally, sign a release record listing its whole surface,
//! upload the bytes, post the record, and check the log's answer before saying it worked.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use gridreg_protocol::name::parse_version;
use gridreg_protocol::record::Release;
use gridreg_protocol::{ChainKey, PackageName, Prev, Record, Timestamp};

use crate::client::http::HttpError;
use crate::client::{self, trust};
use crate::commands::RegistryOpt;
use crate::exit::Status;
use crate::input;

/// Sign and publish a component into a registry's transparency log.
///
/// Audits FILE, signs a release record (package, version, digest, size, and every import and
/// export line) with your key, uploads the bytes, posts the record, waits until the log has
/// integrated it, then verifies the inclusion proof and checkpoint it got back (and their
/// consistency with the last checkpoint this client saw) before printing the log index. After a
/// 503 (nothing stored; the registry asks for another try) or a lost connection the record is
/// sent again, up to twice; if a try then meets a conflict, the record is looked for in the log,
/// in case an earlier try landed.
#[derive(Debug, Args)]
#[command(disable_version_flag = true)]
#[command(after_help = "Examples:
  gridreg publish auth.wasm --package acme:auth --version 1.2.0 --key alice.key
  gridreg publish auth.wasm --package acme:auth --version 1.2.0 --key alice.key \\
      --registry https://reg.acme.example

Exit status: 0 published and verified; 1 the registry's answer did not verify; 2 bad input, or the
registry refused the record (its message says why).")]
pub struct Opts {
    /// The component or core module to publish.
    #[arg(value_name = "FILE")]
    pub file: String,
    /// Package name `namespace:name`.
    #[arg(long, value_name = "NS:NAME")]
    pub package: String,
    /// Version (semver); versions are immutable once published.
    #[arg(long, value_name = "VERSION")]
    pub version: String,
    /// Signer key file (from `gridreg keygen`); the key needs a role in the namespace.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    #[command(flatten)]
    pub registry: RegistryOpt,
    /// Print a JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

impl Opts {
    pub fn run(self) -> anyhow::Result<Status> {
        let package = PackageName::parse(&self.package).context("--package")?;
        let version = parse_version(&self.version).context("--version")?;
        let signer = client::load_signer(&self.key)?;
        let file = input::read(&self.file)?;
        // Hashed once, while the file was read: the audit and the record both take that digest.
        let audit = gridreg_verifier::audit_with_digest(&file.bytes, file.digest)
            .with_context(|| format!("`{}` is not a valid component or module", file.name))?;
        let mut release = Release {
            package: package.clone(),
            prev: Prev::None,
            version: version.clone(),
            digest: file.digest,
            size: file.bytes.len() as u64,
            time: Timestamp::now(),
            imports: audit.imports.iter().map(|i| i.name.clone()).collect(),
            exports: audit.exports.clone(),
        };
        // Checked before anything is uploaded; signed once the chain's head is known.
        Record::Release(release.clone())
            .validate()
            .context("the release record")?;
        // A log entry is at most 65,535 bytes (docs/protocol.md §4.6); `prev` adds at most 81
        // bytes over `none` once the chain's head is known.
        let trial = Record::Release(release.clone())
            .sign(&[&signer])
            .context("signing the release record")?;
        if trial.len() + 81 > gridreg_protocol::tiles::MAX_ENTRY_LEN {
            anyhow::bail!(
                "the signed release record of `{}` would be about {} bytes, more than the {} a log entry may hold: its {} import and {} export names are too long together",
                file.name,
                trial.len() + 81,
                gridreg_protocol::tiles::MAX_ENTRY_LEN,
                release.imports.len(),
                release.exports.len()
            );
        }

        let session = trust::connect(self.registry.get())?;
        let digest = release.digest.to_string();
        let content = format!("/v1/content/{digest}");
        // Content is addressed by digest: bytes the registry already holds need no upload.
        if !session.api.exists(&content)? {
            session
                .api
                .put_stream(&content, std::io::Cursor::new(&file.bytes), release.size)
                .context("uploading the content")?;
        }
        let chain = ChainKey::Package(package.clone());
        let size = release.size;
        let mut submit = || {
            client::submit_chained(&session, &chain, |prev| {
                release.prev = prev;
                Record::Release(release.clone())
                    .sign(&[&signer])
                    .context("signing the release record")
            })
        };
        let done = match submit() {
            // The registry deletes content no release names after its upload TTL; if that
            // happened between the check above and the record, upload again and send it again.
            Err(e)
                if e.downcast_ref::<HttpError>()
                    .is_some_and(HttpError::is_content_missing) =>
            {
                eprintln!("{e}\n  uploading the content again and sending the record again");
                session
                    .api
                    .put_stream(&content, std::io::Cursor::new(&file.bytes), size)
                    .context("uploading the content")?;
                submit()?
            }
            other => other?,
        };

        if self.json {
            let out = serde_json::json!({
                "package": package.to_string(),
                "version": version.to_string(),
                "digest": digest,
                "size": release.size,
                "log_index": done.index,
                "checkpoint": {"origin": session.origin(), "size": done.checkpoint.size()},
                "registry": session.remote.url,
                "signer": signer.verifier().to_string(),
                "imports": release.imports,
                "exports": release.exports,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            println!(
                "published {package}@{version} at log index {} ({digest}, {})",
                done.index,
                input::human_size(release.size)
            );
            println!(
                "  verified: inclusion in checkpoint {} of {}; checkpoint signed by the pinned log key; {}",
                done.checkpoint.size(),
                session.origin(),
                done.trust.describe(done.checkpoint.size())
            );
        }
        Ok(Status::Ok)
    }
}
