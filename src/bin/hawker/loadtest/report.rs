//! Presenting a run: the progress line, the summary table, targets, and a self-contained HTML
//! report with inline SVG plots (no scripts, no external assets).

use std::fmt::Write as _;

use super::stats::Quantiles;
use super::{Report, Sample, ServerStats, Summary, Target};

fn f(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(v) => format!("{v:.digits$}"),
        None => "–".into(),
    }
}

fn q(q: &Quantiles) -> String {
    if q.count == 0 {
        return "–".into();
    }
    format!(
        "p50 {}  p90 {}  p99 {}  max {}",
        f(q.p50, 2),
        f(q.p90, 2),
        f(q.p99, 2),
        f(q.max, 2)
    )
}

fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// One line per second on stderr.
pub fn progress_line(s: &Sample, total: usize) -> String {
    format!(
        "[{:>5.1}s] viewers {}/{} conn {} kf {} fail {} | rx {} pkt/s loss {:.2}% delay p50 {} p99 {} ms | server cpu {}% shards {}% (runq wait {}%) udp backlog {} KiB rss {} MiB | gen cpu {:.0}%",
        s.t_s,
        s.answered,
        total,
        s.connected,
        s.with_keyframe,
        s.failed,
        si(s.rx_pps),
        s.loss_pct,
        f(s.delay_p50_ms, 2),
        f(s.delay_p99_ms, 2),
        f(s.server_cpu_pct, 0),
        f(s.shard_cpu_pct, 0),
        f(s.shard_wait_pct, 0),
        f(s.server_udp_backlog.map(|b| b as f64 / 1024.0), 0),
        f(s.server_rss_mib, 0),
        s.generator_cpu_pct
    )
}

/// The targets of the issue, checked against a run.
pub fn targets(s: &Summary, srv: Option<&ServerStats>) -> Vec<Target> {
    let mut t = Vec::new();
    let pps = srv.and_then(|x| x.packets_per_cpu_second);
    t.push(Target {
        name: "delivered SRTP packets/s per core of server CPU".into(),
        goal: "≥ 300000".into(),
        value: f(pps, 0),
        met: pps.map(|v| v >= 300_000.0),
    });
    let ratio = srv.and_then(|x| x.ratio_to_baseline);
    t.push(Target {
        name: "server CPU/packet ÷ raw-UDP sendmmsg CPU/packet".into(),
        goal: "≤ 2.5".into(),
        value: f(ratio, 2),
        met: ratio.map(|v| v <= 2.5),
    });
    let measured = s.packets_expected > 0;
    t.push(Target {
        name: format!("loss with {} viewers (steady window)", s.connected),
        goal: "< 0.5 % (at 1000 viewers)".into(),
        value: format!("{:.3} %", s.loss_pct_window),
        met: measured.then_some(s.loss_pct_window < 0.5),
    });
    t.push(Target {
        name: "p99 forwarding delay (steady window)".into(),
        goal: "< 2 ms".into(),
        value: format!("{} ms", f(s.delay_ms_window.p99, 2)),
        met: s.delay_ms_window.p99.map(|v| v < 2.0),
    });
    t.push(Target {
        name: "join → first keyframe p50".into(),
        goal: "< 200 ms".into(),
        value: format!("{} ms", f(s.join_ms.p50, 1)),
        met: s.join_ms.p50.map(|v| v < 200.0),
    });
    let kib = srv.and_then(|x| x.kib_per_viewer);
    t.push(Target {
        name: "server memory per viewer".into(),
        goal: "< 256 KiB".into(),
        value: format!("{} KiB", f(kib, 0)),
        met: kib.map(|v| v < 256.0),
    });
    t
}

fn rows(r: &Report) -> Vec<(String, String)> {
    let s = &r.summary;
    let mut v: Vec<(String, String)> = vec![
        (
            "machine".into(),
            format!("{} cores, {}", r.machine.nproc, r.machine.cpu_model),
        ),
        (
            "stream".into(),
            format!(
                "{:?} {} kbit/s {} fps + Opus 50 pkt/s, payload ≤ {} B, {}{}",
                r.config.codec,
                r.config.video_kbps,
                r.config.fps,
                r.config.payload_size,
                if r.config.pacing_factor > 0.0 {
                    format!("paced at {}× the bitrate", r.config.pacing_factor)
                } else {
                    "frames sent as bursts".to_string()
                },
                if r.config.published { "" } else { " (not published)" }
            ),
        ),
        (
            "viewers".into(),
            format!(
                "{} requested, {} answered, {} connected, {} keyframe, {} events channel, {} failed",
                s.viewers_requested, s.answered, s.connected, s.with_keyframe, s.channel_open, s.failed
            ),
        ),
        ("join: POST → first keyframe (ms)".into(), q(&s.join_ms)),
        ("POST → answer (ms)".into(), q(&s.answer_ms)),
        ("POST → ICE+DTLS connected (ms)".into(), q(&s.connect_ms)),
        (
            "steady window".into(),
            format!(
                "{:.1}–{:.1} s, {} delivered pkt/s",
                s.window_s.0,
                s.window_s.1,
                si(s.delivered_pps_window)
            ),
        ),
        (
            "loss (window / whole run)".into(),
            format!(
                "{:.3} % / {:.3} % ({} of {} packets received)",
                s.loss_pct_window, s.loss_pct, s.packets_received, s.packets_expected
            ),
        ),
        ("forwarding delay, window (ms)".into(), q(&s.delay_ms_window)),
        ("forwarding delay, whole run (ms)".into(), q(&s.delay_ms)),
        (
            "replayed from keyframe cache".into(),
            format!("{} packets (published before their viewer connected; not in the delay figures)", s.replayed_packets),
        ),
        (
            "jitter median over viewers (ms)".into(),
            format!(
                "audio {}  video {}",
                f(s.audio_jitter_ms_median, 3),
                f(s.video_jitter_ms_median, 3)
            ),
        ),
        (
            "seller events".into(),
            format!(
                "{} sent, {} deliveries; delay {}",
                s.events_sent,
                s.event_deliveries,
                q(&s.event_delay_ms)
            ),
        ),
    ];
    if s.buys_sent > 0 {
        v.push((
            "buys".into(),
            format!(
                "{} sent, replies {:?}; latency {}",
                s.buys_sent,
                s.orders,
                q(&s.buy_latency_ms)
            ),
        ));
    }
    v.push((
        "publisher".into(),
        format!(
            "{} video + {} audio packets, {} keyframes, {} keyframe requests",
            s.pub_video_packets, s.pub_audio_packets, s.pub_keyframes, s.pub_keyframe_requests
        ),
    ));
    if let Some(x) = &r.server {
        v.push((
            "server process".into(),
            format!(
                "pid {} (found by {}){}",
                x.pid,
                x.found_by,
                if x.in_process { ", in-process" } else { "" }
            ),
        ));
        v.push((
            "server CPU in window".into(),
            format!(
                "{:.2} s process ({:.2} cores), {:.2} s in {} shard threads; shards waited {:.2} s \
                 for a CPU; UDP backlog ≤ {} KiB",
                x.cpu_s,
                x.cpu_cores,
                x.shard_cpu_s,
                x.shard_threads,
                x.shard_wait_s,
                x.udp_backlog_max / 1024
            ),
        ));
        v.push((
            "server CPU per delivered packet".into(),
            format!(
                "{} ns process, {} ns shard threads ({} packets)",
                f(x.cpu_ns_per_packet, 0),
                f(x.shard_cpu_ns_per_packet, 0),
                x.delivered_packets
            ),
        ));
        v.push((
            "server RSS".into(),
            format!(
                "{:.1} MiB before viewers, {:.1} MiB peak; {} KiB per viewer",
                x.rss_before_mib,
                x.rss_peak_mib,
                f(x.kib_per_viewer, 1)
            ),
        ));
    }
    for b in &r.baseline {
        v.push((
            format!("raw-UDP baseline {:?}", b.mode),
            format!(
                "{:.0} ns CPU/packet ({} pkt/s per core), {} sockets, {} B, {} of {} read",
                b.cpu_ns_per_packet,
                si(b.packets_per_cpu_second),
                b.sockets,
                b.datagram_bytes,
                b.received,
                b.packets
            ),
        ));
    }
    v.push((
        "generator CPU".into(),
        format!(
            "{:.1} s over {:.1} s wall ({} viewer threads)",
            s.generator_cpu_s, s.wall_s, r.config.threads
        ),
    ));
    v
}

/// The summary table printed at the end.
pub fn text(r: &Report) -> String {
    let mut out = String::new();
    let rows = rows(r);
    let w = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(10);
    let _ = writeln!(
        out,
        "\nhawker loadtest — {} {}",
        r.config.url, r.config.show
    );
    for (k, v) in &rows {
        let _ = writeln!(out, "  {k:<w$}  {v}");
    }
    let _ = writeln!(out, "\ntargets");
    let tw = r
        .targets
        .iter()
        .map(|t| t.name.chars().count())
        .max()
        .unwrap_or(10);
    for t in &r.targets {
        let mark = match t.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "n/a",
        };
        let _ = writeln!(
            out,
            "  {:<tw$}  {:>14}  goal {:<26} {mark}",
            t.name, t.value, t.goal
        );
    }
    if let Some(soak) = &r.soak {
        let _ = writeln!(
            out,
            "\nsoak: {} viewers churned; webhooks answered 204: {}, 503: {}",
            soak.churned, soak.webhooks_accepted, soak.webhooks_refused
        );
        let _ = writeln!(
            out,
            "  {:<20} {:>9} {:>9} {:>9} {:>9}  last third vs middle third",
            "", "start", "mid", "end", "max"
        );
        for t in &soak.trends {
            let _ = writeln!(
                out,
                "  {:<20} {:>9.1} {:>9.1} {:>9.1} {:>9.1}  {:.1} vs {:.1} (slack {:.1}): {}",
                t.name,
                t.start,
                t.mid,
                t.end,
                t.max,
                t.last_third_max,
                t.mid_third_max,
                t.slack,
                if t.plateau { "plateau" } else { "CLIMBING" }
            );
        }
    }
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const W: f64 = 760.0;
const H: f64 = 260.0;
const ML: f64 = 60.0;
const MR: f64 = 20.0;
const MT: f64 = 30.0;
const MB: f64 = 40.0;

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

fn axes(out: &mut String, title: &str, xlabel: &str, ylabel: &str, xmax: f64, ymax: f64) {
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">
<text x="{}" y="18" font-size="13" font-weight="bold">{}</text>"##,
        ML,
        esc(title)
    );
    let (x0, x1, y0, y1) = (ML, W - MR, H - MB, MT);
    let _ = write!(
        out,
        r##"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#333"/><line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#333"/>"##
    );
    for i in 0..=5 {
        let fy = i as f64 / 5.0;
        let y = y0 - fy * (y0 - y1);
        let _ = write!(
            out,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 - 4.0,
            y + 4.0,
            trim_num(ymax * fy)
        );
        let x = x0 + fy * (x1 - x0);
        let _ = write!(
            out,
            r##"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            y0 + 14.0,
            trim_num(xmax * fy)
        );
    }
    let _ = write!(
        out,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text x="12" y="{:.1}" transform="rotate(-90 12 {:.1})" text-anchor="middle">{}</text>"##,
        (x0 + x1) / 2.0,
        H - 6.0,
        esc(xlabel),
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0,
        esc(ylabel)
    );
}

fn trim_num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// One line of a chart: name, colour, points.
type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// A line chart of several series.
fn line_chart(title: &str, xlabel: &str, ylabel: &str, series: &[Series<'_>]) -> String {
    let xmax = nice_max(
        series
            .iter()
            .flat_map(|s| s.2.iter().map(|p| p.0))
            .fold(0.0, f64::max),
    );
    let ymax = nice_max(
        series
            .iter()
            .flat_map(|s| s.2.iter().map(|p| p.1))
            .fold(0.0, f64::max)
            * 1.05,
    );
    let mut out = String::new();
    axes(&mut out, title, xlabel, ylabel, xmax, ymax);
    let (x0, x1, y0, y1) = (ML, W - MR, H - MB, MT);
    for (i, (name, color, pts)) in series.iter().enumerate() {
        let pts: Vec<String> = pts
            .iter()
            .map(|(x, y)| {
                format!(
                    "{:.1},{:.1}",
                    x0 + x / xmax * (x1 - x0),
                    y0 - y / ymax * (y0 - y1)
                )
            })
            .collect();
        let _ = write!(
            out,
            r##"<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{}"/>"##,
            pts.join(" ")
        );
        let lx = x1 - 170.0;
        let ly = y1 + 12.0 + i as f64 * 14.0;
        let _ = write!(
            out,
            r##"<rect x="{lx}" y="{:.1}" width="12" height="3" fill="{color}"/><text x="{:.1}" y="{:.1}">{}</text>"##,
            ly - 3.0,
            lx + 16.0,
            ly + 1.0,
            esc(name)
        );
    }
    out.push_str("</svg>");
    out
}

/// A histogram of values.
fn histogram_chart(title: &str, xlabel: &str, values: &[f64], bins: usize) -> String {
    let mut out = String::new();
    if values.is_empty() {
        axes(&mut out, title, xlabel, "viewers", 1.0, 1.0);
        out.push_str("</svg>");
        return out;
    }
    let xmax = nice_max(values.iter().cloned().fold(0.0, f64::max));
    let mut counts = vec![0usize; bins];
    for v in values {
        let i = ((v / xmax) * bins as f64) as usize;
        counts[i.min(bins - 1)] += 1;
    }
    let ymax = nice_max(*counts.iter().max().unwrap_or(&1) as f64);
    axes(&mut out, title, xlabel, "viewers", xmax, ymax);
    let (x0, x1, y0, y1) = (ML, W - MR, H - MB, MT);
    let bw = (x1 - x0) / bins as f64;
    for (i, c) in counts.iter().enumerate() {
        let h = *c as f64 / ymax * (y0 - y1);
        let _ = write!(
            out,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="#4a7bd0"><title>{c}</title></rect>"##,
            x0 + i as f64 * bw + 1.0,
            y0 - h,
            (bw - 2.0).max(1.0)
        );
    }
    out.push_str("</svg>");
    out
}

/// The HTML report.
pub fn html(r: &Report) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        r##"<!doctype html><html><head><meta charset="utf-8"><title>hawker loadtest</title>
<style>body{{font-family:sans-serif;margin:24px;max-width:900px;color:#222}}
table{{border-collapse:collapse;margin:8px 0 20px}}td,th{{border-bottom:1px solid #ddd;padding:4px 10px;text-align:left;vertical-align:top;font-size:13px}}
.met{{color:#1a7f37;font-weight:bold}}.missed{{color:#c62828;font-weight:bold}}svg{{display:block;margin:10px 0 24px}}</style></head><body>
<h1>hawker loadtest</h1><p>{} — show <b>{}</b>, {} viewers at {}/s, {:.0} s</p>"##,
        esc(&r.config.url),
        esc(&r.config.show),
        r.config.viewers,
        r.config.join_rate,
        r.config.duration_s
    );
    o.push_str(
        "<h2>Targets</h2><table><tr><th>target</th><th>goal</th><th>measured</th><th></th></tr>",
    );
    for t in &r.targets {
        let (c, m) = match t.met {
            Some(true) => ("met", "met"),
            Some(false) => ("missed", "missed"),
            None => ("", "n/a"),
        };
        let _ = write!(
            o,
            r#"<tr><td>{}</td><td>{}</td><td>{}</td><td class="{c}">{m}</td></tr>"#,
            esc(&t.name),
            esc(&t.goal),
            esc(&t.value)
        );
    }
    o.push_str("</table><h2>Summary</h2><table>");
    for (k, v) in rows(r) {
        let _ = write!(o, "<tr><th>{}</th><td>{}</td></tr>", esc(&k), esc(&v));
    }
    o.push_str("</table>");
    for n in &r.notes {
        let _ = write!(o, "<p><i>note: {}</i></p>", esc(n));
    }
    o.push_str("<h2>Plots</h2>");
    let joins: Vec<f64> = r
        .viewers
        .iter()
        .filter_map(|v| v.first_keyframe_ms)
        .collect();
    o.push_str(&histogram_chart(
        "Join time: WHEP POST → first keyframe",
        "ms",
        &joins,
        30,
    ));
    let pts = |g: &dyn Fn(&Sample) -> Option<f64>| -> Vec<(f64, f64)> {
        r.series
            .iter()
            .filter_map(|s| g(s).map(|v| (s.t_s, v)))
            .collect()
    };
    o.push_str(&line_chart(
        "Forwarding delay per second (publisher send → viewer receive)",
        "seconds",
        "ms",
        &[
            ("p50", "#4a7bd0", pts(&|s| s.delay_p50_ms)),
            ("p99", "#d0584a", pts(&|s| s.delay_p99_ms)),
        ],
    ));
    o.push_str(&line_chart(
        "Loss per second",
        "seconds",
        "%",
        &[("loss %", "#d0584a", pts(&|s| Some(s.loss_pct)))],
    ));
    o.push_str(&line_chart(
        "Viewers and delivered packets",
        "seconds",
        "viewers / (kpkt/s)",
        &[
            (
                "viewers connected",
                "#4a7bd0",
                pts(&|s| Some(s.connected as f64)),
            ),
            (
                "delivered kpkt/s",
                "#2e9b5f",
                pts(&|s| Some(s.rx_pps / 1000.0)),
            ),
        ],
    ));
    o.push_str(&line_chart(
        "CPU (% of one core)",
        "seconds",
        "%",
        &[
            ("server process", "#d0584a", pts(&|s| s.server_cpu_pct)),
            ("server shard threads", "#e09a3a", pts(&|s| s.shard_cpu_pct)),
            (
                "shards waiting for a CPU",
                "#b04ad0",
                pts(&|s| s.shard_wait_pct),
            ),
            ("generator", "#777", pts(&|s| Some(s.generator_cpu_pct))),
        ],
    ));
    o.push_str(&line_chart(
        "Server RSS",
        "seconds",
        "MiB",
        &[("RSS", "#6a4ad0", pts(&|s| s.server_rss_mib))],
    ));
    o.push_str("</body></html>\n");
    o
}
