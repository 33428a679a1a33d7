//! Deserializers that keep a digest, a canonical form or a lenient shape instead of the
//! raw JSON value, so a 100 MB manifest never sits in memory a second time as strings.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use xxhash_rust::xxh3::xxh3_64;

/// The hash every missing or null text shares, so "absent" equals "empty" as in dbt.
pub(crate) fn text_hash(s: &str) -> u64 {
    xxh3_64(s.as_bytes())
}

/// A string (or null) reduced to its xxh3 hash without allocating when the JSON has no escapes.
pub(crate) fn text<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string or null")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            Ok(text_hash(v))
        }
        fn visit_unit<E: de::Error>(self) -> Result<u64, E> {
            Ok(text_hash(""))
        }
        fn visit_none<E: de::Error>(self) -> Result<u64, E> {
            Ok(text_hash(""))
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<u64, D2::Error> {
            d.deserialize_str(V)
        }
    }
    d.deserialize_option(V)
}

/// `null` → `T::default()`: older dbt versions write null where newer ones write `{}` or `[]`.
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A scalar as text: model versions are written as numbers or strings (`2`, `"2"`, `1.5`).
pub(crate) fn scalar_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    })
}

/// `"id"` or `["a", "b"]` (dbt's `unique_key`, tags) as a list; anything else is empty.
/// A visitor rather than a `serde_json::Value`: it runs for every column of every node.
pub(crate) fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string, a list of strings or null")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![v.to_owned()])
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(vec![v])
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(V)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(v) = seq.next_element::<serde_json::Value>()? {
                if let serde_json::Value::String(s) = v {
                    out.push(s);
                }
            }
            Ok(out)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map
                .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                .is_some()
            {}
            Ok(Vec::new())
        }
    }
    d.deserialize_option(V)
}

/// `columns`: an object keyed by column name, kept in file order with the key as the
/// name when the entry has none, so each name is stored once.
pub(crate) fn columns<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<super::Column>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<super::Column>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object of columns or null")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_map(V)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(key) = map.next_key::<String>()? {
                let mut column: super::Column = map.next_value()?;
                if column.name.is_empty() {
                    column.name = key;
                }
                out.push(column);
            }
            out.shrink_to_fit();
            Ok(out)
        }
    }
    d.deserialize_option(V)
}

/// Keys of `unrendered_config` dbt leaves out of its config comparison
/// (`CompareBehavior.Exclude` in dbt-core's `NodeAndTestConfig`): the relation parts are
/// compared separately, and tags and group never make a node modified.
const NOT_COMPARED: [&str; 5] = ["alias", "schema", "database", "tags", "group"];

/// What `unrendered_config` contributes to change detection.
#[derive(Debug, Clone, Default)]
pub(crate) struct UnrenderedConfig {
    pub hash: u64,
    pub relation: [Option<String>; 3],
}

pub(crate) fn unrendered_config<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<UnrenderedConfig, D::Error> {
    let map: serde_json::Map<String, serde_json::Value> = null_default(d)?;
    let part = |k: &str| match map.get(k) {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    let relation = [part("database"), part("schema"), part("alias")];
    let mut canonical = Vec::new();
    let mut keys: Vec<&String> = map
        .keys()
        .filter(|k| !NOT_COMPARED.contains(&k.as_str()))
        .collect();
    keys.sort();
    for k in keys {
        canonical.extend_from_slice(k.as_bytes());
        canonical.push(0);
        write_canonical(&map[k], &mut canonical);
        canonical.push(0);
    }
    Ok(UnrenderedConfig {
        hash: xxh3_64(&canonical),
        relation,
    })
}

/// A JSON value with object keys sorted, whatever order the map type keeps.
pub(crate) fn write_canonical(v: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push(b'{');
            for k in keys {
                out.extend_from_slice(serde_json::to_string(k).unwrap_or_default().as_bytes());
                out.push(b':');
                write_canonical(&m[k], out);
                out.push(b',');
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for item in items {
                write_canonical(item, out);
                out.push(b',');
            }
            out.push(b']');
        }
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}
