//! [`JwtResolver`]: the tenant named by a claim of a verified bearer JWT.

use std::fmt;

use http::header;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};

use super::{RequestHead, ResolveTenant};
use crate::{TenantId, TenantIdRule, TenantRejection, TokenError};

/// Reads the tenant from a claim (`tenant_id` by default) of an `Authorization: Bearer` JWT,
/// after checking its signature (HS256 or RS256, never `none`), `exp` (with a leeway, 60 s by
/// default), and `aud` / `iss` when configured (configure both in production).
///
/// The only resolver that is safe on the open internet on its own: the claim is signed. A request
/// without a bearer token names no tenant here; when no resolver finds one, the answer is 401
/// with `WWW-Authenticate: Bearer`. A token that fails any check is 401.
///
/// ```
/// use parapet_tenant::JwtResolver;
///
/// let resolver = JwtResolver::hs256(b"a secret of at least 32 bytes....")
///     .audience("crm-api")
///     .issuer("https://auth.example.com")
///     .claim("org");
/// ```
#[derive(Clone)]
#[must_use]
pub struct JwtResolver {
    key: DecodingKey,
    validation: Validation,
    claim: String,
    rule: TenantIdRule,
}

/// A key that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid JWT verification key: {0}")]
pub struct JwtConfigError(#[source] jsonwebtoken::errors::Error);

impl JwtResolver {
    fn with(key: DecodingKey, alg: Algorithm) -> Self {
        let mut validation = Validation::new(alg);
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        Self {
            key,
            validation,
            claim: "tenant_id".to_owned(),
            rule: TenantIdRule::default(),
        }
    }

    /// Verifies HS256 tokens with a shared secret.
    pub fn hs256(secret: &[u8]) -> Self {
        Self::with(DecodingKey::from_secret(secret), Algorithm::HS256)
    }

    /// Verifies RS256 tokens with an RSA public key in PEM (PKCS#1 or SPKI).
    pub fn rs256_pem(public_key_pem: &[u8]) -> Result<Self, JwtConfigError> {
        DecodingKey::from_rsa_pem(public_key_pem)
            .map(|key| Self::with(key, Algorithm::RS256))
            .map_err(JwtConfigError)
    }

    /// Requires the `aud` claim to contain this audience.
    pub fn audience(mut self, aud: &str) -> Self {
        self.validation.set_audience(&[aud]);
        self.validation.validate_aud = true;
        self.validation
            .required_spec_claims
            .insert("aud".to_owned());
        self
    }

    /// Requires the `iss` claim to be this issuer.
    pub fn issuer(mut self, iss: &str) -> Self {
        self.validation.set_issuer(&[iss]);
        self.validation
            .required_spec_claims
            .insert("iss".to_owned());
        self
    }

    /// Reads the tenant from this claim instead of `tenant_id`.
    pub fn claim(mut self, name: impl Into<String>) -> Self {
        self.claim = name.into();
        self
    }

    /// Sets the clock-skew leeway for `exp` and `nbf`, in seconds (default 60).
    pub fn leeway(mut self, seconds: u64) -> Self {
        self.validation.leeway = seconds;
        self
    }

    /// Validates ids with this rule.
    pub fn rule(mut self, rule: TenantIdRule) -> Self {
        self.rule = rule;
        self
    }

    fn verify(&self, token: &str) -> Result<TenantId, TenantRejection> {
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &self.key,
            &self.validation,
        )
        .map_err(|e| TenantRejection::InvalidToken(token_error(e.kind())))?;
        let value = data
            .claims
            .get(&self.claim)
            .and_then(serde_json::Value::as_str)
            .ok_or(TenantRejection::InvalidToken(TokenError::MissingClaim))?;
        self.rule
            .parse(value)
            .map_err(|e| TenantRejection::Malformed {
                origin: "token claim",
                reason: e.into(),
            })
    }
}

fn token_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => TokenError::Expired,
        ErrorKind::InvalidAudience | ErrorKind::InvalidIssuer => TokenError::WrongAudienceOrIssuer,
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" || claim == "iss" => {
            TokenError::WrongAudienceOrIssuer
        }
        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => TokenError::Signature,
        _ => TokenError::Malformed,
    }
}

impl ResolveTenant for JwtResolver {
    fn resolve(&self, req: &RequestHead<'_>) -> Result<Option<TenantId>, TenantRejection> {
        let mut values = req.headers.get_all(header::AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(TenantRejection::InvalidToken(TokenError::Malformed));
        }
        let Ok(value) = value.to_str() else {
            return Err(TenantRejection::InvalidToken(TokenError::Malformed));
        };
        let Some((scheme, token)) = value.split_once(' ') else {
            return Err(TenantRejection::InvalidToken(TokenError::Malformed));
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            // Another scheme (Basic, ...) is not ours to judge.
            return Ok(None);
        }
        self.verify(token.trim()).map(Some)
    }

    fn wants_bearer(&self) -> bool {
        true
    }
}

impl fmt::Debug for JwtResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtResolver")
            .field("algorithms", &self.validation.algorithms)
            .field("aud", &self.validation.aud)
            .field("iss", &self.validation.iss)
            .field("claim", &self.claim)
            .finish_non_exhaustive()
    }
}
