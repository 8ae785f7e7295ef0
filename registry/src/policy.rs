//! The server-side policy an admin sets per namespace, judged by the sequencer: it reads the
//! policies of a batch's namespaces once per batch ([`crate::store::Store::stage`]) and judges
//! each release on the audit its publisher computed. A policy set through any replica so applies from the next batch on, and
//! a publish costs no policy query of its own.

use std::collections::HashMap;

use gridreg_protocol::Release;
use gridreg_verifier::{Audit, Date, Policy, Subject, Verdict};

use crate::rejection::Rejection;

/// The parsed policies of one batch's namespaces.
#[derive(Debug)]
pub struct BatchPolicies {
    /// By namespace; a stored text that does not parse is kept as its error.
    policies: HashMap<String, Result<Policy, String>>,
    /// The date the batch's releases are judged on (policies can carry expiring exemptions).
    today: Date,
}

impl BatchPolicies {
    /// No namespace has a policy.
    pub fn none() -> Self {
        Self::parse(HashMap::new())
    }

    /// Parses each stored policy text once for the batch.
    pub fn parse(texts: HashMap<String, String>) -> Self {
        let policies = texts
            .into_iter()
            .map(|(ns, text)| {
                let parsed = Policy::parse(&text, &format!("policy of namespace {ns}"))
                    .map_err(|e| format!("stored policy of {ns} does not parse: {e}"));
                (ns, parsed)
            })
            .collect();
        let today = Date::from_unix_seconds(time::OffsetDateTime::now_utc().unix_timestamp());
        Self { policies, today }
    }

    /// Refuses the release when its namespace's policy fails it (`policy_violation`, with the
    /// policy's reasons). A namespace without a policy accepts everything.
    pub fn judge(&self, r: &Release, audit: &Audit) -> Result<(), Rejection> {
        let ns = r.package.namespace().as_str();
        let policy = match self.policies.get(ns) {
            None => return Ok(()),
            Some(Err(e)) => return Err(Rejection::Internal(e.clone())),
            Some(Ok(p)) => p,
        };
        let package = r.package.to_string();
        let mut subject = Subject::new(audit, self.today);
        subject.package = Some(&package);
        let eval = policy.evaluate(&subject);
        if eval.verdict == Verdict::Fail {
            let reasons: Vec<String> = eval.errors().map(|v| v.message.clone()).collect();
            return Err(Rejection::PolicyViolation(format!(
                "namespace {ns} policy `{}` refuses {package}@{}: {}",
                policy.name(),
                r.version,
                reasons.join("; ")
            )));
        }
        Ok(())
    }
}
