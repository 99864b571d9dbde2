//! Where everything lives: etcd keys under the configured prefix, object keys under the
//! bucket's root directory. Repository names never contain `@` (the protocol's grammar),
//! so `<repo>@` ends a repository's part of a key, and no repository's keys are a prefix
//! of another's. `OPERATIONS.md` ("Cluster mode") lists the layout for operators.
//!
//! etcd, under `<prefix>`:
//! ```text
//! blob/<digest>                      BlobRecord: size, state (live, deleting), when made
//! linked/<digest>/<repo>             "" : repo links the blob (the reverse of link/)
//! repo/<repo>@link/<digest>          when linked (ms): repo may read the blob
//! repo/<repo>@manifest/<digest>      ManifestEntry: size, media type, references, ...
//! repo/<repo>@tag/<tag>              the tagged manifest's digest
//! repo/<repo>@referrer/<subject>/<digest>  "" : a manifest whose subject is <subject>
//! repo/<repo>@ref/<blob>/<manifest>  "" : a manifest of repo references the blob
//! repos/<repo>                       "" : the repository exists (the catalog)
//! upload/<id>                        SessionRecord: an upload session
//! owner/<client>/<id>                "" : a session the client address opened
//! writer/<id>                        the instance writing session <id> (its lease)
//! collector                          the collection lock (etcd's lock API)
//! secret                             the instances' shared upload-location secret,
//!                                    when http.secret does not give one
//! ```
//! Bucket, under `<rootdirectory>/`:
//! ```text
//! blobs/<algorithm>/<hex>            a blob's (or a manifest's) bytes, immutable
//! uploads/<id>/data                  a finished multipart upload, before its copy
//! uploads/<id>/tail-<name>           bytes staged between requests (below a part)
//! ```

use lain_store::Digest;

#[derive(Debug, Clone)]
pub struct Layout {
    prefix: String,
    root: String,
}

impl Layout {
    /// `prefix` for etcd keys (`/lain-registry/` by default), `root` for object keys
    /// (may be empty).
    pub fn new(prefix: &str, root: &str) -> Layout {
        let mut prefix = prefix.to_owned();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        let root = root.trim_matches('/').to_owned();
        Layout { prefix, root }
    }

    fn key(&self, rest: std::fmt::Arguments<'_>) -> String {
        format!("{}{rest}", self.prefix)
    }

    pub fn blob(&self, digest: &Digest) -> String {
        self.key(format_args!("blob/{digest}"))
    }

    pub fn blobs(&self) -> String {
        self.key(format_args!("blob/"))
    }

    pub fn linked(&self, digest: &Digest) -> String {
        self.key(format_args!("linked/{digest}/"))
    }

    pub fn linked_by(&self, digest: &Digest, repo: &str) -> String {
        self.key(format_args!("linked/{digest}/{repo}"))
    }

    pub fn repo(&self, repo: &str) -> String {
        self.key(format_args!("repo/{repo}@"))
    }

    pub fn link(&self, repo: &str, digest: &Digest) -> String {
        self.key(format_args!("repo/{repo}@link/{digest}"))
    }

    pub fn links(&self, repo: &str) -> String {
        self.key(format_args!("repo/{repo}@link/"))
    }

    pub fn manifest(&self, repo: &str, digest: &Digest) -> String {
        self.key(format_args!("repo/{repo}@manifest/{digest}"))
    }

    pub fn manifests(&self, repo: &str) -> String {
        self.key(format_args!("repo/{repo}@manifest/"))
    }

    pub fn tag(&self, repo: &str, tag: &str) -> String {
        self.key(format_args!("repo/{repo}@tag/{tag}"))
    }

    pub fn tags(&self, repo: &str) -> String {
        self.key(format_args!("repo/{repo}@tag/"))
    }

    pub fn referrer(&self, repo: &str, subject: &Digest, digest: &Digest) -> String {
        self.key(format_args!("repo/{repo}@referrer/{subject}/{digest}"))
    }

    pub fn referrers(&self, repo: &str, subject: &Digest) -> String {
        self.key(format_args!("repo/{repo}@referrer/{subject}/"))
    }

    pub fn reference(&self, repo: &str, blob: &Digest, manifest: &Digest) -> String {
        self.key(format_args!("repo/{repo}@ref/{blob}/{manifest}"))
    }

    pub fn references_to(&self, repo: &str, blob: &Digest) -> String {
        self.key(format_args!("repo/{repo}@ref/{blob}/"))
    }

    pub fn repository(&self, repo: &str) -> String {
        self.key(format_args!("repos/{repo}"))
    }

    pub fn repositories(&self) -> String {
        self.key(format_args!("repos/"))
    }

    pub fn session(&self, id: &str) -> String {
        self.key(format_args!("upload/{id}"))
    }

    pub fn sessions(&self) -> String {
        self.key(format_args!("upload/"))
    }

    pub fn owned(&self, owner: &str) -> String {
        self.key(format_args!("owner/{owner}/"))
    }

    pub fn owned_session(&self, owner: &str, id: &str) -> String {
        self.key(format_args!("owner/{owner}/{id}"))
    }

    pub fn writer(&self, id: &str) -> String {
        self.key(format_args!("writer/{id}"))
    }

    pub fn secret(&self) -> String {
        self.key(format_args!("secret"))
    }

    pub fn collector(&self) -> String {
        self.key(format_args!("collector"))
    }

    fn object(&self, rest: std::fmt::Arguments<'_>) -> object_store::path::Path {
        let path = if self.root.is_empty() {
            rest.to_string()
        } else {
            format!("{}/{rest}", self.root)
        };
        object_store::path::Path::from(path)
    }

    pub fn blob_object(&self, digest: &Digest) -> object_store::path::Path {
        self.object(format_args!(
            "blobs/{}/{}",
            digest.algorithm().name(),
            digest.hex()
        ))
    }

    pub fn upload_object(&self, id: &str) -> object_store::path::Path {
        self.object(format_args!("uploads/{id}/data"))
    }

    pub fn tail_object(&self, id: &str, name: &str) -> object_store::path::Path {
        self.object(format_args!("uploads/{id}/tail-{name}"))
    }

    pub fn upload_objects(&self, id: &str) -> object_store::path::Path {
        self.object(format_args!("uploads/{id}"))
    }

    pub fn uploads_objects(&self) -> object_store::path::Path {
        self.object(format_args!("uploads"))
    }
}

/// The end of the range of keys that start with `prefix` (etcd's range end).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The first key after `key`.
pub fn after(key: &str) -> Vec<u8> {
    let mut next = key.as_bytes().to_vec();
    next.push(0);
    next
}
