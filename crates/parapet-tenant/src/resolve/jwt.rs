//! [`JwtResolver`]: the tenant named by a claim of a verified bearer JWT.

use std::fmt;

use http::header;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};

use super::{RequestHead, ResolveTenant};
use crate::{TenantId, TenantIdRule, TenantRejection, TokenError};

/// Reads the tenant from a claim (`tenant_id` by default) of an `Authorization: Bearer` JWT,
/// after checking it.
///
/// | check | rule |
/// |---|---|
/// | signature | HS256 with a secret of at least [`MIN_SECRET_LEN`](Self::MIN_SECRET_LEN) bytes, or RS256 with a public key; the token's `alg` must be that one (never `none`, never HS256 with the RSA public key as the secret) |
/// | `exp` | required, in the past by more than the leeway: refused |
/// | `nbf` | when present, in the future by more than the leeway: refused |
/// | leeway | 60 s by default for `exp` and `nbf` (clock skew between the issuer and this server), at most [`MAX_LEEWAY`](Self::MAX_LEEWAY) |
/// | `aud` | with [`audience`](Self::audience): required, and must contain it; else not checked |
/// | `iss` | with [`issuer`](Self::issuer): required, and must be it; else not checked |
/// | tenant claim | a string that is a valid [`TenantId`] (by the [`rule`](Self::rule)) |
///
/// Configure the audience and the issuer in production: without them, a token your identity
/// provider issued for another service of yours would be accepted here.
///
/// It is the only resolver that authenticates, so in a [`ResolverChain`](super::ResolverChain)
/// it is the authority: a request without a valid token is refused (401) even when a header,
/// the host or the path names a tenant, and those may only name the token's tenant (else 403).
/// A token that fails any check is 401 with `WWW-Authenticate: Bearer`.
///
/// ```
/// use parapet_tenant::JwtResolver;
///
/// let resolver = JwtResolver::hs256(b"a secret of at least 32 bytes....")?
///     .audience("crm-api")
///     .issuer("https://auth.example.com")
///     .leeway(30)
///     .claim("org");
///
/// // A short secret can be brute-forced from a single token: refused.
/// assert!(JwtResolver::hs256(b"s3cret").is_err());
/// # Ok::<(), parapet_tenant::resolve::JwtConfigError>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct JwtResolver {
    key: DecodingKey,
    validation: Validation,
    claim: String,
    rule: TenantIdRule,
}

/// A verification key that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtConfigError {
    /// The HS256 secret is shorter than [`JwtResolver::MIN_SECRET_LEN`].
    #[error(
        "the HS256 secret is {len} bytes long; at least {} are required (RFC 7518 §3.2)",
        JwtResolver::MIN_SECRET_LEN
    )]
    SecretTooShort {
        /// The secret's length in bytes.
        len: usize,
    },
    /// The key could not be read.
    #[error("invalid JWT verification key: {0}")]
    Key(#[source] jsonwebtoken::errors::Error),
}

impl JwtResolver {
    /// The shortest HS256 secret accepted, in bytes: the size of the SHA-256 output, as
    /// RFC 7518 §3.2 requires. A shorter secret can be guessed offline from one token.
    pub const MIN_SECRET_LEN: usize = 32;

    /// The largest leeway [`leeway`](Self::leeway) accepts, in seconds.
    pub const MAX_LEEWAY: u64 = 300;

    /// The leeway for `exp` and `nbf` unless [`leeway`](Self::leeway) says otherwise, in seconds.
    pub const DEFAULT_LEEWAY: u64 = 60;

    fn with(key: DecodingKey, alg: Algorithm) -> Self {
        let mut validation = Validation::new(alg);
        validation.validate_aud = false;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = Self::DEFAULT_LEEWAY;
        validation.set_required_spec_claims(&["exp"]);
        Self {
            key,
            validation,
            claim: "tenant_id".to_owned(),
            rule: TenantIdRule::default(),
        }
    }

    /// Verifies HS256 tokens with a shared secret.
    ///
    /// # Errors
    ///
    /// [`JwtConfigError::SecretTooShort`] when the secret has fewer than
    /// [`MIN_SECRET_LEN`](Self::MIN_SECRET_LEN) bytes.
    pub fn hs256(secret: &[u8]) -> Result<Self, JwtConfigError> {
        if secret.len() < Self::MIN_SECRET_LEN {
            return Err(JwtConfigError::SecretTooShort { len: secret.len() });
        }
        DecodingKey::from_secret(secret)
            .map(|key| Self::with(key, Algorithm::HS256))
            .map_err(JwtConfigError::Key)
    }

    /// Verifies RS256 tokens with an RSA public key in PEM (PKCS#1 or SPKI).
    ///
    /// # Errors
    ///
    /// [`JwtConfigError::Key`] when the PEM is not an RSA public key.
    pub fn rs256_pem(public_key_pem: &[u8]) -> Result<Self, JwtConfigError> {
        DecodingKey::from_rsa_pem(public_key_pem)
            .map(|key| Self::with(key, Algorithm::RS256))
            .map_err(JwtConfigError::Key)
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

    /// Sets the clock-skew leeway for `exp` and `nbf`, in seconds (default
    /// [`DEFAULT_LEEWAY`](Self::DEFAULT_LEEWAY), 60): a token is accepted up to this long
    /// after its `exp` and before its `nbf`. Values above [`MAX_LEEWAY`](Self::MAX_LEEWAY) are
    /// capped to it.
    pub fn leeway(mut self, seconds: u64) -> Self {
        self.validation.leeway = seconds.min(Self::MAX_LEEWAY);
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
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidAudience | ErrorKind::InvalidIssuer => TokenError::WrongAudienceOrIssuer,
        ErrorKind::MissingRequiredClaim(claim) | ErrorKind::InvalidClaimFormat(claim)
            if claim == "aud" || claim == "iss" =>
        {
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

    fn authenticates(&self) -> bool {
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
            .field("leeway", &self.validation.leeway)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use http::Request;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{Value, json};

    use super::*;
    use crate::{HeaderResolver, HostResolver, ResolverChain};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn now() -> i64 {
        i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap()
    }

    fn token(claims: &Value) -> String {
        sign(claims, Algorithm::HS256, SECRET)
    }

    fn sign(claims: &Value, alg: Algorithm, secret: &[u8]) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            claims,
            &EncodingKey::from_secret(secret).unwrap(),
        )
        .unwrap()
    }

    /// Valid claims for `acme`, changed by `f`.
    fn claims(f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
        let mut claims = json!({
            "tenant_id": "acme",
            "aud": "crm",
            "iss": "https://auth.test",
            "exp": now() + 600,
        });
        f(claims.as_object_mut().unwrap());
        claims
    }

    fn verify(resolver: &JwtResolver, token: &str) -> Result<String, TenantRejection> {
        let req = Request::get("/")
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap();
        resolver
            .resolve(&RequestHead::new(&req))
            .map(|id| id.unwrap().to_string())
    }

    fn checked() -> JwtResolver {
        JwtResolver::hs256(SECRET)
            .unwrap()
            .audience("crm")
            .issuer("https://auth.test")
    }

    const fn refused(e: TokenError) -> Result<String, TenantRejection> {
        Err(TenantRejection::InvalidToken(e))
    }

    #[test]
    fn short_and_empty_secrets_are_refused() {
        for len in [0, 1, 16, 31] {
            let err = JwtResolver::hs256(&SECRET[..len]).unwrap_err();
            assert!(
                matches!(err, JwtConfigError::SecretTooShort { len: l } if l == len),
                "{err}"
            );
            assert!(err.to_string().contains("at least 32"), "{err}");
        }
        assert!(JwtResolver::hs256(SECRET).is_ok());
    }

    #[test]
    fn nbf_is_checked_with_the_leeway() {
        let r = checked();
        let ok = Ok("acme".to_owned());
        let nbf = |delta: i64| {
            token(&claims(|c| {
                drop(c.insert("nbf".into(), (now() + delta).into()))
            }))
        };
        assert_eq!(verify(&r, &nbf(-10)), ok);
        assert_eq!(verify(&r, &nbf(30)), ok, "within the 60 s leeway");
        assert_eq!(verify(&r, &nbf(600)), refused(TokenError::NotYetValid));
        assert_eq!(
            verify(&r.clone().leeway(0), &nbf(30)),
            refused(TokenError::NotYetValid)
        );
        // A nbf that is not a number is refused, not ignored.
        let bad = token(&claims(|c| drop(c.insert("nbf".into(), "tomorrow".into()))));
        assert_eq!(verify(&r, &bad), refused(TokenError::Malformed));
    }

    #[test]
    fn exp_is_required_and_checked_with_the_leeway() {
        let r = checked();
        let exp = |delta: i64| {
            token(&claims(|c| {
                drop(c.insert("exp".into(), (now() + delta).into()))
            }))
        };
        assert_eq!(
            verify(&r, &exp(-30)),
            Ok("acme".to_owned()),
            "within the leeway"
        );
        assert_eq!(verify(&r, &exp(-120)), refused(TokenError::Expired));
        assert_eq!(
            verify(&r.clone().leeway(0), &exp(-30)),
            refused(TokenError::Expired)
        );
        let no_exp = token(&claims(|c| drop(c.remove("exp"))));
        assert_eq!(verify(&r, &no_exp), refused(TokenError::Malformed));
    }

    #[test]
    fn the_leeway_is_capped() {
        // An absurd leeway neither panics nor turns every expired token valid.
        let r = checked().leeway(u64::MAX);
        assert_eq!(r.validation.leeway, JwtResolver::MAX_LEEWAY);
        let old = token(&claims(|c| {
            drop(c.insert("exp".into(), (now() - 3600).into()))
        }));
        assert_eq!(verify(&r, &old), refused(TokenError::Expired));
        assert_eq!(JwtResolver::hs256(SECRET).unwrap().validation.leeway, 60);
    }

    #[test]
    fn aud_and_iss_are_required_and_checked_when_configured() {
        let r = checked();
        let wrong = refused(TokenError::WrongAudienceOrIssuer);
        let with =
            |name: &str, value: Value| token(&claims(|c| drop(c.insert(name.to_owned(), value))));
        let without = |name: &str| token(&claims(|c| drop(c.remove(name))));
        assert_eq!(
            verify(&r, &with("aud", json!(["other", "crm"]))),
            Ok("acme".to_owned())
        );
        for (what, t) in [
            ("wrong aud", with("aud", json!("other"))),
            ("aud list without ours", with("aud", json!(["a", "b"]))),
            ("aud of another type", with("aud", json!(7))),
            ("no aud", without("aud")),
            ("wrong iss", with("iss", json!("https://evil.test"))),
            (
                "iss of another type",
                with("iss", json!({ "iss": "https://auth.test" })),
            ),
            ("no iss", without("iss")),
        ] {
            assert_eq!(verify(&r, &t), wrong, "{what}");
        }
        // Not configured: not checked (and the docs say to configure both).
        let open = JwtResolver::hs256(SECRET).unwrap();
        assert_eq!(verify(&open, &without("aud")), Ok("acme".to_owned()));
        assert_eq!(
            verify(&open, &with("iss", json!("anyone"))),
            Ok("acme".to_owned())
        );
    }

    #[test]
    fn only_the_configured_algorithm_verifies() {
        let r = checked();
        let t = sign(&claims(|_| {}), Algorithm::HS384, SECRET);
        assert_eq!(verify(&r, &t), refused(TokenError::Signature));
        let t = sign(
            &claims(|_| {}),
            Algorithm::HS256,
            b"another secret of 32 bytes......",
        );
        assert_eq!(verify(&r, &t), refused(TokenError::Signature));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_other_schemes_name_nothing() {
        let r = checked();
        let t = token(&claims(|_| {}));
        for scheme in ["Bearer", "bearer", "BEARER"] {
            let req = Request::get("/")
                .header("authorization", format!("{scheme} {t}"))
                .body(())
                .unwrap();
            assert_eq!(
                r.resolve(&RequestHead::new(&req))
                    .unwrap()
                    .unwrap()
                    .as_str(),
                "acme"
            );
        }
        let req = Request::get("/")
            .header("authorization", "Basic YTpi")
            .body(())
            .unwrap();
        assert_eq!(r.resolve(&RequestHead::new(&req)), Ok(None));
    }

    #[test]
    fn in_a_chain_the_token_is_the_authority() {
        let chain = ResolverChain::new()
            .push(HeaderResolver::new())
            .push(HostResolver::new("localhost"))
            .push(checked());
        assert!(chain.has_authority());
        let t = token(&claims(|_| {}));
        let resolve = |headers: &[(&str, &str)]| {
            let mut b = Request::get("/");
            for (name, value) in headers {
                b = b.header(*name, *value);
            }
            let req = b.body(()).unwrap();
            chain
                .resolve(&RequestHead::new(&req))
                .map(|id| id.to_string())
        };
        let bearer = format!("Bearer {t}");
        assert_eq!(
            resolve(&[("authorization", &bearer)]),
            Ok("acme".to_owned())
        );
        assert_eq!(
            resolve(&[("authorization", &bearer), ("x-tenant-id", "acme")]),
            Ok("acme".to_owned())
        );
        assert_eq!(
            resolve(&[("authorization", &bearer), ("x-tenant-id", "globex")]),
            Err(TenantRejection::NotGranted)
        );
        assert_eq!(
            resolve(&[("authorization", &bearer), ("host", "globex.localhost")]),
            Err(TenantRejection::NotGranted)
        );
        assert_eq!(
            resolve(&[("x-tenant-id", "globex")]),
            Err(TenantRejection::Unauthenticated)
        );
        assert_eq!(
            resolve(&[("host", "globex.localhost:3000")]),
            Err(TenantRejection::Unauthenticated)
        );
        assert_eq!(resolve(&[]), Err(TenantRejection::Missing { bearer: true }));
        assert_eq!(
            resolve(&[("authorization", "Basic YTpi"), ("x-tenant-id", "acme")]),
            Err(TenantRejection::Unauthenticated)
        );
    }
}
