//! Python's classic `multiprocessing.Value`/`Array` example: a number, an
//! array `[1, 2, 3]` and a string in shared memory; the child sees the
//! parent's values and changes them, and the parent sees the changes.
//!
//! ```text
//! cargo run --example array
//! ```

use mpkit::Process;
use mpkit::shm::{Array, Value};

fn child((num, arr, text): (Value<f64>, Array<i32>, Array<u8>)) {
    println!(
        "child sees: num = {}, arr = {:?}, arr[1] = {:?}",
        num.get().expect("lock"),
        arr.to_vec().expect("lock"),
        arr.get(1).expect("lock")
    );
    let seen = text.to_string_lossy().expect("lock");
    println!("child sees the string: {seen:?}");
    num.set(std::f64::consts::PI).expect("lock");
    {
        let mut a = arr.lock().expect("lock");
        for x in a.iter_mut() {
            *x = -*x;
        }
    }
    arr.set(1, 20).expect("index 1 exists");
    text.set_value(b"changed by the child").expect("fits");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let num = Value::new(0.0f64)?; // Python: Value('d', 0.0)
    let arr = Array::new(&[1i32, 2, 3])?; // Python: Array('i', [1, 2, 3])
    let text = Array::<u8>::zeroed(32)?; // Python: Array('c', 32)
    text.set_value(b"hello from the parent")?;

    let p = Process::spawn(
        child,
        (num.try_clone()?, arr.try_clone()?, text.try_clone()?),
    )?;
    p.join()?;

    println!(
        "parent sees: num = {}, arr = {:?}",
        num.get()?,
        arr.to_vec()?
    );
    println!("parent sees the string: {:?}", text.to_string_lossy()?);
    Ok(())
}
