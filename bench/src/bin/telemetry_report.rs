//! Writes the telemetry overhead table (markdown, to stdout) from criterion's estimates of the
//! `telemetry` bench group: `target/criterion/telemetry/<variant>/new/estimates.json` (or under
//! `$CARGO_TARGET_DIR`). Run by `bash bench/run.sh telemetry` after the bench.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use parapet_bench::table;

/// The variants in table order: (criterion id, label).
const VARIANTS: [(&str, &str); 8] = [
    ("bare", "bare axum service (no layer)"),
    ("parapet_spans", "parapet `TelemetryLayer`, spans only"),
    (
        "parapet_spans_metrics",
        "parapet `TelemetryLayer`, spans + metrics",
    ),
    (
        "parapet_sampled_out",
        "parapet `TelemetryLayer`, sampled out",
    ),
    (
        "oit_tracing",
        "opentelemetry-instrumentation-tower 0.19, tracing only",
    ),
    (
        "oit_tracing_metrics",
        "opentelemetry-instrumentation-tower 0.19, tracing + metrics",
    ),
    (
        "oit_sampled_out",
        "opentelemetry-instrumentation-tower 0.19, sampled out",
    ),
    (
        "tower_http_trace",
        "tower-http 0.7 `TraceLayer` (INFO span + response event)",
    ),
];

/// Which OIT variant each parapet variant is compared with.
fn counterpart(id: &str) -> Option<&'static str> {
    match id {
        "parapet_spans" => Some("oit_tracing"),
        "parapet_spans_metrics" => Some("oit_tracing_metrics"),
        "parapet_sampled_out" => Some("oit_sampled_out"),
        _ => None,
    }
}

/// The median time per request in nanoseconds, if criterion measured the variant.
fn median_ns(id: &str) -> Option<f64> {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    let path = target
        .join("criterion/telemetry")
        .join(id)
        .join("new/estimates.json");
    let raw = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&raw).ok()?;
    json["median"]["point_estimate"].as_f64()
}

fn ns(value: f64) -> String {
    if value.abs() >= 1000.0 {
        format!("{:.2} µs", value / 1000.0)
    } else {
        format!("{value:.0} ns")
    }
}

fn main() {
    let Some(bare) = median_ns("bare") else {
        eprintln!("no criterion estimates under target/criterion/telemetry: run the bench first");
        std::process::exit(1);
    };
    let added = |id: &str| median_ns(id).map(|t| t - bare);
    let mut rows = Vec::new();
    for (id, label) in VARIANTS {
        let Some(time) = median_ns(id) else {
            rows.push(vec![
                label.to_owned(),
                "not measured".to_owned(),
                String::new(),
                String::new(),
            ]);
            continue;
        };
        let cost = if id == "bare" {
            "—".to_owned()
        } else {
            format!("+{}", ns(time - bare))
        };
        let ratio = match counterpart(id).and_then(|oit| Some((added(id)?, added(oit)?))) {
            Some((ours, theirs)) if theirs > 0.0 => format!("{:.2}x", ours / theirs),
            _ => String::new(),
        };
        rows.push(vec![label.to_owned(), ns(time), cost, ratio]);
    }
    print!(
        "{}",
        table(
            &[
                "variant",
                "time per request (median)",
                "added cost vs bare",
                "parapet's added cost / OIT's"
            ],
            &rows
        )
    );
    let headline = added("parapet_spans_metrics")
        .zip(added("oit_tracing_metrics"))
        .filter(|(_, theirs)| *theirs > 0.0)
        .map(|(ours, theirs)| ours / theirs);
    println!();
    match headline {
        Some(ratio) => println!(
            "parapet's added cost (spans + metrics) is **{ratio:.2}x** opentelemetry-instrumentation-tower's (tracing + metrics); target ≤ 1.0x{}, stretch ≤ 0.7x{}.",
            if ratio <= 1.0 { ", met" } else { ", missed" },
            if ratio <= 0.7 { ", met" } else { ", missed" }
        ),
        None => println!("The headline ratio could not be computed (a variant was not measured)."),
    }
    // A variant that does strictly more work cannot be faster: if one is, the run was noisy.
    let inverted: Vec<String> = [
        ("parapet_spans", "parapet_spans_metrics"),
        ("parapet_sampled_out", "parapet_spans"),
        ("oit_tracing", "oit_tracing_metrics"),
        ("oit_sampled_out", "oit_tracing"),
    ]
    .into_iter()
    .filter_map(|(less, more)| {
        let (l, m) = (median_ns(less)?, median_ns(more)?);
        (l > m).then(|| format!("`{less}` ({}) > `{more}` ({})", ns(l), ns(m)))
    })
    .collect();
    if !inverted.is_empty() {
        println!();
        println!(
            "Noise: in this run {} although the second does strictly more; other jobs shared the \
             machine, so read these ratios as rough.",
            inverted.join(", ")
        );
    }
}
