//! Draws the benchmark's plots from bench/out/results.json with plotters:
//! latency CDF per target for every fan-out phase, latency CDF per protocol (HTTP/1.1, TLS,
//! HTTP/2) for Crier's protocol fan-out, and memory per stream by target.

use std::error::Error;
use std::path::{Path, PathBuf};

use clap::Parser;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use serde_json::Value;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    results: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// A TrueType font for the labels.
    #[arg(
        long,
        default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    )]
    font: PathBuf,
}

const ORDER: [&str; 4] = ["crier", "raw", "baseline", "yaws"];

fn targets(res: &Value) -> Vec<String> {
    let mut names: Vec<String> = res["targets"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    names.sort_by_key(|n| (ORDER.iter().position(|o| o == n).unwrap_or(99), n.clone()));
    names
}

fn label(res: &Value, name: &str) -> String {
    res["targets"][name]["label"]
        .as_str()
        .unwrap_or(name)
        .to_string()
}

fn color(i: usize) -> RGBColor {
    const C: [RGBColor; 8] = [
        RGBColor(214, 39, 40),
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    C[i % C.len()]
}

/// (latency_us, fraction) points of one fan-out phase.
fn cdf(v: &Value) -> Vec<(f64, f64)> {
    v["cdf"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p[0].as_f64()?.max(1.0), p[1].as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}

fn latency_plot(res: &Value, key: &str, mode: &str, path: &Path) -> Result<bool, Box<dyn Error>> {
    let mut series = Vec::new();
    for name in targets(res) {
        let pts = cdf(&res["targets"][&name][key]["modes"][mode]);
        if !pts.is_empty() {
            series.push((label(res, &name), pts));
        }
    }
    let subs = key.trim_start_matches("fanout_");
    let title = format!("Delivery latency CDF: {subs} subscribers, {mode}");
    cdf_plot(series, &title, path)
}

/// Crier's protocol fan-out (`h2fanout_N`): one line per protocol, from the last round.
fn protocol_plot(res: &Value, key: &str, mode: &str, path: &Path) -> Result<bool, Box<dyn Error>> {
    let r = &res["targets"]["crier"][key];
    let Some(last) = r["rounds"].as_array().and_then(|a| a.last()) else {
        return Ok(false);
    };
    let mut series = Vec::new();
    for v in r["variants"].as_array().into_iter().flatten() {
        let Some(name) = v.as_str() else { continue };
        let pts = cdf(&last[name]["modes"][mode]);
        if !pts.is_empty() {
            series.push((protocol_label(name), pts));
        }
    }
    let subs = key.trim_start_matches("h2fanout_");
    let title = format!("Crier latency CDF by protocol: {subs} subscribers, {mode}");
    cdf_plot(series, &title, path)
}

/// The names RESULTS.md gives the protocol variants of orchestrate.py.
fn protocol_label(name: &str) -> String {
    match name {
        "h1" => "HTTP/1.1, TCP".into(),
        "h1tls" => "HTTP/1.1, TLS".into(),
        "h2conn" => "HTTP/2, a connection per stream".into(),
        "h2one" => "HTTP/2, all streams on one connection".into(),
        n => match n.strip_prefix("h2mux") {
            Some(k) => format!("HTTP/2, {k} streams per connection"),
            None => n.into(),
        },
    }
}

fn cdf_plot(
    series: Vec<(String, Vec<(f64, f64)>)>,
    title: &str,
    path: &Path,
) -> Result<bool, Box<dyn Error>> {
    if series.is_empty() {
        return Ok(false);
    }
    let max_x = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .fold(10.0f64, f64::max)
        * 1.5;
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d((1.0f64..max_x).log_scale(), 0.0f64..1.0)?;
    chart
        .configure_mesh()
        .x_desc("publish -> receipt latency (microseconds, log scale)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_desc("fraction of events")
        .draw()?;
    for (i, (name, pts)) in series.into_iter().enumerate() {
        let c = color(i);
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(true)
}

fn memory_plot(res: &Value, path: &Path) -> Result<bool, Box<dyn Error>> {
    let mut series = Vec::new();
    for name in targets(res) {
        for (key, what) in [("idle_sse", "owned"), ("idle_sub", "subscribed")] {
            let Some(steps) = res["targets"][&name][key]["steps"].as_array() else {
                continue;
            };
            let pts: Vec<(f64, f64)> = steps
                .iter()
                .filter_map(|s| Some((s["opened"].as_f64()?, s["per_conn"].as_f64()? / 1024.0)))
                .collect();
            if !pts.is_empty() {
                series.push((format!("{} ({what})", label(res, &name)), pts));
            }
        }
    }
    if series.is_empty() {
        return Ok(false);
    }
    let pts = series.iter().flat_map(|(_, p)| p.iter());
    let (max_x, max_y) = pts.fold((1.0f64, 1.0f64), |(x, y), p| (x.max(p.0), y.max(p.1)));
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Server memory per idle SSE stream (RSS growth / streams)",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0f64..max_x * 1.05, 0.0f64..max_y * 1.9)?;
    chart
        .configure_mesh()
        .x_desc("open streams")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_desc("KiB per stream (user space)")
        .draw()?;
    for (i, (name, pts)) in series.into_iter().enumerate() {
        let c = color(i / 2);
        let style = if i % 2 == 0 {
            c.stroke_width(2)
        } else {
            c.mix(0.6).stroke_width(2)
        };
        chart
            .draw_series(LineSeries::new(pts.clone(), style))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart.draw_series(
            pts.into_iter()
                .map(move |p| Circle::new(p, 4, style.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(true)
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let font: &'static [u8] = Box::leak(std::fs::read(&args.font)?.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, font).map_err(|_| "font could not be loaded")?;
    let res: Value = serde_json::from_slice(&std::fs::read(&args.results)?)?;
    std::fs::create_dir_all(&args.out)?;
    let mut made = Vec::new();
    let subs: Vec<u64> = res["params"]["fanout_subscribers"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    for n in subs {
        for mode in ["paced", "b2b", "burst"] {
            let p = args.out.join(format!("latency_cdf_{n}_{mode}.png"));
            if latency_plot(&res, &format!("fanout_{n}"), mode, &p)? {
                made.push(p);
            }
        }
    }
    if let Some(n) = res["params"]["proto_subscribers"].as_u64() {
        for mode in ["paced", "b2b"] {
            let p = args
                .out
                .join(format!("protocols_latency_cdf_{n}_{mode}.png"));
            if protocol_plot(&res, &format!("h2fanout_{n}"), mode, &p)? {
                made.push(p);
            }
        }
    }
    let p = args.out.join("memory_per_conn.png");
    if memory_plot(&res, &p)? {
        made.push(p);
    }
    for p in made {
        println!("wrote {}", p.display());
    }
    Ok(())
}
