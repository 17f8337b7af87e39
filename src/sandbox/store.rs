//! The in-memory task store: one shard per process (conv), each behind its own lock.
//!
//! In: validated operations (already parsed, outside any lock). Out: the stored tasks,
//! found by `ref` or `obj_id`, and [`Task`] copies for tests and `--dump`.
//!
//! A shard keeps its tasks in creation order (so dumps are stable), with an index by ref;
//! obj_ids grow within a shard, so they are found by binary search. Task data stays the raw JSON text it arrived as: creating a task
//! copies bytes and never builds a `serde_json::Value` tree; only `modify` parses, to merge.

use hashbrown::hash_table::{Entry, HashTable};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// A stored task, as `Sandbox::tasks` and `GET /__sandbox/tasks` give it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub conv_id: u64,
    #[serde(rename = "ref")]
    pub ref_: Option<String>,
    pub obj_id: String,
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// A task id: 12 bytes shown as 24 lowercase hex digits, like Corezoid's (Mongo) ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ObjId([u8; 12]);

impl ObjId {
    pub fn to_hex(self) -> [u8; 24] {
        let mut out = [0u8; 24];
        // Cannot fail: the output is exactly twice the input length.
        hex::encode_to_slice(self.0, &mut out).expect("24 bytes for 12");
        out
    }

    /// Parses 24 hex digits (any case); anything else is no id at all.
    pub fn parse(s: &str) -> Option<ObjId> {
        let mut out = [0u8; 12];
        if s.len() != 24 {
            return None;
        }
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(ObjId(out))
    }
}

/// Hands out ids: 4 random bytes chosen per sandbox, then a 64-bit counter, so ids are
/// unique within a sandbox without any lookup, and differ between sandboxes.
#[derive(Debug)]
pub(crate) struct IdGen {
    prefix: [u8; 4],
    next: AtomicU64,
}

impl IdGen {
    pub fn new(prefix: u32) -> IdGen {
        IdGen {
            prefix: prefix.to_be_bytes(),
            next: AtomicU64::new(1),
        }
    }

    pub fn next(&self) -> ObjId {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut id = [0u8; 12];
        id[..4].copy_from_slice(&self.prefix);
        id[4..].copy_from_slice(&n.to_be_bytes());
        ObjId(id)
    }
}

#[derive(Debug)]
pub(crate) struct StoredTask {
    pub ref_: Option<Box<str>>,
    pub obj_id: ObjId,
    pub data: Box<RawValue>,
    /// Unix seconds of the create and of the last change (`show` gives both).
    pub create_time: u32,
    pub change_time: u32,
    /// A deleted task stays in `tasks` (so obj_ids stay sorted for the binary search and
    /// a delete costs no shift of millions of entries) but is found by nothing, and its
    /// ref is free again.
    pub deleted: bool,
}

/// The sandbox's processes have no nodes of their own: every task rests in one node, the
/// same for the whole process, reached from one start node. Derived from the conv id so a
/// test can name the right one and a wrong one; `delete` checks it as Corezoid does.
pub(crate) fn node_of(conv_id: u64, start: bool) -> ObjId {
    let mut id = [0u8; 12];
    id[..4].copy_from_slice(if start { b"strt" } else { b"node" });
    id[4..].copy_from_slice(&conv_id.to_be_bytes());
    ObjId(id)
}

/// Unix seconds now, as the store keeps them.
pub(crate) fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

/// One process's tasks in creation order, found by ref through `by_ref` and by obj_id
/// by binary search: ids are handed out under the shard's lock, so within a shard they
/// only grow (the counter is big-endian, so byte order is number order).
///
/// `by_ref` holds (hash, index) pairs of 32 bits each rather than owned keys: the ref is
/// stored once, in its task, hashed once per create with a fast hasher, and never
/// rehashed when the table grows; 8-byte entries keep the table half the size (each
/// create's probe is a cache miss or two in a table of millions). The sandbox listens on loopback for tests and benchmarks, so hash flooding is
/// not a concern; the std `HashMap` with SipHash and a second copy of every ref was a
/// fifth of the sandbox's time under a load (perf, 1M refs).
#[derive(Debug, Default)]
pub(crate) struct ShardInner {
    pub tasks: Vec<StoredTask>,
    /// Creates answered ok, for `--lose-every`.
    pub created: u64,
    by_ref: HashTable<(u32, u32)>,
    hasher: foldhash::fast::FixedState,
}

/// The table's 64-bit hash from a stored 32-bit one: the bucket comes from the low bits
/// and hashbrown's tag from the top 7, so both halves carry the hash.
fn spread(h: u32) -> u64 {
    (u64::from(h) << 32) | u64::from(h)
}

/// How an operation names its task.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    Obj(ObjId),
    /// An `obj_id` that is not 24 hex digits: it can name no task.
    BadObj,
    Ref(&'a str),
}

impl ShardInner {
    /// Creates a task with a fresh id, or gives `None` when its ref is already taken.
    pub fn create(
        &mut self,
        ref_: Option<Box<str>>,
        data: Box<RawValue>,
        ids: &IdGen,
    ) -> Option<ObjId> {
        let i = u32::try_from(self.tasks.len()).expect("fewer than 2^32 tasks in a process");
        if let Some(r) = &ref_ {
            let h = self.hash(r);
            let tasks = &self.tasks;
            let same =
                |&(eh, j): &(u32, u32)| eh == h && tasks[j as usize].ref_.as_ref() == Some(r);
            match self.by_ref.entry(spread(h), same, |&(eh, _)| spread(eh)) {
                Entry::Occupied(_) => return None,
                Entry::Vacant(v) => {
                    v.insert((h, i));
                }
            }
        }
        let obj_id = ids.next();
        let now = unix_now();
        self.tasks.push(StoredTask {
            ref_,
            obj_id,
            data,
            create_time: now,
            change_time: now,
            deleted: false,
        });
        Some(obj_id)
    }

    /// Deletes a task found by obj_id: it is found by nothing after, and its ref may be
    /// used again. `false` when no live task has that id.
    pub fn delete(&mut self, id: ObjId) -> bool {
        let Ok(i) = self.tasks.binary_search_by(|t| t.obj_id.cmp(&id)) else {
            return false;
        };
        if self.tasks[i].deleted {
            return false;
        }
        self.tasks[i].deleted = true;
        if let Some(r) = self.tasks[i].ref_.take() {
            let h = self.hash(&r);
            let same = |&(eh, j): &(u32, u32)| eh == h && j as usize == i;
            if let Ok(e) = self.by_ref.find_entry(spread(h), same) {
                e.remove();
            }
            self.tasks[i].ref_ = Some(r);
        }
        true
    }

    /// The live tasks, in creation order.
    pub fn live(&self) -> impl Iterator<Item = &StoredTask> {
        self.tasks.iter().filter(|t| !t.deleted)
    }

    fn hash(&self, r: &str) -> u32 {
        self.hasher.hash_one(r) as u32
    }

    pub fn find_mut(&mut self, t: Target<'_>) -> Option<&mut StoredTask> {
        let i = match t {
            Target::Obj(id) => {
                let i = self.tasks.binary_search_by(|t| t.obj_id.cmp(&id)).ok()?;
                if self.tasks[i].deleted {
                    return None;
                }
                i
            }
            Target::BadObj => return None,
            Target::Ref(r) => {
                let h = self.hash(r);
                let tasks = &self.tasks;
                let same =
                    |&(eh, j): &(u32, u32)| eh == h && tasks[j as usize].ref_.as_deref() == Some(r);
                self.by_ref.find(spread(h), same)?.1 as usize
            }
        };
        self.tasks.get_mut(i)
    }
}

/// One process's tasks.
#[derive(Debug)]
pub(crate) struct Shard {
    pub conv_id: u64,
    inner: Mutex<ShardInner>,
}

impl Shard {
    pub fn new(conv_id: u64) -> Shard {
        Shard {
            conv_id,
            inner: Mutex::new(ShardInner::default()),
        }
    }

    /// The shard's lock. A panic while holding it cannot leave the maps half-updated in a
    /// way that matters to a test server, so a poisoned lock is simply taken over.
    pub fn lock(&self) -> MutexGuard<'_, ShardInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes this shard's tasks as NDJSON lines into `out`.
    pub fn write_ndjson(&self, out: &mut Vec<u8>) {
        let g = self.lock();
        for t in g.live() {
            #[derive(Serialize)]
            struct Line<'a> {
                conv_id: u64,
                #[serde(rename = "ref")]
                ref_: Option<&'a str>,
                obj_id: &'a str,
                data: &'a RawValue,
            }
            let hex = t.obj_id.to_hex();
            let line = Line {
                conv_id: self.conv_id,
                ref_: t.ref_.as_deref(),
                obj_id: std::str::from_utf8(&hex).unwrap_or_default(),
                data: &t.data,
            };
            // Serializing plain strings and already-valid JSON into a Vec cannot fail.
            if serde_json::to_writer(&mut *out, &line).is_ok() {
                out.push(b'\n');
            }
        }
    }

    pub fn tasks(&self) -> Vec<Task> {
        let g = self.lock();
        g.live()
            .map(|t| Task {
                conv_id: self.conv_id,
                ref_: t.ref_.as_ref().map(|r| r.to_string()),
                obj_id: String::from_utf8_lossy(&t.obj_id.to_hex()).into_owned(),
                data: serde_json::from_str(t.data.get()).unwrap_or_default(),
            })
            .collect()
    }
}

/// Every configured process, looked up without a lock (the set is fixed at start).
#[derive(Debug)]
pub(crate) struct Store {
    shards: Vec<Shard>,
    index: HashMap<u64, usize>,
}

impl Store {
    pub fn new(convs: &[u64]) -> Store {
        let mut shards = Vec::new();
        let mut index = HashMap::new();
        for &c in convs {
            if let std::collections::hash_map::Entry::Vacant(e) = index.entry(c) {
                e.insert(shards.len());
                shards.push(Shard::new(c));
            }
        }
        Store { shards, index }
    }

    pub fn shard(&self, conv_id: u64) -> Option<&Shard> {
        self.index.get(&conv_id).map(|&i| &self.shards[i])
    }

    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_24_hex_and_unique() {
        let g = IdGen::new(0xdead_beef);
        let a = g.next();
        let b = g.next();
        assert_ne!(a, b);
        let hex = a.to_hex();
        let s = std::str::from_utf8(&hex).unwrap();
        assert_eq!(s.len(), 24);
        assert!(s
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert_eq!(ObjId::parse(s), Some(a));
        assert_eq!(ObjId::parse(&s.to_uppercase()), Some(a));
        assert_eq!(ObjId::parse("xyz"), None);
    }

    fn data() -> Box<RawValue> {
        RawValue::from_string("{}".into()).unwrap()
    }

    #[test]
    fn tasks_are_found_by_ref_and_by_obj_id_across_interleaved_shards() {
        let ids = IdGen::new(7);
        let (a, b) = (Shard::new(1), Shard::new(2));
        let mut made = Vec::new();
        for i in 0..1000 {
            // Both shards draw from one counter, so each shard's ids have gaps.
            let shard = if i % 3 == 0 { &a } else { &b };
            let r: Box<str> = format!("r{i}").into();
            let id = shard.lock().create(Some(r), data(), &ids).unwrap();
            made.push((i % 3 == 0, format!("r{i}"), id));
        }
        for (in_a, r, id) in &made {
            let (mine, other) = if *in_a { (&a, &b) } else { (&b, &a) };
            let mut g = mine.lock();
            assert_eq!(g.find_mut(Target::Ref(r)).unwrap().obj_id, *id);
            assert_eq!(
                g.find_mut(Target::Obj(*id)).unwrap().ref_.as_deref(),
                Some(&**r)
            );
            drop(g);
            let mut g = other.lock();
            assert!(g.find_mut(Target::Ref(r)).is_none());
            assert!(g.find_mut(Target::Obj(*id)).is_none());
        }
        let mut g = a.lock();
        assert!(g.create(Some("r0".into()), data(), &ids).is_none());
        assert!(
            g.create(Some("r1".into()), data(), &ids).is_some(),
            "r1 is b's"
        );
        assert!(g.create(None, data(), &ids).is_some());
        assert!(g.create(None, data(), &ids).is_some());
        assert!(g.find_mut(Target::BadObj).is_none());
        assert!(g.find_mut(Target::Obj(IdGen::new(8).next())).is_none());
    }
}
