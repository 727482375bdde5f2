//! Values read from a request by name: a cookie, a query parameter. Exact names, raw values
//! (no percent-decoding): they are compared with configured values or hashed, never shown.

use pingora::http::RequestHeader;

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'r>(req: &'r RequestHeader, name: &str) -> Option<&'r str> {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// The raw value of query parameter `name` (empty for a bare `name`).
pub fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_query_values_are_found_exactly() {
        let mut req = RequestHeader::build("GET", b"/x?a=1&canary=yes&b", None).unwrap();
        req.append_header("cookie", "x=1; portico_split=abc; y=2")
            .unwrap();
        assert_eq!(cookie(&req, "portico_split"), Some("abc"));
        assert_eq!(cookie(&req, "portico"), None);
        let query = req.uri.query().unwrap();
        assert_eq!(query_value(query, "canary"), Some("yes"));
        assert_eq!(query_value(query, "b"), Some(""));
        assert_eq!(query_value(query, "c"), None);
    }
}
