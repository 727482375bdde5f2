//! Maps field paths (`routes[1].match.hosts[0]`) to their line and column in the YAML text.
//! serde_yaml reports positions only for syntax and type errors; semantic validation needs this
//! index to point at the offending value.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Positions of every node in a document, keyed by field path.
#[derive(Debug, Default)]
pub struct Locator {
    positions: HashMap<String, (usize, usize)>,
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    positions: HashMap<String, (usize, usize)>,
}

impl Builder {
    /// Path of the node that starts now, advancing the parent's cursor.
    fn next_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, index }) => {
                let p = format!("{path}[{index}]");
                *index += 1;
                Some(p)
            }
            Some(Frame::Map { path, key }) => key.take().map(|k| join(path, &k)),
        }
    }

    /// True when the current scalar is a mapping key rather than a value.
    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = (mark.line(), mark.col() + 1);
        match ev {
            Event::Scalar(value, ..) => {
                if self.expecting_key() {
                    if let Some(Frame::Map { path, key }) = self.stack.last_mut() {
                        let p = join(path, &value);
                        self.positions.entry(p).or_insert(pos);
                        *key = Some(value);
                    }
                } else if let Some(p) = self.next_path() {
                    self.positions.insert(p, pos);
                }
            }
            Event::Alias(_) if !self.expecting_key() => {
                if let Some(p) = self.next_path() {
                    self.positions.insert(p, pos);
                }
            }
            Event::MappingStart(..) => {
                let path = self.next_path().unwrap_or_default();
                self.positions.entry(path.clone()).or_insert(pos);
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.next_path().unwrap_or_default();
                self.positions.entry(path.clone()).or_insert(pos);
                self.stack.push(Frame::Seq { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

impl Locator {
    /// Indexes `text`; a text that does not parse yields an empty index (serde reports that error).
    pub fn new(text: &str) -> Self {
        let mut builder = Builder::default();
        let _ = Parser::new_from_str(text).load(&mut builder, false);
        Self {
            positions: builder.positions,
        }
    }

    /// Line and column of `path`, falling back to its nearest located ancestor, then to 1:1.
    pub fn find(&self, path: &str) -> (usize, usize) {
        let mut p = path;
        loop {
            if let Some(pos) = self.positions.get(p) {
                return *pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return self.positions.get("").copied().unwrap_or((1, 1)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "server:\n  listen: [\"a\", \"b\"]\nroutes:\n  - name: r1\n    service: s\n  - name: r2\n    match:\n      hosts:\n        - x\n";

    #[test]
    fn finds_nested_scalars_in_maps_and_sequences() {
        let l = Locator::new(DOC);
        assert_eq!(l.find("routes[0].service"), (5, 14));
        assert_eq!(l.find("routes[1].name"), (6, 11));
        assert_eq!(l.find("routes[1].match.hosts[0]"), (9, 11));
        assert_eq!(l.find("server.listen[1]"), (2, 17));
    }

    #[test]
    fn missing_fields_fall_back_to_their_parent() {
        let l = Locator::new(DOC);
        assert_eq!(l.find("routes[0].match.hosts"), l.find("routes[0]"));
    }
}
