//! A GGUF file's key/value metadata, in file order, with typed getters.
//!
//! Getters are strict about types, as llama.cpp's loader is: `get_u32` on a key stored as `i32` is
//! [`Error::WrongType`], not a silent conversion, so whoever builds hyper-parameters on these sees what
//! the converter actually wrote.

use std::collections::HashMap;

use super::cursor::Cursor;
use super::error::{Error, Result};
use super::limits::MAX_KEY_BYTES;
use super::value::{Array, Value, read_value};

/// Metadata key/value pairs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
}

macro_rules! getters {
    ($($method:ident, $variant:ident, $t:ty, $expected:literal;)*) => {
        $(
            #[doc = concat!("The value of `key`, which must be stored as ", $expected, ".")]
            pub fn $method(&self, key: &str) -> Result<$t> {
                match self.require(key)? {
                    Value::$variant(v) => Ok(*v),
                    other => Err(wrong_type(key, $expected, other)),
                }
            }
        )*
    };
}

macro_rules! array_getters {
    ($($method:ident, $accessor:ident, $t:ty, $expected:literal;)*) => {
        $(
            #[doc = concat!("The elements of `key`, which must be an ", $expected, ".")]
            pub fn $method(&self, key: &str) -> Result<&[$t]> {
                let array = self.get_array(key)?;
                array.$accessor().ok_or_else(|| Error::WrongType {
                    key: key.to_string(),
                    expected: $expected,
                    found: array.describe(),
                })
            }
        )*
    };
}

fn wrong_type(key: &str, expected: &'static str, found: &Value) -> Error {
    Error::WrongType { key: key.to_string(), expected, found: found.describe() }
}

impl Metadata {
    /// `n` key/value pairs: each a non-empty, unique key, a type tag and a value.
    pub(crate) fn read(c: &mut Cursor<'_>, n: usize) -> Result<Self> {
        let mut metadata = Metadata::default();
        for _ in 0..n {
            let key = c.string("metadata key", MAX_KEY_BYTES)?;
            if key.is_empty() {
                return Err(Error::BadKey { key, problem: "empty" });
            }
            if metadata.index.contains_key(&key) {
                return Err(Error::BadKey { key, problem: "duplicated" });
            }
            let value = read_value(c, &key)?;
            metadata.index.insert(key.clone(), metadata.entries.len());
            metadata.entries.push((key, value));
        }
        Ok(metadata)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every pair, in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// The value of `key`, whatever its type.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    fn require(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| Error::MissingKey { key: key.to_string() })
    }

    getters! {
        get_u8, U8, u8, "u8";
        get_i8, I8, i8, "i8";
        get_u16, U16, u16, "u16";
        get_i16, I16, i16, "i16";
        get_u32, U32, u32, "u32";
        get_i32, I32, i32, "i32";
        get_u64, U64, u64, "u64";
        get_i64, I64, i64, "i64";
        get_f32, F32, f32, "f32";
        get_f64, F64, f64, "f64";
        get_bool, Bool, bool, "bool";
    }

    /// The value of `key`, which must be a string.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        match self.require(key)? {
            Value::String(s) => Ok(s),
            other => Err(wrong_type(key, "str", other)),
        }
    }

    /// The value of `key`, which must be an array (of any element type).
    pub fn get_array(&self, key: &str) -> Result<&Array> {
        match self.require(key)? {
            Value::Array(a) => Ok(a),
            other => Err(wrong_type(key, "arr", other)),
        }
    }

    array_getters! {
        get_str_array, as_strings, String, "array of str";
        get_f32_array, as_f32, f32, "array of f32";
        get_i32_array, as_i32, i32, "array of i32";
        get_u32_array, as_u32, u32, "array of u32";
    }
}
