//! Dead bytes per pack: the bytes of records that nothing needs any more, which garbage
//! collection reclaims by compacting the packs with the most of them. A metadata
//! change is needed while the entry it set is still the one it set (the entry records
//! where the change is: its [`Source`]); when a later change replaces or removes that
//! entry, the earlier change's bytes are dead. Deletions and record framing are dead
//! from the start (compaction re-states the deletions that still matter; FORMAT.md).
//! The counts are added to the `usage` family with a merge operator, so concurrent
//! writers never read them.

use std::collections::HashMap;

use crate::change::Change;
use crate::error::Result;
use crate::index::values::{self, Source};
use crate::index::{Batch, Family, Index, keys};
use crate::pack::format::{META_HEADER_LEN, RECORD_TRAILER_LEN};

/// Bytes of a metadata record besides its changes: header, change count, trailer.
pub(crate) const META_FRAMING: u64 = META_HEADER_LEN + 4 + RECORD_TRAILER_LEN;

/// Dead bytes found while staging one index batch.
pub(crate) struct Usage<'a> {
    index: &'a Index,
    /// Sources of entries as the changes accounted so far leave them: read from the
    /// index once ([`Usage::prefetch`] or on first use), then updated in memory, since
    /// the index does not show this batch's changes yet.
    staged: HashMap<(Family, Vec<u8>), Option<Source>>,
    dead: HashMap<u64, u64>,
}

impl<'a> Usage<'a> {
    pub fn new(index: &'a Index) -> Usage<'a> {
        Usage {
            index,
            staged: HashMap::new(),
            dead: HashMap::new(),
        }
    }

    /// Reads the sources of every entry `changes` touch, one batch per family.
    pub fn prefetch<'c>(&mut self, changes: impl Iterator<Item = &'c Change>) -> Result<()> {
        let mut wanted: HashMap<Family, Vec<Vec<u8>>> = HashMap::new();
        for change in changes {
            let (sets, removes) = change.keys();
            for (family, key) in sets.into_iter().chain(removes) {
                if !self.staged.contains_key(&(family, key.clone())) {
                    wanted.entry(family).or_default().push(key);
                }
            }
        }
        for (family, keys) in wanted {
            let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            let found = self.index.get_many(family, &refs)?;
            for (key, value) in keys.into_iter().zip(found) {
                let source = match value {
                    Some(value) => values::decode_source(family, &value)?,
                    None => None,
                };
                self.staged.entry((family, key)).or_insert(source);
            }
        }
        Ok(())
    }

    /// `bytes` of `pack` that are dead from the start.
    pub fn dead(&mut self, pack: u64, bytes: u64) {
        *self.dead.entry(pack).or_default() += bytes;
    }

    /// Accounts for `change`, logged at `source`: whatever the entries it touches were
    /// set by is dead now; the change itself lives on in the entry it sets, if any.
    pub fn change(&mut self, change: &Change, source: Source) -> Result<()> {
        let (sets, removes) = change.keys();
        for (family, key) in sets.iter().chain(&removes) {
            if let Some(prior) = self.current(*family, key)? {
                self.dead(prior.pack, u64::from(prior.bytes));
            }
        }
        match sets {
            Some(key) => {
                self.staged.insert(key, Some(source));
            }
            None => self.dead(source.pack, u64::from(source.bytes)),
        }
        for key in removes {
            self.staged.insert(key, None);
        }
        Ok(())
    }

    /// Where the change that set the entry is, as of the changes accounted so far.
    fn current(&self, family: Family, key: &[u8]) -> Result<Option<Source>> {
        if let Some(staged) = self.staged.get(&(family, key.to_vec())) {
            return Ok(*staged);
        }
        match self.index.get(family, key)? {
            Some(value) => values::decode_source(family, &value),
            None => Ok(None),
        }
    }

    /// Adds the counts to `batch`.
    pub fn stage(self, batch: &mut Batch) {
        for (pack, bytes) in self.dead {
            if bytes > 0 {
                batch.merge(
                    Family::Usage,
                    &keys::pack(pack),
                    &values::encode_dead(bytes),
                );
            }
        }
    }
}
