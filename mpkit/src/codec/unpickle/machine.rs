//! Running the opcodes: an explicit stack, no recursion.

use std::collections::HashMap;

use super::{Container, Error, Global, Kind, V, describe, invalid};

/// Pickle opcodes (the names of Python's `pickletools`).
mod op {
    pub const MARK: u8 = b'(';
    pub const STOP: u8 = b'.';
    pub const POP: u8 = b'0';
    pub const POP_MARK: u8 = b'1';
    pub const DUP: u8 = b'2';
    pub const FLOAT: u8 = b'F';
    pub const INT: u8 = b'I';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const LONG: u8 = b'L';
    pub const BININT2: u8 = b'M';
    pub const NONE: u8 = b'N';
    pub const STRING: u8 = b'S';
    pub const BINSTRING: u8 = b'T';
    pub const SHORT_BINSTRING: u8 = b'U';
    pub const UNICODE: u8 = b'V';
    pub const BINUNICODE: u8 = b'X';
    pub const APPEND: u8 = b'a';
    pub const BUILD: u8 = b'b';
    pub const GLOBAL: u8 = b'c';
    pub const DICT: u8 = b'd';
    pub const EMPTY_DICT: u8 = b'}';
    pub const APPENDS: u8 = b'e';
    pub const GET: u8 = b'g';
    pub const BINGET: u8 = b'h';
    pub const INST: u8 = b'i';
    pub const LONG_BINGET: u8 = b'j';
    pub const LIST: u8 = b'l';
    pub const EMPTY_LIST: u8 = b']';
    pub const OBJ: u8 = b'o';
    pub const PUT: u8 = b'p';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const SETITEM: u8 = b's';
    pub const TUPLE: u8 = b't';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const SETITEMS: u8 = b'u';
    pub const BINFLOAT: u8 = b'G';
    pub const REDUCE: u8 = b'R';
    pub const PROTO: u8 = 0x80;
    pub const NEWOBJ: u8 = 0x81;
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const LONG1: u8 = 0x8a;
    pub const LONG4: u8 = 0x8b;
    pub const BINBYTES: u8 = b'B';
    pub const SHORT_BINBYTES: u8 = b'C';
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINUNICODE8: u8 = 0x8d;
    pub const BINBYTES8: u8 = 0x8e;
    pub const EMPTY_SET: u8 = 0x8f;
    pub const ADDITEMS: u8 = 0x90;
    pub const FROZENSET: u8 = 0x91;
    pub const NEWOBJ_EX: u8 = 0x92;
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const MEMOIZE: u8 = 0x94;
    pub const FRAME: u8 = 0x95;
    pub const BYTEARRAY8: u8 = 0x96;
}

/// The pickle machine: one stack with the positions of its marks, the
/// memo, and the budget copies are charged to.
struct Machine<'b> {
    input: &'b [u8],
    pos: usize,
    stack: Vec<V>,
    marks: Vec<usize>,
    memo: HashMap<u32, V>,
    /// What copies (`DUP`, memo values taken by `REDUCE`) may still cost.
    copies_left: u64,
    budget: u64,
}

impl<'b> Machine<'b> {
    fn byte(&mut self) -> Result<u8, Error> {
        let b = *self
            .input
            .get(self.pos)
            .ok_or_else(|| Error::Invalid("the pickle ends before its STOP opcode".into()))?;
        self.pos += 1;
        Ok(b)
    }

    /// `n` bytes, checked against what is there before anything is
    /// allocated: a length field is the sender's word.
    fn take(&mut self, n: u64) -> Result<&'b [u8], Error> {
        let left = (self.input.len() - self.pos) as u64;
        if n > left {
            return invalid(
                self.pos,
                format_args!("a length of {n} bytes runs past the end of the pickle"),
            );
        }
        let s = &self.input[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        Ok(self.take(N as u64)?.try_into().expect("length checked"))
    }

    fn line(&mut self) -> Result<&'b [u8], Error> {
        let rest = &self.input[self.pos..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return invalid(self.pos, "a text argument without its newline");
        };
        self.pos += end + 1;
        let line = &rest[..end];
        Ok(line.strip_suffix(b"\r").unwrap_or(line))
    }

    fn ascii<T: std::str::FromStr>(&self, line: &[u8]) -> Result<T, Error> {
        match std::str::from_utf8(line).ok().and_then(|s| s.parse().ok()) {
            Some(v) => Ok(v),
            None => invalid(
                self.pos,
                format_args!("invalid literal {:?}", String::from_utf8_lossy(line)),
            ),
        }
    }

    /// Where the items after the innermost mark start.
    fn base(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<V, Error> {
        if self.stack.len() > self.base() {
            Ok(self.stack.pop().expect("above the mark"))
        } else {
            invalid(self.pos, "stack underflow")
        }
    }

    fn pop_mark(&mut self) -> Result<Vec<V>, Error> {
        match self.marks.pop() {
            Some(at) => Ok(self.stack.split_off(at)),
            None => invalid(self.pos, "stack underflow (no mark)"),
        }
    }

    /// A charged copy of `v`, or of its value if it is a memo reference.
    fn copy_of(&mut self, v: &V) -> Result<V, Error> {
        let v = match v {
            V::Ref(id) => match self.memo.get(id) {
                Some(target) => target,
                None => return invalid(self.pos, format_args!("memo {id} is not defined")),
            },
            v => v,
        };
        self.copies_left = self
            .copies_left
            .checked_sub(v.weight())
            .ok_or(Error::TooLarge(self.budget))?;
        Ok(v.clone())
    }

    /// `v` with a memo reference replaced by a (charged) copy of its value.
    fn resolve(&mut self, v: V) -> Result<V, Error> {
        match v {
            V::Ref(_) => self.copy_of(&v),
            v => Ok(v),
        }
    }

    /// The container on top of the stack (through the memo if the top is
    /// a reference), which must be of kind `kind`.
    fn top(&mut self, kind: Kind) -> Result<&mut Container, Error> {
        let at = self.pos;
        if self.stack.len() <= self.base() {
            return invalid(at, "stack underflow");
        }
        let memo_id = match self.stack.last() {
            Some(V::Ref(id)) => Some(*id),
            _ => None,
        };
        let top = match memo_id {
            Some(id) => match self.memo.get_mut(&id) {
                Some(v) => v,
                None => return invalid(at, format_args!("memo {id} is not defined")),
            },
            None => self.stack.last_mut().expect("above the mark"),
        };
        let found = describe(top);
        match top {
            V::C(c) if c.kind == kind => Ok(c),
            _ => invalid(
                at,
                format_args!("expected a {kind:?} on the stack, found {found}"),
            ),
        }
    }

    fn memoize(&mut self, id: u32) -> Result<(), Error> {
        let item = self.pop()?;
        let item = self.resolve(item)?;
        self.memo.insert(id, item);
        self.stack.push(V::Ref(id));
        Ok(())
    }

    fn get(&mut self, id: u32) -> Result<(), Error> {
        if !self.memo.contains_key(&id) {
            return invalid(self.pos, format_args!("memo {id} is not defined"));
        }
        self.stack.push(V::Ref(id));
        Ok(())
    }

    fn push_str(&mut self, bytes: &[u8]) -> Result<(), Error> {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                self.stack.push(V::Str(s.to_owned()));
                Ok(())
            }
            Err(_) => invalid(self.pos, "a string that is not UTF-8"),
        }
    }

    fn len_u32(&mut self) -> Result<u64, Error> {
        Ok(u32::from_le_bytes(self.fixed()?).into())
    }

    fn len_i32(&mut self) -> Result<u64, Error> {
        let n = i32::from_le_bytes(self.fixed()?);
        u64::try_from(n).or_else(|_| invalid(self.pos, "a negative length"))
    }

    fn len_u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.fixed()?))
    }

    /// Runs the opcodes up to `STOP`; returns the value left on the stack.
    fn run(&mut self) -> Result<V, Error> {
        loop {
            let at = self.pos;
            let code = self.byte()?;
            match code {
                op::PROTO => {
                    self.byte()?;
                }
                op::FRAME => {
                    self.fixed::<8>()?;
                }
                op::STOP => return self.pop(),
                op::MARK => self.marks.push(self.stack.len()),
                op::POP => {
                    if self.stack.len() > self.base() {
                        self.pop()?;
                    } else {
                        self.pop_mark()?;
                    }
                }
                op::POP_MARK => {
                    self.pop_mark()?;
                }
                op::DUP => {
                    let top = self.pop()?;
                    let copy = self.copy_of(&top)?;
                    self.stack.push(top);
                    self.stack.push(copy);
                }
                op::PUT => {
                    let line = self.line()?;
                    let id = self.ascii(line)?;
                    self.memoize(id)?;
                }
                op::BINPUT => {
                    let id = self.byte()?;
                    self.memoize(id.into())?;
                }
                op::LONG_BINPUT => {
                    let id = u32::from_le_bytes(self.fixed()?);
                    self.memoize(id)?;
                }
                op::MEMOIZE => {
                    let id = u32::try_from(self.memo.len())
                        .or_else(|_| invalid(at, "too many memo entries"))?;
                    self.memoize(id)?;
                }
                op::GET => {
                    let line = self.line()?;
                    let id = self.ascii(line)?;
                    self.get(id)?;
                }
                op::BINGET => {
                    let id = self.byte()?;
                    self.get(id.into())?;
                }
                op::LONG_BINGET => {
                    let id = u32::from_le_bytes(self.fixed()?);
                    self.get(id)?;
                }
                op::NONE => self.stack.push(V::None),
                op::NEWFALSE => self.stack.push(V::Bool(false)),
                op::NEWTRUE => self.stack.push(V::Bool(true)),
                op::INT => {
                    let line = self.line()?;
                    let v = match line {
                        b"00" => V::Bool(false),
                        b"01" => V::Bool(true),
                        _ => V::Int(self.ascii::<i64>(line)?.into()),
                    };
                    self.stack.push(v);
                }
                op::LONG => {
                    let line = self.line()?;
                    let digits = line.strip_suffix(b"L").unwrap_or(line);
                    let v = text_long(digits).ok_or_else(|| {
                        Error::Invalid(format!(
                            "invalid integer {:?} at byte {at}",
                            String::from_utf8_lossy(line)
                        ))
                    })?;
                    self.stack.push(v);
                }
                op::FLOAT => {
                    let line = self.line()?;
                    let f = self.ascii(line)?;
                    self.stack.push(V::Float(f));
                }
                op::STRING => {
                    let line = self.line()?;
                    let bytes = unescape_string(line)
                        .ok_or_else(|| Error::Invalid(format!("invalid STRING at byte {at}")))?;
                    self.stack.push(V::Bytes(bytes));
                }
                op::UNICODE => {
                    let line = self.line()?;
                    let s = raw_unicode_escape(line)
                        .ok_or_else(|| Error::Invalid(format!("invalid UNICODE at byte {at}")))?;
                    self.stack.push(V::Str(s));
                }
                op::BINFLOAT => {
                    let f = f64::from_be_bytes(self.fixed()?);
                    self.stack.push(V::Float(f));
                }
                op::BININT => {
                    let i = i32::from_le_bytes(self.fixed()?);
                    self.stack.push(V::Int(i.into()));
                }
                op::BININT1 => {
                    let i = self.byte()?;
                    self.stack.push(V::Int(i.into()));
                }
                op::BININT2 => {
                    let i = u16::from_le_bytes(self.fixed()?);
                    self.stack.push(V::Int(i.into()));
                }
                op::LONG1 => {
                    let n = self.byte()?;
                    let bytes = self.take(n.into())?;
                    self.stack.push(binary_long(bytes));
                }
                op::LONG4 => {
                    let n = self.len_i32()?;
                    let bytes = self.take(n)?;
                    self.stack.push(binary_long(bytes));
                }
                op::SHORT_BINBYTES | op::SHORT_BINSTRING => {
                    let n = self.byte()?;
                    let b = self.take(n.into())?;
                    self.stack.push(V::Bytes(b.to_vec()));
                }
                op::BINBYTES => {
                    let n = self.len_u32()?;
                    let b = self.take(n)?;
                    self.stack.push(V::Bytes(b.to_vec()));
                }
                op::BINSTRING => {
                    let n = self.len_i32()?;
                    let b = self.take(n)?;
                    self.stack.push(V::Bytes(b.to_vec()));
                }
                op::BINBYTES8 | op::BYTEARRAY8 => {
                    let n = self.len_u64()?;
                    let b = self.take(n)?;
                    self.stack.push(V::Bytes(b.to_vec()));
                }
                op::SHORT_BINUNICODE => {
                    let n = self.byte()?;
                    let b = self.take(n.into())?;
                    self.push_str(b)?;
                }
                op::BINUNICODE => {
                    let n = self.len_u32()?;
                    let b = self.take(n)?;
                    self.push_str(b)?;
                }
                op::BINUNICODE8 => {
                    let n = self.len_u64()?;
                    let b = self.take(n)?;
                    self.push_str(b)?;
                }
                op::EMPTY_TUPLE => self.stack.push(V::container(Kind::Tuple, Vec::new())?),
                op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                    let n = usize::from(code - op::TUPLE1 + 1);
                    if self.stack.len() < self.base() + n {
                        return invalid(at, "stack underflow");
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(V::container(Kind::Tuple, items)?);
                }
                op::TUPLE => {
                    let items = self.pop_mark()?;
                    self.stack.push(V::container(Kind::Tuple, items)?);
                }
                op::EMPTY_LIST => self.stack.push(V::container(Kind::List, Vec::new())?),
                op::LIST => {
                    let items = self.pop_mark()?;
                    self.stack.push(V::container(Kind::List, items)?);
                }
                op::APPEND => {
                    let v = self.pop()?;
                    self.top(Kind::List)?.extend([v])?;
                }
                op::APPENDS => {
                    let items = self.pop_mark()?;
                    self.top(Kind::List)?.extend(items)?;
                }
                op::EMPTY_DICT => self.stack.push(V::container(Kind::Dict, Vec::new())?),
                op::DICT => {
                    let mut items = self.pop_mark()?;
                    // A key without a value is dropped, as serde-pickle does.
                    items.truncate(items.len() & !1);
                    self.stack.push(V::container(Kind::Dict, items)?);
                }
                op::SETITEM => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.top(Kind::Dict)?.extend([key, value])?;
                }
                op::SETITEMS => {
                    let mut items = self.pop_mark()?;
                    items.truncate(items.len() & !1);
                    self.top(Kind::Dict)?.extend(items)?;
                }
                op::EMPTY_SET => self.stack.push(V::container(Kind::Set, Vec::new())?),
                op::FROZENSET => {
                    let items = self.pop_mark()?;
                    self.stack.push(V::container(Kind::FrozenSet, items)?);
                }
                op::ADDITEMS => {
                    let items = self.pop_mark()?;
                    self.top(Kind::Set)?.extend(items)?;
                }
                op::GLOBAL => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(V::Global(global(module, name)));
                }
                op::STACK_GLOBAL => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let g = match (self.string_at(&module), self.string_at(&name)) {
                        (Some(m), Some(n)) => global(m.as_bytes(), n.as_bytes()),
                        _ => return invalid(at, "STACK_GLOBAL needs two strings"),
                    };
                    self.stack.push(V::Global(g));
                }
                op::REDUCE => {
                    let args = self.pop()?;
                    let args = self.resolve(args)?;
                    let V::C(args) = args else {
                        return invalid(at, "REDUCE needs an argument tuple");
                    };
                    if args.kind != Kind::Tuple {
                        return invalid(at, "REDUCE needs an argument tuple");
                    }
                    let callable = self.pop()?;
                    let callable = match &callable {
                        V::Ref(id) => self.memo.get(id),
                        v => Some(v),
                    };
                    let Some(&V::Global(g)) = callable else {
                        return invalid(at, "REDUCE needs a global to call");
                    };
                    let v = self.reduce(g, args.items)?;
                    self.stack.push(v);
                }
                op::INST => {
                    self.line()?;
                    self.line()?;
                    self.pop_mark()?;
                    self.stack.push(V::container(Kind::Dict, Vec::new())?);
                }
                op::OBJ => {
                    self.pop_mark()?;
                    self.pop()?;
                    self.stack.push(V::container(Kind::Dict, Vec::new())?);
                }
                op::NEWOBJ => {
                    self.pop()?;
                    self.pop()?;
                    self.stack.push(V::container(Kind::Dict, Vec::new())?);
                }
                op::NEWOBJ_EX => {
                    self.pop()?;
                    self.pop()?;
                    self.pop()?;
                    self.stack.push(V::container(Kind::Dict, Vec::new())?);
                }
                op::BUILD => {
                    let state = self.pop()?;
                    self.pop()?;
                    self.stack.push(state);
                }
                other => {
                    return invalid(
                        at,
                        format_args!(
                            "unsupported pickle opcode {other:#04x} ({:?})",
                            other as char
                        ),
                    );
                }
            }
        }
    }

    /// The string `v` is, or refers to.
    fn string_at<'v>(&'v self, v: &'v V) -> Option<&'v str> {
        match v {
            V::Str(s) => Some(s),
            V::Ref(id) => match self.memo.get(id) {
                Some(V::Str(s)) => Some(s),
                _ => None,
            },
            _ => None,
        }
    }

    /// Applies one of the globals that mean data to its arguments.
    fn reduce(&mut self, g: Global, mut args: Vec<V>) -> Result<V, Error> {
        let at = self.pos;
        let arg = |m: &mut Self, args: &mut Vec<V>| match args.pop() {
            Some(v) => m.resolve(v).map(Some),
            None => Ok(None),
        };
        Ok(match g {
            Global::Set | Global::FrozenSet | Global::List => {
                let kind = match g {
                    Global::Set => Kind::Set,
                    Global::FrozenSet => Kind::FrozenSet,
                    _ => Kind::List,
                };
                match arg(self, &mut args)? {
                    Some(V::C(c)) if c.kind == Kind::List => V::container(kind, c.items)?,
                    _ => return invalid(at, format_args!("{g:?}() needs a list")),
                }
            }
            Global::Bytearray | Global::Bytes => {
                args.truncate(1);
                match arg(self, &mut args)? {
                    None if g == Global::Bytes => V::Bytes(Vec::new()),
                    Some(V::Bytes(b)) => V::Bytes(b),
                    Some(V::Str(s)) => V::Bytes(s.chars().map(|c| c as u32 as u8).collect()),
                    _ => return invalid(at, "bytearray() needs bytes or a string"),
                }
            }
            Global::Int => match arg(self, &mut args)? {
                Some(v @ (V::Int(_) | V::Huge)) => v,
                _ => return invalid(at, "int() needs an integer"),
            },
            Global::Encode => {
                if !matches!(arg(self, &mut args)?, Some(V::Str(_))) {
                    return invalid(at, "encode() needs an encoding name");
                }
                match arg(self, &mut args)? {
                    Some(V::Str(s)) => V::Bytes(s.chars().map(|c| c as u32 as u8).collect()),
                    _ => return invalid(at, "encode() needs a string"),
                }
            }
            Global::Reconstructor => V::container(Kind::Dict, Vec::new())?,
            Global::Other => V::Global(Global::Other),
        })
    }
}

fn global(module: &[u8], name: &[u8]) -> Global {
    match (module, name) {
        (b"_codecs", b"encode") => Global::Encode,
        (b"copy_reg" | b"copyreg", b"_reconstructor") => Global::Reconstructor,
        (b"__builtin__" | b"builtins", b"set") => Global::Set,
        (b"__builtin__" | b"builtins", b"frozenset") => Global::FrozenSet,
        (b"__builtin__" | b"builtins", b"list") => Global::List,
        (b"__builtin__" | b"builtins", b"bytearray") => Global::Bytearray,
        (b"__builtin__" | b"builtins", b"bytes") => Global::Bytes,
        (b"__builtin__" | b"builtins", b"int") => Global::Int,
        _ => Global::Other,
    }
}

/// A little-endian two's complement integer (`LONG1`, `LONG4`).
fn binary_long(bytes: &[u8]) -> V {
    let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
    let fill = if negative { 0xff } else { 0 };
    // Leading sign bytes carry no value, so a long run of them still fits.
    let mut len = bytes.len();
    while len > 0 && bytes[len - 1] == fill && (len < 2 || (bytes[len - 2] & 0x80 != 0) == negative)
    {
        len -= 1;
    }
    if len > 16 {
        return V::Huge;
    }
    let mut buf = [fill; 16];
    buf[..len].copy_from_slice(&bytes[..len]);
    V::Int(i128::from_le_bytes(buf))
}

/// A decimal integer written by protocol 0 (`LONG`).
fn text_long(digits: &[u8]) -> Option<V> {
    let s = std::str::from_utf8(digits).ok()?;
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().map_or(V::Huge, V::Int))
}

/// A protocol 0 `STRING` argument: quoted, with Python's escapes.
fn unescape_string(line: &[u8]) -> Option<Vec<u8>> {
    let s = match line {
        [q, inner @ .., q2] if q == q2 && (*q == b'"' || *q == b'\'') => inner,
        _ => line,
    };
    let mut out = Vec::with_capacity(s.len());
    let mut it = s.iter();
    while let Some(&b) = it.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        out.push(match it.next()? {
            b'\\' => b'\\',
            b'\'' => b'\'',
            b'"' => b'"',
            b'a' => 0x07,
            b'b' => 0x08,
            b't' => b'\t',
            b'n' => b'\n',
            b'v' => 0x0b,
            b'f' => 0x0c,
            b'r' => b'\r',
            b'x' => {
                let hi = (*it.next()? as char).to_digit(16)?;
                let lo = (*it.next()? as char).to_digit(16)?;
                (hi * 16 + lo) as u8
            }
            _ => return None,
        });
    }
    Some(out)
}

/// A protocol 0 `UNICODE` argument: raw-unicode-escape.
fn raw_unicode_escape(line: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(line.len());
    let mut it = line.iter();
    while let Some(&b) = it.next() {
        if b != b'\\' {
            out.push(b as char);
            continue;
        }
        let n = match it.next()? {
            b'u' => 4,
            b'U' => 8,
            _ => return None,
        };
        let mut code = 0u32;
        for _ in 0..n {
            code = code * 16 + (*it.next()? as char).to_digit(16)?;
        }
        out.push(char::from_u32(code)?);
    }
    Some(out)
}

/// Runs a whole pickle; returns its value and the memo its references
/// point into.
pub(super) fn run(input: &[u8], budget: u64) -> Result<(V, HashMap<u32, V>), Error> {
    let mut m = Machine {
        input,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        copies_left: budget,
        budget,
    };
    let root = m.run()?;
    if m.pos != input.len() {
        return invalid(
            m.pos,
            format_args!("{} trailing bytes after STOP", input.len() - m.pos),
        );
    }
    Ok((root, m.memo))
}
