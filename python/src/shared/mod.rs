//! Shared values with `multiprocessing`'s signatures: `RawValue`,
//! `RawArray`, and (through the `Value` and `Array` functions of
//! classes.py) `Synchronized`, `SynchronizedArray`, on mpkit's `RawValue`,
//! `RawArray`, `Value` and `Array` (store.rs). The typecode picks the Rust
//! element type ('i' is `i32`, 'd' `f64`, 'c' and 'B' `u8`, '?'
//! `mpkit::shm::Bool`...), so a Rust program opening the same name with
//! another type gets `ShmError::WrongElement`, and Python gets
//! `ValueError` opening with the wrong typecode.

mod pyclasses;
mod store;

use std::ffi::CStr;
use std::sync::Arc;

use pyo3::exceptions::{PyAttributeError, PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyFloat, PyList, PySlice, PyString};

use crate::sync::RLock;
use pyclasses::{RawArray, RawValue, Synchronized, SynchronizedArray};
use store::{Container, Init, Num, Scalar, Store, build};

/// A ctypes typecode and the element type it is stored as.
#[derive(Clone, Copy, Debug)]
struct Kind {
    code: char,
    num: Num,
}

impl Kind {
    /// From a typecode ('i') or a ctypes type (`ctypes.c_int`, whose
    /// `_type_` is the typecode).
    fn of(ty: &Bound<'_, PyAny>) -> PyResult<Kind> {
        let code: String = if ty.is_instance_of::<PyString>() {
            ty.extract()?
        } else {
            match ty.getattr("_type_").and_then(|t| t.extract::<String>()) {
                Ok(s) => s,
                Err(_) => {
                    return Err(PyTypeError::new_err(format!(
                        "{} is not a ctypes typecode or simple ctypes type",
                        ty.repr()?
                    )));
                }
            }
        };
        let num = match code.as_str() {
            "c" | "B" => Num::U8,
            "b" => Num::I8,
            "h" => Num::I16,
            "H" => Num::U16,
            "i" => Num::I32,
            "I" => Num::U32,
            "l" | "q" => Num::I64,
            "L" | "Q" => Num::U64,
            "f" => Num::F32,
            "d" => Num::F64,
            "?" => Num::Bool,
            _ => {
                return Err(PyTypeError::new_err(format!(
                    "unsupported typecode {code:?} (use one of c b B h H i I l L q Q f d ?)"
                )));
            }
        };
        let code = code.chars().next().unwrap_or('i');
        Ok(Kind { code, num })
    }

    fn is_char(self) -> bool {
        self.code == 'c'
    }

    fn to_py(self, py: Python<'_>, s: Scalar) -> PyResult<Py<PyAny>> {
        Ok(match (self.num, s) {
            _ if self.is_char() => {
                let b = match s {
                    Scalar::U(v) => v as u8,
                    Scalar::I(v) => v as u8,
                    Scalar::F(v) => v as u8,
                };
                PyBytes::new(py, &[b]).into_any().unbind()
            }
            (Num::Bool, Scalar::U(v)) => (v != 0).into_pyobject(py)?.to_owned().into_any().unbind(),
            (_, Scalar::I(v)) => v.into_pyobject(py)?.into_any().unbind(),
            (_, Scalar::U(v)) => v.into_pyobject(py)?.into_any().unbind(),
            (_, Scalar::F(v)) => v.into_pyobject(py)?.into_any().unbind(),
        })
    }

    fn parse(self, ob: &Bound<'_, PyAny>) -> PyResult<Scalar> {
        if self.is_char() {
            if let Ok(b) = ob.cast::<PyBytes>() {
                return match b.as_bytes() {
                    [c] => Ok(Scalar::U(u64::from(*c))),
                    _ => Err(PyTypeError::new_err("one character bytes expected")),
                };
            }
            let v: u8 = ob.extract().map_err(|_| {
                PyTypeError::new_err("one character bytes, bytearray or integer expected")
            })?;
            return Ok(Scalar::U(u64::from(v)));
        }
        match self.num {
            Num::Bool => Ok(Scalar::U(u64::from(ob.is_truthy()?))),
            Num::F32 | Num::F64 => Ok(Scalar::F(ob.extract::<f64>().map_err(|_| {
                PyTypeError::new_err(format!("must be real number, not {}", type_name(ob)))
            })?)),
            _ => {
                if ob.is_instance_of::<PyFloat>() {
                    return Err(PyTypeError::new_err("int expected instead of float"));
                }
                if let Ok(v) = ob.extract::<i64>() {
                    Ok(Scalar::I(v))
                } else if let Ok(v) = ob.extract::<u64>() {
                    Ok(Scalar::U(v))
                } else if ob.is_instance_of::<pyo3::types::PyInt>() {
                    Err(PyOverflowError::new_err("int too long to convert"))
                } else {
                    Err(PyTypeError::new_err(format!(
                        "an integer is required (got type {})",
                        type_name(ob)
                    )))
                }
            }
        }
    }

    fn zero(self) -> Scalar {
        match self.num {
            Num::F32 | Num::F64 => Scalar::F(0.0),
            _ => Scalar::I(0),
        }
    }

    fn ctype(self) -> &'static str {
        match self.code {
            'c' => "c_char",
            'b' => "c_byte",
            'B' => "c_ubyte",
            'h' => "c_short",
            'H' => "c_ushort",
            'i' => "c_int",
            'I' => "c_uint",
            'l' => "c_long",
            'L' => "c_ulong",
            'q' => "c_longlong",
            'Q' => "c_ulonglong",
            'f' => "c_float",
            'd' => "c_double",
            _ => "c_bool",
        }
    }
}

/// A 'c' element as its byte.
fn byte(s: Scalar) -> u8 {
    match s {
        Scalar::U(v) => v as u8,
        Scalar::I(v) => v as u8,
        Scalar::F(v) => v as u8,
    }
}

fn type_name(ob: &Bound<'_, PyAny>) -> String {
    ob.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

enum LockMode {
    None,
    /// The robust lock inside mpkit's `Value`/`Array`.
    Internal(Py<RLock>),
    /// A `Lock`/`RLock` the caller gave.
    External(Py<PyAny>),
    /// The `get_obj()` view of a locked value: it has no lock to hand
    /// out, but mpkit reads and writes a `Value`/`Array` only under its
    /// lock, so each access waits for that lock as `Internal` does (GIL
    /// released, Ctrl-C honoured) rather than inside the store with the
    /// GIL held.
    View(Py<RLock>),
}

/// What every shared value class holds.
struct Core {
    kind: Kind,
    container: Container,
    store: Arc<dyn Store>,
    lock: LockMode,
    name: String,
}

impl Core {
    /// Creates (`init` given) or opens the object `name` in `container`,
    /// locked as `lock` says (`None`: by its own lock if it has one).
    fn make(
        py: Python<'_>,
        kind: Kind,
        container: Container,
        name: String,
        init: Option<Init>,
        lock: Option<Py<PyAny>>,
    ) -> PyResult<Core> {
        let (store, shared) = build(py, kind.num, container, &name, init)?;
        let lock = match (lock, shared) {
            (Some(l), _) => LockMode::External(l),
            (None, Some(shared)) => {
                let array = container == Container::Array;
                let rebuild = py.import("mpkit._mpkit")?.getattr("_shared_lock")?;
                let reduce = (rebuild, (name.clone(), kind.code.to_string(), array))
                    .into_pyobject(py)?
                    .into_any()
                    .unbind();
                LockMode::Internal(Py::new(py, RLock::of(shared, name.clone(), reduce))?)
            }
            (None, None) => LockMode::None,
        };
        Ok(Core {
            kind,
            container,
            store,
            lock,
            name,
        })
    }

    fn is_array(&self) -> bool {
        matches!(self.container, Container::RawArray | Container::Array)
    }

    /// Runs `f` holding the lock, if there is one (the GIL is released
    /// while waiting for it).
    fn locked<R>(&self, py: Python<'_>, f: impl FnOnce() -> PyResult<R>) -> PyResult<R> {
        match &self.lock {
            LockMode::None => f(),
            LockMode::Internal(l) | LockMode::View(l) => {
                l.get().acquire_blocking(py)?;
                let r = f();
                l.get().release()?;
                r
            }
            LockMode::External(l) => {
                l.bind(py).call_method0("acquire")?;
                let r = f();
                l.bind(py).call_method0("release")?;
                r
            }
        }
    }

    fn lock_obj(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match &self.lock {
            LockMode::None | LockMode::View(_) => {
                Err(PyAttributeError::new_err("a raw shared value has no lock"))
            }
            LockMode::Internal(l) => Ok(l.clone_ref(py).into_any()),
            LockMode::External(l) => Ok(l.clone_ref(py)),
        }
    }

    fn value(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if self.is_array() {
            if !self.kind.is_char() {
                return Err(PyAttributeError::new_err("only a 'c' array has .value"));
            }
            let bytes = self.locked(py, || self.bytes())?;
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            return Ok(PyBytes::new(py, &bytes[..end]).into_any().unbind());
        }
        let s = self.locked(py, || self.store.get(0))?;
        self.kind.to_py(py, s)
    }

    fn set_value(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.is_array() {
            if !self.kind.is_char() {
                return Err(PyAttributeError::new_err("only a 'c' array has .value"));
            }
            let b = v.cast::<PyBytes>()?.as_bytes().to_vec();
            let len = self.store.len();
            if b.len() > len {
                return Err(PyValueError::new_err("byte string too long"));
            }
            return self.locked(py, || {
                for (i, c) in b.iter().enumerate() {
                    self.store.set(i, Scalar::U(u64::from(*c)))?;
                }
                if b.len() < len {
                    self.store.set(b.len(), Scalar::U(0))?;
                }
                Ok(())
            });
        }
        let s = self.kind.parse(v)?;
        self.locked(py, || self.store.set(0, s))
    }

    fn bytes(&self) -> PyResult<Vec<u8>> {
        Ok(self.store.all()?.into_iter().map(byte).collect())
    }

    fn raw(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if !(self.is_array() && self.kind.is_char()) {
            return Err(PyAttributeError::new_err("only a 'c' array has .raw"));
        }
        let b = self.locked(py, || self.bytes())?;
        Ok(PyBytes::new(py, &b).into_any().unbind())
    }

    fn set_raw(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<()> {
        if !(self.is_array() && self.kind.is_char()) {
            return Err(PyAttributeError::new_err("only a 'c' array has .raw"));
        }
        // Bytes-like only, as ctypes' `.raw`: a list or a str is refused,
        // not taken element by element.
        let b = if let Ok(b) = v.cast::<PyBytes>() {
            b.as_bytes().to_vec()
        } else if let Ok(b) = v.cast::<PyByteArray>() {
            b.to_vec()
        } else {
            return Err(PyTypeError::new_err(format!(
                "a bytes-like object is required, not '{}'",
                type_name(v)
            )));
        };
        if b.len() > self.store.len() {
            return Err(PyValueError::new_err("byte string too long"));
        }
        self.locked(py, || {
            for (i, c) in b.iter().enumerate() {
                self.store.set(i, Scalar::U(u64::from(*c)))?;
            }
            Ok(())
        })
    }

    fn need_array(&self) -> PyResult<()> {
        if self.is_array() {
            Ok(())
        } else {
            Err(PyTypeError::new_err(format!(
                "'{}' object is not subscriptable",
                self.kind.ctype()
            )))
        }
    }

    fn len(&self) -> PyResult<usize> {
        self.need_array()?;
        Ok(self.store.len())
    }

    fn index(&self, i: isize) -> PyResult<usize> {
        let len = self.store.len() as isize;
        let j = if i < 0 { i + len } else { i };
        if j < 0 || j >= len {
            return Err(pyo3::exceptions::PyIndexError::new_err("invalid index"));
        }
        Ok(j as usize)
    }

    /// The positions a slice selects.
    fn positions(&self, s: &Bound<'_, PySlice>) -> PyResult<Vec<usize>> {
        let ix = s.indices(self.store.len() as isize)?;
        Ok((0..ix.slicelength)
            .map(|k| (ix.start + k as isize * ix.step) as usize)
            .collect())
    }

    fn getitem(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.need_array()?;
        if let Ok(s) = key.cast::<PySlice>() {
            let pos = self.positions(s)?;
            let vals = self.locked(py, || {
                // Most slices cover much of the array: copy it in one pass.
                if pos.len() * 4 >= self.store.len() {
                    let all = self.store.all()?;
                    Ok(pos.iter().map(|&i| all[i]).collect())
                } else {
                    pos.iter()
                        .map(|&i| self.store.get(i))
                        .collect::<PyResult<Vec<_>>>()
                }
            })?;
            if self.kind.is_char() {
                let b: Vec<u8> = vals.into_iter().map(byte).collect();
                return Ok(PyBytes::new(py, &b).into_any().unbind());
            }
            let items = vals
                .into_iter()
                .map(|s| self.kind.to_py(py, s))
                .collect::<PyResult<Vec<_>>>()?;
            return Ok(PyList::new(py, items)?.into_any().unbind());
        }
        let i = self.index(key.extract::<isize>()?)?;
        let s = self.locked(py, || self.store.get(i))?;
        self.kind.to_py(py, s)
    }

    fn setitem(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        v: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.need_array()?;
        if let Ok(s) = key.cast::<PySlice>() {
            let pos = self.positions(s)?;
            let vals = v
                .try_iter()?
                .map(|ob| self.kind.parse(&ob?))
                .collect::<PyResult<Vec<_>>>()?;
            if vals.len() != pos.len() {
                return Err(PyValueError::new_err(
                    "Can only assign sequence of same size",
                ));
            }
            return self.locked(py, || {
                for (&i, &s) in pos.iter().zip(&vals) {
                    self.store.set(i, s)?;
                }
                Ok(())
            });
        }
        let i = self.index(key.extract::<isize>()?)?;
        let s = self.kind.parse(v)?;
        self.locked(py, || self.store.set(i, s))
    }

    /// A view of the same memory without the lock (`get_obj()`).
    fn raw_view(&self, py: Python<'_>) -> Core {
        Core {
            kind: self.kind,
            container: self.container,
            store: self.store.clone(),
            lock: match &self.lock {
                LockMode::Internal(l) => LockMode::View(l.clone_ref(py)),
                _ => LockMode::None,
            },
            name: self.name.clone(),
        }
    }

    /// `__reduce__` of a raw object: reopened by name, or for the
    /// `get_obj()` view of a locked object, that object's view.
    fn raw_reduce<'py>(&self, slf: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let code = self.kind.code.to_string();
        match self.container {
            Container::Value | Container::Array => {
                let view = py.import("mpkit._mpkit")?.getattr("_raw_view")?;
                let array = self.container == Container::Array;
                (view, (self.name.clone(), code, array)).into_pyobject(py)
            }
            _ => (slf.get_type().getattr("open")?, (self.name.clone(), code)).into_pyobject(py),
        }
        .map(|t| t.into_any())
    }

    fn repr(&self, py: Python<'_>) -> PyResult<String> {
        let inner = if self.is_array() {
            format!("{}_Array_{}", self.kind.ctype(), self.store.len())
        } else {
            let v = self.value(py)?;
            format!("{}({})", self.kind.ctype(), v.bind(py).repr()?)
        };
        Ok(match self.lock {
            LockMode::None | LockMode::View(_) => format!("<{inner} name={:?}>", self.name),
            _ => format!("<Synchronized wrapper for {inner} name={:?}>", self.name),
        })
    }
}

const CLASSES: &CStr = {
    match CStr::from_bytes_with_nul(concat!(include_str!("classes.py"), "\0").as_bytes()) {
        Ok(c) => c,
        Err(_) => panic!("classes.py holds a NUL byte"),
    }
};

pub(crate) fn register(m: &Bound<'_, PyModule>, names: &mut Vec<&'static str>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<RawValue>()?;
    m.add_class::<RawArray>()?;
    m.add_class::<Synchronized>()?;
    m.add_class::<SynchronizedArray>()?;
    let globals = PyDict::new(py);
    globals.set_item("__name__", m.name()?)?;
    globals.set_item("__builtins__", py.import("builtins")?)?;
    for n in ["RawValue", "RawArray", "Synchronized", "SynchronizedArray"] {
        globals.set_item(n, m.getattr(n)?)?;
    }
    py.run(CLASSES, Some(&globals), None)?;
    for n in ["Value", "Array", "_shared_lock", "_raw_view"] {
        m.add(n, globals.get_item(n)?)?;
    }
    names.extend(["Value", "Array", "RawValue", "RawArray"]);
    Ok(())
}
