//! Metadata values: the thirteen GGUF value types, arrays of any of them (arrays of arrays included), and
//! how each is laid out in the file.
//!
//! Arrays keep their elements in typed vectors (`Vec<u32>`, `Vec<String>`, ...), so a vocabulary of
//! 150k tokens is one `Vec<String>` and a table of scores one `Vec<f32>`, not a vector of enums.

use super::cursor::Cursor;
use super::error::{Error, Result};
use super::limits::{MAX_ARRAY_DEPTH, MAX_ARRAY_LEN, MAX_STRING_BYTES};

/// The type tag of a metadata value (`gguf_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    /// The type of a GGUF type id (0..=12).
    pub fn from_id(id: u32) -> Option<Self> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// llama.cpp's short name (`u32`, `str`, `arr`).
    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "str",
            Array => "arr",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }

    /// Fewest bytes one value of this type takes in a file (an array: its element type and count).
    fn min_bytes(self) -> u64 {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }
}

impl std::fmt::Display for ValueType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Array),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A metadata array: one element type, every element of it.
#[derive(Debug, Clone, PartialEq)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    /// Each inner array has its own element type.
    Array(Vec<Array>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl Value {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// The type in words, for errors: `u32`, `array of str`.
    pub fn describe(&self) -> String {
        match self {
            Value::Array(a) => a.describe(),
            other => other.value_type().name().to_string(),
        }
    }
}

macro_rules! array_accessors {
    ($($variant:ident, $method:ident, $t:ty;)*) => {
        impl Array {
            /// The element type.
            pub fn element_type(&self) -> ValueType {
                match self {
                    $(Array::$variant(_) => ValueType::$variant,)*
                }
            }

            pub fn len(&self) -> usize {
                match self {
                    $(Array::$variant(v) => v.len(),)*
                }
            }

            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            $(
                #[doc = concat!("The elements, if they are `", stringify!($t), "`.")]
                pub fn $method(&self) -> Option<&[$t]> {
                    match self {
                        Array::$variant(v) => Some(v),
                        _ => None,
                    }
                }
            )*
        }
    };
}

array_accessors! {
    U8, as_u8, u8;
    I8, as_i8, i8;
    U16, as_u16, u16;
    I16, as_i16, i16;
    U32, as_u32, u32;
    I32, as_i32, i32;
    F32, as_f32, f32;
    Bool, as_bool, bool;
    String, as_strings, String;
    Array, as_arrays, Array;
    U64, as_u64, u64;
    I64, as_i64, i64;
    F64, as_f64, f64;
}

impl Array {
    /// The type in words, for errors: `array of str`, `array of array of i32`.
    pub fn describe(&self) -> String {
        match self {
            Array::Array(inner) => match inner.first() {
                Some(first) => format!("array of {}", first.describe()),
                None => "array of arr".to_string(),
            },
            other => format!("array of {}", other.element_type()),
        }
    }
}

/// Elements reserved before reading an array of strings or arrays.
const PREALLOCATE: usize = 1024;

/// A value type id, refused when unknown.
fn value_type(c: &mut Cursor<'_>, key: &str) -> Result<ValueType> {
    let id = c.u32("metadata value type")?;
    ValueType::from_id(id).ok_or_else(|| Error::UnknownValueType { key: key.to_string(), id })
}

fn bool_byte(byte: u8, key: &str, offset: usize) -> Result<bool> {
    match byte {
        0 => Ok(false),
        1 => Ok(true),
        // The spec: "Anything else is invalid".
        _ => Err(Error::InvalidBool { key: key.to_string(), offset: offset as u64, byte }),
    }
}

/// A value (type tag, then the value) of metadata key `key`.
pub(crate) fn read_value(c: &mut Cursor<'_>, key: &str) -> Result<Value> {
    let ty = value_type(c, key)?;
    const WHAT: &str = "metadata value";
    Ok(match ty {
        ValueType::U8 => Value::U8(c.u8(WHAT)?),
        ValueType::I8 => Value::I8(c.u8(WHAT)? as i8),
        ValueType::U16 => Value::U16(c.u16(WHAT)?),
        ValueType::I16 => Value::I16(c.u16(WHAT)? as i16),
        ValueType::U32 => Value::U32(c.u32(WHAT)?),
        ValueType::I32 => Value::I32(c.u32(WHAT)? as i32),
        ValueType::F32 => Value::F32(f32::from_bits(c.u32(WHAT)?)),
        ValueType::Bool => {
            let offset = c.pos();
            Value::Bool(bool_byte(c.u8(WHAT)?, key, offset)?)
        }
        ValueType::String => Value::String(c.string("metadata string", MAX_STRING_BYTES)?),
        ValueType::Array => Value::Array(read_array(c, key, 1)?),
        ValueType::U64 => Value::U64(c.u64(WHAT)?),
        ValueType::I64 => Value::I64(c.u64(WHAT)? as i64),
        ValueType::F64 => Value::F64(f64::from_bits(c.u64(WHAT)?)),
    })
}

/// An array body: element type, u64 count, elements. `depth` counts this array (1 for a top-level one).
fn read_array(c: &mut Cursor<'_>, key: &str, depth: usize) -> Result<Array> {
    if depth > MAX_ARRAY_DEPTH {
        return Err(Error::ArrayTooDeep { key: key.to_string(), limit: MAX_ARRAY_DEPTH });
    }
    let ty = value_type(c, key)?;
    let n = c.count("metadata array length", MAX_ARRAY_LEN, ty.min_bytes())?;
    // Fixed-size elements: one bounds check for the whole array (`count` made sure the bytes are there).
    const WHAT: &str = "metadata array";
    let n64 = n as u64;
    Ok(match ty {
        ValueType::U8 => Array::U8(c.take(n64, WHAT)?.to_vec()),
        ValueType::I8 => Array::I8(c.take(n64, WHAT)?.iter().map(|&b| b as i8).collect()),
        ValueType::U16 => Array::U16(c.take(2 * n64, WHAT)?.chunks_exact(2).map(le_u16).collect()),
        ValueType::I16 => Array::I16(c.take(2 * n64, WHAT)?.chunks_exact(2).map(|b| le_u16(b) as i16).collect()),
        ValueType::U32 => Array::U32(c.take(4 * n64, WHAT)?.chunks_exact(4).map(le_u32).collect()),
        ValueType::I32 => Array::I32(c.take(4 * n64, WHAT)?.chunks_exact(4).map(|b| le_u32(b) as i32).collect()),
        ValueType::F32 => {
            Array::F32(c.take(4 * n64, WHAT)?.chunks_exact(4).map(|b| f32::from_bits(le_u32(b))).collect())
        }
        ValueType::Bool => {
            let start = c.pos();
            let bytes = c.take(n64, WHAT)?;
            Array::Bool(bytes.iter().enumerate().map(|(i, &b)| bool_byte(b, key, start + i)).collect::<Result<_>>()?)
        }
        // Variable-size elements grow as they are read: `n` is only known to fit the file at their minimum
        // size, and nested arrays would multiply a capacity reserved up front.
        ValueType::String => {
            let mut out = Vec::with_capacity(n.min(PREALLOCATE));
            for _ in 0..n {
                out.push(c.string("metadata string", MAX_STRING_BYTES)?);
            }
            Array::String(out)
        }
        ValueType::Array => {
            let mut out = Vec::with_capacity(n.min(PREALLOCATE));
            for _ in 0..n {
                out.push(read_array(c, key, depth + 1)?);
            }
            Array::Array(out)
        }
        ValueType::U64 => Array::U64(c.take(8 * n64, WHAT)?.chunks_exact(8).map(le_u64).collect()),
        ValueType::I64 => Array::I64(c.take(8 * n64, WHAT)?.chunks_exact(8).map(|b| le_u64(b) as i64).collect()),
        ValueType::F64 => {
            Array::F64(c.take(8 * n64, WHAT)?.chunks_exact(8).map(|b| f64::from_bits(le_u64(b))).collect())
        }
    })
}

fn le_u16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}
