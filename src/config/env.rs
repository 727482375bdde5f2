//! `${VAR}` and `${VAR:-default}` expansion, applied to the raw YAML text before parsing so that
//! line numbers stay those of the file (a substituted value never spans lines in practice).

use super::error::ConfigError;

/// Expands environment references in `text`. `$$` stands for a literal `$`.
/// Every unset variable without a default is reported, with its position.
pub fn expand(file: &str, text: &str) -> Result<String, Vec<ConfigError>> {
    expand_with(file, text, |name| std::env::var(name).ok())
}

/// Expansion with an injectable lookup, so tests need not touch the process environment.
pub fn expand_with(
    file: &str,
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, Vec<ConfigError>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    for (line_no, full_line) in text.split_inclusive('\n').enumerate() {
        let (line, comment) = full_line.split_at(comment_start(full_line));
        let mut rest = line;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let tail = &rest[pos..];
            if let Some(after) = tail.strip_prefix("$$") {
                out.push('$');
                rest = after;
            } else if let Some(body) = tail.strip_prefix("${") {
                let Some(end) = body.find('}') else {
                    out.push_str(tail);
                    rest = "";
                    continue;
                };
                let expr = &body[..end];
                let (name, default) = match expr.split_once(":-") {
                    Some((n, d)) => (n, Some(d)),
                    None => (expr, None),
                };
                match lookup(name).filter(|v| !v.is_empty() || default.is_none()) {
                    Some(value) => out.push_str(&value),
                    None => match default {
                        Some(d) => out.push_str(d),
                        None => errors.push(ConfigError::at(
                            file,
                            line_no + 1,
                            line.len() - rest.len() + pos + 1,
                            "",
                            format!(
                                "environment variable {name} is not set (use ${{{name}:-default}} for a default; \
                                 a rewrite's named capture is written ${name} or $${{{name}}})"
                            ),
                        )),
                    },
                }
                rest = &body[end + 1..];
            } else {
                out.push('$');
                rest = &tail[1..];
            }
        }
        out.push_str(rest);
        out.push_str(comment);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Byte index where a YAML comment starts on `line` (its length when there is none): a `#` at
/// the start or after whitespace, outside quotes. Comments are never expanded.
fn comment_start(line: &str) -> usize {
    let (mut single, mut double, mut prev_space) = (false, false, true);
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev_space => return i,
            _ => {}
        }
        prev_space = c.is_whitespace();
    }
    line.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("8080".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_set_variables_and_defaults() {
        let out = expand_with("f", "a: ${PORT}\nb: ${NOPE:-x}\nc: ${EMPTY:-d}\n", env).unwrap();
        assert_eq!(out, "a: 8080\nb: x\nc: d\n");
    }

    #[test]
    fn dollar_dollar_is_a_literal_dollar() {
        assert_eq!(
            expand_with("f", "a: $${PORT} $x", env).unwrap(),
            "a: ${PORT} $x"
        );
    }

    #[test]
    fn comments_are_left_alone() {
        let out = expand_with("f", "# ${NOPE}\na: \"#${PORT}\" # ${NOPE}\n", env).unwrap();
        assert_eq!(out, "# ${NOPE}\na: \"#8080\" # ${NOPE}\n");
    }

    #[test]
    fn unset_variable_without_default_is_located() {
        let errs = expand_with("f.yaml", "a: 1\nb: ${MISSING}\n", env).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].to_string().starts_with("f.yaml:2:4:"),
            "{}",
            errs[0]
        );
    }
}
