//! The column format's unit tests.

use serde::Deserialize;

use super::*;
use crate::codec::CodecError;

fn write<T: Serialize>(values: &[T]) -> Vec<u8> {
    let mut buf = vec![9];
    let mut w = ItemWriter::new(&mut buf);
    for v in values {
        w.push(v).unwrap();
    }
    buf.remove(0);
    buf
}

fn read<T: for<'b> Deserialize<'b>>(bytes: &[u8], n: usize) -> Result<Vec<T>, CodecError> {
    let mut r = ItemReader::new(bytes)?;
    let values = (0..n).map(|_| r.next()).collect::<Result<_, _>>()?;
    r.finish()?;
    Ok(values)
}

#[derive(Serialize, Deserialize, PartialEq, Debug, Clone, Copy)]
struct Metres(f64);

#[test]
fn scalars_are_written_fixed_width_and_read_back() {
    let bytes = write(&[1u64, 2, u64::MAX]);
    assert_eq!(bytes[0], Kind::U64 as u8);
    assert_eq!(bytes.len(), 1 + 3 * 8);
    assert_eq!(read::<u64>(&bytes, 3).unwrap(), [1, 2, u64::MAX]);
    // A newtype is its scalar.
    let bytes = write(&[Metres(1.5), Metres(-0.0)]);
    assert_eq!(bytes[0], Kind::F64 as u8);
    assert_eq!(
        read::<Metres>(&bytes, 2).unwrap(),
        [Metres(1.5), Metres(-0.0)]
    );
    // Unit takes no room.
    let bytes = write(&[(), (), ()]);
    assert_eq!(bytes, [Kind::Unit as u8]);
    assert_eq!(read::<()>(&bytes, 3).unwrap().len(), 3);
    for (bytes, n) in [
        (write(&['a', '\u{10FFFF}']), 2),
        (write(&[true, false]), 2),
        (write(&[-5i8]), 1),
        (write(&[i128::MIN]), 1),
    ] {
        assert_ne!(bytes[0], POSTCARD);
        assert_eq!(
            bytes.len(),
            1 + n * Kind::from_byte(bytes[0]).unwrap().width()
        );
    }
    assert_eq!(read::<char>(&write(&['a', 'é']), 2).unwrap(), ['a', 'é']);
}

#[test]
fn values_that_are_not_one_scalar_are_postcard() {
    let values = vec!["a".to_string(), "bc".into()];
    let bytes = write(&values);
    assert_eq!(bytes[0], POSTCARD);
    assert_eq!(read::<String>(&bytes, 2).unwrap(), values);
    let bytes = write(&[Some(1u8), None]);
    assert_eq!(bytes[0], POSTCARD);
    assert_eq!(read::<Option<u8>>(&bytes, 2).unwrap(), [Some(1), None]);
}

/// A type whose values serialize as different scalars.
#[derive(Debug, PartialEq)]
enum Either {
    Small(u8),
    Big(u64),
}

impl Serialize for Either {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Either::Small(v) => s.serialize_u8(v),
            Either::Big(v) => s.serialize_u64(v),
        }
    }
}

#[test]
fn a_value_of_another_shape_turns_the_column_to_postcard() {
    let bytes = write(&[Either::Small(3), Either::Small(200), Either::Big(1 << 40)]);
    assert_eq!(bytes[0], POSTCARD);
    let mut expected = vec![POSTCARD];
    let mut postcard = Appender::new(&mut expected);
    postcard.push(&3u8).unwrap();
    postcard.push(&200u8).unwrap();
    postcard.push(&(1u64 << 40)).unwrap();
    assert_eq!(bytes, expected);
    // Then a string after numbers.
    #[derive(Serialize)]
    #[serde(untagged)]
    enum Mixed {
        N(i32),
        S(&'static str),
    }
    let bytes = write(&[Mixed::N(-1), Mixed::N(7), Mixed::S("x")]);
    let mut r = ItemReader::new(&bytes).unwrap();
    assert_eq!(
        (r.next::<i32>().unwrap(), r.next::<i32>().unwrap()),
        (-1, 7)
    );
    assert_eq!(r.next::<String>().unwrap(), "x");
    r.finish().unwrap();
}

#[test]
fn widths_are_the_readers_choice_within_range() {
    // Written as u64, read as u8: serde's range check decides.
    let bytes = write(&[200u64, 300]);
    let mut r = ItemReader::new(&bytes).unwrap();
    assert_eq!(r.next::<u8>().unwrap(), 200);
    assert!(r.next::<u8>().is_err());
}

#[test]
fn bad_columns_are_errors() {
    let mut bytes = write(&[1u32, 2]);
    bytes.pop();
    let e = read::<u32>(&bytes, 2).unwrap_err();
    assert!(e.to_string().contains("end inside"), "{e}");
    let bytes = write(&[1u32, 2]);
    assert!(
        read::<u32>(&bytes, 1)
            .unwrap_err()
            .to_string()
            .contains("trailing")
    );
    assert!(read::<bool>(&[Kind::Bool as u8, 2], 1).is_err());
    let mut not_char = vec![Kind::Char as u8];
    not_char.extend_from_slice(&0xD800u32.to_le_bytes());
    assert!(read::<char>(&not_char, 1).is_err());
    assert!(read::<u8>(&[18, 0], 1).is_err());
    // A narrowed column cut inside a value.
    assert!(read::<u64>(&[Kind::U64As32 as u8, 1, 0, 0], 1).is_err());
    assert!(read::<u8>(&[], 1).is_err());
    // A string asked of a number column.
    assert!(read::<String>(&write(&[1u8]), 1).is_err());
}

#[test]
fn a_panic_leaves_nothing_of_its_value() {
    struct Panics;
    impl Serialize for Panics {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let _ = s.serialize_u64(7);
            panic!("after the write")
        }
    }
    let mut buf = Vec::new();
    let mut w = ItemWriter::new(&mut buf);
    w.push(&1u64).unwrap();
    assert!(matches!(
        w.push_caught(&Panics),
        Err(PushError::Panicked(_))
    ));
    w.push(&2u64).unwrap();
    assert_eq!(read::<u64>(&buf, 2).unwrap(), [1, 2]);
}

#[test]
fn values_of_64_bits_that_fit_32_take_4_bytes() {
    let bytes = write(&[1u64, 2, u64::from(u32::MAX)]);
    assert_eq!((bytes[0], bytes.len()), (Kind::U64As32 as u8, 1 + 3 * 4));
    assert_eq!(read::<u64>(&bytes, 3).unwrap(), [1, 2, u64::from(u32::MAX)]);
    // Read back as any width the values fit, as a wide column is.
    assert_eq!(read::<u32>(&bytes, 3).unwrap(), [1, 2, u32::MAX]);
    assert!(read::<u16>(&bytes, 3).is_err());
    let bytes = write(&[-1i64, i64::from(i32::MIN), 7]);
    assert_eq!((bytes[0], bytes.len()), (Kind::I64As32 as u8, 1 + 3 * 4));
    assert_eq!(
        read::<i64>(&bytes, 3).unwrap(),
        [-1, i64::from(i32::MIN), 7]
    );
    // A first value past 32 bits: 8 bytes from the start.
    let bytes = write(&[1u64 << 32, 1]);
    assert_eq!((bytes[0], bytes.len()), (Kind::U64 as u8, 1 + 2 * 8));
    // A usize is a u64.
    assert_eq!(write(&[3usize])[0], Kind::U64As32 as u8);
}

#[test]
fn a_value_past_32_bits_widens_the_column_once() {
    for values in [
        vec![5u64, u64::MAX, 7],
        vec![0, 1 << 32],
        vec![u64::from(u32::MAX), u64::from(u32::MAX) + 1, 0],
    ] {
        let bytes = write(&values);
        assert_eq!(bytes[0], Kind::U64 as u8, "{values:?}");
        assert_eq!(bytes.len(), 1 + values.len() * 8);
        assert_eq!(read::<u64>(&bytes, values.len()).unwrap(), values);
    }
    let values = [-3i64, i64::MIN, 2, -1];
    let bytes = write(&values);
    assert_eq!(bytes[0], Kind::I64 as u8);
    assert_eq!(read::<i64>(&bytes, 4).unwrap(), values);
    // Past the widening, another shape still turns it to postcard, with
    // the values written so far rewritten right.
    let bytes = write(&[Either::Big(1), Either::Big(1 << 40), Either::Small(2)]);
    assert_eq!(bytes[0], POSTCARD);
    let mut r = ItemReader::new(&bytes).unwrap();
    assert_eq!(
        [r.next::<u64>().unwrap(), r.next::<u64>().unwrap()],
        [1, 1 << 40]
    );
    assert_eq!(r.next::<u8>().unwrap(), 2);
    r.finish().unwrap();
}

#[test]
fn a_run_widens_inside_a_batch_and_goes_on() {
    // `extend_fixed` writes runs 256 at a time: widen in the middle of
    // the third batch, then go on for more batches.
    let values: Vec<i64> = (0..2000)
        .map(|i| if i == 600 { i64::MAX - i } else { -i })
        .collect();
    let mut buf = Vec::new();
    let mut w = ItemWriter::new(&mut buf);
    let mut items = values.iter().copied();
    w.push(&items.next().unwrap()).unwrap();
    assert!(matches!(w.extend_fixed(&mut items), Run::Done(1999)));
    assert_eq!(buf[0], Kind::I64 as u8);
    assert_eq!(read::<i64>(&buf, 2000).unwrap(), values);
    // And a run that stays narrow.
    let mut buf = Vec::new();
    let mut w = ItemWriter::new(&mut buf);
    let mut items = 0..1000u64;
    w.push(&items.next().unwrap()).unwrap();
    assert!(matches!(w.extend_fixed(&mut items), Run::Done(999)));
    assert_eq!((buf[0], buf.len()), (Kind::U64As32 as u8, 1 + 1000 * 4));
    assert_eq!(
        read::<u64>(&buf, 1000).unwrap(),
        (0..1000).collect::<Vec<_>>()
    );
}
