//! Codecs against real peers and hostile input: every pickle Python writes
//! for plain data decodes as serde-pickle reads it, a hostile pickle is an
//! error that leaves the receiver alive, and `Checked` tells types apart.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::watchdog;
use mpkit::codec::{Codec, CodecErrorKind, Pickle};
use mpkit::connection::RecvError;
use mpkit::net::Listener;

fn python() -> bool {
    common::require_peer(
        "python3 with multiprocessing.connection",
        Command::new("python3").args(["-c", "import multiprocessing.connection, pickle"]),
    )
}

/// Decodes `bytes` on a thread with Rust's default 2 MiB stack, as a
/// receiving thread of a program would.
fn decode_on_thread<T: serde::de::DeserializeOwned + Send + 'static>(
    bytes: Vec<u8>,
) -> Result<T, mpkit::codec::CodecError> {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || Pickle::decode::<T>(&bytes))
        .unwrap()
        .join()
        .unwrap()
}

fn kind_of<T: serde::de::DeserializeOwned + Send + 'static>(bytes: Vec<u8>) -> CodecErrorKind {
    decode_on_thread::<T>(bytes)
        .err()
        .expect("a hostile pickle")
        .kind()
        .clone()
}

/// A list nested `n` deep: `[[[...]]]`, two bytes a level.
fn deep_list(n: usize) -> Vec<u8> {
    let mut p = b"\x80\x04".to_vec();
    p.extend(std::iter::repeat_n(b']', n));
    p.extend(std::iter::repeat_n(b'a', n - 1));
    p.push(b'.');
    p
}

/// Nesting through marks: `(((...l)l)l)` for lists, `t` for tuples.
fn deep_marks(n: usize, close: u8) -> Vec<u8> {
    let mut p = vec![b'('; n];
    p.extend(std::iter::repeat_n(close, n));
    p.push(b'.');
    p
}

/// A dict nested `n` deep: `{"k": {"k": ...}}`.
fn deep_dict(n: usize) -> Vec<u8> {
    let mut p = Vec::new();
    for _ in 0..n {
        p.extend(b"}\x8c\x01k");
    }
    p.push(b'N');
    p.extend(std::iter::repeat_n(b's', n));
    p.push(b'.');
    p
}

/// Nesting through the memo: level `i` is a fresh list holding a
/// reference to level `i - 1`, so each level alone is shallow.
fn deep_memo(n: u32) -> Vec<u8> {
    let mut p = b"]r\0\0\0\0".to_vec();
    for i in 1..n {
        p.push(b']');
        p.push(b'j');
        p.extend((i - 1).to_le_bytes());
        p.push(b'a');
        p.push(b'r');
        p.extend(i.to_le_bytes());
    }
    p.push(b'.');
    p
}

/// `levels` lists, each holding `fan` references to the one before: a few
/// kilobytes that expand to `fan^levels` strings.
fn memo_bomb(levels: u32, fan: usize) -> Vec<u8> {
    let mut p = b"\x80\x04\x8c\x08abcdefghr\0\0\0\0".to_vec();
    for i in 1..=levels {
        p.extend(b"](");
        for _ in 0..fan {
            p.push(b'j');
            p.extend((i - 1).to_le_bytes());
        }
        p.push(b'e');
        p.push(b'r');
        p.extend(i.to_le_bytes());
    }
    p.push(b'.');
    p
}

#[test]
fn deep_pickles_are_too_deep_not_a_crash() {
    let _w = watchdog(120);
    type Any = serde_pickle::Value;
    for n in [Pickle::MAX_DEPTH + 1, 50_000, 200_000] {
        assert!(
            matches!(kind_of::<Any>(deep_list(n)), CodecErrorKind::TooDeep { limit } if limit == Pickle::MAX_DEPTH),
            "list {n}"
        );
        for close in [b'l', b't', b'\x91'] {
            assert!(
                matches!(
                    kind_of::<Any>(deep_marks(n, close)),
                    CodecErrorKind::TooDeep { .. }
                ),
                "marks {n} {close}"
            );
        }
        assert!(
            matches!(kind_of::<Any>(deep_dict(n)), CodecErrorKind::TooDeep { .. }),
            "dict {n}"
        );
        assert!(
            matches!(
                kind_of::<serde_json::Value>(deep_memo(n as u32)),
                CodecErrorKind::TooDeep { .. }
            ),
            "memo {n}"
        );
    }
    // The same message decodes when the receiver's type is not deep enough
    // to follow it: the limit is on the value, and this one is refused
    // before anything of that depth exists.
    assert!(decode_on_thread::<Vec<Any>>(deep_list(200_000)).is_err());
}

#[test]
fn the_deepest_allowed_pickle_decodes_on_a_small_stack() {
    let depth = Pickle::MAX_DEPTH;
    let v: serde_json::Value = decode_on_thread(deep_list(depth)).unwrap();
    let mut level = &v;
    let mut seen = 1;
    while let Some(inner) = level.as_array().and_then(|a| a.first()) {
        level = inner;
        seen += 1;
    }
    assert_eq!(seen, depth);
    decode_on_thread::<serde_pickle::Value>(deep_memo(depth as u32)).unwrap();
    decode_on_thread::<serde_pickle::Value>(deep_dict(depth - 1)).unwrap();
}

#[test]
fn memo_bombs_are_too_large() {
    let _w = watchdog(120);
    // 10 levels of 10 references: 10^10 strings from about 600 bytes.
    let bomb = memo_bomb(10, 10);
    assert!(bomb.len() < 1000);
    let kind = kind_of::<serde_pickle::Value>(bomb.clone());
    assert!(matches!(kind, CodecErrorKind::TooLarge { .. }), "{kind:?}");
    // Also when the receiver's type ignores what it is given.
    let kind = kind_of::<serde::de::IgnoredAny>(bomb);
    assert!(matches!(kind, CodecErrorKind::TooLarge { .. }), "{kind:?}");
    // One list referenced from another as many times as it is long:
    // 6000 squared numbers from 24 KB.
    let mut square = b"](".to_vec();
    square.extend(std::iter::repeat_n(b"K\x07".as_slice(), 6000).flatten());
    square.extend(b"eq\x00](");
    square.extend(std::iter::repeat_n(b"h\x00".as_slice(), 6000).flatten());
    square.extend(b"e.");
    let kind = kind_of::<Vec<Vec<u8>>>(square);
    assert!(matches!(kind, CodecErrorKind::TooLarge { .. }), "{kind:?}");
    // Sharing within the budget is fine: 3 levels of 10 is 1000 strings.
    let v: Vec<Vec<Vec<String>>> = decode_on_thread(memo_bomb(3, 10)).unwrap();
    assert_eq!(v.len() * v[0].len() * v[0][0].len(), 1000);
    assert_eq!(v[9][9][9], "abcdefgh");
}

#[test]
fn copies_while_reading_are_counted() {
    let _w = watchdog(60);
    // DUP then APPEND doubles the list each time: 2^40 items from 82 bytes.
    let mut p = b"]".to_vec();
    for _ in 0..40 {
        p.extend(b"2a");
    }
    p.push(b'.');
    assert!(matches!(
        kind_of::<serde::de::IgnoredAny>(p),
        CodecErrorKind::TooLarge { .. }
    ));
    // set() given the same memoized list again and again.
    let mut p = b"c__builtin__\nset\nq\x00](".to_vec();
    p.extend(std::iter::repeat_n(b"K\x01".as_slice(), 1000).flatten());
    p.extend(b"eq\x01");
    for _ in 0..100_000 {
        p.extend(b"h\x00h\x01\x85R0");
    }
    p.extend(b"N.");
    assert!(matches!(
        kind_of::<serde::de::IgnoredAny>(p),
        CodecErrorKind::TooLarge { .. }
    ));
}

#[test]
fn malformed_pickles_are_errors() {
    let good = {
        let mut b = Vec::new();
        Pickle::encode(&(vec![1u32, 2], "text", Some(2.5f64)), &mut b).unwrap();
        b
    };
    for cut in 0..good.len() {
        let kind = kind_of::<serde_pickle::Value>(good[..cut].to_vec());
        assert_eq!(kind, CodecErrorKind::Invalid, "cut at {cut}");
    }
    let cases: &[&[u8]] = &[
        b"]q\x00h\x00a.",                         // a list that contains itself
        b"h\x00.",                                // an undefined memo entry
        b"X\xff\xff\xff\xff.",                    // a length past the end
        b"\x8e\xff\xff\xff\xff\xff\xff\xff\xff.", // a 64-bit length past the end
        b"T\xff\xff\xff\xff.",                    // a negative length
        b"N.N",                                   // trailing bytes
        b"Q.",                                    // BINPERSID
        b"\x82\x01.",                             // EXT1
        b"\x97.",                                 // NEXT_BUFFER
        b"a.",                                    // APPEND on an empty stack
        b"(Na.",                                  // APPEND across a mark
        b"N\x86.",                                // TUPLE2 with one item
        b"Ne.",                                   // APPENDS without a mark
        b"}Na.",                                  // APPEND to a dict
        b"\x8c\x02\xff\xfe.",                     // a string that is not UTF-8
        b"cos\nsystem\n)R.",                      // a global: never called, an error when decoded
    ];
    for case in cases {
        let kind = kind_of::<serde_pickle::Value>(case.to_vec());
        assert_eq!(kind, CodecErrorKind::Invalid, "{case:?}");
    }
}

#[test]
fn integers_cover_u64_and_i128() {
    let mut b = Vec::new();
    Pickle::encode(&u64::MAX, &mut b).unwrap();
    assert_eq!(Pickle::decode::<u64>(&b).unwrap(), u64::MAX);
    b.clear();
    Pickle::encode(&i64::MIN, &mut b).unwrap();
    assert_eq!(Pickle::decode::<i64>(&b).unwrap(), i64::MIN);
    // LONG1 with 17 bytes: past i128.
    let mut huge = b"\x8a\x11".to_vec();
    huge.extend([0xff; 16]);
    huge.extend(b"\x7f.");
    assert!(Pickle::decode::<i128>(&huge).is_err());
}

/// What Python writes for plain data, every protocol it has: the same
/// values as serde-pickle reads them.
const PY_CORPUS: &str = r#"
import pickle, sys
shared = [1, 'two']
vals = [None, True, False, 0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, -2**31, 2**31,
        2**63 - 1, -2**63, 1.5, -0.0, float('inf'), '', 'hi', 'a\\b\nc\u00e9\u20ac\U0001F600 "q" \'',
        b'', b'\x00\xff\'"bytes\n', bytearray(b'ba'), [], [1, [2, [3]]], (), (1,), (1, 2), (1, 2, 3),
        (1, 2, 3, 4), {}, {'a': 1, 'b': [1, 2]}, {1: 'x', 2: None}, set(), {1, 2, 3},
        frozenset({4}), [shared, shared, {'k': shared}], list(range(2500)),
        {i: str(i) for i in range(1500)}, 'x' * 300, b'y' * 300, [(i, -i, str(i), i * 0.5) for i in range(50)]]
for proto in range(pickle.HIGHEST_PROTOCOL + 1):
    for v in vals:
        print(proto, pickle.dumps(v, protocol=proto).hex())
"#;

#[test]
fn every_pickle_python_writes_for_plain_data_decodes() {
    if !python() {
        return;
    }
    let out = Command::new("python3")
        .args(["-c", PY_CORPUS])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut checked = 0;
    for line in text.lines() {
        let (proto, hex) = line.split_once(' ').unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let ours: serde_pickle::Value =
            Pickle::decode(&bytes).unwrap_or_else(|e| panic!("protocol {proto}: {e}: {hex}"));
        // serde-pickle cannot read `b''` before protocol 3 (`bytes()`),
        // nor a list that appears twice (in any protocol); mpkit reads both.
        match serde_pickle::from_slice::<serde_pickle::Value>(&bytes, Default::default()) {
            Ok(theirs) => {
                assert_eq!(ours, theirs, "protocol {proto}: {hex}");
                checked += 1;
            }
            Err(e) => println!("serde-pickle fails ({e}), mpkit reads {ours:?}"),
        }
    }
    assert!(checked >= 6 * 40, "{checked}");
}

/// A Python client that sends hostile pickles (as a Python program's
/// `send_bytes` can), then a good message.
const PY_HOSTILE: &str = r#"
import sys
from multiprocessing.connection import Client
c = Client(sys.argv[1], authkey=b'k3y')
n = 200000
c.send_bytes(b'\x80\x04' + b']' * n + b'a' * (n - 1) + b'.')        # 400 KB, 200 000 deep
# a list of 6000 numbers, then a list of 6000 references to it: 36 million
# numbers from 24 KB
c.send_bytes(b'\x80\x04](' + b'K\x07' * 6000 + b'eq\x00](' + b'h\x00' * 6000 + b'e.')
c.send({'message': 'still here', 'n': [1, 2]})
print(c.recv(), flush=True)
c.close()
"#;

#[derive(serde::Deserialize, Debug, PartialEq)]
struct Hello {
    message: String,
    n: Vec<i64>,
}

#[test]
fn a_python_peer_sending_hostile_pickles_gets_errors_and_the_receiver_lives() {
    let _w = watchdog(120);
    if !python() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("mpkit-codec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hostile.sock").to_string_lossy().into_owned();
    let listener = Listener::bind(&path, Some(b"k3y")).unwrap();
    let mut client = Command::new("python3")
        .args(["-c", PY_HOSTILE, &path])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The receiver is a thread with the default 2 MiB stack.
    let receiver = std::thread::spawn(move || {
        let mut conn = listener
            .accept_timeout(Duration::from_secs(20))
            .unwrap()
            .with_codec::<Pickle>();
        let deep = conn.recv::<serde_pickle::Value>().unwrap_err();
        let bomb = conn.recv::<Vec<Vec<u8>>>().unwrap_err();
        let hello: Hello = conn.recv().unwrap();
        conn.send(&"got it").unwrap();
        (deep, bomb, hello)
    });
    let (deep, bomb, hello) = receiver.join().unwrap();
    let kind = |e: &RecvError| match e {
        RecvError::Decode { source, .. } => source.kind().clone(),
        other => panic!("{other:?}"),
    };
    assert!(
        matches!(kind(&deep), CodecErrorKind::TooDeep { .. }),
        "{deep}"
    );
    assert!(
        matches!(kind(&bomb), CodecErrorKind::TooLarge { .. }),
        "{bomb}"
    );
    assert_eq!(
        hello,
        Hello {
            message: "still here".into(),
            n: vec![1, 2]
        }
    );
    let exited = common::pidfd(client.id() as i32);
    assert!(common::wait_exit(&exited, Duration::from_secs(30)));
    let mut out = String::new();
    client
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    client
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(client.wait().unwrap().success(), "{err}");
    assert_eq!(out.trim(), "got it");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- Checked ----

mod sender {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
    pub struct Job {
        pub id: u64,
        pub name: String,
        pub tags: Vec<String>,
        pub shape: super::Shape,
    }
}

mod receiver {
    /// The same definition as `sender::Job`, in another module (as in
    /// another program): it agrees.
    #[derive(serde::Deserialize, Debug, PartialEq)]
    pub struct Job {
        pub id: u64,
        pub name: String,
        pub tags: Vec<String>,
        pub shape: super::Shape,
    }

    /// A field renamed.
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    pub struct Renamed {
        pub id: u64,
        pub title: String,
        pub tags: Vec<String>,
        pub shape: super::Shape,
    }
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
enum Shape {
    Circle(f64),
    Rect { w: u32, h: u32 },
    Empty,
}

/// `Shape` with its variants in another order: postcard sends the index.
#[derive(serde::Deserialize, Debug)]
#[allow(dead_code)]
enum Reordered {
    Rect { w: u32, h: u32 },
    Circle(f64),
    Empty,
}

fn job() -> sender::Job {
    sender::Job {
        id: 7,
        name: "build".into(),
        tags: vec!["a".into(), "b".into()],
        shape: Shape::Rect { w: 2, h: 3 },
    }
}

fn mismatch(e: &mpkit::codec::CodecError) -> (String, String) {
    match e.kind() {
        CodecErrorKind::TypeMismatch { sent, expected } => (sent.clone(), expected.clone()),
        other => panic!("{other:?}: {e}"),
    }
}

#[test]
fn postcard_alone_does_not_check_types() {
    // What the README's "what is checked" says: postcard reads the bytes
    // as whatever type is asked for.
    use mpkit::codec::Postcard;
    let mut b = Vec::new();
    Postcard::encode(&7u32, &mut b).unwrap();
    assert_eq!(Postcard::decode::<i32>(&b).unwrap(), -4);
    b.clear();
    Postcard::encode(&(1u8, 2u8), &mut b).unwrap();
    assert_eq!(Postcard::decode::<String>(&b).unwrap(), "\u{2}");
}

#[test]
fn checked_tells_types_apart_and_lets_equal_definitions_agree() {
    use mpkit::codec::{Checked, Json, Postcard};
    fn enc<C: Codec, T: serde::Serialize + ?Sized>(v: &T) -> Vec<u8> {
        let mut b = Vec::new();
        C::encode(v, &mut b).unwrap();
        b
    }
    type P = Checked<Postcard>;
    let b = enc::<P, _>(&7u32);
    assert_eq!(
        mismatch(&P::decode::<i32>(&b).unwrap_err()),
        ("u32".into(), "i32".into())
    );
    assert_eq!(P::decode::<u32>(&b).unwrap(), 7);
    let b = enc::<P, _>(&(1u8, 2u8));
    assert_eq!(
        mismatch(&P::decode::<String>(&b).unwrap_err()),
        ("(u8, u8)".into(), "String".into())
    );
    // Equal definitions in different modules agree; the name is informative.
    let b = enc::<P, _>(&job());
    let got: receiver::Job = P::decode(&b).unwrap();
    assert_eq!(got.name, "build");
    assert_eq!(got.shape, Shape::Rect { w: 2, h: 3 });
    let (sent, expected) = mismatch(&P::decode::<receiver::Renamed>(&b).unwrap_err());
    assert_eq!((sent.as_str(), expected.as_str()), ("Job", "Renamed"));
    let b = enc::<P, _>(&Shape::Circle(1.0));
    mismatch(&P::decode::<Reordered>(&b).unwrap_err());
    // Same-shaped standard types count as one: &str/String, slices/Vec,
    // maps, Box.
    let b = enc::<P, _>("text");
    assert_eq!(P::decode::<String>(&b).unwrap(), "text");
    let b = enc::<P, _>(&[1u16, 2][..]);
    assert_eq!(P::decode::<Vec<u16>>(&b).unwrap(), [1, 2]);
    let b = enc::<P, _>(&std::collections::HashMap::from([(1u8, "x")]));
    let m: std::collections::BTreeMap<u8, Box<str>> = P::decode(&b).unwrap();
    assert_eq!(&*m[&1], "x");
    // Only what the value uses is compared: None fits any Option.
    let b = enc::<P, _>(&None::<u32>);
    assert_eq!(P::decode::<Option<String>>(&b).unwrap(), None);
    let b = enc::<P, _>(&Some(5u32));
    mismatch(&P::decode::<Option<u64>>(&b).unwrap_err());
    // Over JSON too.
    let b = enc::<Checked<Json>, _>(&job());
    let got: receiver::Job = Checked::<Json>::decode(&b).unwrap();
    assert_eq!(got.tags, ["a", "b"]);
    let b = enc::<Checked<Json>, _>(&7u32);
    mismatch(&Checked::<Json>::decode::<i32>(&b).unwrap_err());
    // A header cut short is malformed, not a mismatch.
    let b = enc::<P, _>(&7u32);
    for cut in 0..10 {
        let e = P::decode::<u32>(&b[..cut]).unwrap_err();
        assert_eq!(e.kind(), &CodecErrorKind::Invalid, "{cut}");
    }
}

#[test]
fn checked_connections_between_processes_report_the_wrong_type() {
    use mpkit::codec::Checked;
    use mpkit::{Connection, Process};
    let _w = watchdog(30);
    let (here, there) = mpkit::pipe(true).unwrap();
    let mut here = here.with_codec::<Checked>();
    let child = Process::spawn(
        |c: Connection| {
            let mut c = c.with_codec::<Checked>();
            // Received as the wrong type: an error naming both; the
            // connection stays usable.
            let wrong = match c.recv::<i32>() {
                Err(RecvError::Decode { source, .. }) => format!("{:?}", source.kind()),
                other => format!("unexpected: {other:?}"),
            };
            let job: receiver::Job = c.recv().unwrap();
            c.send(&(wrong, job.id)).unwrap();
        },
        there,
    )
    .unwrap();
    here.send(&7u32).unwrap();
    here.send(&job()).unwrap();
    let (wrong, id): (String, u64) = here.recv().unwrap();
    assert_eq!(wrong, r#"TypeMismatch { sent: "u32", expected: "i32" }"#);
    assert_eq!(id, 7);
    child.join().unwrap();
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// Arbitrary bytes, and real pickles with bytes changed, inserted or
    /// cut: the reader answers (a value or an error), it never panics.
    #[test]
    fn any_bytes_are_a_value_or_an_error(
        noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        edits in proptest::collection::vec((0usize..200, proptest::prelude::any::<u8>(), 0u8..3), 0..6),
    ) {
        let _ = Pickle::decode::<serde_pickle::Value>(&noise);
        let mut b = Vec::new();
        Pickle::encode(&(vec![1u32, 2], "text", Some(2.5f64), std::collections::BTreeMap::from([("k", vec![(); 3])])), &mut b).unwrap();
        let mut python_like = memo_bomb(2, 3);
        for (at, byte, how) in edits {
            for target in [&mut b, &mut python_like] {
                let at = at % (target.len() + 1);
                match how {
                    0 if at < target.len() => target[at] = byte,
                    1 => target.insert(at, byte),
                    _ => target.truncate(at),
                }
            }
        }
        let _ = Pickle::decode::<serde_pickle::Value>(&b);
        let _ = Pickle::decode::<serde_json::Value>(&python_like);
    }
}
