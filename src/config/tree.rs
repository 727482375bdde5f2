//! The YAML text as a tree of located nodes: every scalar, sequence and mapping knows its line
//! and column, and every mapping key its own. The configuration is deserialized from this tree
//! (see `de.rs`), so every error — a type mismatch, an unknown key, a bad duration, a
//! reference that resolves to nothing — can point at the node it is about.
//!
//! The parser is driven event by event with an explicit stack (never recursively), and the
//! tree is bounded in depth, node count and bytes — alias expansion included — so hostile input
//! ends in an error rather than a stack overflow or an exponential blow-up. Positions are found
//! by walking the tree, not from an index of every path.

use std::collections::{HashMap, HashSet};
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Deepest nesting accepted (the configuration schema needs fewer than ten levels).
const MAX_DEPTH: usize = 64;
/// Most nodes a document may expand to, aliases included.
const MAX_NODES: usize = 100_000;
/// Most bytes of scalars and keys a document may expand to, aliases included.
const MAX_BYTES: usize = 32 << 20;

/// A line and column, both 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    pub line: usize,
    pub col: usize,
}

impl Mark {
    /// The earlier of two positions.
    pub fn min_by_position(self, other: Mark) -> Mark {
        if (other.line, other.col) < (self.line, self.col) {
            other
        } else {
            self
        }
    }
}

impl From<Marker> for Mark {
    fn from(m: Marker) -> Self {
        Self {
            line: m.line(),
            col: m.col() + 1,
        }
    }
}

/// One value of the document.
#[derive(Debug, Clone)]
pub struct Node {
    pub mark: Mark,
    pub kind: Kind,
}

/// What a node holds.
#[derive(Debug, Clone)]
pub enum Kind {
    /// `plain` scalars (unquoted) are typed by their text (`10`, `true`, `~`); quoted and block
    /// scalars are always strings.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// One key of a mapping and its value.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub key_mark: Mark,
    pub value: Node,
}

impl Node {
    /// A scalar that means "nothing": empty, `~` or `null` written without quotes.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }
}

/// A problem found while building the tree, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flaw {
    pub mark: Mark,
    /// Field path of the node (empty when the text does not parse at all).
    pub path: String,
    pub message: String,
}

/// A parsed document.
#[derive(Debug)]
pub struct Tree {
    root: Node,
}

impl Tree {
    /// Parses `text`. A syntax error ends parsing (`Err`); duplicate and non-scalar keys are
    /// reported in the returned list and left out of the tree.
    pub fn parse(text: &str) -> Result<(Tree, Vec<Flaw>), Flaw> {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        loop {
            let (event, marker) = parser.next_token().map_err(|e| Flaw {
                mark: Mark::from(*e.marker()),
                path: String::new(),
                message: format!("invalid YAML: {}", e.info()),
            })?;
            match builder.on_event(event, marker.into())? {
                Step::More => {}
                Step::Done => break,
            }
        }
        let root = builder.root.unwrap_or(Node {
            mark: Mark { line: 1, col: 1 },
            kind: Kind::Map(Vec::new()),
        });
        Ok((Tree { root }, builder.flaws))
    }

    /// The document's top node (an empty mapping for an empty document).
    pub fn root(&self) -> &Node {
        &self.root
    }

    /// Where `path` is written, or its nearest written ancestor, or the document start. A key
    /// may itself contain dots (`services.api.v2`): the longest key that fits is followed.
    pub fn locate(&self, path: &str) -> Mark {
        let mut node = &self.root;
        let mut rest = path;
        loop {
            if rest.is_empty() {
                return node.mark;
            }
            let next = match &node.kind {
                Kind::Seq(items) => rest
                    .strip_prefix('[')
                    .and_then(|r| r.split_once(']'))
                    .and_then(|(i, r)| Some((items.get(i.parse::<usize>().ok()?)?, r))),
                Kind::Map(entries) => {
                    let r = rest.strip_prefix('.').unwrap_or(rest);
                    entries
                        .iter()
                        .filter(|e| {
                            r.strip_prefix(e.key.as_str()).is_some_and(|after| {
                                after.is_empty() || after.starts_with(['.', '['])
                            })
                        })
                        .max_by_key(|e| e.key.len())
                        .map(|e| (&e.value, &r[e.key.len()..]))
                }
                Kind::Scalar { .. } => None,
            };
            match next {
                Some((child, r)) => {
                    node = child;
                    rest = r;
                }
                None => return node.mark,
            }
        }
    }
}

/// Joins a mapping key onto a path (`routes[0]` + `name` = `routes[0].name`).
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

enum Step {
    More,
    Done,
}

/// A container being filled.
enum Frame {
    Seq {
        mark: Mark,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        mark: Mark,
        anchor: usize,
        entries: Vec<Entry>,
        /// The keys so far, for the duplicate check.
        keys: HashSet<String>,
        key: PendingKey,
    },
}

/// What a mapping expects next.
enum PendingKey {
    /// A key.
    None,
    /// The value of this key.
    Key(String, Mark),
    /// The value of a key that was refused (named, when it was a duplicate); it is dropped.
    Skip(Option<String>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    documents: usize,
    nodes: usize,
    bytes: usize,
    flaws: Vec<Flaw>,
}

impl Builder {
    fn on_event(&mut self, event: Event, mark: Mark) -> Result<Step, Flaw> {
        match event {
            Event::StreamEnd => return Ok(Step::Done),
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(self.fatal(
                        mark,
                        "more than one YAML document; the configuration is one document",
                    ));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                // `!!str 10` is the string "10" (yaml-rust2 expands `!!` to the full prefix).
                let string_tag = tag.is_some_and(|t| {
                    matches!(t.handle.as_str(), "!!" | "tag:yaml.org,2002:") && t.suffix == "str"
                });
                let plain = style == TScalarStyle::Plain && !string_tag;
                self.count(1, text.len(), mark)?;
                let node = Node {
                    mark,
                    kind: Kind::Scalar { text, plain },
                };
                self.remember(anchor, &node);
                self.push(node)?;
            }
            Event::SequenceStart(anchor, _) => {
                self.open(mark)?;
                self.stack.push(Frame::Seq {
                    mark,
                    anchor,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(anchor, _) => {
                self.open(mark)?;
                self.stack.push(Frame::Map {
                    mark,
                    anchor,
                    entries: Vec::new(),
                    keys: HashSet::new(),
                    key: PendingKey::None,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq {
                        mark,
                        anchor,
                        items,
                    }) => (
                        Node {
                            mark,
                            kind: Kind::Seq(items),
                        },
                        anchor,
                    ),
                    Some(Frame::Map {
                        mark,
                        anchor,
                        entries,
                        ..
                    }) => (
                        Node {
                            // A block mapping's start event comes late (at its first `:`); its
                            // first key is where a reader sees it begin.
                            mark: entries
                                .first()
                                .map_or(mark, |e| e.key_mark.min_by_position(mark)),
                            kind: Kind::Map(entries),
                        },
                        anchor,
                    ),
                    None => return Err(self.fatal(mark, "unbalanced YAML structure")),
                };
                self.remember(anchor, &node);
                self.push(node)?;
            }
            Event::Alias(id) => {
                // Measured before it is copied: an alias may not carry the tree past a limit.
                let Some((nodes, bytes, depth)) = self.anchors.get(&id).map(measure) else {
                    return Err(self.fatal(mark, "alias to an unknown anchor"));
                };
                if self.stack.len() + depth > MAX_DEPTH {
                    return Err(self.fatal(mark, "nested too deeply"));
                }
                self.count(nodes, bytes, mark)?;
                if let Some(node) = self.anchors.get(&id).cloned() {
                    self.push(node)?;
                }
            }
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
        }
        Ok(Step::More)
    }

    fn open(&mut self, mark: Mark) -> Result<(), Flaw> {
        self.count(1, 0, mark)?;
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.fatal(mark, "nested too deeply"));
        }
        Ok(())
    }

    fn count(&mut self, nodes: usize, bytes: usize, mark: Mark) -> Result<(), Flaw> {
        self.nodes += nodes;
        self.bytes += bytes;
        if self.nodes > MAX_NODES || self.bytes > MAX_BYTES {
            return Err(self.fatal(mark, "document too large (aliases expand too far)"));
        }
        Ok(())
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
    }

    fn fatal(&self, mark: Mark, message: &str) -> Flaw {
        Flaw {
            mark,
            path: String::new(),
            message: message.to_string(),
        }
    }

    /// The path of the container on top of the stack (for flaws found inside it).
    fn path(&self) -> String {
        let mut path = String::new();
        for frame in &self.stack {
            match frame {
                Frame::Seq { items, .. } => path = format!("{path}[{}]", items.len()),
                Frame::Map {
                    key: PendingKey::Key(k, _) | PendingKey::Skip(Some(k)),
                    ..
                } => path = join(&path, k),
                Frame::Map { .. } => {}
            }
        }
        path
    }

    /// Adds a finished node to its parent, or makes it the document.
    fn push(&mut self, node: Node) -> Result<(), Flaw> {
        let path = self.path();
        let Some(top) = self.stack.last_mut() else {
            self.root = Some(node);
            return Ok(());
        };
        match top {
            Frame::Seq { items, .. } => items.push(node),
            Frame::Map {
                entries, keys, key, ..
            } => match std::mem::replace(key, PendingKey::None) {
                PendingKey::Key(k, key_mark) => entries.push(Entry {
                    key: k,
                    key_mark,
                    value: node,
                }),
                PendingKey::Skip(_) => {}
                PendingKey::None => match node.kind {
                    Kind::Scalar { text, .. } => {
                        if keys.contains(&text) {
                            self.flaws.push(Flaw {
                                mark: node.mark,
                                path: join(&path, &text),
                                message: format!("duplicate key {text:?}"),
                            });
                            *key = PendingKey::Skip(Some(text));
                        } else {
                            keys.insert(text.clone());
                            *key = PendingKey::Key(text, node.mark);
                        }
                    }
                    _ => {
                        self.flaws.push(Flaw {
                            mark: node.mark,
                            path,
                            message: "mapping keys must be plain names".into(),
                        });
                        *key = PendingKey::Skip(None);
                    }
                },
            },
        }
        Ok(())
    }
}

/// Nodes, bytes (scalars and keys) and depth of `node`'s subtree.
fn measure(node: &Node) -> (usize, usize, usize) {
    let (mut nodes, mut bytes, mut depth) = (0, 0, 0);
    let mut stack = vec![(node, 1)];
    while let Some((node, level)) = stack.pop() {
        nodes += 1;
        depth = depth.max(level);
        match &node.kind {
            Kind::Scalar { text, .. } => bytes += text.len(),
            Kind::Seq(items) => stack.extend(items.iter().map(|n| (n, level + 1))),
            Kind::Map(entries) => {
                for e in entries {
                    bytes += e.key.len();
                    stack.push((&e.value, level + 1));
                }
            }
        }
    }
    (nodes, bytes, depth)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "server:\n  listen: [\"a\", \"b\"]\nroutes:\n  - name: r1\n    service: s\n  - name: r2\n    match:\n      hosts:\n        - x\n";

    fn at(tree: &Tree, path: &str) -> (usize, usize) {
        let m = tree.locate(path);
        (m.line, m.col)
    }

    #[test]
    fn finds_nested_scalars_in_maps_and_sequences() {
        let (t, flaws) = Tree::parse(DOC).unwrap();
        assert!(flaws.is_empty());
        assert_eq!(at(&t, "routes[0].service"), (5, 14));
        assert_eq!(at(&t, "routes[1].name"), (6, 11));
        assert_eq!(at(&t, "routes[1].match.hosts[0]"), (9, 11));
        assert_eq!(at(&t, "server.listen[1]"), (2, 17));
    }

    #[test]
    fn missing_fields_fall_back_to_their_parent() {
        let (t, _) = Tree::parse(DOC).unwrap();
        assert_eq!(at(&t, "routes[0].match.hosts"), at(&t, "routes[0]"));
    }

    #[test]
    fn duplicate_and_complex_keys_are_flaws_and_the_first_value_stays() {
        let (t, flaws) = Tree::parse("a: 1\nb: {x: 1}\na: 2\n? [k]\n: v\n").unwrap();
        let shown: Vec<String> = flaws
            .iter()
            .map(|f| format!("{}:{} {} {}", f.mark.line, f.mark.col, f.path, f.message))
            .collect();
        assert_eq!(
            shown,
            [
                "3:1 a duplicate key \"a\"",
                "4:3  mapping keys must be plain names"
            ]
        );
        let Kind::Map(entries) = &t.root().kind else {
            panic!("a mapping")
        };
        assert_eq!(entries.len(), 2);
        assert!(matches!(&entries[0].value.kind, Kind::Scalar { text, .. } if text == "1"));
    }

    #[test]
    fn aliases_expand_and_quoting_decides_plainness() {
        let (t, _) =
            Tree::parse("base: &b {x: 1}\ncopy: *b\nq: '10'\np: 10\ns: !!str 10\n").unwrap();
        assert_eq!(
            at(&t, "copy.x"),
            (1, 14),
            "an alias carries its anchor's positions"
        );
        let Kind::Map(e) = &t.root().kind else {
            panic!()
        };
        assert!(matches!(
            &e[2].value.kind,
            Kind::Scalar { plain: false, .. }
        ));
        assert!(matches!(&e[3].value.kind, Kind::Scalar { plain: true, .. }));
        assert!(
            matches!(&e[4].value.kind, Kind::Scalar { plain: false, .. }),
            "!!str"
        );
    }

    #[test]
    fn a_dotted_key_is_located_as_one_key() {
        let (t, _) = Tree::parse("services:\n  api:\n    x: 1\n  api.v2:\n    x: 2\n").unwrap();
        assert_eq!(at(&t, "services.api.v2.x"), (5, 8));
        assert_eq!(at(&t, "services.api.x"), (3, 8));
    }

    #[test]
    fn hostile_documents_end_in_an_error() {
        let deep = "[".repeat(300);
        assert!(Tree::parse(&deep).is_err());
        let dashes = "- ".repeat(5_000) + "x\n";
        let err = Tree::parse(&dashes).unwrap_err();
        assert_eq!(err.message, "nested too deeply");
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let p = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(Tree::parse(&bomb)
            .unwrap_err()
            .message
            .contains("too large"));
        // Depth through chained aliases, bytes through one long key copied many times.
        let mut chain = String::from("a0: &a0 [[[[[[[[[[x]]]]]]]]]]\n");
        for i in 1..10 {
            chain.push_str(&format!("a{i}: &a{i} [[[[[[[[[[*a{}]]]]]]]]]]\n", i - 1));
        }
        assert_eq!(
            Tree::parse(&chain).unwrap_err().message,
            "nested too deeply"
        );
        let long = format!(
            "a: &a {{\"{}\": 1}}\nb: [{}]\n",
            "k".repeat(100_000),
            vec!["*a"; 400].join(", ")
        );
        assert!(Tree::parse(&long)
            .unwrap_err()
            .message
            .contains("too large"));
        let flat: String = (0..40_000).map(|i| format!("k{i}: 1\n")).collect();
        let started = std::time::Instant::now();
        assert!(Tree::parse(&flat).is_ok());
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "duplicate check is not quadratic"
        );
        assert!(Tree::parse("a: 1\n---\nb: 2\n").is_err());
        assert!(Tree::parse("a: [1, 2\n").is_err());
    }

    #[test]
    fn an_empty_document_is_an_empty_mapping() {
        let (t, _) = Tree::parse("").unwrap();
        assert!(matches!(&t.root().kind, Kind::Map(e) if e.is_empty()));
        let (t, _) = Tree::parse("# only a comment\n").unwrap();
        assert!(matches!(&t.root().kind, Kind::Map(e) if e.is_empty()));
    }
}
