//! `X-Request-Id`: a well-formed incoming id is kept (so a trace through several hops shares
//! it), anything else is replaced by 32 random hex digits.

use http::HeaderValue;

/// Accepts `incoming` when it is 1..=128 visible ASCII characters; otherwise makes a new id.
pub fn accept_or_generate(incoming: Option<&HeaderValue>) -> HeaderValue {
    match incoming {
        Some(v) if is_acceptable(v.as_bytes()) => v.clone(),
        _ => generate(),
    }
}

fn is_acceptable(id: &[u8]) -> bool {
    (1..=128).contains(&id.len()) && id.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// A new random id.
pub fn generate() -> HeaderValue {
    let mut buf = [0u8; 32];
    crate::hex::encode_into(&mut buf, &fastrand::u128(..).to_le_bytes());
    HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_valid_id_and_replaces_a_bad_one() {
        let good = HeaderValue::from_static("req-123");
        assert_eq!(accept_or_generate(Some(&good)), good);
        let bad = HeaderValue::from_static("has space");
        let new = accept_or_generate(Some(&bad));
        assert_eq!(new.len(), 32);
        assert_ne!(generate(), generate());
    }
}
