//! A typed queue under test (`Queue<Vec<u32>>`): items of exact encoded
//! sizes and how each command runs on it.

use mpkit::codec::{Codec, Postcard};
use mpkit::queue::{Queue, TryGetError};
use proptest::prelude::*;

use crate::TINY;
use crate::bytes::splitmix;
use crate::check::{Checked, Cmd, Out};
use crate::model::{GetOutcome, PutOut, PutOutcome, get_kind, put_out};
use crate::ops::{Op, op};

pub type Item = Vec<u32>;

pub fn encoded_len(item: &Item) -> usize {
    let mut buf = Vec::new();
    Postcard::encode(item, &mut buf).unwrap();
    buf.len()
}

pub fn varint_len(v: u32) -> usize {
    match v {
        0..0x80 => 1,
        0x80..0x4000 => 2,
        0x4000..0x20_0000 => 3,
        0x20_0000..0x1000_0000 => 4,
        _ => 5,
    }
}

/// An item numbered `id` (its first element) whose postcard encoding is
/// `size` bytes (or the nearest possible), its other elements of mixed
/// widths (1 to 5 bytes) so that the fill tells items apart.
pub fn typed_item(id: u64, size: usize) -> Item {
    let first = id as u32;
    let mut state = id;
    let target = size.saturating_sub(varint_len(first));
    let mut widths: Vec<usize> = Vec::new();
    let mut sum = 0;
    loop {
        let count = widths.len() as u32 + 1;
        let left = target.saturating_sub(varint_len(count) + sum);
        if left == 0 {
            break;
        }
        // One more element may lengthen the count's varint.
        let grow = varint_len(count + 1) - varint_len(count);
        if left <= grow {
            // No element fits: widen one instead.
            if let Some(w) = widths.iter_mut().find(|w| **w + left <= 5) {
                *w += left;
            }
            break;
        }
        let w = (1 + splitmix(&mut state) as usize % 5).min(left - grow);
        widths.push(w);
        sum += w;
    }
    let mut item = vec![first];
    for w in widths {
        // An element of exactly `w` bytes.
        let low = if w == 1 { 0 } else { 1u64 << (7 * (w - 1)) };
        let high = if w == 5 { 1u64 << 32 } else { 1u64 << (7 * w) };
        item.push((low + splitmix(&mut state) % (high - low)) as u32);
    }
    item
}

impl Checked for Queue<Item> {
    type Item = Item;
    fn make(id: u64, len: usize) -> Item {
        typed_item(id, len)
    }
    fn size(item: &Item) -> usize {
        encoded_len(item)
    }
    fn try_take(&self) -> Result<Item, TryGetError> {
        self.try_get()
    }
    fn capacity(&self) -> usize {
        Queue::capacity(self)
    }
    fn maxsize(&self) -> usize {
        Queue::maxsize(self)
    }
    fn len(&self) -> usize {
        Queue::len(self)
    }
    fn is_empty(&self) -> bool {
        Queue::is_empty(self)
    }
    fn is_closed(&self) -> bool {
        Queue::is_closed(self)
    }
    fn is_full(&self) -> Option<bool> {
        Some(Queue::is_full(self))
    }
}

/// A single put's outcome, checking that a refused item is handed back.
fn typed_put(item: &Item, r: Result<(), impl PutOutcome<Item>>) -> Out<Item> {
    match put_out(r) {
        (out, None) => Out::Put(out),
        (out, Some(back)) if back == *item => Out::Put(out),
        (out, Some(back)) => Out::Put(PutOut::Other(format!(
            "{out:?} handed back {back:?} instead of {item:?}"
        ))),
    }
}

fn typed_one(r: Result<Item, impl GetOutcome>) -> Out<Item> {
    Out::Got(r.map(|v| vec![v]).map_err(get_kind))
}

pub fn texec(q: &Queue<Item>, cmd: &Cmd<Item>) -> Out<Item> {
    match cmd {
        Cmd::TryPut(item) => typed_put(item, q.try_put(item.clone())),
        Cmd::PutTimeout(item) => typed_put(item, q.put_timeout(item.clone(), TINY)),
        Cmd::Put(item) => typed_put(item, q.put(item.clone())),
        Cmd::PutMany(items) => match put_out(q.put_many(items.clone())) {
            (PutOut::Ok, _) => Out::PutMany(PutOut::Ok, items.len()),
            (out, None) => Out::PutMany(out, usize::MAX),
            // The items not put are handed back: they are the tail.
            (out, Some(rest)) if items.ends_with(&rest) => {
                Out::PutMany(out, items.len() - rest.len())
            }
            (out, Some(rest)) => Out::PutMany(
                PutOut::Other(format!("{out:?} handed back {rest:?} of {items:?}")),
                usize::MAX,
            ),
        },
        Cmd::TryGet => typed_one(q.try_get()),
        Cmd::Get | Cmd::GetInto => typed_one(q.get()),
        Cmd::GetTimeout => typed_one(q.get_timeout(TINY)),
        Cmd::GetMany(max) => Out::Got(q.get_many(*max).map_err(get_kind)),
        Cmd::GetManyTimeout(max) => Out::Got(q.get_many_timeout(*max, TINY).map_err(get_kind)),
        Cmd::Len => Out::Len {
            len: q.len(),
            empty: q.is_empty(),
        },
        Cmd::Close => {
            q.close();
            Out::Closed(q.is_closed())
        }
    }
}

pub fn typed_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        20 => op(),
        1 => (1usize..=6).prop_map(Op::GetManyTimeout),
    ]
}
