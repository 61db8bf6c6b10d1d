//! [`HostResolver`]: the tenant named by the subdomain, `{tenant}.example.com`.

use http::header;

use super::{RequestHead, ResolveTenant};
use crate::{MalformedReason, TenantId, TenantIdRule, TenantRejection};

/// Reads the tenant from the first label of the host under a base domain.
///
/// The host is the HTTP/2 `:authority` (or an absolute-form URI's authority) when present, else
/// the `Host` header. Ports and a trailing dot are ignored, and the host is lower-cased (DNS names
/// are case-insensitive). `acme.example.com` names `acme`; the base domain itself and the
/// [`apex_hosts`](Self::apex_hosts) name no tenant; any other host, including a deeper
/// `a.b.example.com`, is rejected as malformed (400) rather than served as if it had no tenant.
///
/// ```
/// use parapet_tenant::HostResolver;
///
/// // `acme.localhost:3000` names `acme`; `127.0.0.1:3000` and `localhost` name no tenant.
/// let resolver = HostResolver::new("localhost").apex_hosts(["127.0.0.1", "[::1]"]);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct HostResolver {
    /// `.example.com`
    suffix: String,
    apex: Vec<String>,
    rule: TenantIdRule,
}

impl HostResolver {
    /// Tenants are subdomains of `base` (for example `example.com`).
    pub fn new(base: &str) -> Self {
        let base = normalize(base);
        Self {
            suffix: format!(".{base}"),
            apex: vec![base],
            rule: TenantIdRule::default(),
        }
    }

    /// Other hosts that serve the application without naming a tenant (an API host, `127.0.0.1`
    /// in development). Requests to them fall through to the other resolvers.
    pub fn apex_hosts<I, S>(mut self, hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.apex
            .extend(hosts.into_iter().map(|h| normalize(h.as_ref())));
        self
    }

    /// Validates ids with this rule.
    pub fn rule(mut self, rule: TenantIdRule) -> Self {
        self.rule = rule;
        self
    }
}

/// Lower-cases, drops the port and a trailing dot.
fn normalize(host: &str) -> String {
    let host = host.trim();
    let without_port = if host.starts_with('[') {
        // IPv6 literal: keep through the closing bracket.
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

const SOURCE: &str = "host";

impl ResolveTenant for HostResolver {
    fn resolve(&self, req: &RequestHead<'_>) -> Result<Option<TenantId>, TenantRejection> {
        let malformed = |reason| TenantRejection::Malformed {
            origin: SOURCE,
            reason,
        };
        let raw = match req.uri.authority() {
            Some(authority) => authority.as_str(),
            None => {
                let mut hosts = req.headers.get_all(header::HOST).iter();
                let Some(host) = hosts.next() else {
                    return Ok(None);
                };
                if hosts.next().is_some() {
                    return Err(TenantRejection::Ambiguous);
                }
                host.to_str()
                    .map_err(|_| malformed(MalformedReason::NotAscii))?
            }
        };
        // Userinfo has no place in a request authority.
        if raw.contains('@') {
            return Err(malformed(MalformedReason::ForeignHost));
        }
        let host = normalize(raw);
        if self.apex.contains(&host) {
            return Ok(None);
        }
        let label = host
            .strip_suffix(self.suffix.as_str())
            .ok_or(malformed(MalformedReason::ForeignHost))?;
        self.rule
            .parse(label)
            .map(Some)
            .map_err(|e| malformed(e.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn resolve(r: &HostResolver, host: &str) -> Result<Option<String>, TenantRejection> {
        let req = Request::builder().header("host", host).body(()).unwrap();
        r.resolve(&RequestHead::new(&req))
            .map(|id| id.map(|id| id.to_string()))
    }

    #[test]
    fn hosts() {
        let r = HostResolver::new("Example.com").apex_hosts(["127.0.0.1", "[::1]"]);
        let ok = |s: &str| Ok(Some(s.to_owned()));
        assert_eq!(resolve(&r, "acme.example.com"), ok("acme"));
        assert_eq!(resolve(&r, "acme.example.com:8443"), ok("acme"));
        assert_eq!(resolve(&r, "ACME.Example.COM."), ok("acme"));
        assert_eq!(resolve(&r, "example.com"), Ok(None));
        assert_eq!(resolve(&r, "127.0.0.1:3000"), Ok(None));
        assert_eq!(resolve(&r, "[::1]:3000"), Ok(None));
        for bad in [
            "evil.com",
            "acme.example.com.evil.com",
            "acmeexample.com",
            "[::2]:80",
            "user@acme.example.com",
        ] {
            assert_eq!(
                resolve(&r, bad),
                Err(TenantRejection::Malformed {
                    origin: "host",
                    reason: MalformedReason::ForeignHost
                }),
                "{bad}"
            );
        }
        assert!(matches!(
            resolve(&r, "a.b.example.com"),
            Err(TenantRejection::Malformed { .. })
        ));
        assert!(matches!(
            resolve(&r, ".example.com"),
            Err(TenantRejection::Malformed { .. })
        ));
    }

    #[test]
    fn http2_authority_wins_over_header() {
        let r = HostResolver::new("example.com");
        let req = Request::builder()
            .uri("https://acme.example.com/x")
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
}
