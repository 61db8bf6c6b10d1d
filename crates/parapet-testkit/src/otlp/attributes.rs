//! Reading OTLP attributes and metric points back in assertions.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::{
    common::v1::{KeyValue, any_value::Value},
    metrics::v1::{Metric, NumberDataPoint, metric::Data, number_data_point},
};

/// A string, integer, boolean or double attribute as text.
pub fn attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match value {
        Value::StringValue(s) => s.clone(),
        Value::IntValue(i) => i.to_string(),
        Value::BoolValue(b) => b.to_string(),
        Value::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    })
}

/// The data points of a sum or gauge metric as `{attributes} -> integer value`.
pub fn int_points(metric: &Metric) -> BTreeMap<BTreeMap<String, String>, i64> {
    let points: &[NumberDataPoint] = match &metric.data {
        Some(Data::Sum(sum)) => &sum.data_points,
        Some(Data::Gauge(gauge)) => &gauge.data_points,
        other => panic!("{} is not a sum or a gauge: {other:?}", metric.name),
    };
    points
        .iter()
        .map(|p| {
            let attributes = p
                .attributes
                .iter()
                .map(|kv| (kv.key.clone(), attr(&p.attributes, &kv.key).unwrap()))
                .collect();
            let value = match p.value {
                Some(number_data_point::Value::AsInt(i)) => i,
                other => panic!("{} has a non-integer point: {other:?}", metric.name),
            };
            (attributes, value)
        })
        .collect()
}

/// The metric named `name` in one export.
pub fn find<'a>(export: &'a [Metric], name: &str) -> Option<&'a Metric> {
    export.iter().find(|m| m.name == name)
}

/// Attributes from `(key, value)` pairs, for looking points up.
pub fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Lowercase hex of an id.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
