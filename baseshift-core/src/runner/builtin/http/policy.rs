//! Which URLs the `http_request` runner may reach: schemes, host patterns, no user info,
//! and no private IP literal, checked before a request and again on every redirect.
//! (Host names are checked after resolution, by the resolver of [`super::netguard`].)

use super::netguard::NetGuard;
use crate::error::Error;
use reqwest::Url;
use reqwest::redirect::{Attempt, Policy};
use std::sync::Arc;

/// Redirects followed at most, as reqwest's default policy does.
const MAX_REDIRECTS: usize = 10;

/// One allowlist entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum HostPattern {
    /// `api.example.com`: this host only.
    Exact(String),
    /// `*.example.com`: any host ending in `.example.com` (not `example.com` itself).
    Subdomains(String),
}

impl HostPattern {
    /// Parses a pattern; errors name `field`.
    pub(super) fn parse(pattern: &str, field: &str) -> Result<Self, Error> {
        let p = normalize_host(pattern.trim());
        let bad = |why: &str| Error::invalid_input(format!("{field}: `{pattern}`: {why}"));
        if p.is_empty() {
            return Err(bad("empty host pattern"));
        }
        if p.contains('/') || (p.contains(':') && p.parse::<std::net::Ipv6Addr>().is_err()) {
            return Err(bad("a host pattern is a host name, without scheme, port or path"));
        }
        match p.strip_prefix("*.") {
            Some(suffix) if !suffix.is_empty() && !suffix.contains('*') => {
                Ok(HostPattern::Subdomains(format!(".{suffix}")))
            }
            Some(_) => Err(bad("`*.` must be followed by a domain")),
            None if p.contains('*') => Err(bad("`*` is only allowed as a leading `*.`")),
            None => Ok(HostPattern::Exact(p)),
        }
    }

    /// Whether a normalized host matches.
    pub(super) fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Subdomains(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
        }
    }
}

/// Lower-case, without IPv6 brackets or a trailing dot.
pub(super) fn normalize_host(host: &str) -> String {
    let h = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    h.trim_end_matches('.').to_ascii_lowercase()
}

/// The schemes and hosts a request may use.
#[derive(Debug)]
pub(super) struct UrlPolicy {
    hosts: Option<Vec<HostPattern>>,
    schemes: Vec<String>,
    guard: Arc<NetGuard>,
}

impl UrlPolicy {
    pub(super) fn new(hosts: Option<&[String]>, schemes: &[String], guard: Arc<NetGuard>) -> Result<Self, Error> {
        let hosts = hosts
            .map(|list| {
                list.iter().map(|p| HostPattern::parse(p, "http.security.allowed_hosts")).collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(UrlPolicy { hosts, schemes: schemes.iter().map(|s| s.to_ascii_lowercase()).collect(), guard })
    }

    /// `Err` holds a message naming what is not allowed (see [`rule_of`]).
    pub(super) fn check(&self, url: &Url) -> Result<(), String> {
        if !self.schemes.iter().any(|s| s == url.scheme()) {
            return Err(format!("scheme `{}` is not allowed (allowed: {})", url.scheme(), self.schemes.join(", ")));
        }
        let Some(host) = url.host_str() else {
            return Err("the URL has no host".to_owned());
        };
        // `http://127.0.0.1@evil/` reads as one host and goes to another; credentials belong in headers.
        if !url.username().is_empty() || url.password().is_some() {
            return Err("URLs with user info (`user@host`) are not allowed; send credentials in a header".to_owned());
        }
        if let Some(patterns) = &self.hosts {
            let host = normalize_host(host);
            if !patterns.iter().any(|p| p.matches(&host)) {
                return Err(format!("host `{host}` is not on the host's allowlist"));
            }
        }
        // IP literals are never resolved, so the resolver would not see them.
        // The URL parser has already normalized forms such as `2130706433` or `0x7f.1`.
        if let Ok(ip) = normalize_host(host).parse::<std::net::IpAddr>() {
            self.guard.check(host, ip)?;
        }
        Ok(())
    }
}

/// Follows a redirect only to a URL the policy allows.
pub(super) fn redirect_policy(policy: Arc<UrlPolicy>) -> Policy {
    Policy::custom(move |attempt: Attempt<'_>| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        match policy.check(attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(msg) => attempt.error(format!("redirect refused: {msg}")),
        }
    })
}

/// The policy rule a refusal message of [`UrlPolicy::check`] (or of the resolver guard) names.
pub(super) fn rule_of(message: &str) -> &'static str {
    if message.contains("scheme `") {
        "http.allowed_schemes"
    } else if message.contains("allowlist") && message.contains("host `") {
        "http.allowed_hosts"
    } else if message.contains(super::netguard::DENIED_MARKER) {
        "http.allow_private_networks"
    } else {
        "http.url"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &[&str]) -> UrlPolicy {
        let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        UrlPolicy::new(Some(&hosts), &["http".to_owned(), "https".to_owned()], open()).unwrap()
    }

    fn open() -> Arc<NetGuard> {
        Arc::new(NetGuard::new(true, &[]).unwrap())
    }

    fn allows(p: &UrlPolicy, url: &str) -> bool {
        p.check(&Url::parse(url).unwrap()).is_ok()
    }

    #[test]
    fn exact_and_wildcard_hosts() {
        let p = policy(&["API.example.com", "*.svc.internal", "[::1]", "127.0.0.1"]);
        assert!(allows(&p, "https://api.example.com/x"));
        assert!(allows(&p, "https://Api.Example.Com./x"));
        assert!(!allows(&p, "https://example.com/"));
        assert!(!allows(&p, "https://api.example.com.evil.net/"));
        assert!(allows(&p, "http://a.svc.internal:8080/"));
        assert!(allows(&p, "http://a.b.svc.internal/"));
        assert!(!allows(&p, "http://svc.internal/"));
        assert!(!allows(&p, "http://evilsvc.internal/"));
        assert!(allows(&p, "http://[::1]:9000/"));
        assert!(allows(&p, "http://127.0.0.1:9000/"));
        assert!(!allows(&p, "http://127.0.0.2/"));
    }

    #[test]
    fn schemes_are_checked_even_without_a_host_list() {
        let p = UrlPolicy::new(None, &["https".to_owned()], open()).unwrap();
        assert!(allows(&p, "https://anything.example/"));
        assert!(!allows(&p, "http://anything.example/"));
        assert!(!allows(&p, "file:///etc/passwd"));
    }

    #[test]
    fn malformed_patterns_are_rejected() {
        for bad in ["", "*", "*.", "a.*.com", "http://x.com", "x.com/path", "x.com:80"] {
            let hosts = vec![bad.to_owned()];
            assert!(UrlPolicy::new(Some(&hosts), &[], open()).is_err(), "accepted `{bad}`");
        }
    }
}
