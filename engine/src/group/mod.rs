//! Group commit: every change of repository metadata, and every blob whose bytes are
//! all in memory at commit time (small blobs, manifests), goes through here. Concurrent
//! commits are written to one shared pack with one `writev` (their blob records, then
//! their changes in one metadata record, or several when they would exceed a record's
//! size limit), made durable with one `fdatasync`, and indexed with one RocksDB write
//! (not synced: the pack is the log).
//!
//! Groups are written one at a time, and each of its metadata records takes the next
//! sequence number while no other group is in flight: the order of sequence numbers is
//! the order in which the index applied the changes, which is what lets a rebuild
//! replay the log into the same index.
//!
//! Leader/follower: a committer queues its record; if no group is being written, it
//! becomes the leader, takes everything queued, writes it, and publishes each record's
//! outcome. Commits that arrive while a group is in flight queue up and form the next
//! group, so the more commits wait, the more each sync is shared.

pub(crate) mod queue;

use std::collections::HashMap;
use std::io::{self, IoSlice};
use std::sync::atomic::Ordering;

use crate::change::{self, Change};
use crate::engine::Core;
use crate::error::{Error, Result};
use crate::index::values::Source;
use crate::index::{Batch, Family, keys, values};
use crate::pack::format::{META_MAX_BODY, RECORD_HEADER_LEN, RECORD_OVERHEAD, encode_meta_record};
use crate::pack::{Location, PackWriter};
use crate::sync::lock;
use crate::usage::{META_FRAMING, Usage};
use queue::{GroupCommit, Queued, State};
pub(crate) use queue::{GroupEntry, Restate, SmallBlob};

impl Core {
    /// Makes `entry` durable and visible, sharing the write and syncs with concurrent
    /// callers.
    pub(crate) fn group_commit(&self, entry: GroupEntry) -> Result<()> {
        let (encoded, sizes) = change::encode_list(&entry.changes);
        // One entry's changes go in one record (they are one atomic change).
        // With the change count in front.
        let body = encoded.len() as u64 + 4;
        if body > u64::from(META_MAX_BODY) {
            return Err(Error::MetadataTooLarge {
                bytes: body,
                limit: META_MAX_BODY,
            });
        }
        let queued = Queued {
            entry,
            encoded,
            sizes,
        };
        debug_assert!(queued.entry.restate.is_none() || queued.entry.changes.is_empty());
        let group = &self.group;
        let mut state = lock(&group.state);
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queue.push((ticket, queued));
        loop {
            if let Some(outcome) = state.outcomes.remove(&ticket) {
                return outcome;
            }
            if !state.leader_active {
                state.leader_active = true;
                let (tickets, records): (Vec<u64>, Vec<Queued>) =
                    std::mem::take(&mut state.queue).into_iter().unzip();
                let pack = state.pack.take();
                drop(state);
                let mut duty = LeaderDuty {
                    group,
                    tickets,
                    done: false,
                };
                let (pack, outcome) = self.write_group(pack, records);
                state = lock(&group.state);
                state.pack = pack;
                duty.hand_over(&mut state, &outcome);
                continue;
            }
            state = group
                .finished
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Writes one group: every record in one vectored append, one fdatasync, one
    /// index write. Returns the pack to keep for the next group (none once sealed or
    /// after a failure, when the uncommitted bytes have been cut off).
    fn write_group(
        &self,
        pack: Option<PackWriter>,
        entries: Vec<Queued>,
    ) -> (Option<PackWriter>, Result<()>) {
        let mut writer = match pack {
            Some(writer) => writer,
            None => match self.lease_pack() {
                Ok(writer) => writer,
                Err(e) => return (None, Err(e)),
            },
        };
        let (batch, end) = match self.write_group_to(&mut writer, entries) {
            Ok(written) => written,
            Err(e) => {
                // Nothing was indexed: cut the group's bytes off.
                self.packs.release(writer);
                return (None, Err(e));
            }
        };
        // Not synced: the pack is, and it is the log. After a power cut, opening rolls
        // the index forward to the packs (`rollforward.rs`).
        let indexed = self.index.apply(batch);
        (self.packs.settle(writer, end, indexed.is_ok()), indexed)
    }

    /// Appends and syncs the group's records; returns the index batch that commits
    /// them and the pack's new committed length.
    fn write_group_to(
        &self,
        writer: &mut PackWriter,
        mut entries: Vec<Queued>,
    ) -> Result<(Batch, u64)> {
        // Re-statements first: they are read from the index as the groups before this
        // one left it, so they must be applied before this group's own changes.
        entries.sort_by_key(|q| q.entry.restate.is_none());
        for queued in &mut entries {
            if let Some(restate) = queued.entry.restate.take() {
                queued.entry.changes = self.resolve(&restate)?;
                (queued.encoded, queued.sizes) = change::encode_list(&queued.entry.changes);
            }
        }
        let blobs: Vec<&SmallBlob> = entries
            .iter()
            .filter_map(|q| q.entry.blob.as_ref())
            .collect();
        let headers: Vec<_> = blobs.iter().map(|b| b.header.encode()).collect();
        let trailers: Vec<_> = blobs.iter().map(|b| b.crc.to_le_bytes()).collect();
        let mut bufs = Vec::new();
        let mut batch = Batch::default();
        let mut offset = writer.end();
        for (i, blob) in blobs.iter().enumerate() {
            bufs.push(IoSlice::new(&headers[i]));
            bufs.extend(blob.data.iter().map(|d| IoSlice::new(d)));
            bufs.push(IoSlice::new(&trailers[i]));
            let loc = Location {
                pack: writer.id,
                offset: offset + RECORD_HEADER_LEN,
                length: blob.header.length,
                crc: blob.crc,
            };
            offset += RECORD_OVERHEAD + blob.header.length;
            batch.put(
                Family::Blobs,
                &keys::blob(&blob.header.digest),
                &values::encode_location(&loc),
            );
        }
        // The changes, in entry order, in as few metadata records as the body limit
        // allows; each record takes the next sequence number.
        let logged: Vec<&Queued> = entries.iter().filter(|q| !q.sizes.is_empty()).collect();
        let mut usage = Usage::new(&self.index);
        usage.prefetch(logged.iter().flat_map(|q| &q.entry.changes))?;
        let mut meta_records = Vec::new();
        let mut start = 0;
        while start < logged.len() {
            let mut end = start;
            let mut len = 4u64;
            while end < logged.len()
                && (end == start
                    || len + logged[end].encoded.len() as u64 <= u64::from(META_MAX_BODY))
            {
                len += logged[end].encoded.len() as u64;
                end += 1;
            }
            let part = &logged[start..end];
            let count: usize = part.iter().map(|q| q.sizes.len()).sum();
            let mut body = Vec::with_capacity(len as usize);
            body.extend_from_slice(&u32::try_from(count).unwrap_or(u32::MAX).to_le_bytes());
            for queued in part {
                body.extend_from_slice(&queued.encoded);
            }
            let sequence = self.next_sequence();
            usage.dead(writer.id, META_FRAMING);
            for queued in part {
                for (change, &bytes) in queued.entry.changes.iter().zip(&queued.sizes) {
                    let source = Source {
                        pack: writer.id,
                        bytes,
                    };
                    change.stage(&mut batch, source);
                    usage.change(change, source)?;
                }
            }
            batch.put(
                Family::State,
                keys::SEQUENCE,
                &values::encode_sequence(sequence),
            );
            meta_records.push(encode_meta_record(sequence, &body));
            start = end;
        }
        usage.stage(&mut batch);
        for record in &meta_records {
            bufs.push(IoSlice::new(record));
            offset += record.len() as u64;
        }
        if !bufs.is_empty() {
            writer.append(&bufs)?;
            drop(bufs);
            writer.sync()?;
            self.stats.pack_syncs.fetch_add(1, Ordering::Relaxed);
            self.stage_pack(&mut batch, writer.id, offset);
        }
        drop(logged);
        for queued in entries {
            batch.extend(queued.entry.side);
        }
        Ok((batch, offset))
    }
}

impl Core {
    /// Takes pack `id` from the group commit if it is the pack groups append to and no
    /// group is being written, so a compaction can have it; the next group leases
    /// another.
    pub(crate) fn surrender_group_pack(&self, id: u64) -> Option<PackWriter> {
        let mut state = lock(&self.group.state);
        if state.pack.as_ref().is_some_and(|w| w.id == id) {
            state.pack.take()
        } else {
            None
        }
    }

    /// The changes that re-state `restate`'s keys as the index has them now: a put for
    /// each entry whose change is in the packs being compacted, and the deletion again
    /// for each deleted key that is still absent.
    fn resolve(&self, restate: &Restate) -> Result<Vec<Change>> {
        let mut by_family: HashMap<Family, Vec<usize>> = HashMap::new();
        for (i, ((family, _), _)) in restate.keys.iter().enumerate() {
            by_family.entry(*family).or_default().push(i);
        }
        let mut current: Vec<Option<Vec<u8>>> = vec![None; restate.keys.len()];
        for (family, at) in &by_family {
            let keys: Vec<&[u8]> = at.iter().map(|&i| restate.keys[i].0.1.as_slice()).collect();
            for (&i, value) in at.iter().zip(self.index.get_many(*family, &keys)?) {
                current[i] = value;
            }
        }
        let mut out = Vec::new();
        for (((family, key), deletion), value) in restate.keys.iter().zip(current) {
            match (value, deletion) {
                (Some(value), _) => {
                    let here = *family == Family::Repos
                        || values::decode_source(*family, &value)?
                            .is_some_and(|s| restate.from.contains(&s.pack));
                    if here {
                        out.extend(Change::restating(*family, key, &value)?);
                    }
                }
                (None, Some(deletion)) => {
                    out.push(deletion.clone());
                    // A manifest delete also removes its link: if the repository has
                    // linked the same digest again since, state that link after it.
                    if let Change::ManifestDelete { repo, digest, .. } = deletion {
                        let link = keys::repo_digest(repo, digest);
                        if let Some(value) = self.index.get(Family::Links, &link)? {
                            out.extend(Change::restating(Family::Links, &link, &value)?);
                        }
                    }
                }
                (None, None) => {}
            }
        }
        Ok(out)
    }
}

/// The leader's obligation to answer every ticket it took and to step down. If the
/// leader unwinds before doing so, dropping this answers them with an error, so no
/// follower waits forever.
struct LeaderDuty<'a> {
    group: &'a GroupCommit,
    tickets: Vec<u64>,
    done: bool,
}

impl LeaderDuty<'_> {
    fn hand_over(&mut self, state: &mut State, outcome: &Result<()>) {
        for ticket in &self.tickets {
            let own = match outcome {
                Ok(()) => Ok(()),
                Err(e) => Err(replicate(e)),
            };
            state.outcomes.insert(*ticket, own);
        }
        state.leader_active = false;
        self.done = true;
        self.group.finished.notify_all();
    }
}

impl Drop for LeaderDuty<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let failed: Result<()> = Err(Error::Io {
            op: "group commit",
            path: Default::default(),
            source: io::Error::other("the group's leader failed unexpectedly"),
        });
        let mut state = lock(&self.group.state);
        self.hand_over(&mut state, &failed);
    }
}

/// The group's failure, once for each member (errors are not `Clone`: I/O errors are
/// re-created with their kind and message).
fn replicate(e: &Error) -> Error {
    match e {
        Error::Io { op, path, source } => Error::Io {
            op,
            path: path.clone(),
            source: io::Error::new(source.kind(), source.to_string()),
        },
        Error::Index(inner) => Error::Index(inner.clone()),
        Error::StorageFull { detail } => Error::StorageFull {
            detail: detail.clone(),
        },
        Error::CorruptPack { pack, detail } => Error::CorruptPack {
            pack: *pack,
            detail: detail.clone(),
        },
        other => Error::Io {
            op: "group commit",
            path: Default::default(),
            source: io::Error::other(other.to_string()),
        },
    }
}
