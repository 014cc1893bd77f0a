//! JSON encoding that refuses non-finite floats.
//!
//! `serde_json` writes `NaN`, `inf` and `-inf` as `null`: stored, such an event would no
//! longer decode into its struct and its stream could never be loaded again. Every
//! payload, snapshot and metadata the library writes goes through [`to_string`], which
//! fails on the first non-finite `f32` or `f64` instead. The check is a thin
//! [`Serializer`] adapter around `serde_json`'s own: it allocates nothing beyond the
//! output string and adds one comparison per float.

use std::fmt::Display;

use serde::ser::{
    Serialize, SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant, SerializeTuple,
    SerializeTupleStruct, SerializeTupleVariant, Serializer,
};

/// `value` as JSON text, like `serde_json::to_string`, except that a non-finite float
/// anywhere in it (in a field, a sequence, an `Option`, a map key or value) is an error.
///
/// # Errors
/// The first non-finite float, named in the message (`the float NaN is not finite`), or
/// the error of a `Serialize` impl that fails.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    serde_json::to_string(&Finite(value))
}

/// Serializes the wrapped value through [`FiniteSerializer`].
struct Finite<'a, T: ?Sized>(&'a T);

impl<T: Serialize + ?Sized> Serialize for Finite<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(FiniteSerializer(serializer))
    }
}

fn non_finite<E: serde::ser::Error>(value: impl Display) -> E {
    E::custom(format_args!(
        "the float {value} is not finite: JSON has no value for it (it would be stored as null)"
    ))
}

/// A [`Serializer`] that forwards everything to `S`, refusing non-finite floats, and
/// wraps every nested value so the check reaches all the way down.
struct FiniteSerializer<S>(S);

/// Forwards a compound serializer, wrapping each element in [`Finite`].
struct FiniteCompound<C>(C);

macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method(self, $($arg: $ty),*) -> Result<S::Ok, S::Error> {
            self.0.$method($($arg),*)
        }
    )*};
}

impl<S: Serializer> Serializer for FiniteSerializer<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = FiniteCompound<S::SerializeSeq>;
    type SerializeTuple = FiniteCompound<S::SerializeTuple>;
    type SerializeTupleStruct = FiniteCompound<S::SerializeTupleStruct>;
    type SerializeTupleVariant = FiniteCompound<S::SerializeTupleVariant>;
    type SerializeMap = FiniteCompound<S::SerializeMap>;
    type SerializeStruct = FiniteCompound<S::SerializeStruct>;
    type SerializeStructVariant = FiniteCompound<S::SerializeStructVariant>;

    fn serialize_f32(self, v: f32) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            self.0.serialize_f32(v)
        } else {
            Err(non_finite(v))
        }
    }

    fn serialize_f64(self, v: f64) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            self.0.serialize_f64(v)
        } else {
            Err(non_finite(v))
        }
    }

    forward! {
        serialize_bool(v: bool);
        serialize_i8(v: i8);
        serialize_i16(v: i16);
        serialize_i32(v: i32);
        serialize_i64(v: i64);
        serialize_i128(v: i128);
        serialize_u8(v: u8);
        serialize_u16(v: u16);
        serialize_u32(v: u32);
        serialize_u64(v: u64);
        serialize_u128(v: u128);
        serialize_char(v: char);
        serialize_str(v: &str);
        serialize_bytes(v: &[u8]);
        serialize_none();
        serialize_unit();
        serialize_unit_struct(name: &'static str);
        serialize_unit_variant(name: &'static str, index: u32, variant: &'static str);
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_some(&Finite(value))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_newtype_struct(name, &Finite(value))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0
            .serialize_newtype_variant(name, index, variant, &Finite(value))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        self.0.serialize_seq(len).map(FiniteCompound)
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        self.0.serialize_tuple(len).map(FiniteCompound)
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        self.0.serialize_tuple_struct(name, len).map(FiniteCompound)
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        self.0
            .serialize_tuple_variant(name, index, variant, len)
            .map(FiniteCompound)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        self.0.serialize_map(len).map(FiniteCompound)
    }

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        self.0.serialize_struct(name, len).map(FiniteCompound)
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        self.0
            .serialize_struct_variant(name, index, variant, len)
            .map(FiniteCompound)
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

impl<C: SerializeSeq> SerializeSeq for FiniteCompound<C> {
    type Ok = C::Ok;
    type Error = C::Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        self.0.serialize_element(&Finite(value))
    }

    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

impl<C: SerializeTuple> SerializeTuple for FiniteCompound<C> {
    type Ok = C::Ok;
    type Error = C::Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        self.0.serialize_element(&Finite(value))
    }

    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

impl<C: SerializeTupleStruct> SerializeTupleStruct for FiniteCompound<C> {
    type Ok = C::Ok;
    type Error = C::Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        self.0.serialize_field(&Finite(value))
    }

    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

impl<C: SerializeTupleVariant> SerializeTupleVariant for FiniteCompound<C> {
    type Ok = C::Ok;
    type Error = C::Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        self.0.serialize_field(&Finite(value))
    }

    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

impl<C: SerializeMap> SerializeMap for FiniteCompound<C> {
    type Ok = C::Ok;
    type Error = C::Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), C::Error> {
        self.0.serialize_key(&Finite(key))
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        self.0.serialize_value(&Finite(value))
    }

    fn serialize_entry<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &mut self,
        key: &K,
        value: &V,
    ) -> Result<(), C::Error> {
        self.0.serialize_entry(&Finite(key), &Finite(value))
    }

    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

impl<C: SerializeStruct> SerializeStruct for FiniteCompound<C> {
    type Ok = C::Ok;
    type Error = C::Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), C::Error> {
        self.0.serialize_field(key, &Finite(value))
    }

    fn skip_field(&mut self, key: &'static str) -> Result<(), C::Error> {
        self.0.skip_field(key)
    }

    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

impl<C: SerializeStructVariant> SerializeStructVariant for FiniteCompound<C> {
    type Ok = C::Ok;
    type Error = C::Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), C::Error> {
        self.0.serialize_field(key, &Finite(value))
    }

    fn skip_field(&mut self, key: &'static str) -> Result<(), C::Error> {
        self.0.skip_field(key)
    }

    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;

    use super::to_string;

    #[derive(Serialize)]
    struct Reading {
        label: &'static str,
        value: f64,
        history: Vec<Option<f32>>,
        by_name: BTreeMap<&'static str, (u8, f64)>,
    }

    fn reading(value: f64, nested: f32, in_map: f64) -> Reading {
        Reading {
            label: "t",
            value,
            history: vec![None, Some(nested)],
            by_name: BTreeMap::from([("a", (1, in_map))]),
        }
    }

    #[test]
    fn finite_values_encode_as_serde_json_does() -> serde_json::Result<()> {
        let r = reading(1.5, -2.25, 0.0);
        assert_eq!(to_string(&r)?, serde_json::to_string(&r)?);
        assert_eq!(to_string(&f64::MAX)?, serde_json::to_string(&f64::MAX)?);
        assert_eq!(
            to_string(&serde_json::json!({"x": [1.0, null, "s"]}))?,
            r#"{"x":[1.0,null,"s"]}"#
        );
        Ok(())
    }

    #[test]
    fn a_non_finite_float_anywhere_is_an_error() {
        let cases = [
            reading(f64::NAN, 0.0, 0.0),
            reading(f64::INFINITY, 0.0, 0.0),
            reading(0.0, f32::NEG_INFINITY, 0.0),
            reading(0.0, f32::NAN, 0.0),
            reading(0.0, 0.0, f64::NAN),
        ];
        for case in &cases {
            let err = to_string(case).err().map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains("is not finite")),
                "{err:?}"
            );
        }
        assert!(to_string(&BTreeMap::from([(1u8, f32::NAN)])).is_err());
        assert!(to_string(&Some(vec![f64::NEG_INFINITY])).is_err());
    }
}
