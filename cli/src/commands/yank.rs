//! `gridreg yank`: a signed record saying a version should no longer be picked by ranges. The
//! version stays downloadable by its exact number, so lockfiles keep working.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;
use gridreg_protocol::record::Yank;
use gridreg_protocol::{ChainKey, Record, Reference, Requirement, Timestamp};

use crate::client::{self, trust};
use crate::commands::RegistryOpt;
use crate::exit::Status;

/// Yank a published version (signed, logged; the bytes stay available by exact version).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  gridreg yank acme:auth@1.2.0 --reason \"CVE-2026-1234: token check bypass\" --key alice.key

Exit status: 0 yanked; 1 the registry's answer did not verify; 2 bad input or the registry refused
the record (unknown version, key without a role in the namespace).")]
pub struct Opts {
    /// The exact release: `ns:name@VERSION`.
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Why, on one line (shown to everyone who resolves the package).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Signer key file with a role in the namespace.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    #[command(flatten)]
    pub registry: RegistryOpt,
}

impl Opts {
    pub fn run(self) -> anyhow::Result<Status> {
        let reference = Reference::parse(&self.reference)
            .with_context(|| format!("`{}` is not a package reference", self.reference))?;
        let Requirement::Exact(version) = reference.requirement else {
            bail!(
                "yank needs an exact version, like {}@1.2.0; found `{}`",
                reference.package,
                self.reference
            );
        };
        let signer = client::load_signer(&self.key)?;
        let session = trust::connect(self.registry.get())?;
        let chain = ChainKey::Package(reference.package.clone());
        let done = client::submit_chained(&session, &chain, |prev| {
            let record = Record::Yank(Yank {
                package: reference.package.clone(),
                prev,
                version: version.clone(),
                reason: self.reason.clone(),
                time: Timestamp::now(),
            });
            record.sign(&[&signer]).context("signing the yank record")
        })?;
        println!(
            "yanked {}@{version} at log index {} (verified in checkpoint {})",
            reference.package,
            done.index,
            done.checkpoint.size()
        );
        Ok(Status::Ok)
    }
}
