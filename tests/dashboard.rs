//! The Grafana dashboard in `configs/grafana/` only queries metrics the server exports: a renamed
//! or removed metric breaks this test instead of leaving an operator with an empty panel.

use std::collections::BTreeSet;

const DASHBOARD: &str = include_str!("../configs/grafana/hawker-live.json");

/// Every `hawker_…` metric family a PromQL expression names (histogram series suffixes removed).
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("hawker_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.push(family.to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn every_dashboard_query_names_an_exported_metric() {
    let dash: serde_json::Value = serde_json::from_str(DASHBOARD).expect("dashboard is JSON");
    let rendered = hawker::metrics::Metrics::new().render();
    let source = include_str!("../src/metrics.rs");
    let mut names = BTreeSet::new();
    let mut panels_with_queries = 0;
    for panel in dash["panels"].as_array().expect("panels") {
        let Some(targets) = panel["targets"].as_array() else {
            assert_eq!(panel["type"], "row", "panel without queries: {panel}");
            continue;
        };
        panels_with_queries += 1;
        for t in targets {
            let expr = t["expr"].as_str().expect("every target has an expr");
            let found = metric_names(expr);
            assert!(!found.is_empty(), "query names no hawker metric: {expr}");
            names.extend(found);
        }
    }
    assert!(panels_with_queries >= 10, "{panels_with_queries} panels");
    for name in &names {
        // Vector metrics appear in the exposition only once a label set is used, so the
        // registration in the source is the reference; plain gauges must also render.
        assert!(
            source.contains(&format!("\"{name}\"")) || rendered.contains(name.as_str()),
            "the dashboard queries {name}, which the server does not export"
        );
    }
    assert!(names.contains("hawker_orders_total"));
    assert!(names.contains("hawker_highlight_buys_total"));
}
