//! A configuration as its sources give it, before it is typed: a tree of values that
//! each remember where they came from (a line of the file, an etcd key, an environment
//! variable), so that an error, or `registry config check`, can point at the source.
//!
//! Sources are layered: the file is the base, and each later source sets or removes
//! paths in it ([`Node::set`], [`Node::remove`]). The merged tree is then typed by
//! serde through its JSON form ([`Node::to_json`]).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Not set by any source.
    Default,
    File {
        path: Arc<PathBuf>,
        line: u64,
    },
    Etcd {
        key: String,
    },
    Env {
        var: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File { path, line } => write!(f, "{}, line {line}", path.display()),
            Origin::Etcd { key } => write!(f, "etcd key {key}"),
            Origin::Env { var } => write!(f, "environment variable {var}"),
        }
    }
}

/// One value of the tree and its origin.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Node>),
    /// In source order; keys compare without regard to case (as distribution's
    /// environment overrides match keys).
    Map(Vec<(String, Node)>),
}

/// Why a YAML text could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct YamlError(Box<serde_saphyr::Error>);

impl Node {
    pub fn new(value: Value, origin: Origin) -> Node {
        Node { value, origin }
    }

    pub fn empty_map(origin: Origin) -> Node {
        Node::new(Value::Map(Vec::new()), origin)
    }

    /// Parses a YAML text; `origin` turns a 1-based line into the origin of the value
    /// on it.
    pub fn parse_yaml(text: &str, origin: &dyn Fn(u64) -> Origin) -> Result<Node, YamlError> {
        let raw: Raw = serde_saphyr::from_str(text).map_err(|e| YamlError(Box::new(e)))?;
        Ok(raw.into_node(origin))
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// The node at `path` (keys matched without regard to case, list items by their
    /// index).
    pub fn get(&self, path: &[&str]) -> Option<&Node> {
        let Some((first, rest)) = path.split_first() else {
            return Some(self);
        };
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(first))
                .and_then(|(_, node)| node.get(rest)),
            Value::List(items) => first
                .parse::<usize>()
                .ok()
                .and_then(|i| items.get(i))
                .and_then(|node| node.get(rest)),
            _ => None,
        }
    }

    /// The origin of `path`, or of the nearest of its ancestors that exists.
    pub fn origin_of(&self, path: &[&str]) -> Origin {
        (0..=path.len())
            .rev()
            .find_map(|n| self.get(&path[..n]).map(|node| node.origin.clone()))
            .unwrap_or(Origin::Default)
    }

    /// Puts `node` at `path`, making the mappings on the way (a scalar or null on the
    /// way is replaced by a mapping).
    pub fn set(&mut self, path: &[String], node: Node) {
        let Some((first, rest)) = path.split_first() else {
            *self = node;
            return;
        };
        if !matches!(self.value, Value::Map(_)) {
            *self = Node::empty_map(node.origin.clone());
        }
        let Value::Map(entries) = &mut self.value else {
            return;
        };
        match entries
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(first))
        {
            Some((_, child)) => child.set(rest, node),
            None => {
                let mut child = Node::new(Value::Null, node.origin.clone());
                child.set(rest, node);
                entries.push((first.clone(), child));
            }
        }
    }

    /// Removes the value at `path`, if there is one.
    pub fn remove(&mut self, path: &[&str]) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        if let Value::Map(entries) = &mut self.value {
            if rest.is_empty() {
                entries.retain(|(k, _)| !k.eq_ignore_ascii_case(first));
            } else if let Some((_, child)) = entries
                .iter_mut()
                .find(|(k, _)| k.eq_ignore_ascii_case(first))
            {
                child.remove(rest);
            }
        }
    }

    /// Lays `over` on this tree: mappings merge key by key, anything else replaces.
    pub fn merge(&mut self, over: Node) {
        match (&mut self.value, over.value) {
            (Value::Map(entries), Value::Map(over_entries)) => {
                for (key, node) in over_entries {
                    match entries
                        .iter_mut()
                        .find(|(k, _)| k.eq_ignore_ascii_case(&key))
                    {
                        Some((_, child)) => child.merge(node),
                        None => entries.push((key, node)),
                    }
                }
            }
            (_, value) => {
                *self = Node {
                    value,
                    origin: over.origin,
                }
            }
        }
    }

    /// The tree as JSON, which serde types into the configuration model. Keys are
    /// lower-cased (distribution's keys are all lower case; an environment override
    /// names them in upper case).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::List(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// The value as an operator would write it in YAML, on one line.
    pub fn display_value(&self) -> String {
        match &self.value {
            Value::Null => "~".to_owned(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Str(s) => serde_json::Value::String(s.clone()).to_string(),
            Value::List(_) => "[]".to_owned(),
            Value::Map(_) => "{}".to_owned(),
        }
    }
}

/// A YAML value with the line each value (for a mapping entry: its key) is on.
struct Raw {
    line: u64,
    value: RawValue,
}

enum RawValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Raw>),
    Map(Vec<(Spanned<String>, Raw)>),
}

impl Raw {
    fn into_node(self, origin: &dyn Fn(u64) -> Origin) -> Node {
        let value = match self.value {
            RawValue::Null => Value::Null,
            RawValue::Bool(b) => Value::Bool(b),
            RawValue::Int(i) => Value::Int(i),
            RawValue::Float(f) => Value::Float(f),
            RawValue::Str(s) => Value::Str(s),
            RawValue::List(items) => {
                Value::List(items.into_iter().map(|r| r.into_node(origin)).collect())
            }
            RawValue::Map(entries) => Value::Map(
                entries
                    .into_iter()
                    .map(|(key, raw)| {
                        let line = key.referenced.line();
                        let mut node = raw.into_node(origin);
                        // A mapping entry is found by its key's line.
                        node.origin = origin(line);
                        (key.value, node)
                    })
                    .collect(),
            ),
        };
        Node::new(value, origin(self.line))
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Raw, D::Error> {
        let spanned = Spanned::<RawValue>::deserialize(deserializer)?;
        Ok(Raw {
            line: spanned.referenced.line(),
            value: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawValue, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<RawValue, E> {
        Ok(RawValue::Null)
    }

    fn visit_none<E>(self) -> Result<RawValue, E> {
        Ok(RawValue::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<RawValue, D::Error> {
        RawValue::deserialize(deserializer)
    }

    fn visit_bool<E>(self, v: bool) -> Result<RawValue, E> {
        Ok(RawValue::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<RawValue, E> {
        Ok(RawValue::Int(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawValue, E> {
        i64::try_from(v)
            .map(RawValue::Int)
            .map_err(|_| E::custom(format!("the integer {v} is out of range")))
    }

    fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<RawValue, E> {
        i64::try_from(v)
            .map(RawValue::Int)
            .map_err(|_| E::custom(format!("the integer {v} is out of range")))
    }

    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<RawValue, E> {
        i64::try_from(v)
            .map(RawValue::Int)
            .map_err(|_| E::custom(format!("the integer {v} is out of range")))
    }

    fn visit_f64<E>(self, v: f64) -> Result<RawValue, E> {
        Ok(RawValue::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<RawValue, E> {
        Ok(RawValue::Str(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<RawValue, E> {
        Ok(RawValue::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Raw>()? {
            items.push(item);
        }
        Ok(RawValue::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawValue, A::Error> {
        let mut entries: Vec<(Spanned<String>, Raw)> = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<Raw>()?;
            if entries
                .iter()
                .any(|(k, _)| k.value.eq_ignore_ascii_case(&key.value))
            {
                return Err(serde::de::Error::custom(format!(
                    "the key {:?} appears twice (line {})",
                    key.value,
                    key.referenced.line()
                )));
            }
            entries.push((key, value));
        }
        Ok(RawValue::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Node {
        let path = Arc::new(PathBuf::from("config.yml"));
        Node::parse_yaml(text, &|line| Origin::File {
            path: path.clone(),
            line,
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn line(node: &Node, path: &[&str]) -> u64 {
        match node.origin_of(path) {
            Origin::File { line, .. } => line,
            other => panic!("{path:?} comes from {other}"),
        }
    }

    #[test]
    fn values_know_their_lines() {
        let tree =
            file("version: 0.1\nstorage:\n  delete:\n    enabled: true\nhttp:\n  addr: :5000\n");
        assert_eq!(line(&tree, &["version"]), 1);
        assert_eq!(line(&tree, &["storage"]), 2);
        assert_eq!(line(&tree, &["storage", "delete", "enabled"]), 4);
        assert_eq!(line(&tree, &["http", "addr"]), 6);
        // A missing key is placed at its nearest ancestor.
        assert_eq!(line(&tree, &["http", "tls", "key"]), 5);
    }

    #[test]
    fn set_remove_and_merge() {
        let mut tree = file("auth:\n  token:\n    realm: a\n    rootcertbundle: /b\n");
        let env = Origin::Env { var: "X".into() };
        tree.set(
            &["AUTH".into(), "Token".into(), "realm".into()],
            Node::new(Value::Str("c".into()), env.clone()),
        );
        assert_eq!(
            tree.get(&["auth", "token", "realm"]).map(|n| &n.value),
            Some(&Value::Str("c".into()))
        );
        assert_eq!(tree.origin_of(&["auth", "token", "realm"]), env);
        tree.remove(&["auth", "token"]);
        assert_eq!(tree.get(&["auth", "token"]), None);
        tree.set(
            &["auth".into()],
            Node::new(Value::Null, Origin::Env { var: "Y".into() }),
        );
        assert!(tree.get(&["auth"]).is_some_and(Node::is_null));
        tree.merge(file("auth:\n  htpasswd:\n    realm: r\n"));
        assert_eq!(
            tree.to_json(),
            serde_json::json!({"auth": {"htpasswd": {"realm": "r"}}})
        );
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = Node::parse_yaml("a: 1\nA: 2\n", &|_| Origin::Default)
            .expect_err("duplicate")
            .to_string();
        assert!(e.contains("appears twice"), "{e}");
    }
}
