//! Routes the gateway answers itself, with no service behind them: redirects and static
//! responses. Both are compiled once (the redirect target into literal pieces and
//! substitutions, the static response into a ready header list and body) so answering costs
//! no parsing; both are counted as gateway-made with their own `reason`.

use crate::config::{Problems, RedirectConfig, RespondConfig};
use crate::reply::Answer as Made;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use regex::Regex;

/// What a route without a service answers.
pub enum Answer {
    Redirect(Redirect),
    Static(StaticResponse),
}

/// What a redirect may put in its target.
pub struct Facts<'a> {
    /// The normalised path.
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The `Host`, without the port.
    pub host: &'a str,
}

impl Answer {
    /// Compiles a route's `redirect` or `respond` (`at` is the route's path in the file).
    pub fn compile(
        redirect: Option<&RedirectConfig>,
        respond: Option<&RespondConfig>,
        at: &str,
        problems: &mut Problems,
    ) -> Option<Answer> {
        match (redirect, respond) {
            (Some(r), _) => Some(Answer::Redirect(Redirect::compile(
                r,
                &format!("{at}.redirect"),
                problems,
            ))),
            (None, Some(r)) => Some(Answer::Static(StaticResponse::compile(
                r,
                &format!("{at}.respond"),
                problems,
            ))),
            (None, None) => None,
        }
    }

    /// The response for one request; `None` when the rendered `Location` is not a valid
    /// header value (a `Host` with bytes a URL may not carry).
    pub fn render(&self, facts: &Facts<'_>) -> Option<Made> {
        match self {
            Answer::Redirect(r) => r.render(facts),
            Answer::Static(s) => s.render(),
        }
    }
}

/// A compiled `redirect`.
#[derive(Debug)]
pub struct Redirect {
    status: u16,
    pieces: Vec<Piece>,
    regex: Option<Regex>,
}

/// One piece of a redirect target.
#[derive(Debug, PartialEq)]
enum Piece {
    Literal(String),
    Path,
    /// `?` and the query, or nothing when the request has none.
    Query,
    Host,
    Group(usize),
    Named(String),
}

impl Piece {
    /// How the substitution was written.
    fn written(&self) -> String {
        match self {
            Piece::Group(i) => format!("`${i}`"),
            Piece::Named(n) => format!("`${n}`"),
            _ => format!("{self:?}"),
        }
    }
}

impl Redirect {
    fn compile(r: &RedirectConfig, at: &str, problems: &mut Problems) -> Redirect {
        if ![301, 302, 303, 307, 308].contains(&r.status) {
            problems.push(format!("{at}.status"), "must be 301, 302, 303, 307 or 308");
        }
        let regex = r.regex.as_deref().and_then(|re| match Regex::new(re) {
            Ok(re) => Some(re),
            Err(e) => {
                problems.push(format!("{at}.regex"), format!("bad regex: {e}"));
                None
            }
        });
        let pieces = match parse_target(&r.to) {
            Ok(pieces) => pieces,
            Err(e) => {
                problems.push(format!("{at}.to"), e);
                Vec::new()
            }
        };
        if r.to.is_empty() {
            problems.push(format!("{at}.to"), "must not be empty");
        }
        for piece in &pieces {
            let known = match (piece, &regex) {
                (Piece::Group(i), Some(re)) => *i < re.captures_len(),
                (Piece::Named(n), Some(re)) => re.capture_names().flatten().any(|c| c == n),
                (Piece::Group(_) | Piece::Named(_), None) => false,
                _ => true,
            };
            if !known && (regex.is_some() || r.regex.is_none()) {
                problems.push(
                    format!("{at}.to"),
                    format!(
                        "{} is not $path, $query, $host or a capture group of `regex`",
                        piece.written()
                    ),
                );
            }
        }
        Redirect {
            status: r.status,
            pieces,
            regex,
        }
    }

    fn render(&self, facts: &Facts<'_>) -> Option<Made> {
        let captures = match &self.regex {
            Some(re) => Some(re.captures(facts.path)?),
            None => None,
        };
        let mut to = String::with_capacity(64);
        for piece in &self.pieces {
            match piece {
                Piece::Literal(s) => to.push_str(s),
                Piece::Path => to.push_str(facts.path),
                Piece::Query => {
                    if let Some(q) = facts.query {
                        to.push('?');
                        to.push_str(q);
                    }
                }
                Piece::Host => to.push_str(facts.host),
                Piece::Group(i) => to.push_str(
                    captures
                        .as_ref()
                        .and_then(|c| c.get(*i))
                        .map_or("", |m| m.as_str()),
                ),
                Piece::Named(n) => to.push_str(
                    captures
                        .as_ref()
                        .and_then(|c| c.name(n))
                        .map_or("", |m| m.as_str()),
                ),
            }
        }
        let location = HeaderValue::from_str(&to).ok()?;
        let mut made = Made::new(self.status, 2, "redirect").ok()?;
        made.head
            .insert_header(http::header::LOCATION, location)
            .ok()?;
        made.head
            .insert_header(http::header::CACHE_CONTROL, "no-store")
            .ok()?;
        Some(made)
    }
}

/// Splits a target into literal text and `$path`, `$query`, `$host`, `$1`.. and `$name`
/// (a named capture; `$${name}` when text follows it, since `${..}` alone is an environment
/// variable in the file) substitutions; `$$` is a literal `$`.
fn parse_target(to: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = to;
    while let Some(i) = rest.find('$') {
        literal.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        let (piece, used) = if let Some(r) = rest.strip_prefix('$') {
            literal.push('$');
            rest = r;
            continue;
        } else if let Some(r) = rest.strip_prefix('{') {
            let end = r.find('}').ok_or("unclosed `${`")?;
            let name = &r[..end];
            let piece = match name.parse::<usize>() {
                Ok(i) => Piece::Group(i),
                Err(_) => Piece::Named(name.to_string()),
            };
            (piece, end + 2)
        } else {
            let word: usize = rest
                .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .unwrap_or(rest.len());
            let name = &rest[..word];
            let piece = match name {
                "path" => Piece::Path,
                "query" => Piece::Query,
                "host" => Piece::Host,
                "" => return Err("`$` must be followed by a name; write $$ for a dollar".into()),
                _ if name.bytes().all(|b| b.is_ascii_digit()) => {
                    Piece::Group(name.parse().map_err(|_| "capture number too large")?)
                }
                _ => Piece::Named(name.to_string()),
            };
            (piece, word)
        };
        if !literal.is_empty() {
            pieces.push(Piece::Literal(std::mem::take(&mut literal)));
        }
        pieces.push(piece);
        rest = &rest[used..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    Ok(pieces)
}

/// A compiled `respond`.
pub struct StaticResponse {
    status: u16,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

impl StaticResponse {
    fn compile(r: &RespondConfig, at: &str, problems: &mut Problems) -> StaticResponse {
        if !(200..=599).contains(&r.status) {
            problems.push(format!("{at}.status"), "must be between 200 and 599");
        }
        let mut headers = Vec::with_capacity(r.headers.len() + 1);
        for (name, value) in &r.headers {
            let parsed = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            );
            match parsed {
                (Ok(n), _) if n == http::header::CONTENT_LENGTH => problems.push(
                    format!("{at}.headers.{name}"),
                    "is set from the body; leave it out",
                ),
                (Ok(n), Ok(v)) => headers.push((n, v)),
                (Err(_), _) => problems.push(format!("{at}.headers.{name}"), "bad header name"),
                (_, Err(_)) => problems.push(format!("{at}.headers.{name}"), "bad header value"),
            }
        }
        if !r.body.is_empty() && !headers.iter().any(|(n, _)| n == http::header::CONTENT_TYPE) {
            headers.push((
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ));
        }
        StaticResponse {
            status: r.status,
            headers,
            body: Bytes::from(r.body.clone()),
        }
    }

    fn render(&self) -> Option<Made> {
        let mut made = Made::new(self.status, self.headers.len(), "static_response").ok()?;
        for (name, value) in &self.headers {
            made.head.append_header(name.clone(), value.clone()).ok()?;
        }
        made.body = self.body.clone();
        Some(made)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(to: &str, regex: Option<&str>) -> Result<Redirect, Vec<String>> {
        let mut problems = Problems::default();
        let cfg = RedirectConfig {
            to: to.into(),
            status: 308,
            regex: regex.map(String::from),
        };
        let r = Redirect::compile(&cfg, "r", &mut problems);
        let shown: Vec<String> = problems.iter().map(|p| p.message.clone()).collect();
        if shown.is_empty() {
            Ok(r)
        } else {
            Err(shown)
        }
    }

    fn location(r: &Redirect, path: &str, query: Option<&str>) -> Option<String> {
        let made = r.render(&Facts {
            path,
            query,
            host: "example.com",
        })?;
        assert_eq!(made.head.status.as_u16(), 308);
        Some(made.head.headers["location"].to_str().unwrap().to_string())
    }

    #[test]
    fn substitutions_fill_the_target() {
        let r = redirect("https://$host/v1$path$query", None).unwrap();
        assert_eq!(
            location(&r, "/v0/a", Some("x=1")).unwrap(),
            "https://example.com/v1/v0/a?x=1"
        );
        assert_eq!(
            location(&r, "/v0/a", None).unwrap(),
            "https://example.com/v1/v0/a"
        );
        let r = redirect("/v1/$1/${id}.$id$$", Some("^/v0/(\\w+)/(?P<id>\\d+)")).unwrap();
        assert_eq!(
            location(&r, "/v0/users/42", None).unwrap(),
            "/v1/users/42.42$"
        );
    }

    #[test]
    fn a_path_the_regex_does_not_match_is_not_redirected() {
        let r = redirect("/v1/$1", Some("^/v0/(\\d+)$")).unwrap();
        assert!(location(&r, "/v0/abc", None).is_none());
    }

    #[test]
    fn mistakes_in_targets_are_found_when_compiling() {
        let e = redirect("/x/$pth", None).unwrap_err();
        assert!(e[0].contains("`$pth` is not $path"), "{e:?}");
        let e = redirect("/x/$2", Some("^/(a)")).unwrap_err();
        assert!(e[0].contains("`$2` is not $path"), "{e:?}");
        let e = redirect("/x/${id", None).unwrap_err();
        assert!(e[0].contains("unclosed"), "{e:?}");
        let e = redirect("/x/$1", None).unwrap_err();
        assert!(e[0].contains("`$1` is not"), "{e:?}");
        let e = redirect("/x/$", None).unwrap_err();
        assert!(e[0].contains("must be followed by a name"), "{e:?}");
    }

    #[test]
    fn a_static_response_gets_a_content_type_for_its_body() {
        let mut problems = Problems::default();
        let cfg = RespondConfig {
            status: 200,
            body: "ok".into(),
            headers: Default::default(),
        };
        let made = StaticResponse::compile(&cfg, "r", &mut problems)
            .render()
            .unwrap();
        assert!(problems.is_empty());
        assert_eq!(
            made.head.headers["content-type"],
            "text/plain; charset=utf-8"
        );
        assert_eq!(&made.body[..], b"ok");
    }
}
