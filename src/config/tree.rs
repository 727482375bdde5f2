//! The YAML text as a tree of located nodes: every scalar, sequence and mapping knows its line
//! and column, and every mapping key its own. The configuration is deserialized from this tree
//! (see `de.rs`), so every error — a type mismatch, an unknown key, a bad duration, a
//! reference that resolves to nothing — can point at the node it is about.
//!
//! The parser is driven event by event with an explicit stack (never recursively), and the
//! tree is bounded in depth and in size (alias expansion included), so hostile input ends in an
//! error rather than a stack overflow or an exponential blow-up.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Deepest nesting accepted (the configuration schema needs fewer than ten levels).
const MAX_DEPTH: usize = 100;
/// Most nodes a document may expand to, aliases included.
const MAX_NODES: usize = 200_000;

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

/// A parsed document with an index from field paths to positions.
#[derive(Debug)]
pub struct Tree {
    root: Node,
    positions: HashMap<String, Mark>,
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
        let mut positions = HashMap::new();
        index(&root, String::new(), &mut positions);
        Ok((Tree { root, positions }, builder.flaws))
    }

    /// The document's top node (an empty mapping for an empty document).
    pub fn root(&self) -> &Node {
        &self.root
    }

    /// Where `path` is written, or its nearest written ancestor, or the document start.
    pub fn locate(&self, path: &str) -> Mark {
        let mut p = path;
        loop {
            if let Some(mark) = self.positions.get(p) {
                return *mark;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => {
                    return self
                        .positions
                        .get("")
                        .copied()
                        .unwrap_or(Mark { line: 1, col: 1 })
                }
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

/// Records the position of `node` and of everything below it.
fn index(node: &Node, path: String, out: &mut HashMap<String, Mark>) {
    let mut stack = vec![(node, path)];
    while let Some((node, path)) = stack.pop() {
        match &node.kind {
            Kind::Scalar { .. } => {}
            Kind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    stack.push((item, format!("{path}[{i}]")));
                }
            }
            Kind::Map(entries) => {
                for e in entries {
                    stack.push((&e.value, join(&path, &e.key)));
                }
            }
        }
        out.insert(path, node.mark);
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
        key: PendingKey,
    },
}

/// What a mapping expects next.
enum PendingKey {
    /// A key.
    None,
    /// The value of this key.
    Key(String, Mark),
    /// The value of a key that was refused; it is dropped.
    Skip,
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    documents: usize,
    nodes: usize,
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
                let plain = style == TScalarStyle::Plain
                    && !tag.is_some_and(|t| t.handle == "!!" && t.suffix == "str");
                self.count(1, mark)?;
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
                let Some(node) = self.anchors.get(&id).cloned() else {
                    return Err(self.fatal(mark, "alias to an unknown anchor"));
                };
                self.count(size(&node), mark)?;
                self.push(node)?;
            }
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
        }
        Ok(Step::More)
    }

    fn open(&mut self, mark: Mark) -> Result<(), Flaw> {
        self.count(1, mark)?;
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.fatal(mark, "nested too deeply"));
        }
        Ok(())
    }

    fn count(&mut self, n: usize, mark: Mark) -> Result<(), Flaw> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
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
                    key: PendingKey::Key(k, _),
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
            Frame::Map { entries, key, .. } => match std::mem::replace(key, PendingKey::None) {
                PendingKey::Key(k, key_mark) => entries.push(Entry {
                    key: k,
                    key_mark,
                    value: node,
                }),
                PendingKey::Skip => {}
                PendingKey::None => match node.kind {
                    Kind::Scalar { text, .. } => {
                        if entries.iter().any(|e| e.key == text) {
                            self.flaws.push(Flaw {
                                mark: node.mark,
                                path: join(&path, &text),
                                message: format!("duplicate key {text:?}"),
                            });
                            *key = PendingKey::Skip;
                        } else {
                            *key = PendingKey::Key(text, node.mark);
                        }
                    }
                    _ => {
                        self.flaws.push(Flaw {
                            mark: node.mark,
                            path,
                            message: "mapping keys must be plain names".into(),
                        });
                        *key = PendingKey::Skip;
                    }
                },
            },
        }
        Ok(())
    }
}

/// Nodes in `node`'s subtree.
fn size(node: &Node) -> usize {
    let mut n = 0;
    let mut stack = vec![node];
    while let Some(node) = stack.pop() {
        n += 1;
        match &node.kind {
            Kind::Scalar { .. } => {}
            Kind::Seq(items) => stack.extend(items),
            Kind::Map(entries) => stack.extend(entries.iter().map(|e| &e.value)),
        }
    }
    n
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
        let (t, _) = Tree::parse("base: &b {x: 1}\ncopy: *b\nq: '10'\np: 10\n").unwrap();
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
