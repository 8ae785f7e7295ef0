//! Access tokens for private registries: `grt_<id>_<secret>`. The id selects the row; only a
//! SHA-256 of the secret is stored and it is compared in constant time. Scopes nest: admin
//! includes publish, publish includes read. A token bound to a namespace may publish (or
//! administer) only there; reads are never namespace-bound.

use gridreg_protocol::Timestamp;
use rand_core::{OsRng, RngCore as _};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::error::ApiError;
use crate::store::{Store, StoreError, TokenRow};

/// What a token allows, in increasing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Publish,
    Admin,
}

impl Scope {
    pub fn parse(s: &str) -> Result<Scope, String> {
        match s {
            "read" => Ok(Scope::Read),
            "publish" => Ok(Scope::Publish),
            "admin" => Ok(Scope::Admin),
            other => Err(format!(
                "expected a scope of read, publish or admin, found `{other}`"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Publish => "publish",
            Scope::Admin => "admin",
        }
    }
}

/// The rights of the caller of one request, from a valid token.
#[derive(Debug, Clone)]
pub struct Grant {
    pub token_id: String,
    pub scope: Scope,
    pub namespace: Option<String>,
}

impl Grant {
    /// Checks that this grant allows `scope`, in `namespace` if the action is namespaced.
    pub fn allows(&self, scope: Scope, namespace: Option<&str>) -> Result<(), ApiError> {
        if self.scope < scope {
            return Err(ApiError::Forbidden(format!(
                "expected a token with scope {}, found scope {}",
                scope.as_str(),
                self.scope.as_str()
            )));
        }
        if scope > Scope::Read
            && let (Some(bound), Some(ns)) = (&self.namespace, namespace)
            && bound != ns
        {
            return Err(ApiError::Forbidden(format!(
                "this token is limited to namespace {bound}, the request is for {ns}"
            )));
        }
        Ok(())
    }
}

fn secret_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Creates a token and returns its full text (shown once; only the hash is kept).
pub async fn create_token(
    store: &Store,
    scope: Scope,
    namespace: Option<String>,
) -> Result<(String, TokenRow), StoreError> {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut id);
    OsRng.fill_bytes(&mut secret);
    let id = hex::encode(id);
    let secret = hex::encode(secret);
    let row = TokenRow {
        id: id.clone(),
        hash: secret_hash(&secret),
        scope: scope.as_str().to_string(),
        namespace,
        created: Timestamp::now().to_string(),
        revoked: None,
    };
    store.create_token(row.clone()).await?;
    Ok((format!("grt_{id}_{secret}"), row))
}

/// Checks a presented token. Every failure reads the same to the caller, so a wrong secret
/// and an unknown id cannot be told apart.
pub async fn check_token(store: &Store, text: &str) -> Result<Grant, ApiError> {
    let invalid = || ApiError::Unauthenticated("expected a valid, unrevoked token".to_string());
    let Some((id, secret)) = text.strip_prefix("grt_").and_then(|r| r.split_once('_')) else {
        return Err(invalid());
    };
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    let Some(row) = store.token(id).await? else {
        return Err(invalid());
    };
    let presented = secret_hash(secret);
    if !bool::from(presented.ct_eq(&row.hash)) || row.revoked.is_some() {
        return Err(invalid());
    }
    let scope = Scope::parse(&row.scope).map_err(ApiError::Internal)?;
    Ok(Grant {
        token_id: row.id,
        scope,
        namespace: row.namespace,
    })
}
