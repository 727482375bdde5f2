//! Lower-case hex written into a byte buffer, for ids on the request path (trace ids, request
//! ids, access-log fields) where `format!("{:x}")` would allocate and go through `core::fmt`.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Writes `bytes` as hex into the first `2 * bytes.len()` bytes of `out`.
pub fn encode_into(out: &mut [u8], bytes: &[u8]) {
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 15)];
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_format() {
        let bytes = [0x00, 0x0a, 0xff, 0x4b, 0x10];
        let mut out = [0u8; 10];
        super::encode_into(&mut out, &bytes);
        let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(std::str::from_utf8(&out).unwrap(), expected);
    }
}
