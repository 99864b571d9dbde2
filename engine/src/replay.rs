//! Replaying metadata records: what a rebuild and the roll-forward at open both do with
//! the records they find, in the one order that reproduces the index (sequence order).

use std::collections::HashMap;
use std::ops::Range;

use bytes::Bytes;

use crate::change::{self, Change};
use crate::error::Result;
use crate::index::values::Source;
use crate::pack::format::META_HEADER_LEN;

/// A metadata record found in a pack: its sequence number and where its body is.
pub(crate) struct MetaAt {
    pub sequence: u64,
    pub pack: u64,
    pub body: Range<u64>,
}

impl MetaAt {
    /// Offset of the record (its header) in its pack.
    pub fn offset(&self) -> u64 {
        self.body.start - META_HEADER_LEN
    }
}

/// Applies `metas` in sequence order (ties, which a correct writer never makes, by
/// pack and offset): `apply` gets each record and its changes, each with its source. `maps` holds the packs' bytes. Returns the records whose body does
/// not parse (written by a newer version?), which are not applied.
pub(crate) fn replay(
    mut metas: Vec<MetaAt>,
    maps: &HashMap<u64, Bytes>,
    mut apply: impl FnMut(&MetaAt, &[(Change, Source)]) -> Result<()>,
) -> Result<Vec<MetaAt>> {
    metas.sort_by_key(|m| (m.sequence, m.pack, m.body.start));
    let mut unreadable = Vec::new();
    for meta in metas {
        let body = maps.get(&meta.pack).and_then(|map| {
            map.get(usize::try_from(meta.body.start).ok()?..usize::try_from(meta.body.end).ok()?)
        });
        let Some(changes) = body.and_then(change::decode_sized) else {
            unreadable.push(meta);
            continue;
        };
        let changes: Vec<(Change, Source)> = changes
            .into_iter()
            .map(|(change, bytes)| {
                let source = Source {
                    pack: meta.pack,
                    bytes,
                };
                (change, source)
            })
            .collect();
        apply(&meta, &changes)?;
    }
    Ok(unreadable)
}
