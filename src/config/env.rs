//! `REGISTRY_*` environment variables, as distribution reads them:
//! `REGISTRY_STORAGE_DELETE_ENABLED=true` sets `storage.delete.enabled`; the value is
//! read as YAML, so `REGISTRY_AUTH=""` clears the whole `auth` section; shorter names
//! apply first, so `REGISTRY_AUTH=""` and `REGISTRY_AUTH_TOKEN_REALM=...` together
//! leave only the realm. A variable that names no key is ignored (a Kubernetes service
//! called "registry" sets `REGISTRY_PORT` and the like), and reported.

use super::tree::{Node, Origin, Value};
use super::{Error, Override};

const PREFIX: &str = "REGISTRY_";

/// The overrides among `vars`, in the order they apply, and the names of the variables
/// that name no configuration key.
pub fn overrides(vars: &[(String, String)]) -> Result<(Vec<Override>, Vec<String>), Error> {
    let mut named: Vec<&(String, String)> = vars
        .iter()
        .filter(|(name, _)| name.starts_with(PREFIX) && name.len() > PREFIX.len())
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let mut changes = Vec::new();
    let mut ignored = Vec::new();
    for (name, value) in named {
        let path: Vec<String> = name[PREFIX.len()..]
            .split('_')
            .map(str::to_ascii_lowercase)
            .collect();
        if path.iter().any(String::is_empty) || !names_a_key(&path) {
            ignored.push(name.clone());
            continue;
        }
        let origin = Origin::Env { var: name.clone() };
        let node = Node::parse_yaml(value, &|_| origin.clone()).map_err(|error| Error::Yaml {
            source_name: format!("environment variable {name}"),
            error,
        })?;
        changes.push(Override::Set { path, node });
    }
    Ok((changes, ignored))
}

/// Whether the model has a key at `path` (or `path` is inside a free-form section):
/// a tree holding only that path, set to null, types without an "unknown key" error.
fn names_a_key(path: &[String]) -> bool {
    let mut probe = Node::empty_map(Origin::Default);
    probe.set(path, Node::new(Value::Null, Origin::Default));
    match super::typed(&probe) {
        Ok(_) => true,
        Err(Error::Invalid { message, .. }) => !message.starts_with("unknown key"),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn variables_become_paths_in_name_order() {
        let (changes, ignored) = overrides(&vars(&[
            ("REGISTRY_AUTH_TOKEN_REALM", "https://console/auth"),
            ("REGISTRY_AUTH", ""),
            ("REGISTRY_SERVICE_HOST", "10.0.0.1"),
            ("REGISTRY_PORT", "tcp://10.0.0.1:5000"),
            ("HOME", "/root"),
        ]))
        .unwrap();
        assert_eq!(ignored, ["REGISTRY_PORT", "REGISTRY_SERVICE_HOST"]);
        let paths: Vec<Vec<String>> = changes
            .iter()
            .map(|c| match c {
                Override::Set { path, .. } => path.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(paths, [vec!["auth"], vec!["auth", "token", "realm"]]);
        let Override::Set { node, .. } = &changes[0] else {
            unreachable!()
        };
        assert!(node.is_null(), "an empty value clears: {node:?}");
    }
}
