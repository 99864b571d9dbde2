//! What a request needs from a token (distribution's resource scopes), whether a grant
//! covers it, and the `WWW-Authenticate` challenge that tells a client which token to
//! fetch.

use std::fmt;

use hyper::Method;

use super::token::Access;
use crate::route::Route;

/// `repository:<name>:<actions>` or `registry:catalog:*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub kind: &'static str,
    pub name: String,
    pub actions: Vec<&'static str>,
}

impl Scope {
    fn repository(name: &str, actions: &[&'static str]) -> Scope {
        Scope {
            kind: "repository",
            name: name.to_owned(),
            actions: actions.to_vec(),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }
}

/// What a request needs: every scope in `all`; `mount_source` is the pull on a
/// mount's `from` repository, without which the mount becomes an upload session (as in
/// distribution) instead of failing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Needs {
    pub all: Vec<Scope>,
    pub mount_source: Option<Scope>,
}

const PULL: &[&str] = &["pull"];
const PUSH: &[&str] = &["pull", "push"];
const DELETE: &[&str] = &["delete"];

/// The scopes `method` on `route` needs; `from` is a mount's source repository.
pub fn needs(route: &Route, method: &Method, from: Option<&str>) -> Needs {
    let read = matches!(*method, Method::GET | Method::HEAD);
    let all = match route {
        // Any valid token will do for the version check.
        Route::Base => Vec::new(),
        Route::Catalog => vec![Scope {
            kind: "registry",
            name: "catalog".into(),
            actions: vec!["*"],
        }],
        Route::Tags { name } | Route::Referrers { name, .. } => {
            vec![Scope::repository(name, PULL)]
        }
        Route::Manifest { name, .. } | Route::Blob { name, .. } => {
            let actions = match *method {
                Method::DELETE => DELETE,
                _ if read => PULL,
                _ => PUSH,
            };
            vec![Scope::repository(name, actions)]
        }
        Route::UploadStart { name } | Route::Upload { name, .. } => {
            vec![Scope::repository(name, PUSH)]
        }
    };
    let mount_source = match (route, from) {
        (Route::UploadStart { name }, Some(from)) if from != name => {
            Some(Scope::repository(from, PULL))
        }
        _ => None,
    };
    Needs { all, mount_source }
}

/// Whether `access` (a token's grant) allows `scope`: an entry of the same type and
/// name that lists each action, or `*`.
pub fn allows(access: &[Access], scope: &Scope) -> bool {
    scope.actions.iter().all(|action| {
        access.iter().any(|entry| {
            entry.kind == scope.kind
                && entry.name == scope.name
                && entry.actions.iter().any(|a| a == action || a == "*")
        })
    })
}

/// The repositories `access` lets its bearer pull: where a mount may take blobs from.
pub fn pullable(access: &[Access]) -> Vec<String> {
    access
        .iter()
        .filter(|e| e.kind == "repository" && e.actions.iter().any(|a| a == "pull" || a == "*"))
        .map(|e| e.name.clone())
        .collect()
}

/// Why a challenge is sent: no token, a token that failed its checks, or a valid one
/// that does not reach far enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    Missing,
    InvalidToken,
    InsufficientScope,
}

/// `Bearer realm="...",service="...",scope="..."[,error="..."]`; several scopes are
/// space-joined in one `scope` parameter. Quotes and backslashes in values are
/// escaped, as a quoted-string requires.
pub fn bearer_challenge(realm: &str, service: &str, scopes: &[Scope], problem: Problem) -> String {
    let quoted = |value: &str| value.replace('\\', "\\\\").replace('"', "\\\"");
    let mut challenge = format!(
        "Bearer realm=\"{}\",service=\"{}\"",
        quoted(realm),
        quoted(service)
    );
    if !scopes.is_empty() {
        let joined: Vec<String> = scopes.iter().map(Scope::to_string).collect();
        challenge.push_str(&format!(",scope=\"{}\"", quoted(&joined.join(" "))));
    }
    match problem {
        Problem::Missing => {}
        Problem::InvalidToken => challenge.push_str(",error=\"invalid_token\""),
        Problem::InsufficientScope => challenge.push_str(",error=\"insufficient_scope\""),
    }
    challenge
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str) -> Route {
        Route::parse(path).unwrap_or_else(|| panic!("{path}"))
    }

    fn scopes(path: &str, method: Method, from: Option<&str>) -> Vec<String> {
        let needs = needs(&route(path), &method, from);
        needs
            .all
            .iter()
            .chain(&needs.mount_source)
            .map(Scope::to_string)
            .collect()
    }

    #[test]
    fn each_endpoint_needs_its_scope() {
        let d = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        assert!(scopes("/v2/", Method::GET, None).is_empty());
        assert_eq!(
            scopes("/v2/_catalog", Method::GET, None),
            ["registry:catalog:*"]
        );
        assert_eq!(
            scopes("/v2/lain/app/tags/list", Method::GET, None),
            ["repository:lain/app:pull"]
        );
        assert_eq!(
            scopes(&format!("/v2/a/referrers/{d}"), Method::GET, None),
            ["repository:a:pull"]
        );
        assert_eq!(
            scopes("/v2/a/manifests/v1", Method::HEAD, None),
            ["repository:a:pull"]
        );
        assert_eq!(
            scopes("/v2/a/manifests/v1", Method::PUT, None),
            ["repository:a:pull,push"]
        );
        assert_eq!(
            scopes("/v2/a/manifests/v1", Method::DELETE, None),
            ["repository:a:delete"]
        );
        assert_eq!(
            scopes(&format!("/v2/a/blobs/{d}"), Method::GET, None),
            ["repository:a:pull"]
        );
        assert_eq!(
            scopes(&format!("/v2/a/blobs/{d}"), Method::DELETE, None),
            ["repository:a:delete"]
        );
        assert_eq!(
            scopes("/v2/a/blobs/uploads/", Method::POST, None),
            ["repository:a:pull,push"]
        );
        assert_eq!(
            scopes("/v2/a/blobs/uploads/x", Method::GET, None),
            ["repository:a:pull,push"]
        );
        assert_eq!(
            scopes("/v2/a/blobs/uploads/x", Method::PATCH, None),
            ["repository:a:pull,push"]
        );
        assert_eq!(
            scopes("/v2/a/blobs/uploads/", Method::POST, Some("b")),
            ["repository:a:pull,push", "repository:b:pull"]
        );
    }

    #[test]
    fn grants_cover_exactly_their_names_and_actions() {
        let grant = |kind: &str, name: &str, actions: &[&str]| Access {
            kind: kind.into(),
            name: name.into(),
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        };
        let access = vec![
            grant("repository", "lain/app", &["pull"]),
            grant("repository", "lain/web", &["*"]),
        ];
        let pull = |name: &str| Scope::repository(name, PULL);
        assert!(allows(&access, &pull("lain/app")));
        assert!(!allows(&access, &Scope::repository("lain/app", PUSH)));
        assert!(!allows(&access, &pull("lain/app2")));
        assert!(!allows(&access, &pull("lain")));
        assert!(allows(&access, &Scope::repository("lain/web", PUSH)));
        assert!(allows(&access, &Scope::repository("lain/web", DELETE)));
        let catalog = needs(&route("/v2/_catalog"), &Method::GET, None).all;
        assert!(!allows(&access, &catalog[0]));
        assert!(allows(&[grant("registry", "catalog", &["*"])], &catalog[0]));
        // A repository grant named "catalog" is not the catalog.
        assert!(!allows(
            &[grant("repository", "catalog", &["*"])],
            &catalog[0]
        ));
    }

    #[test]
    fn challenges_name_realm_service_scopes_and_the_error() {
        let scopes = vec![Scope::repository("a", PUSH), Scope::repository("b", PULL)];
        assert_eq!(
            bearer_challenge(
                "https://auth/token",
                "lain.local",
                &scopes,
                Problem::InsufficientScope
            ),
            "Bearer realm=\"https://auth/token\",service=\"lain.local\",scope=\"repository:a:pull,push repository:b:pull\",error=\"insufficient_scope\""
        );
        assert_eq!(
            bearer_challenge("r", "s", &[], Problem::Missing),
            "Bearer realm=\"r\",service=\"s\""
        );
        assert_eq!(
            bearer_challenge("r\"x", "s", &[], Problem::InvalidToken),
            "Bearer realm=\"r\\\"x\",service=\"s\",error=\"invalid_token\""
        );
    }
}
