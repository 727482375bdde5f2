//! Response compression per route, with Pingora's encoders (`Algorithm::compressor`: gzip,
//! brotli, zstd). Pingora's `ResponseCompressionCtx` is not used as a whole: it ignores
//! `Accept-Encoding` q-values (`gzip;q=0` would still get gzip) and, as a downstream module, runs
//! on every request of every route; here a route without `compress` never reaches this code.
//!
//! The algorithm is negotiated once, from the request: the client's highest q-value among the
//! route's algorithms (`*` counts for those not named; q=0 refuses), ties broken by the route's
//! order. The response is compressed only when it has a body (not HEAD, 204, 304, 206 or 1xx),
//! is not encoded already (no double compression), has an eligible `Content-Type`, declares at
//! least `min_size` (or streams without a length), and does not say `no-transform`. Every
//! eligible response gets `Vary: Accept-Encoding` — also when this client did not ask — so a
//! cache never hands a compressed body to a client that cannot read it. A compressed response
//! loses `Content-Length` and `Accept-Ranges` and has its strong `ETag` weakened.

use crate::config::{CompressConfig, Problems};
use http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG,
    TRANSFER_ENCODING, VARY,
};
use http::{HeaderValue, Method};
use pingora::http::ResponseHeader;
use pingora::protocols::http::compression::{Algorithm, Encode};

/// A compiled `compress` setting.
pub struct Compress {
    /// `(type, subtype)`; a `*` subtype matches any.
    types: Vec<(String, String)>,
    min_size: u64,
    algorithms: Vec<Algorithm>,
    level: u32,
}

/// A response's encoder, fed by `response_body_filter`.
pub type Encoder = Box<dyn Encode + Send + Sync>;

impl Compress {
    /// Compiles `routes[i].compress`.
    pub fn compile(cfg: &CompressConfig, at: &str, problems: &mut Problems) -> Compress {
        let mut algorithms = Vec::new();
        for (i, name) in cfg.algorithms.iter().enumerate() {
            let algorithm = match name.as_str() {
                "br" => Algorithm::Brotli,
                "zstd" => Algorithm::Zstd,
                "gzip" => Algorithm::Gzip,
                other => {
                    problems.push(
                        format!("{at}.algorithms[{i}]"),
                        format!("unknown algorithm {other:?}; use br, zstd or gzip"),
                    );
                    continue;
                }
            };
            if algorithms.contains(&algorithm) {
                problems.push(
                    format!("{at}.algorithms[{i}]"),
                    format!("{name:?} is listed twice"),
                );
                continue;
            }
            algorithms.push(algorithm);
        }
        if cfg.algorithms.is_empty() {
            problems.push(format!("{at}.algorithms"), "needs at least one algorithm");
        }
        if !(1..=9).contains(&cfg.level) {
            problems.push(format!("{at}.level"), "must be between 1 and 9");
        }
        let mut types = Vec::new();
        for (i, t) in cfg.types.iter().enumerate() {
            match t.to_ascii_lowercase().split_once('/') {
                Some((ty, sub)) if !ty.is_empty() && !sub.is_empty() && ty != "*" => {
                    types.push((ty.to_string(), sub.to_string()))
                }
                _ => problems.push(
                    format!("{at}.types[{i}]"),
                    format!("{t:?} is not a media type (type/subtype or type/*)"),
                ),
            }
        }
        Compress {
            types,
            min_size: cfg.min_size,
            algorithms,
            level: cfg.level,
        }
    }

    /// The algorithm this client gets, if any: one pass over `Accept-Encoding`.
    pub fn negotiate(&self, accept: Option<&HeaderValue>) -> Option<Algorithm> {
        let accept = accept?.to_str().ok()?;
        // q-values of the route's algorithms (at most three, no repeats: `compile` checks).
        let mut named: [Option<u16>; 3] = [None; 3];
        let mut any = None;
        for entry in accept.split(',') {
            let (name, q) = coding_and_q(entry);
            if name == "*" {
                any.get_or_insert(q);
            } else if let Some(i) = self
                .algorithms
                .iter()
                .position(|a| name.eq_ignore_ascii_case(a.as_str()))
            {
                named[i].get_or_insert(q);
            }
        }
        let mut best: Option<(u16, Algorithm)> = None;
        for (algorithm, q) in self.algorithms.iter().zip(named) {
            let q = q.or(any).unwrap_or(0);
            if q > 0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, *algorithm));
            }
        }
        best.map(|(_, a)| a)
    }

    /// Decides for a response: adds `Vary` when the response could be compressed, and when
    /// `chosen` is set, rewrites the headers and returns the encoder. `h1` says whether the
    /// client speaks HTTP/1.1 (which needs `Transfer-Encoding: chunked` once the length goes).
    pub fn start(
        &self,
        chosen: Option<Algorithm>,
        method: &Method,
        resp: &mut ResponseHeader,
        h1: bool,
    ) -> pingora::Result<Option<Encoder>> {
        if !self.eligible(method, resp) {
            return Ok(None);
        }
        add_vary(resp)?;
        let Some(encoder) = chosen.and_then(|a| a.compressor(self.level)) else {
            return Ok(None);
        };
        let name = chosen.map_or("", |a| a.as_str());
        resp.insert_header(CONTENT_ENCODING, name)?;
        resp.remove_header(&CONTENT_LENGTH);
        resp.remove_header(&ACCEPT_RANGES);
        if h1 {
            resp.insert_header(TRANSFER_ENCODING, "chunked")?;
        }
        weaken_etag(resp)?;
        Ok(Some(encoder))
    }

    fn eligible(&self, method: &Method, resp: &ResponseHeader) -> bool {
        let status = resp.status.as_u16();
        if method == Method::HEAD || matches!(status, 100..=199 | 204 | 206 | 304) {
            return false;
        }
        let h = &resp.headers;
        let encoded = h
            .get(CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        let no_transform = h.get_all(CACHE_CONTROL).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.to_ascii_lowercase().contains("no-transform"))
        });
        let small = h
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .is_some_and(|n| n < self.min_size);
        !encoded && !no_transform && !small && self.type_matches(h.get(CONTENT_TYPE))
    }

    fn type_matches(&self, content_type: Option<&HeaderValue>) -> bool {
        let Some(ct) = content_type.and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let essence = ct.split(';').next().unwrap_or("").trim();
        let Some((ty, sub)) = essence.split_once('/') else {
            return false;
        };
        self.types
            .iter()
            .any(|(t, s)| t.eq_ignore_ascii_case(ty) && (s == "*" || s.eq_ignore_ascii_case(sub)))
    }
}

/// One `Accept-Encoding` entry: its coding and q-value in thousandths (1000 when absent).
fn coding_and_q(entry: &str) -> (&str, u16) {
    let mut parts = entry.split(';');
    let name = parts.next().unwrap_or("").trim();
    let q = parts
        .find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("q")
                .then(|| parse_q(v.trim()))
        })
        .unwrap_or(1000);
    (name, q)
}

/// `0`, `0.5`, `1.000` as thousandths; anything else counts as 0 (a client that writes
/// nonsense does not get a compressed body it may not read). No allocation: this runs on
/// every request of a compressing route.
fn parse_q(v: &str) -> u16 {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    let thousandths = frac
        .bytes()
        .zip([100u16, 10, 1])
        .map(|(b, scale)| u16::from(b - b'0') * scale)
        .sum::<u16>();
    match int {
        "0" => thousandths,
        "1" if thousandths == 0 => 1000,
        _ => 0,
    }
}

fn add_vary(resp: &mut ResponseHeader) -> pingora::Result<()> {
    let has = resp.headers.get_all(VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("accept-encoding") || t.trim() == "*")
        })
    });
    if !has {
        resp.append_header(VARY, "Accept-Encoding")?;
    }
    Ok(())
}

/// A strong `ETag` becomes weak (the bytes differ now); one that is not a valid tag goes.
fn weaken_etag(resp: &mut ResponseHeader) -> pingora::Result<()> {
    let Some(tag) = resp.headers.get(ETAG) else {
        return Ok(());
    };
    let tag = tag.as_bytes();
    if tag.starts_with(b"W/") {
        return Ok(());
    }
    if tag.starts_with(b"\"") {
        let weak = HeaderValue::from_bytes(&[b"W/", tag].concat())
            .unwrap_or(HeaderValue::from_static("W/\"\""));
        resp.insert_header(ETAG, weak)?;
    } else {
        resp.remove_header(&ETAG);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compress() -> Compress {
        let mut problems = Problems::default();
        let c = Compress::compile(&CompressConfig::default(), "c", &mut problems);
        assert!(problems.is_empty());
        c
    }

    fn pick(accept: &str) -> Option<&'static str> {
        compress()
            .negotiate(Some(&HeaderValue::from_str(accept).unwrap()))
            .map(|a| a.as_str())
    }

    #[test]
    fn q_values_decide_and_the_route_order_breaks_ties() {
        assert_eq!(pick("gzip, deflate, br, zstd"), Some("br"));
        assert_eq!(pick("gzip;q=1.0, br;q=0.5"), Some("gzip"));
        assert_eq!(pick("br;q=0, gzip"), Some("gzip"));
        assert_eq!(pick("*;q=0.1, gzip;q=0"), Some("br"));
        assert_eq!(pick("identity"), None);
        assert_eq!(pick("gzip;q=0, br;q=0, zstd;q=0"), None);
        assert_eq!(pick("zstd;q=0.9, br;q=0.8"), Some("zstd"));
        assert_eq!(pick("gzip;q=2"), None, "an invalid q-value refuses");
        assert_eq!(compress().negotiate(None), None);
    }

    fn response(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (k, v) in headers {
            r.insert_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn only_eligible_responses_are_compressed_and_all_of_them_vary() {
        let c = compress();
        let br = Some(Algorithm::Brotli);
        let get = Method::GET;
        let mut json = response(
            200,
            &[
                ("content-type", "application/json; charset=utf-8"),
                ("content-length", "5000"),
                ("etag", "\"abc\""),
                ("accept-ranges", "bytes"),
            ],
        );
        assert!(c.start(br, &get, &mut json, true).unwrap().is_some());
        assert_eq!(json.headers["content-encoding"], "br");
        assert_eq!(json.headers["vary"], "Accept-Encoding");
        assert_eq!(json.headers["etag"], "W/\"abc\"");
        assert!(json.headers.get("content-length").is_none());
        assert!(json.headers.get("accept-ranges").is_none());
        let mut no_accept = response(200, &[("content-type", "text/html")]);
        assert!(c.start(None, &get, &mut no_accept, true).unwrap().is_none());
        assert_eq!(
            no_accept.headers["vary"], "Accept-Encoding",
            "a cache must know"
        );
        for (status, headers) in [
            (
                200,
                vec![("content-type", "text/html"), ("content-encoding", "gzip")],
            ),
            (
                200,
                vec![("content-type", "text/html"), ("content-length", "100")],
            ),
            (200, vec![("content-type", "image/png")]),
            (
                200,
                vec![
                    ("content-type", "text/html"),
                    ("cache-control", "public, no-transform"),
                ],
            ),
            (304, vec![("content-type", "text/html")]),
            (206, vec![("content-type", "text/html")]),
        ] {
            let mut r = response(status, &headers);
            assert!(
                c.start(br, &get, &mut r, true).unwrap().is_none(),
                "{headers:?}"
            );
            assert!(r
                .headers
                .get("content-encoding")
                .is_none_or(|v| v == "gzip"));
        }
        let mut head = response(200, &[("content-type", "text/html")]);
        assert!(c
            .start(br, &Method::HEAD, &mut head, true)
            .unwrap()
            .is_none());
    }

    #[test]
    fn bad_settings_are_found() {
        let cfg = CompressConfig {
            algorithms: vec!["gzip".into(), "lz4".into()],
            types: vec!["json".into()],
            level: 12,
            ..CompressConfig::default()
        };
        let mut problems = Problems::default();
        Compress::compile(&cfg, "c", &mut problems);
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["c.algorithms[1]", "c.level", "c.types[0]"]);
    }
}
