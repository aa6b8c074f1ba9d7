//! The `text` access-log format: `key=value` pairs separated by spaces, written straight from a
//! record's `Serialize` impl, so it always has the same fields as the JSON format.
//!
//! The format is what rendering the record through `serde_json::Value` gave: keys in
//! alphabetical order, strings bare, `null` as `-`, numbers as JSON writes them. It is built
//! here without that detour (a map and a string per field) because it runs once per record.

use std::fmt;
use std::io::Write as _;
use std::ops::Range;

use serde::Serialize;
use serde::ser::{self, Impossible};

/// Reusable buffers for formatting `text` lines.
#[derive(Default)]
pub(super) struct TextLine {
    fields: Vec<(&'static str, Range<usize>)>,
    values: Vec<u8>,
}

impl TextLine {
    /// Appends `record` (a struct of plain fields) to `out` as one line, without the newline.
    /// On error nothing is appended.
    pub(super) fn write<T: Serialize + ?Sized>(
        &mut self,
        record: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), Unsupported> {
        self.fields.clear();
        self.values.clear();
        record.serialize(Fields(self))?;
        self.fields.sort_unstable_by_key(|&(key, _)| key);
        for (i, (key, range)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            out.extend_from_slice(key.as_bytes());
            out.push(b'=');
            out.extend_from_slice(self.values.get(range.clone()).unwrap_or_default());
        }
        Ok(())
    }
}

/// A value the text format cannot write (a record that is not a struct).
#[derive(Debug)]
pub(super) struct Unsupported;

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a flat record")
    }
}

impl std::error::Error for Unsupported {}

impl ser::Error for Unsupported {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Unsupported
    }
}

// === impl Fields: the record itself, a struct ===

struct Fields<'a>(&'a mut TextLine);

macro_rules! unsupported {
    ($($method:ident($($arg:ty),*);)*) => {$(
        fn $method(self, $(_: $arg),*) -> Result<(), Unsupported> {
            Err(Unsupported)
        }
    )*};
}

impl<'a> ser::Serializer for Fields<'a> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = Impossible<(), Unsupported>;
    type SerializeTuple = Impossible<(), Unsupported>;
    type SerializeTupleStruct = Impossible<(), Unsupported>;
    type SerializeTupleVariant = Impossible<(), Unsupported>;
    type SerializeMap = Impossible<(), Unsupported>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), Unsupported>;

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Unsupported> {
        Ok(self)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        value.serialize(self)
    }

    unsupported! {
        serialize_bool(bool); serialize_i8(i8); serialize_i16(i16); serialize_i32(i32);
        serialize_i64(i64); serialize_u8(u8); serialize_u16(u16); serialize_u32(u32);
        serialize_u64(u64); serialize_f32(f32); serialize_f64(f64); serialize_char(char);
        serialize_str(&str); serialize_bytes(&[u8]); serialize_none(); serialize_unit();
        serialize_unit_struct(&'static str);
        serialize_unit_variant(&'static str, u32, &'static str);
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), Unsupported> {
        Err(Unsupported)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Unsupported> {
        Err(Unsupported)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Unsupported> {
        Err(Unsupported)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Unsupported> {
        Err(Unsupported)
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Unsupported> {
        Err(Unsupported)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Unsupported> {
        Err(Unsupported)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Unsupported> {
        Err(Unsupported)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Unsupported> {
        Err(Unsupported)
    }
}

impl<'a> ser::SerializeStruct for Fields<'a> {
    type Ok = ();
    type Error = Unsupported;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        let values = &mut self.0.values;
        let start = values.len();
        if value.serialize(Value(values)).is_err() {
            // Not a plain value (no record field is one today): JSON, as the format always
            // wrote such values.
            values.truncate(start);
            serde_json::to_writer(&mut *values, value).map_err(|_| Unsupported)?;
        }
        let end = values.len();
        self.0.fields.push((key, start..end));
        Ok(())
    }

    fn end(self) -> Result<(), Unsupported> {
        Ok(())
    }
}

// === impl Value: one field's value ===

struct Value<'a>(&'a mut Vec<u8>);

impl Value<'_> {
    fn display(self, value: impl fmt::Display) -> Result<(), Unsupported> {
        write!(self.0, "{value}").map_err(|_| Unsupported)
    }

    fn bytes(self, bytes: &[u8]) -> Result<(), Unsupported> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

impl<'a> ser::Serializer for Value<'a> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = Impossible<(), Unsupported>;
    type SerializeTuple = Impossible<(), Unsupported>;
    type SerializeTupleStruct = Impossible<(), Unsupported>;
    type SerializeTupleVariant = Impossible<(), Unsupported>;
    type SerializeMap = Impossible<(), Unsupported>;
    type SerializeStruct = Impossible<(), Unsupported>;
    type SerializeStructVariant = Impossible<(), Unsupported>;

    fn serialize_bool(self, v: bool) -> Result<(), Unsupported> {
        self.bytes(if v { b"true" } else { b"false" })
    }

    fn serialize_i8(self, v: i8) -> Result<(), Unsupported> {
        self.display(v)
    }

    fn serialize_i16(self, v: i16) -> Result<(), Unsupported> {
        self.display(v)
    }

    fn serialize_i32(self, v: i32) -> Result<(), Unsupported> {
        self.display(v)
    }

    fn serialize_i64(self, v: i64) -> Result<(), Unsupported> {
        self.display(v)
    }

    fn serialize_u8(self, v: u8) -> Result<(), Unsupported> {
        self.display(v)
    }

    fn serialize_u16(self, v: u16) -> Result<(), Unsupported> {
        self.display(v)
    }

    fn serialize_u32(self, v: u32) -> Result<(), Unsupported> {
        self.display(v)
    }

    fn serialize_u64(self, v: u64) -> Result<(), Unsupported> {
        self.display(v)
    }

    fn serialize_f32(self, v: f32) -> Result<(), Unsupported> {
        self.serialize_f64(f64::from(v))
    }

    fn serialize_f64(self, v: f64) -> Result<(), Unsupported> {
        if v.is_finite() {
            // JSON's shortest round-trip form (`0.00125`, `60.0`, `1e-6`).
            serde_json::to_writer(self.0, &v).map_err(|_| Unsupported)
        } else {
            self.bytes(b"-")
        }
    }

    fn serialize_char(self, v: char) -> Result<(), Unsupported> {
        self.bytes(v.encode_utf8(&mut [0; 4]).as_bytes())
    }

    fn serialize_str(self, v: &str) -> Result<(), Unsupported> {
        self.bytes(v.as_bytes())
    }

    fn serialize_none(self) -> Result<(), Unsupported> {
        self.bytes(b"-")
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Unsupported> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Unsupported> {
        self.bytes(b"-")
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Unsupported> {
        self.bytes(b"-")
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Unsupported> {
        self.bytes(variant.as_bytes())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        value.serialize(self)
    }

    fn collect_str<T: fmt::Display + ?Sized>(self, value: &T) -> Result<(), Unsupported> {
        self.display(value)
    }

    unsupported! {
        serialize_bytes(&[u8]);
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Unsupported> {
        Err(Unsupported)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Unsupported> {
        Err(Unsupported)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Unsupported> {
        Err(Unsupported)
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Unsupported> {
        Err(Unsupported)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Unsupported> {
        Err(Unsupported)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Unsupported> {
        Err(Unsupported)
    }

    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, Unsupported> {
        Err(Unsupported)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Unsupported> {
        Err(Unsupported)
    }
}
