//! Secrets in query strings, blanked before a query reaches a span or the access log. OTel's
//! HTTP conventions ask `url.query` and `url.full` to be scrubbed of what an instrumentation
//! can identify: the parameter names below (the conventions' own list — AWS and Google signed
//! URLs — plus OAuth and the usual key and password names) and the query parameters API-key
//! policies read keys from. A redacted value reads `REDACTED`; the name stays, so a reader
//! still sees that one was sent.

use std::borrow::Cow;

/// Names always treated as secret, compared without regard to case.
const ALWAYS: &[&str] = &[
    "access_token",
    "api-key",
    "api_key",
    "apikey",
    "auth",
    "awsaccesskeyid",
    "client_secret",
    "code",
    "id_token",
    "jwt",
    "key",
    "passwd",
    "password",
    "refresh_token",
    "secret",
    "session",
    "sig",
    "signature",
    "token",
    "x-amz-credential",
    "x-amz-security-token",
    "x-amz-signature",
    "x-goog-credential",
    "x-goog-signature",
];

const REDACTED: &str = "REDACTED";

/// Which query parameters carry secrets: [`ALWAYS`] and the configuration's own.
#[derive(Debug, Default)]
pub struct QueryRedaction {
    extra: Box<[Box<str>]>,
}

impl QueryRedaction {
    /// The fixed names plus `extra` (API-key query parameters).
    pub fn new(extra: impl IntoIterator<Item = String>) -> Self {
        Self {
            extra: extra.into_iter().map(String::into_boxed_str).collect(),
        }
    }

    /// `query` with every secret value replaced; borrowed when there is none.
    pub fn redact<'q>(&self, query: &'q str) -> Cow<'q, str> {
        if !query.split('&').any(|pair| self.hides(pair)) {
            return Cow::Borrowed(query);
        }
        let mut out = String::with_capacity(query.len());
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((name, _)) if self.hides(pair) => {
                    out.push_str(name);
                    out.push('=');
                    out.push_str(REDACTED);
                }
                _ => out.push_str(pair),
            }
        }
        Cow::Owned(out)
    }

    /// A `name=value` pair with a non-empty value under a secret name.
    fn hides(&self, pair: &str) -> bool {
        let Some((name, value)) = pair.split_once('=') else {
            return false;
        };
        !value.is_empty()
            && (ALWAYS.iter().any(|n| n.eq_ignore_ascii_case(name))
                || self.extra.iter().any(|n| **n == *name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_are_blanked_and_the_rest_kept_in_order() {
        let r = QueryRedaction::new(["x-portico-key".to_string()]);
        assert!(matches!(r.redact("page=2&sort=asc"), Cow::Borrowed(_)));
        assert_eq!(
            r.redact("page=2&access_token=abc&Signature=s1&x-portico-key=k&flag&token="),
            "page=2&access_token=REDACTED&Signature=REDACTED&x-portico-key=REDACTED&flag&token="
        );
        assert_eq!(
            r.redact("X-Portico-Key=k"),
            "X-Portico-Key=k",
            "configured names are exact, as the policy reads them"
        );
        assert_eq!(r.redact(""), "");
    }
}
