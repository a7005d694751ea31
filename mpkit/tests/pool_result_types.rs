//! Results (and arguments) read as another type than the one sent,
//! between real processes: every width and kind asked of `u64` and `i64`
//! columns (narrow, widened, wide), newtypes and transparent wrappers,
//! shapes a scalar column cannot hold, `Option` results beside plain
//! numbers, and `Serialize`/`Deserialize` pairs that read more or fewer
//! bytes than they wrote. Each test states what the pool promises.

mod common;

use common::watchdog;
use mpkit::Pool;
use mpkit::pool::TaskError;
use serde::de::DeserializeOwned;
use serde::ser::Error as _;
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Sent as a `u64` or `i64` (a fixed-width column of those), read back as
/// whatever `T` asks for.
#[derive(Debug, PartialEq)]
enum Asked<T> {
    U(u64),
    I(i64),
    Got(T),
}

impl<T> Serialize for Asked<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Asked::U(v) => s.serialize_u64(*v),
            Asked::I(v) => s.serialize_i64(*v),
            Asked::Got(_) => Err(S::Error::custom("only sent")),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Asked<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Asked<T>, D::Error> {
        T::deserialize(d).map(Asked::Got)
    }
}

fn send_u<T>(x: u64) -> Asked<T> {
    Asked::U(x)
}

fn send_i<T>(x: i64) -> Asked<T> {
    Asked::I(x)
}

/// What serde makes of `v` read as a `T` (its own value deserializers:
/// `visit_u64`/`visit_i64` with the visitor's range checks).
fn serde_u<T: DeserializeOwned>(v: u64) -> Option<T> {
    use serde::de::IntoDeserializer;
    let d: serde::de::value::U64Deserializer<serde::de::value::Error> = v.into_deserializer();
    T::deserialize(d).ok()
}

fn serde_i<T: DeserializeOwned>(v: i64) -> Option<T> {
    use serde::de::IntoDeserializer;
    let d: serde::de::value::I64Deserializer<serde::de::value::Error> = v.into_deserializer();
    T::deserialize(d).ok()
}

#[derive(Deserialize, Serialize, Debug, PartialEq)]
struct Newtype<T>(T);

#[derive(Deserialize, Serialize, Debug, PartialEq)]
#[serde(transparent)]
struct Transparent<T>(T);

#[derive(Deserialize, Serialize, Debug, PartialEq)]
struct Pair(u64, u64);

const US: [u64; 10] = [
    0,
    1,
    127,
    128,
    255,
    256,
    65_535,
    65_536,
    1 << 31,
    u32::MAX as u64,
];
const IS: [i64; 12] = [
    0,
    1,
    -1,
    127,
    -128,
    128,
    -129,
    32_767,
    -32_769,
    65_536,
    i32::MIN as i64,
    i32::MAX as i64,
];

/// Chunks laid out to make each column kind: each value alone (narrow:
/// `U64As32`/`I64As32`), each value then a wide one (widened mid-chunk),
/// a wide one then each value (wide from the first).
fn layouts<V: Copy>(values: &[V], wide: V) -> Vec<(&'static str, usize, Vec<V>)> {
    vec![
        ("narrow", 1, values.to_vec()),
        (
            "widened",
            2,
            values.iter().flat_map(|&v| [v, wide]).collect(),
        ),
        ("wide", 2, values.iter().flat_map(|&v| [wide, v]).collect()),
    ]
}

/// What a chunk's outcomes must be, from each value's own reading: the
/// values up to the first that does not read, then errors to the end of
/// the chunk.
fn expected<T>(values: Vec<Option<T>>, chunk: usize) -> Vec<Option<T>> {
    let mut out = Vec::new();
    let mut values = values.into_iter().peekable();
    while values.peek().is_some() {
        let mut failed = false;
        for v in values.by_ref().take(chunk) {
            failed |= v.is_none();
            out.push(if failed { None } else { v });
        }
    }
    out
}

/// Results of `u64`/`i64` columns (narrow, widened, wide) read as `T`:
/// each outcome is what serde's range checks make of the value (never a
/// value cut or reinterpreted), a value that does not read fails with the
/// rest of its chunk, through `map_outcomes` (the reader through
/// `ItemReader`) and `map` (read by value into the vector).
fn check_asked<T>(
    pool: &Pool,
    name: &str,
    u: impl Fn(u64) -> Option<T>,
    i: impl Fn(i64) -> Option<T>,
    wrong: &mut Vec<String>,
) where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let mut check = |what: String, got: Vec<Result<Asked<T>, TaskError>>, want: Vec<Option<T>>| {
        let got: Vec<Option<T>> = got
            .into_iter()
            .map(|r| match r {
                Ok(Asked::Got(t)) => Some(t),
                Err(TaskError::ResultDecode { .. }) => None,
                other => panic!("{what}: {other:?}"),
            })
            .collect();
        if got != want {
            wrong.push(format!("{name}, {what}: got {got:?}, want {want:?}"));
        }
    };
    check_layouts(
        pool,
        "u64",
        layouts(&US, u64::MAX),
        send_u::<T>,
        &u,
        &mut check,
    );
    check_layouts(
        pool,
        "i64",
        layouts(&IS, i64::MIN),
        send_i::<T>,
        &i,
        &mut check,
    );
}

/// [`check_asked`] for the columns of one type `V` (`u64`, `i64`): each
/// layout through `map_outcomes` whole, and each of its chunks through
/// `map` (which fails whole at a value that does not read).
fn check_layouts<V, T>(
    pool: &Pool,
    type_name: &str,
    layouts: Vec<(&'static str, usize, Vec<V>)>,
    send: fn(V) -> Asked<T>,
    read: &impl Fn(V) -> Option<T>,
    check: &mut impl FnMut(String, Vec<Result<Asked<T>, TaskError>>, Vec<Option<T>>),
) where
    V: Copy + std::fmt::Debug + Serialize + DeserializeOwned,
    T: Serialize + DeserializeOwned,
{
    for (layout, chunk, values) in layouts {
        let want = expected(values.iter().map(|&v| read(v)).collect(), chunk);
        let got = pool.map_outcomes_chunked(send, values.clone(), chunk);
        check(format!("{type_name} {layout} outcomes"), got, want);
        for c in values.chunks(chunk) {
            let want = expected(c.iter().map(|&v| read(v)).collect(), chunk);
            let got = match pool.map_chunked(send, c.to_vec(), chunk) {
                Ok(v) => v.into_iter().map(Ok).collect(),
                Err(e) => c.iter().map(|_| Err(e.clone())).collect(),
            };
            let want = match want.iter().all(Option::is_some) {
                true => want,
                false => c.iter().map(|_| None).collect(),
            };
            check(format!("{type_name} {layout} map of {c:?}"), got, want);
        }
    }
}

/// The worker's side of [`Asked`]: the argument as `T` read it.
fn take_asked<T>(a: Asked<T>) -> T {
    match a {
        Asked::Got(t) => t,
        _ => panic!("an argument not read"),
    }
}

/// Arguments of `u64`/`i64` columns read as `T` in the worker (its reader
/// by value, each value from its own bytes): each item is what serde
/// makes of its value, or fails alone with `ArgsDecode`.
fn check_args<T>(
    pool: &Pool,
    name: &str,
    u: impl Fn(u64) -> Option<T>,
    i: impl Fn(i64) -> Option<T>,
    wrong: &mut Vec<String>,
) where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let mut check = |what: String, got: Vec<Result<T, TaskError>>, want: Vec<Option<T>>| {
        let got: Vec<Option<T>> = got
            .into_iter()
            .map(|r| match r {
                Ok(t) => Some(t),
                Err(TaskError::ArgsDecode { .. }) => None,
                Err(other) => panic!("{name}, {what}: {other:?}"),
            })
            .collect();
        if got != want {
            wrong.push(format!(
                "{name} arguments, {what}: got {got:?}, want {want:?}"
            ));
        }
    };
    for (layout, chunk, values) in layouts(&US, u64::MAX) {
        let items = values.iter().map(|&v| Asked::<T>::U(v));
        let got = pool.map_outcomes_chunked(take_asked::<T>, items, chunk);
        check(
            format!("u64 {layout}"),
            got,
            values.iter().map(|&v| u(v)).collect(),
        );
    }
    for (layout, chunk, values) in layouts(&IS, i64::MIN) {
        let items = values.iter().map(|&v| Asked::<T>::I(v));
        let got = pool.map_outcomes_chunked(take_asked::<T>, items, chunk);
        check(
            format!("i64 {layout}"),
            got,
            values.iter().map(|&v| i(v)).collect(),
        );
    }
}

/// Every width and kind asked of `u64` and `i64` columns, narrow,
/// widened and wide, plainly, in newtypes and transparent wrappers, and
/// shapes a scalar column cannot hold (options, tuples, strings): serde's
/// range checks decide, errors are errors, and no value is cut; the
/// same asked of arguments in the worker.
#[test]
fn results_asked_as_another_width_or_kind_read_as_serde_says() {
    let _w = watchdog(180);
    let pool = Pool::new(2).unwrap();
    let mut wrong = Vec::new();
    macro_rules! plain {
        ($($t:ty),*) => {$(
            check_asked::<$t>(&pool, stringify!($t), serde_u::<$t>, serde_i::<$t>, &mut wrong);
            check_args::<$t>(&pool, stringify!($t), serde_u::<$t>, serde_i::<$t>, &mut wrong);
        )*};
    }
    plain!(
        u8,
        u16,
        u32,
        u64,
        u128,
        i8,
        i16,
        i32,
        i64,
        i128,
        f32,
        f64,
        char,
        bool,
        ()
    );
    plain!(
        String,
        Option<u64>,
        (u64, u64),
        Pair,
        Transparent<u16>,
        Transparent<i8>
    );
    macro_rules! newtype {
        ($($t:ty),*) => {$(
            check_asked::<Newtype<$t>>(
                &pool,
                concat!("Newtype<", stringify!($t), ">"),
                |v| serde_u::<$t>(v).map(Newtype),
                |v| serde_i::<$t>(v).map(Newtype),
                &mut wrong,
            );
            check_args::<Newtype<$t>>(
                &pool,
                concat!("Newtype<", stringify!($t), ">"),
                |v| serde_u::<$t>(v).map(Newtype),
                |v| serde_i::<$t>(v).map(Newtype),
                &mut wrong,
            );
        )*};
    }
    newtype!(u8, u16, u32, u64, i8, i16, i32, i64);
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// `Option<u64>` results, `None` and `Some` of every size mixed, beside
/// plain numbers in other maps of the same pool: each comes back as it
/// was, at every chunk size.
#[test]
fn optional_numbers_mixed_with_plain_ones_come_back_as_they_were() {
    let _w = watchdog(60);
    let pool = Pool::new(2).unwrap();
    let f = |x: u64| -> Option<u64> {
        match x % 4 {
            0 => None,
            1 => Some(x),
            2 => Some(x << 40),
            _ => Some(u64::MAX - x),
        }
    };
    let xs: Vec<u64> = (0..300).collect();
    let want: Vec<Option<u64>> = xs.iter().map(|&x| f(x)).collect();
    for chunk in [1, 2, 3, 4, 64, 299, 300, 301] {
        assert_eq!(
            pool.map_chunked(f, xs.clone(), chunk).as_ref(),
            Ok(&want),
            "chunk {chunk}"
        );
        let plain: Vec<u64> = xs.iter().map(|&x| x << 33).collect();
        assert_eq!(
            pool.map_chunked(|x: u64| x << 33, xs.clone(), chunk),
            Ok(plain)
        );
        let got: Vec<Option<u64>> = pool
            .map_outcomes_chunked(f, xs.clone(), chunk)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, want, "chunk {chunk}");
    }
}

/// A number sent as a pair `(x, x + 1000)` and read back as one number:
/// a `Serialize`/`Deserialize` pair that disagree (reads fewer bytes than
/// were written).
#[derive(Debug, PartialEq)]
struct Lopsided(u64);

impl Serialize for Lopsided {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&self.0)?;
        t.serialize_element(&(self.0 + 1000))?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for Lopsided {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Lopsided, D::Error> {
        u64::deserialize(d).map(Lopsided)
    }
}

/// A number sent as itself (7 as a one-element tuple, postcard's same
/// bytes, which makes its chunk's column postcard) and read back as a
/// pair: reads more bytes than were written.
#[derive(Debug, PartialEq)]
struct Greedy(u64, u64);

impl Serialize for Greedy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 7 {
            let mut t = s.serialize_tuple(1)?;
            t.serialize_element(&self.0)?;
            return t.end();
        }
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Greedy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Greedy, D::Error> {
        <(u64, u64)>::deserialize(d).map(|(a, b)| Greedy(a, b))
    }
}

/// Results whose `Deserialize` reads fewer or more bytes than their
/// `Serialize` wrote: no outcome is a value read from another item's
/// bytes. A chunk's arguments in postcard that leave bytes unread fail
/// whole (`ArgsDecode`: the worker checks its reader is finished); a
/// chunk's results are read as a stream with no such check
/// (`Plan::decode_split`, `batch.rs`): `Lopsided` results come back as
/// `[1, 1001, 2, 1002]`, and `Greedy` ones as `(1, 2), (7, 4)` then
/// errors. In a fixed-width column the same `Greedy` chunk fails whole.
#[test]
fn results_that_read_more_or_fewer_bytes_than_written_are_never_other_items_values() {
    let _w = watchdog(60);
    let pool = Pool::new(1).unwrap();
    // The arguments' side, for comparison: refused whole.
    let args = pool.map_outcomes_chunked(|l: Lopsided| l.0, (1..=4).map(Lopsided), 4);
    assert!(
        args.iter()
            .all(|o| matches!(o, Err(TaskError::ArgsDecode { .. }))),
        "{args:?}"
    );
    // A fixed-width column asked for a pair: every item fails.
    let fixed = pool.map_outcomes_chunked(|x: u64| Greedy(x, 0), [1, 2, 3, 4], 4);
    assert!(
        fixed
            .iter()
            .all(|o| matches!(o, Err(TaskError::ResultDecode { .. }))),
        "{fixed:?}"
    );
    let mut wrong = Vec::new();
    let fewer = pool.map_outcomes_chunked(Lopsided, [1, 2, 3, 4], 4);
    if fewer.iter().any(Result::is_ok) {
        wrong.push(format!("read fewer: {fewer:?}"));
    }
    let more = pool.map_outcomes_chunked(|x: u64| Greedy(x, 0), [1, 2, 7, 4], 4);
    if more.iter().any(Result::is_ok) {
        wrong.push(format!("read more: {more:?}"));
    }
    let map = pool.map_chunked(Lopsided, [1, 2, 3, 4], 4);
    if map.is_ok() {
        wrong.push(format!("map of read fewer: {map:?}"));
    }
    assert!(
        wrong.is_empty(),
        "values from other items' bytes: {wrong:#?}"
    );
}
