//! Element types: how a segment says what it holds, so that two programs
//! with the same definition agree and a mismatch names both sides.
//!
//! # Identity
//! An element is known by its *short name*: `type_name` without module
//! paths, generics kept (`app::jobs::Job` is `Job`, `Vec<app::Job>` is
//! `Vec<Job>`), so the same `struct Job` defined in two programs (or two
//! modules) is the same element. Queues add the codec (a `Job` encoded
//! with postcard is not a `Job` in JSON), and may be given a name of the
//! user's choosing instead of the type's (for a type renamed in one
//! program); plain data (`Value`, `Array`) adds its size and alignment.
//! The header's `elem_type` is an FNV-1a hash of the name (and codec).
//!
//! # The element record
//! Every typed segment ends with a 64-byte record, at offset
//! `header.size - 64`, written by the creator before the object is marked
//! ready and never changed:
//!
//! | offset | size | field | meaning |
//! |---|---|---|---|
//! | 0 | 1 | `len` | bytes of text that follow (at most 63) |
//! | 1 | 63 | `text` | UTF-8: the element's name, with its codec for messages (`Job (postcard)`); cut at a character boundary; empty for objects without elements |
//!
//! It is read only to explain a mismatch (and by `mpkit ls`): the hash
//! decides. Another process may have scribbled it, so a length over 63 or
//! text that is not UTF-8 reads as "an unreadable element".

use std::borrow::Cow;

/// Bytes of the element record at the end of every typed segment.
pub(crate) const RECORD_SIZE: usize = 64;

/// What a caller names when it reads a record that does not parse.
const UNREADABLE: &str = "an unreadable element";

/// The element type of an object, as recorded in its header and record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Elem {
    /// `size_of` the element (plain data), 0 for messages and none.
    pub size: u32,
    /// `align_of` the element (plain data), 0 for messages and none.
    pub align: u32,
    /// FNV-1a of the name (and codec): what attaching compares.
    pub type_hash: u64,
    /// The record's text: the name, and the codec for messages.
    pub text: Cow<'static, str>,
}

impl Elem {
    /// No element type (locks, events, …).
    pub const NONE: Elem = Elem {
        size: 0,
        align: 0,
        type_hash: 0,
        text: Cow::Borrowed(""),
    };

    /// Messages of type `T` encoded by the codec named `codec`: the type
    /// hash covers both, so a queue of `T` under another codec is refused.
    pub fn message<T: ?Sized>(codec: &str) -> Elem {
        Elem::named_message(&short_type_name(std::any::type_name::<T>()), codec)
    }

    /// Messages known by a name the user chose, encoded by `codec`.
    pub fn named_message(name: &str, codec: &str) -> Elem {
        Elem {
            size: 0,
            align: 0,
            type_hash: fnv1a(name.as_bytes()) ^ fnv1a(codec.as_bytes()).rotate_left(1),
            text: Cow::Owned(format!("{name} ({codec})")),
        }
    }

    /// The plain-data element type `T`.
    pub fn of<T>() -> Elem {
        let name = short_type_name(std::any::type_name::<T>());
        Elem {
            size: std::mem::size_of::<T>() as u32,
            align: std::mem::align_of::<T>() as u32,
            type_hash: fnv1a(name.as_bytes()),
            text: Cow::Owned(name),
        }
    }

    /// What an error says of this element: its text, with size and
    /// alignment for plain data.
    pub fn describe(&self) -> String {
        describe(&self.text, self.size, self.align)
    }

    /// The record stored for this element.
    pub fn record(&self) -> [u8; RECORD_SIZE] {
        let mut record = [0u8; RECORD_SIZE];
        let mut end = self.text.len().min(RECORD_SIZE - 1);
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        record[0] = end as u8;
        record[1..1 + end].copy_from_slice(&self.text.as_bytes()[..end]);
        record
    }
}

/// What an error says of an element stored with `text`, `size` and `align`.
pub(crate) fn describe(text: &str, size: u32, align: u32) -> String {
    if size == 0 && align == 0 {
        text.to_string()
    } else {
        format!("{text} ({size} bytes, alignment {align})")
    }
}

/// The text of a record read from shared memory, checked: `None` when its
/// length or its UTF-8 is invalid.
pub(crate) fn record_text(record: &[u8; RECORD_SIZE]) -> Option<&str> {
    let len = record[0] as usize;
    if len >= RECORD_SIZE {
        return None;
    }
    std::str::from_utf8(&record[1..1 + len]).ok()
}

/// The text of a record, or a placeholder for one that does not parse.
pub(crate) fn record_text_or_unreadable(record: &[u8; RECORD_SIZE]) -> &str {
    record_text(record).unwrap_or(UNREADABLE)
}

/// FNV-1a, 64 bits: a stable hash of type names.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `type_name` without module paths (`alloc::vec::Vec<app::Job>` is
/// `Vec<Job>`), at most 255 bytes: what two programs with the same
/// definitions agree on.
pub(crate) fn short_type_name(full: &str) -> String {
    let mut out = String::with_capacity(full.len());
    let mut segment = 0;
    let mut chars = full.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            out.truncate(segment);
        } else {
            out.push(c);
            if !(c.is_alphanumeric() || c == '_') {
                segment = out.len();
            }
        }
    }
    if out.len() > 255 {
        let mut end = 255;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_drop_paths() {
        assert_eq!(
            short_type_name("alloc::vec::Vec<app::jobs::Job>"),
            "Vec<Job>"
        );
        assert_eq!(short_type_name("(u8, u8)"), "(u8, u8)");
        assert_eq!(short_type_name("&str"), "&str");
        assert_eq!(
            short_type_name(
                "core::option::Option<std::collections::hash::map::HashMap<alloc::string::String, u32>>"
            ),
            "Option<HashMap<String, u32>>"
        );
    }

    mod a {
        pub struct Job;
    }
    mod b {
        pub struct Job;
    }

    #[test]
    fn the_same_name_in_two_modules_is_one_element() {
        assert_eq!(
            Elem::message::<a::Job>("postcard"),
            Elem::message::<b::Job>("postcard")
        );
        assert_ne!(
            Elem::message::<a::Job>("postcard").type_hash,
            Elem::message::<a::Job>("json").type_hash
        );
        assert_eq!(Elem::message::<a::Job>("postcard").text, "Job (postcard)");
    }

    #[test]
    fn records_round_trip_and_cut_at_a_character() {
        let e = Elem::named_message(&"é".repeat(40), "postcard");
        let record = e.record();
        let text = record_text(&record).expect("valid");
        assert!(text.len() <= 63 && e.text.starts_with(text));
        assert_eq!(record_text(&Elem::of::<u64>().record()), Some("u64"));
        let mut bad = Elem::of::<u64>().record();
        bad[0] = 200;
        assert_eq!(record_text_or_unreadable(&bad), UNREADABLE);
        bad[0] = 2;
        bad[1] = 0xff;
        assert_eq!(record_text(&bad), None);
    }
}
