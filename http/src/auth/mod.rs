//! Authentication and authorization: Docker's token auth (a Bearer JWT from a token
//! server, checked offline against the operator's keys) and, later, htpasswd.

mod der;
pub mod keys;
pub mod scope;
pub mod token;

pub use keys::{KeyError, TokenKeys};
pub use scope::{Needs, Problem, Scope, allows, bearer_challenge, needs};
pub use token::{Access, Grant, TokenError, TokenSettings};
