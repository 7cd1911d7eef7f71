//! Boilerplate shared by every validated newtype: parsing, display, serde and decoding all go
//! through the type's one `parse` function, so no constructor can skip the check.

/// Implements `FromStr`, `TryFrom<String>`, `TryFrom<&str>`, `Serialize`, `Deserialize` and
/// [`Decode`](super::decode::Decode) for a type with `fn parse(&str) -> Result<Self, InvalidValue>`
/// and a `Display` that prints the canonical form.
macro_rules! parsed_newtype {
    ($t:ty) => {
        parsed_newtype!($t, custom_decode);

        impl $crate::schema::decode::Decode for $t {
            fn decode(
                v: &::serde_json::Value,
                path: &$crate::schema::decode::JsonPath,
                cx: &mut $crate::schema::decode::Cx,
            ) -> Option<Self> {
                $crate::schema::decode::decode_parsed(v, path, cx)
            }
        }
    };
    // The type writes its own `Decode` (to add warnings on accepted-but-loose values).
    ($t:ty, custom_decode) => {
        impl ::std::str::FromStr for $t {
            type Err = $crate::schema::InvalidValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                <$t>::parse(s)
            }
        }

        impl TryFrom<String> for $t {
            type Error = $crate::schema::InvalidValue;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                <$t>::parse(&s)
            }
        }

        impl TryFrom<&str> for $t {
            type Error = $crate::schema::InvalidValue;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                <$t>::parse(s)
            }
        }

        impl ::serde::Serialize for $t {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $t {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                <$t>::parse(&s).map_err(::serde::de::Error::custom)
            }
        }
    };
}

/// For newtypes over a `String` field `.0`: `Display`, `as_str`, `AsRef<str>`, `Borrow<str>`,
/// plus everything [`parsed_newtype!`] gives.
macro_rules! string_newtype {
    ($t:ty) => {
        string_newtype!(@common $t);
        parsed_newtype!($t);
    };
    ($t:ty, custom_decode) => {
        string_newtype!(@common $t);
        parsed_newtype!($t, custom_decode);
    };
    (@common $t:ty) => {
        impl $t {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl ::std::fmt::Display for $t {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl ::std::borrow::Borrow<str> for $t {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}
