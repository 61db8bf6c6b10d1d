//! Writes the in-process cache table (markdown, to stdout) from criterion's estimates of the
//! `cache` bench group (`target/criterion/cache/<variant>/new/estimates.json`, or under
//! `$CARGO_TARGET_DIR`). Run by `bash bench/run.sh cache` after the bench.

use std::path::PathBuf;

use parapet_bench::table;

const VARIANTS: [(&str, &str); 5] = [
    ("bare", "bare axum handler"),
    (
        "parapet_local_hit",
        "parapet `CacheLayer`, local-tier hit (single-tenant)",
    ),
    (
        "parapet_tenant_local_hit",
        "`TenantLayer` + parapet `CacheLayer`, local-tier hit",
    ),
    (
        "tenant_only",
        "`TenantLayer` alone, in front of the handler (for reference)",
    ),
    (
        "tower_http_cache_hit",
        "tower-http-cache 0.6.1 `CacheLayer`, in-memory hit",
    ),
];

fn median_ns(id: &str) -> Option<f64> {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    let raw = std::fs::read_to_string(
        target
            .join("criterion/cache")
            .join(id)
            .join("new/estimates.json"),
    )
    .ok()?;
    let json: serde_json::Value = serde_json::from_str(&raw).ok()?;
    json["median"]["point_estimate"].as_f64()
}

fn ns(value: f64) -> String {
    if value >= 1000.0 {
        format!("{:.2} µs", value / 1000.0)
    } else {
        format!("{value:.0} ns")
    }
}

fn main() {
    let Some(bare) = median_ns("bare") else {
        eprintln!("no criterion estimates under target/criterion/cache: run the bench first");
        std::process::exit(1);
    };
    let thc = median_ns("tower_http_cache_hit");
    let rows: Vec<Vec<String>> = VARIANTS
        .iter()
        .map(|(id, label)| match median_ns(id) {
            None => vec![
                (*label).to_owned(),
                "not measured".to_owned(),
                String::new(),
                String::new(),
            ],
            Some(time) => vec![
                (*label).to_owned(),
                ns(time),
                format!("{:.2}x", bare / time),
                thc.map_or_else(String::new, |t| format!("{:.2}x", t / time)),
            ],
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "variant",
                "time per request (median)",
                "throughput vs bare",
                "throughput vs tower-http-cache"
            ],
            &rows
        )
    );
}
