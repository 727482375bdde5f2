//! A one-object JSON writer for log lines. serde_json's generic serializer cost ~5,500
//! instructions per access-log line and every field needed an owned `String`; this writer takes
//! borrowed values and raw numbers and writes them in place.

use crate::ip_text::{self, IpText};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A field name, written with its separator and quotes: `json_key!("route")` is `,"route":`,
/// so a field's name costs one copy of static bytes instead of four writes.
#[derive(Clone, Copy)]
pub struct Key(&'static str);

impl Key {
    /// Use [`json_key!`]; `text` is `,"name":`.
    pub(crate) const fn from_text(text: &'static str) -> Self {
        Self(text)
    }
}

/// The [`Key`] for a field name given as a string literal (escaping is not applied: names are
/// plain ASCII).
macro_rules! json_key {
    ($name:literal) => {
        $crate::telemetry::json_line::Key::from_text(concat!(",\"", $name, "\":"))
    };
}
pub(crate) use json_key;

/// Room reserved for a line before it is written: most access-log lines fit, so the writes
/// that follow do not grow the buffer one field at a time.
const LINE_RESERVE: usize = 512;

/// One JSON object being written at the end of a buffer, ended by a newline.
pub struct JsonLine<'a> {
    buf: &'a mut Vec<u8>,
    /// Where this object starts in `buf` (lines before it are someone else's).
    start: usize,
}

impl<'a> JsonLine<'a> {
    /// An empty object appended to `buf`.
    pub fn append_to(buf: &'a mut Vec<u8>) -> Self {
        buf.reserve(LINE_RESERVE);
        let start = buf.len();
        buf.push(b'{');
        Self { buf, start }
    }

    /// `"key":"value"`, escaped.
    pub fn str(&mut self, key: Key, value: &str) {
        self.key(key);
        self.buf.push(b'"');
        escape_into(self.buf, value);
        self.buf.push(b'"');
    }

    /// An unsigned integer.
    pub fn uint(&mut self, key: Key, value: u64) {
        self.key(key);
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    /// A duration in milliseconds with microsecond precision (`12.345`).
    pub fn millis(&mut self, key: Key, d: Duration) {
        self.key(key);
        let micros = d.as_micros() as u64;
        let mut itoa = itoa::Buffer::new();
        self.buf
            .extend_from_slice(itoa.format(micros / 1000).as_bytes());
        let frac = (micros % 1000) as u16;
        self.buf.extend_from_slice(&[
            b'.',
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ]);
    }

    /// An IP address as a string.
    pub fn ip(&mut self, key: Key, ip: IpAddr) {
        self.key(key);
        self.buf.push(b'"');
        self.buf.extend_from_slice(IpText::new(ip).as_bytes());
        self.buf.push(b'"');
    }

    /// A socket address as a string (`IP:PORT`).
    pub fn socket_addr(&mut self, key: Key, addr: SocketAddr) {
        self.key(key);
        self.buf.push(b'"');
        ip_text::write_socket_addr(self.buf, addr);
        self.buf.push(b'"');
    }

    /// A 16-byte id as 32 lower-case hex digits in a string (trace ids).
    pub fn hex(&mut self, key: Key, bytes: &[u8; 16]) {
        self.key(key);
        let mut text = [b'"'; 34];
        crate::hex::encode_into(&mut text[1..33], bytes);
        self.buf.extend_from_slice(&text);
    }

    /// An 8-byte id as 16 lower-case hex digits in a string (span ids).
    pub fn hex8(&mut self, key: Key, bytes: &[u8; 8]) {
        self.key(key);
        let mut text = [b'"'; 18];
        crate::hex::encode_into(&mut text[1..17], bytes);
        self.buf.extend_from_slice(&text);
    }

    /// `true` or `false`.
    pub fn bool(&mut self, key: Key, value: bool) {
        self.key(key);
        self.buf
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    /// A UTC time in RFC 3339 with milliseconds: `"2026-11-26T14:07:12.345Z"`.
    pub fn time(&mut self, key: Key, t: SystemTime) {
        self.key(key);
        self.buf.push(b'"');
        write_rfc3339_millis(self.buf, t);
        self.buf.push(b'"');
    }

    /// Closes the object and adds the newline.
    pub fn finish(self) {
        self.buf.extend_from_slice(b"}\n");
    }

    fn key(&mut self, key: Key) {
        let text = key.0.as_bytes();
        // The first field has no separator before it.
        let first = self.buf.len() == self.start + 1;
        self.buf
            .extend_from_slice(if first { &text[1..] } else { text });
    }
}

/// JSON string escaping: quote, backslash and control characters; everything else (including
/// non-ASCII UTF-8) is copied as is.
fn escape_into(buf: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let plain = |b: &u8| *b >= 0x20 && *b != b'"' && *b != b'\\';
    if bytes.iter().all(plain) {
        buf.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if plain(&b) {
            continue;
        }
        buf.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            _ => {
                let mut escape = *b"\\u0000";
                crate::hex::encode_into(&mut escape[4..], &[b]);
                buf.extend_from_slice(&escape);
            }
        }
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
}

fn write_rfc3339_millis(buf: &mut Vec<u8>, t: SystemTime) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let two = |n: u64| [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
    let ms = since.subsec_millis() as u64;
    let year = year.clamp(0, 9999) as u64;
    buf.extend_from_slice(&[
        b'0' + (year / 1000) as u8,
        b'0' + (year / 100 % 10) as u8,
        b'0' + (year / 10 % 10) as u8,
        b'0' + (year % 10) as u8,
        b'-',
    ]);
    buf.extend_from_slice(&two(month));
    buf.push(b'-');
    buf.extend_from_slice(&two(day));
    buf.push(b'T');
    buf.extend_from_slice(&two(rem / 3600));
    buf.push(b':');
    buf.extend_from_slice(&two(rem / 60 % 60));
    buf.push(b':');
    buf.extend_from_slice(&two(rem % 60));
    buf.extend_from_slice(&[
        b'.',
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
        b'Z',
    ]);
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u64, u64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_valid_json_that_serde_reads_back() {
        // Appended after another line: its fields start a new object.
        let mut bytes = b"{\"earlier\":1}\n".to_vec();
        let mut line = JsonLine::append_to(&mut bytes);
        line.str(json_key!("path"), "/a\"b\\c\nd\u{1}é");
        line.uint(json_key!("n"), u64::MAX);
        line.millis(json_key!("ms"), Duration::from_micros(12_345_007));
        line.ip(json_key!("ip"), "::1".parse().unwrap());
        line.socket_addr(json_key!("at"), "10.0.0.1:80".parse().unwrap());
        line.hex(
            json_key!("id"),
            &[0x0a, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        );
        line.finish();
        assert_eq!(bytes.last(), Some(&b'\n'));
        let mut lines = bytes.split(|b| *b == b'\n');
        let earlier: serde_json::Value = serde_json::from_slice(lines.next().unwrap()).unwrap();
        assert_eq!(earlier["earlier"], 1);
        let v: serde_json::Value = serde_json::from_slice(lines.next().unwrap()).unwrap();
        assert_eq!(v["path"], "/a\"b\\c\nd\u{1}é");
        assert_eq!(v["n"], u64::MAX);
        assert_eq!(v["ms"].as_f64(), Some(12345.007));
        assert_eq!(v["ip"], "::1");
        assert_eq!(v["at"], "10.0.0.1:80");
        assert_eq!(v["id"], "0aff0000000000000000000000000001");
    }

    #[test]
    fn times_match_humantime_across_eras() {
        for secs in [
            0u64,
            951_782_400,
            1_709_164_800,
            1_795_000_000,
            4_102_444_799,
        ] {
            for ms in [0u64, 7, 999] {
                let t = UNIX_EPOCH + Duration::from_millis(secs * 1000 + ms);
                let mut buf = Vec::new();
                write_rfc3339_millis(&mut buf, t);
                let expected = humantime::format_rfc3339_millis(t).to_string();
                assert_eq!(String::from_utf8(buf).unwrap(), expected);
            }
        }
    }

    #[test]
    fn every_day_of_four_centuries_matches_humantime() {
        for day in 0..146_097u64 {
            let t = UNIX_EPOCH + Duration::from_secs(day * 86_400 + 3_723);
            let mut buf = Vec::new();
            write_rfc3339_millis(&mut buf, t);
            let expected = humantime::format_rfc3339_millis(t).to_string();
            assert_eq!(String::from_utf8(buf).unwrap(), expected);
        }
    }
}
