//! The listing endpoints: `tags/list`, `_catalog` and `referrers`.

use hyper::StatusCode;
use hyper::header;

use super::{Call, Context, Reply};
use crate::body::ResponseBody;
use crate::errors::{ApiError, ErrorCode};
use crate::manifest::OCI_INDEX;
use crate::names::parse_digest;

/// At most this many repositories per catalog page (distribution's `catalog.maxentries`).
const CATALOG_PAGE: usize = 1000;

/// At most this many tags per page, asked for or not (a tag is at most 128 bytes, so a
/// page stays under 1.5 MB); more follow through `Link`, as the spec allows.
/// distribution sends every tag at once, however many.
const TAGS_PAGE: usize = 10_000;

pub async fn tags(ctx: &Context, name: &str, call: &Call) -> Result<Reply, ApiError> {
    let page = Page::from_query(call, Some(TAGS_PAGE))?;
    if !ctx.store.repository_exists(name).await? {
        return Err(ApiError::new(
            ErrorCode::NameUnknown,
            "repository name not known to registry",
        )
        .with_detail(serde_json::json!({ "name": name })));
    }
    let tags = ctx
        .store
        .list_tags(name, page.last.as_deref(), page.fetch())
        .await?;
    let (tags, link) = page.cut(tags, &format!("/v2/{name}/tags/list"));
    let reply = Reply::new(StatusCode::OK).json(
        &serde_json::json!({ "name": name, "tags": tags }),
        "application/json",
    );
    Ok(with_link(reply, link))
}

pub async fn catalog(ctx: &Context, call: &Call) -> Result<Reply, ApiError> {
    let page = Page::from_query(call, Some(CATALOG_PAGE))?;
    let repos = ctx
        .store
        .list_repositories(page.last.as_deref(), page.fetch())
        .await?;
    let (repos, link) = page.cut(repos, "/v2/_catalog");
    let reply = Reply::new(StatusCode::OK).json(
        &serde_json::json!({ "repositories": repos }),
        "application/json",
    );
    Ok(with_link(reply, link))
}

/// A referrers response stops taking descriptors past this many bytes and names the
/// rest with a `Link`: annotations can make one descriptor large, and a subject can
/// have any number of referrers.
const REFERRERS_PAGE_BYTES: usize = 1 << 20;

/// Referrers read from the index at a time while a page fills.
const REFERRERS_BATCH: usize = 256;

/// `GET /v2/<name>/referrers/<digest>[?artifactType=][&last=<digest>]`.
pub async fn referrers(
    ctx: &Context,
    name: &str,
    digest: &str,
    call: &Call,
) -> Result<Reply, ApiError> {
    let subject = parse_digest(digest)?;
    let filter = call.query("artifactType").filter(|t| !t.is_empty());
    let mut after = call.query("last").map(parse_digest).transpose()?;
    // Each descriptor serialized once: its size decides the page, its text the body.
    let mut manifests: Vec<String> = Vec::new();
    let mut bytes = 0;
    // The last referrer on this page, when more follow.
    let mut next = None;
    'page: loop {
        let (records, more) = ctx
            .store
            .referrers_page(name, &subject, filter, after.as_ref(), REFERRERS_BATCH)
            .await?;
        let mut last_listed = None;
        for record in records {
            let digest = record.digest.to_string();
            let text = descriptor(record).to_string();
            bytes += text.len() + 1;
            if bytes > REFERRERS_PAGE_BYTES && !manifests.is_empty() {
                next = last_listed.or_else(|| after.as_ref().map(ToString::to_string));
                break 'page;
            }
            manifests.push(text);
            last_listed = Some(digest);
        }
        match more {
            Some(last) => after = Some(last),
            None => break,
        }
    }
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        manifests.join(",")
    );
    let mut reply = Reply::new(StatusCode::OK)
        .header(header::CONTENT_TYPE, OCI_INDEX)
        .body(ResponseBody::full(body));
    if filter.is_some() {
        reply = reply.named("oci-filters-applied", "artifactType");
    }
    let link = next.map(|last| {
        let filter = filter.map_or(String::new(), |t| {
            format!("artifactType={}&", crate::route::percent_encode(t))
        });
        format!("</v2/{name}/referrers/{subject}?{filter}last={last}>; rel=\"next\"")
    });
    Ok(with_link(reply, link))
}

/// A referrer as the image index lists it.
fn descriptor(r: lain_store::ManifestRecord) -> serde_json::Value {
    let mut descriptor = serde_json::json!({
        "mediaType": r.meta.media_type,
        "digest": r.digest.to_string(),
        "size": r.size,
    });
    if let Some(artifact_type) = r.meta.artifact_type {
        descriptor["artifactType"] = artifact_type.into();
    }
    if !r.meta.annotations.is_empty() {
        let map: serde_json::Map<String, serde_json::Value> = r
            .meta
            .annotations
            .into_iter()
            .map(|(k, v)| (k, v.into()))
            .collect();
        descriptor["annotations"] = map.into();
    }
    descriptor
}

/// `n` and `last` of a listing.
struct Page {
    /// The page size, if the client asked for one (or a default applies).
    n: Option<usize>,
    last: Option<String>,
}

impl Page {
    fn from_query(call: &Call, max: Option<usize>) -> Result<Page, ApiError> {
        let n = match call.query("n") {
            Some(text) => Some(text.parse::<usize>().map_err(|_| {
                ApiError::new(
                    ErrorCode::PaginationNumberInvalid,
                    format!("invalid number of results requested: {text:?}"),
                )
                .with_detail(serde_json::json!({ "n": text }))
            })?),
            None => max,
        };
        let n = match (n, max) {
            (Some(n), Some(max)) => Some(n.min(max)),
            (n, _) => n,
        };
        let last = call
            .query("last")
            .filter(|l| !l.is_empty())
            .map(str::to_owned);
        Ok(Page { n, last })
    }

    /// How many entries to fetch: one more than the page, to learn whether more follow.
    fn fetch(&self) -> usize {
        self.n.map_or(usize::MAX, |n| n.saturating_add(1))
    }

    /// Cuts `entries` to the page; returns them and the `Link` to the next page.
    fn cut(&self, mut entries: Vec<String>, path: &str) -> (Vec<String>, Option<String>) {
        let Some(n) = self.n else {
            return (entries, None);
        };
        if entries.len() <= n {
            return (entries, None);
        }
        entries.truncate(n);
        let link = entries
            .last()
            .map(|last| format!("<{path}?n={n}&last={last}>; rel=\"next\""));
        (entries, link)
    }
}

fn with_link(reply: Reply, link: Option<String>) -> Reply {
    match link {
        Some(link) => reply.header(header::LINK, link),
        None => reply,
    }
}
