//! API keys in a header or a query parameter, owned by consumers. A key is found by the
//! SHA-256 of what the client presents: the stored side is only ever a digest, so a
//! configuration listing `sha256:` values holds no usable secret, and a lookup's timing says
//! nothing about a stored key (a client cannot choose digests).

use super::verdicts::Verdict;
use super::{digest, Consumers, Digest, Identity};
pub use crate::request_values::query_value;
use http::{HeaderMap, HeaderName, Uri};

/// Shortest plain key accepted: anything shorter can be guessed by a patient client.
const MIN_PLAIN_LEN: usize = 16;

/// The digest a configured key is stored as: `sha256:HEX` as written, a plain key hashed.
pub fn stored_digest(text: &str) -> Result<Digest, String> {
    if let Some(hex) = text.strip_prefix("sha256:") {
        return parse_hex(hex).ok_or_else(|| "sha256: needs 64 hex digits".to_string());
    }
    if text.len() < MIN_PLAIN_LEN {
        return Err(format!(
            "a plain API key needs at least {MIN_PLAIN_LEN} characters (or write its sha256:HEX)"
        ));
    }
    Ok(digest(text.as_bytes()))
}

/// A new random key: 32 bytes from the system's generator, URL-safe base64 (43 characters).
pub fn generate() -> String {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random generator works");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn parse_hex(hex: &str) -> Option<Digest> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// Where a route's API keys are read.
pub struct ApiKey {
    header: Option<HeaderName>,
    query: Option<String>,
    consumers: Consumers,
}

impl ApiKey {
    /// Keys from `header` and/or the `query` parameter, owned by `consumers`.
    pub fn new(header: Option<HeaderName>, query: Option<String>, consumers: Consumers) -> Self {
        Self {
            header,
            query,
            consumers,
        }
    }

    /// The header a key is read from.
    pub fn header(&self) -> Option<&HeaderName> {
        self.header.as_ref()
    }

    /// The query parameter a key is read from.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The consumer owning the presented key.
    pub fn authenticate(&self, headers: &HeaderMap, uri: &Uri) -> Verdict {
        let from_header = self
            .header
            .as_ref()
            .and_then(|h| headers.get(h))
            .map(|v| v.as_bytes());
        let presented = from_header.or_else(|| {
            let name = self.query.as_deref()?;
            query_value(uri.query()?, name).map(str::as_bytes)
        });
        match presented {
            None | Some([]) => Verdict::Missing,
            Some(key) => match self.consumers.find_key(&digest(key)) {
                Some(consumer) => Verdict::Admit(Identity::of(consumer)),
                None => Verdict::Invalid,
            },
        }
    }
}

/// `query` without its `name` parameters; `None` when nothing is left.
pub fn without_param(query: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| pair.split_once('=').map_or(*pair, |(k, _)| k) != name)
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_keys_are_plain_or_digests() {
        let plain = stored_digest("a-long-enough-key-0001").unwrap();
        let hex: String = plain.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(stored_digest(&format!("sha256:{hex}")).unwrap(), plain);
        assert!(stored_digest("short").is_err());
        assert!(stored_digest("sha256:abc").is_err());
        assert!(stored_digest(&format!("sha256:{}", "zz".repeat(32))).is_err());
    }

    #[test]
    fn query_parameters_are_read_and_removed() {
        assert_eq!(query_value("a=1&api_key=k&b=2", "api_key"), Some("k"));
        assert_eq!(query_value("api_key", "api_key"), Some(""));
        assert_eq!(query_value("xapi_key=k", "api_key"), None);
        assert_eq!(
            without_param("a=1&api_key=k&b=2&api_key=j", "api_key").as_deref(),
            Some("a=1&b=2")
        );
        assert_eq!(without_param("api_key=k", "api_key"), None);
    }
}
