//! Sweeps: many (precision, shape, target) points synthesised in parallel, summarised as
//! `sweep.json`, `sweep.md` and a hand-written `sweep.svg` plot.

use std::collections::BTreeSet;
use std::fmt::{Display, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::baseline::BaselineShape;
use super::targets::{Family, Target};
use super::{run_flow, synth_baseline, DspPolicy, SynthError, SynthOptions, SynthReport};

/// One configuration of a sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SweepPoint {
    /// Target.
    pub target: Target,
    /// Rows.
    pub rows: u32,
    /// Columns.
    pub cols: u32,
    /// Lanes (products per cell per cycle).
    pub lanes: u32,
    /// Weight bits.
    pub weight_bits: u32,
    /// Activation bits.
    pub act_bits: u32,
    /// This point's DSP policy (the target defaults'), used instead of the sweep's for the design
    /// and its baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsp: Option<DspPolicy>,
    /// The baseline's rows, cols and lanes when they are not the point's (`--preset headline`: the
    /// plain 8x8 array).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain: Option<[u32; 3]>,
}

impl SweepPoint {
    /// `w<W>a<A>`.
    pub fn label(&self) -> String {
        format!("w{}a{}", self.weight_bits, self.act_bits)
    }

    /// `<rows>x<cols>` (and `x<lanes>` when lanes > 1).
    pub fn shape(&self) -> String {
        if self.lanes > 1 {
            format!("{}x{}x{}", self.rows, self.cols, self.lanes)
        } else {
            format!("{}x{}", self.rows, self.cols)
        }
    }

    /// The baseline of the same shape and precision.
    pub fn baseline_shape(&self) -> BaselineShape {
        let [rows, cols, lanes] = self.plain.unwrap_or([self.rows, self.cols, self.lanes]);
        BaselineShape { lanes, ..BaselineShape::new(rows, cols, self.weight_bits, self.act_bits) }
    }

    /// The baseline's shape, as [`SweepPoint::shape`] writes it.
    pub fn baseline_shape_name(&self) -> String {
        let [rows, cols, lanes] = self.plain.unwrap_or([self.rows, self.cols, self.lanes]);
        SweepPoint { rows, cols, lanes, ..*self }.shape()
    }

    /// Build directory of the generated design below the sweep directory.
    pub fn build_dir(&self, out: &Path) -> PathBuf {
        out.join(self.target.name()).join(format!("{}-{}", self.shape(), self.label()))
    }

    /// Build directory of the baseline below the sweep directory.
    pub fn baseline_dir(&self, out: &Path) -> PathBuf {
        out.join(self.target.name()).join(format!("{}-{}-baseline", self.baseline_shape_name(), self.label()))
    }

    /// The same baseline as `other`'s (target, shape, precision and DSP policy): a sweep runs it once.
    pub fn same_baseline(&self, other: &SweepPoint) -> bool {
        (self.target, self.baseline_shape_name(), self.label(), self.dsp) == (other.target, other.baseline_shape_name(), other.label(), other.dsp)
    }
}

/// What a sweep synthesises per point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SweepMode {
    /// Only the generated design.
    Generated,
    /// The generated design and the baseline.
    WithBaseline,
    /// Only the baseline (no generator needed).
    BaselineOnly,
}

/// Options of a sweep.
#[derive(Clone, Debug)]
pub struct SweepOptions {
    /// Directory receiving the build directories and `sweep.{json,md,svg}`.
    pub out_dir: PathBuf,
    /// Parallel runs (at least 1).
    pub jobs: usize,
    /// Per-run options; `target` and `baseline` are overridden per run.
    pub synth: SynthOptions,
    /// What to synthesise.
    pub mode: SweepMode,
    /// Print a progress line per finished run on stderr.
    pub progress: bool,
    /// The command line, recorded in `sweep.json` and shown in `sweep.md`.
    pub command: Option<String>,
}

/// The outcome of one point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepResult {
    /// The point.
    pub point: SweepPoint,
    /// The generated design's report, if it was run and succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qmac: Option<SynthReport>,
    /// The baseline's report, if it was run and succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<SynthReport>,
    /// Failures (`generate: ...`, `synth: ...`, `baseline: ...`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// When the baseline does not fit the device: nextpnr's verdict (not a failure of the sweep).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_does_not_fit: Option<String>,
}

/// `sweep.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepSummary {
    /// What was run.
    pub mode: SweepMode,
    /// The command line that ran the sweep, shown above the table of `sweep.md`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// One entry per point, in the order given.
    pub results: Vec<SweepResult>,
}

impl SweepSummary {
    /// Result `i`'s baseline is an earlier result's (the same run): it is counted and listed there.
    fn shares_baseline(&self, i: usize) -> bool {
        self.results[..i].iter().any(|q| q.point.same_baseline(&self.results[i].point))
    }

    /// Number of failed runs.
    pub fn failures(&self) -> usize {
        // a shared baseline's failure counts once, at the first point that has it
        self.results
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let repeated = self.shares_baseline(i);
                r.errors.iter().filter(|e| !(repeated && e.starts_with("baseline: "))).count()
            })
            .sum()
    }
}

/// Errors that stop a sweep (a failing point does not).
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// Nothing to do.
    #[error("the sweep has no points")]
    NoPoints,
    /// The output directory cannot be written (nothing in it was changed).
    #[error(transparent)]
    OutDir(#[from] crate::outdir::OutDirError),
    /// An output could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Clone, Copy)]
enum Job {
    Qmac(usize),
    Baseline(usize),
}

/// The place-and-route runs (each with its seeds) a sweep of these points makes: a shared baseline
/// counts once.
pub fn runs(points: &[SweepPoint], mode: SweepMode) -> usize {
    plan(points, mode).0.len()
}

/// The runs of a sweep, and the points whose baseline is an earlier point's `(i, j)`: point `i`
/// takes the result of point `j`'s baseline, which runs once (two headline points of one precision
/// and target share the plain 8x8 array).
fn plan(points: &[SweepPoint], mode: SweepMode) -> (Vec<Job>, Vec<(usize, usize)>) {
    let mut jobs = Vec::new();
    let mut shared = Vec::new();
    for (i, p) in points.iter().enumerate() {
        if mode != SweepMode::BaselineOnly {
            jobs.push(Job::Qmac(i));
        }
        if mode != SweepMode::Generated {
            match points[..i].iter().position(|q| q.same_baseline(p)) {
                Some(j) => shared.push((i, j)),
                None => jobs.push(Job::Baseline(i)),
            }
        }
    }
    (jobs, shared)
}

/// Runs every point (generated design via `generate`, which must write a build directory for the point
/// into the given directory; and/or the baseline) with up to `opts.jobs` runs in parallel, then writes
/// `sweep.json`, `sweep.md` and `sweep.svg` into `opts.out_dir`. A failing point is recorded in its
/// result and the sweep goes on. The whole directory is written beside `opts.out_dir` and replaces it
/// at the end, as [`crate::outdir`] describes: an earlier sweep there stays until this one is complete.
pub fn sweep<F, E>(points: &[SweepPoint], opts: &SweepOptions, generate: F) -> Result<SweepSummary, SweepError>
where
    F: Fn(&SweepPoint, &Path) -> Result<(), E> + Sync,
    E: Display,
{
    if points.is_empty() {
        return Err(SweepError::NoPoints);
    }
    // everything goes to a temporary directory that replaces `out_dir` at the end (crate::outdir)
    let staged = crate::outdir::Staged::begin(&opts.out_dir, crate::outdir::Kind::Sweep)?;
    let root = staged.path().to_path_buf();
    let (jobs, shared) = plan(points, opts.mode);
    let results: Vec<Mutex<SweepResult>> = points
        .iter()
        .map(|p| Mutex::new(SweepResult { point: *p, qmac: None, baseline: None, errors: Vec::new(), baseline_does_not_fit: None }))
        .collect();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let total = jobs.len();
    let workers = opts.jobs.max(1).min(total);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                let Some(job) = jobs.get(k).copied() else { break };
                let (i, is_baseline) = match job {
                    Job::Qmac(i) => (i, false),
                    Job::Baseline(i) => (i, true),
                };
                let p = &points[i];
                let mut o = opts.synth.clone();
                o.target = p.target;
                o.baseline = false;
                o.dsp = p.dsp.unwrap_or(o.dsp);
                let mut unfit = None;
                let outcome: Result<SynthReport, String> = if is_baseline {
                    synth_baseline(&p.baseline_shape(), &p.baseline_dir(&root), &o).map_err(|e| {
                        if let SynthError::DoesNotFit { .. } = e {
                            unfit = Some(e.summary());
                        }
                        format!("baseline: {}", e.summary())
                    })
                } else {
                    let dir = p.build_dir(&root);
                    match std::fs::create_dir_all(&dir) {
                        Err(e) => Err(format!("generate: {}: {e}", dir.display())),
                        Ok(()) => match generate(p, &dir) {
                            Err(e) => Err(format!("generate: {e}")),
                            Ok(()) => run_flow(&dir, &o).map_err(|e| format!("synth: {}", e.summary())),
                        },
                    }
                };
                let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                let what = if is_baseline { " baseline" } else { "" };
                let shape = if is_baseline { p.baseline_shape_name() } else { p.shape() };
                let line = match &outcome {
                    Ok(r) => format!(
                        "[{n}/{total}] {} {} {}{what} done: {} {}, {:.1} MHz",
                        p.label(),
                        shape,
                        p.target,
                        r.resources.lut4.used,
                        lut_unit(p.target),
                        r.fmax_mhz
                    ),
                    Err(e) if unfit.is_some() => format!("[{n}/{total}] {} {shape} {}{what}: {e}", p.label(), p.target),
                    Err(e) => format!("[{n}/{total}] {} {shape} {}{what} FAILED: {e}", p.label(), p.target),
                };
                if opts.progress {
                    eprintln!("{line}");
                }
                let mut res = results[i].lock().expect("result lock");
                match (outcome, is_baseline) {
                    (Ok(r), false) => res.qmac = Some(r),
                    (Ok(r), true) => res.baseline = Some(r),
                    (Err(_), true) if unfit.is_some() => res.baseline_does_not_fit = unfit,
                    (Err(e), _) => res.errors.push(e),
                }
            });
        }
    });
    // messages name the paths the files will have
    let (tmp_name, out_name) = (root.display().to_string(), opts.out_dir.display().to_string());
    let mut summary = SweepSummary {
        mode: opts.mode,
        command: opts.command.clone(),
        results: results.into_iter().map(|m| m.into_inner().expect("result lock")).collect(),
    };
    for &(i, j) in &shared {
        let (baseline, unfit) = (summary.results[j].baseline.clone(), summary.results[j].baseline_does_not_fit.clone());
        let errors: Vec<String> = summary.results[j].errors.iter().filter(|e| e.starts_with("baseline: ")).cloned().collect();
        let r = &mut summary.results[i];
        r.baseline = baseline;
        r.baseline_does_not_fit = unfit;
        r.errors.extend(errors);
    }
    for e in summary.results.iter_mut().flat_map(|r| r.errors.iter_mut().chain(r.baseline_does_not_fit.iter_mut())) {
        *e = e.replace(&tmp_name, &out_name);
    }
    staged.write("sweep.json", serde_json::to_string_pretty(&summary).expect("serialises") + "\n")?;
    staged.write("sweep.md", sweep_markdown(&summary))?;
    staged.write("sweep.svg", sweep_svg(&summary))?;
    staged.commit()?;
    Ok(summary)
}

fn lut_unit(t: Target) -> &'static str {
    match t.family() {
        Family::Ice40 => "LC",
        Family::Ecp5 => "LUT4",
    }
}

/// The Markdown table of `sweep.md`.
pub fn sweep_markdown(s: &SweepSummary) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "# qmac sweep\n");
    if let Some(c) = &s.command {
        let _ = writeln!(m, "```\n{c}\n```\n");
    }
    let _ = writeln!(
        m,
        "LUT4 is nextpnr's ICESTORM_LC (iCE40) or TRELLIS_COMB (ECP5) count of the whole board top (array + \
         serial wrapper); GOPS = 2 x MACs/cycle x fmax. Ratios are qmac / baseline (the plain array of the \
         same shape and precision, with the same DSP policy). Options: the design's settings that differ \
         from the built-in defaults, beside its shape and precision.\n"
    );
    let seeds = s.results.iter().flat_map(|r| r.qmac.iter().chain(r.baseline.iter())).map(|q| q.seed_runs.len()).max().unwrap_or(0);
    if seeds > 1 {
        let _ = writeln!(m, "fmax is the median of {seeds} place-and-route runs (nextpnr seeds) per design.\n");
    }
    for (i, r) in s.results.iter().enumerate() {
        let repeated = s.shares_baseline(i);
        for (name, q) in [("qmac", &r.qmac), ("baseline", &r.baseline)] {
            let Some(q) = q else { continue };
            if name == "baseline" && repeated {
                continue;
            }
            if !q.stalled_seeds.is_empty() {
                let used: Vec<String> = q.seed_runs.iter().map(|x| x.seed.to_string()).collect();
                let gone: Vec<String> = q.stalled_seeds.iter().map(u64::to_string).collect();
                let _ = writeln!(
                    m,
                    "{} {} {} {name}: nextpnr's router stalled at seed {} (stopped); its fmax is the median of seeds {}.\n",
                    r.point.target,
                    if name == "baseline" { r.point.baseline_shape_name() } else { r.point.shape() },
                    r.point.label(),
                    gone.join(", "),
                    used.join(", ")
                );
            }
        }
    }
    let _ = writeln!(
        m,
        "| target | shape | W | A | design | MACs/cycle | LUT4 | LUT4 % | FF | carry | DSP | BRAM | fmax MHz | GOPS | LUT4/MAC | LUT4/MAC vs baseline | fmax vs baseline | DSP policy | options |"
    );
    let _ = writeln!(m, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (i, r) in s.results.iter().enumerate() {
        let p = &r.point;
        // a baseline shared with an earlier point (the same run) is listed there only
        let repeated = s.shares_baseline(i);
        let head = format!("| {} | {} | {} | {} ", p.target, p.shape(), p.weight_bits, p.act_bits);
        let bhead = format!("| {} | {} | {} | {} ", p.target, p.baseline_shape_name(), p.weight_bits, p.act_bits);
        let row = |m: &mut String, name: &str, q: &SynthReport, ratios: (String, String)| {
            let x = &q.resources;
            let head = if name == "baseline" { &bhead } else { &head };
            let _ = writeln!(
                m,
                "{head}| {name} | {} | {} | {:.1} | {} | {} | {} | {} | {:.1} | {:.2} | {:.2} | {} | {} | {} | {} |",
                q.macs_per_cycle,
                x.lut4.used,
                x.lut4.percent,
                x.flip_flops.used,
                x.carry_cells,
                x.dsp.used,
                x.bram.used,
                q.fmax_mhz,
                q.gops,
                q.luts_per_mac,
                ratios.0,
                ratios.1,
                q.dsp_policy.name(),
                design_options(&q.config)
            );
        };
        if let Some(q) = &r.qmac {
            let ratios = match &r.baseline {
                Some(b) if b.luts_per_mac > 0.0 && b.fmax_mhz > 0.0 => {
                    (format!("{:.3}x", q.luts_per_mac / b.luts_per_mac), format!("{:.3}x", q.fmax_mhz / b.fmax_mhz))
                }
                _ if r.baseline_does_not_fit.is_some() => ("plain does not fit".into(), "-".into()),
                _ => ("-".into(), "-".into()),
            };
            row(&mut m, "qmac", q, ratios);
        }
        if let (Some(b), false) = (&r.baseline, repeated) {
            row(&mut m, "baseline", b, ("-".into(), "-".into()));
        }
        if let (Some(u), false) = (&r.baseline_does_not_fit, repeated) {
            let u = u.replace('|', "\\|");
            let _ = writeln!(m, "{bhead}| baseline: {u} | | | | | | | | | | | | | | |");
        }
        for e in r.errors.iter().filter(|e| !(repeated && e.starts_with("baseline: "))) {
            let e = e.replace('|', "\\|");
            let _ = writeln!(m, "{head}| failed: {e} | | | | | | | | | | | | | | |");
        }
    }
    m
}

/// The settings of a design (the manifest's `config`) that differ from the built-in defaults, other
/// than shape, precision, encodings and the widths derived from them: `running_totals,
/// pe_input_regs, pack = auto`, or `-`.
pub fn design_options(config: &serde_json::Value) -> String {
    // shape, precision and what follows from them (the exact accumulator, out_bits = act_bits)
    const SHAPE: [&str; 11] = ["module_prefix", "rows", "cols", "lanes", "weight_bits", "act_bits", "weight_encoding", "act_encoding", "acc_bits", "out_bits", "kind"];
    let Some(map) = config.as_object() else { return "-".into() };
    let defaults = serde_json::to_value(crate::config::RawConfig::default()).expect("serialises");
    let mut out = Vec::new();
    for (k, v) in map {
        if SHAPE.contains(&k.as_str()) || defaults.get(k) == Some(v) {
            continue;
        }
        out.push(match v {
            serde_json::Value::Bool(true) => k.clone(),
            serde_json::Value::String(s) => format!("{k} = {s}"),
            other => format!("{k} = {other}"),
        });
    }
    if out.is_empty() {
        "-".into()
    } else {
        out.join(", ")
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A "nice" axis maximum and tick step for data up to `max`.
fn nice_axis(max: f64) -> (f64, f64) {
    let max = if max.is_finite() && max > 0.0 { max } else { 1.0 };
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    ((max / step).ceil() * step, step)
}

fn fmt_tick(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

/// (target, shape, is baseline).
type SeriesKey = (Target, String, bool);
/// A series and its points (category index, LUT4/MAC, fmax).
type Series = (SeriesKey, Vec<(usize, f64, f64)>);

const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// The plot of `sweep.svg`: LUT4 per MAC (left) and fmax (right) against precision, one line per target
/// and kind (qmac solid, baseline dashed).
pub fn sweep_svg(s: &SweepSummary) -> String {
    // x categories: precisions ordered by W*A, then W.
    let mut cats: Vec<(u32, u32)> = s
        .results
        .iter()
        .map(|r| (r.point.weight_bits, r.point.act_bits))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    cats.sort_by_key(|(w, a)| (w * a, *w, *a));
    // series: (target, shape, baseline?) -> points (category index, luts/mac, fmax)
    let mut series: Vec<Series> = Vec::new();
    for r in &s.results {
        let ci = cats.iter().position(|c| *c == (r.point.weight_bits, r.point.act_bits)).expect("category");
        for (q, is_b) in [(&r.qmac, false), (&r.baseline, true)] {
            if let Some(q) = q {
                let key = (r.point.target, r.point.shape(), is_b);
                match series.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, v)) => v.push((ci, q.luts_per_mac, q.fmax_mhz)),
                    None => series.push((key, vec![(ci, q.luts_per_mac, q.fmax_mhz)])),
                }
            }
        }
    }
    for (_, v) in series.iter_mut() {
        v.sort_by_key(|p| p.0);
    }
    let targets: Vec<Target> = series.iter().map(|((t, _, _), _)| *t).collect::<BTreeSet<_>>().into_iter().collect();

    let (pw, ph) = (420.0, 300.0); // plot area of one panel
    let (ml, mt, gap) = (70.0, 50.0, 90.0);
    let legend_h = 22.0 * series.len().max(1) as f64 + 20.0;
    let width = ml + pw + gap + pw + 30.0;
    let height = mt + ph + 60.0 + legend_h;
    let mut v = String::new();
    let _ = writeln!(
        v,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">
<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>
<text x="{}" y="22" font-size="16" text-anchor="middle">qmac sweep: LUT4 per MAC and fmax against precision</text>"#,
        width / 2.0
    );
    let ncat = cats.len().max(1) as f64;
    let xpos = |x0: f64, ci: usize| x0 + pw * (ci as f64 + 0.5) / ncat;
    for (panel, title, unit) in [(0usize, "LUT4 per MAC", "LUT4 / MAC"), (1, "fmax", "MHz")] {
        let x0 = ml + panel as f64 * (pw + gap);
        let max = series
            .iter()
            .flat_map(|(_, pts)| pts.iter().map(|p| if panel == 0 { p.1 } else { p.2 }))
            .fold(0.0f64, f64::max);
        let (ymax, step) = nice_axis(max);
        let ypos = |y: f64| mt + ph - ph * y / ymax;
        let _ = writeln!(v, r#"<g class="panel" id="panel-{panel}">"#);
        let _ = writeln!(
            v,
            r#"<text x="{}" y="{}" font-size="14" text-anchor="middle">{title}</text>"#,
            x0 + pw / 2.0,
            mt - 12.0
        );
        // grid and y ticks
        let mut t = 0.0;
        while t <= ymax + step * 1e-6 {
            let y = ypos(t);
            let _ = writeln!(v, r##"<line x1="{x0}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#e0e0e0"/>"##, x0 + pw);
            let _ =
                writeln!(v, r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#, x0 - 6.0, y + 4.0, fmt_tick(t));
            t += step;
        }
        // axes
        let _ = writeln!(v, r#"<line x1="{x0}" y1="{mt}" x2="{x0}" y2="{}" stroke="black"/>"#, mt + ph);
        let _ = writeln!(v, r#"<line x1="{x0}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#, mt + ph, x0 + pw, mt + ph);
        let _ = writeln!(
            v,
            r#"<text x="{}" y="{}" text-anchor="middle" transform="rotate(-90 {} {})">{unit}</text>"#,
            x0 - 48.0,
            mt + ph / 2.0,
            x0 - 48.0,
            mt + ph / 2.0
        );
        for (ci, (w, a)) in cats.iter().enumerate() {
            let x = xpos(x0, ci);
            let _ = writeln!(
                v,
                r#"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="black"/>"#,
                mt + ph,
                mt + ph + 5.0
            );
            let _ = writeln!(v, r#"<text x="{x:.1}" y="{}" text-anchor="middle">w{w}a{a}</text>"#, mt + ph + 18.0);
        }
        let _ = writeln!(
            v,
            r#"<text x="{}" y="{}" text-anchor="middle">precision (weight bits, activation bits)</text>"#,
            x0 + pw / 2.0,
            mt + ph + 38.0
        );
        for ((target, _, is_b), pts) in &series {
            let color = COLORS[targets.iter().position(|t| t == target).unwrap_or(0) % COLORS.len()];
            let dash = if *is_b { r#" stroke-dasharray="6 4""# } else { "" };
            let coords: Vec<String> = pts
                .iter()
                .map(|p| format!("{:.1},{:.1}", xpos(x0, p.0), ypos(if panel == 0 { p.1 } else { p.2 })))
                .collect();
            let _ = writeln!(
                v,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{}"/>"#,
                coords.join(" ")
            );
            for c in &coords {
                let (cx, cy) = c.split_once(',').expect("coordinate");
                let fill = if *is_b { "white" } else { color };
                let _ = writeln!(v, r#"<circle cx="{cx}" cy="{cy}" r="3.5" fill="{fill}" stroke="{color}"/>"#);
            }
        }
        let _ = writeln!(v, "</g>");
    }
    // legend
    let ly0 = mt + ph + 62.0;
    let _ = writeln!(v, r#"<g class="legend">"#);
    for (k, ((target, shape, is_b), _)) in series.iter().enumerate() {
        let color = COLORS[targets.iter().position(|t| t == target).unwrap_or(0) % COLORS.len()];
        let y = ly0 + 22.0 * k as f64;
        let dash = if *is_b { r#" stroke-dasharray="6 4""# } else { "" };
        let _ = writeln!(
            v,
            r#"<line x1="{ml}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="2"{dash}/>"#,
            ml + 36.0
        );
        let name = format!("{} {} {}", target, shape, if *is_b { "baseline (plain array)" } else { "qmac" });
        let _ = writeln!(v, r#"<text x="{}" y="{}">{}</text>"#, ml + 44.0, y + 4.0, xml_escape(&name));
    }
    if series.is_empty() {
        let _ = writeln!(v, r#"<text x="{ml}" y="{}">no successful runs</text>"#, ly0 + 4.0);
    }
    let _ = writeln!(v, "</g>\n</svg>");
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two points with the same baseline (target, shape, precision, DSP policy) run it once, the
    /// second takes the first's result and the table lists it once; other points run their own.
    #[test]
    fn a_shared_baseline_runs_once_and_is_listed_once() {
        let pt = |target, lanes, bits| SweepPoint { target, rows: 4, cols: 4, lanes, weight_bits: bits, act_bits: bits, dsp: None, plain: Some([8, 8, 1]) };
        let points = [pt(Target::Ecp5_85k, 8, 4), pt(Target::Ecp5_85k, 16, 4), pt(Target::Ice40Up5k, 4, 4), pt(Target::Ecp5_85k, 16, 8)];
        let (jobs, shared) = plan(&points, SweepMode::WithBaseline);
        let baselines: Vec<usize> = jobs.iter().filter_map(|j| if let Job::Baseline(i) = j { Some(*i) } else { None }).collect();
        assert_eq!(baselines, [0, 2, 3]);
        assert_eq!(shared, [(1, 0)]);
        assert_eq!(jobs.iter().filter(|j| matches!(j, Job::Qmac(_))).count(), 4);
        assert_eq!(plan(&points, SweepMode::Generated).1, []);
        assert_eq!((runs(&points, SweepMode::WithBaseline), runs(&points, SweepMode::BaselineOnly)), (7, 3));
        // the same shape without the preset's plain array: different baselines
        let own = [SweepPoint { plain: None, ..points[0] }, SweepPoint { plain: None, ..points[1] }];
        assert_eq!(plan(&own, SweepMode::WithBaseline).1, []);
        // a different DSP policy: its own baseline
        assert_eq!(plan(&[points[0], SweepPoint { dsp: Some(DspPolicy::On), ..points[1] }], SweepMode::WithBaseline).1, []);
        // the table: both qmac rows with their ratios against the one baseline row
        let report = |kind: &str, macs: f64, luts: u64, fmax: f64| -> SynthReport {
            let usage = serde_json::json!({"used": luts, "available": 83640, "percent": 1.0});
            serde_json::from_value(serde_json::json!({
                "design": "d", "kind": kind, "config": {}, "target": "ecp5-85k", "device": "LFE5U-85F", "board": "ULX3S",
                "dsp_policy": "on", "dsp_enabled": true, "keep_hierarchy": true, "seed": 1, "seed_runs": [{"seed": 1, "fmax_mhz": fmax}],
                "requested_mhz": 100.0, "fmax_mhz": fmax, "timing_met": true,
                "resources": {"lut4_kind": "TRELLIS_COMB", "lut4": usage, "carry_cells": 0, "flip_flops": usage, "dsp": usage, "bram": usage, "io": usage},
                "synth_luts": {"total": 1, "wrapper": 0, "array": 1}, "macs_per_cycle": macs, "gops": 1.0,
                "luts_per_mac": luts as f64 / macs, "tools": {"yosys": "Yosys", "nextpnr": "nextpnr"}, "files": {}
            }))
            .unwrap()
        };
        let result = |point, q, b| SweepResult { point, qmac: Some(q), baseline: b, errors: vec![], baseline_does_not_fit: None };
        let base = report("baseline", 64.0, 6400, 50.0);
        let s = SweepSummary {
            mode: SweepMode::WithBaseline,
            command: None,
            results: vec![result(points[0], report("qmac", 128.0, 3200, 100.0), Some(base.clone())), result(points[1], report("qmac", 256.0, 3200, 75.0), Some(base))],
        };
        let md = sweep_markdown(&s);
        assert_eq!(md.matches("| baseline |").count(), 1, "{md}");
        assert!(md.contains("| 0.250x | 2.000x |") && md.contains("| 0.125x | 1.500x |"), "{md}");
        // a shared baseline that failed: one failure, listed once
        let failed = |point| SweepResult { point, qmac: None, baseline: None, errors: vec!["baseline: boom".into()], baseline_does_not_fit: None };
        let s = SweepSummary { mode: SweepMode::WithBaseline, command: None, results: vec![failed(points[0]), failed(points[1]), failed(points[2])] };
        assert_eq!(s.failures(), 2);
        assert_eq!(sweep_markdown(&s).matches("failed: baseline: boom").count(), 2);
    }

    #[test]
    fn nice_axes() {
        assert_eq!(nice_axis(43.0), (50.0, 10.0));
        assert_eq!(nice_axis(7.3), (8.0, 2.0));
        assert_eq!(nice_axis(0.0), (1.0, 0.2));
        assert_eq!(nice_axis(112.0), (125.0, 25.0));
    }

    #[test]
    fn the_table_shows_the_command_the_options_and_a_plain_array_that_does_not_fit() {
        let usage = serde_json::json!({"used": 4438, "available": 5280, "percent": 84.05});
        let config = serde_json::json!({"rows": 4, "cols": 8, "lanes": 32, "weight_bits": 1, "act_bits": 1, "acc_bits": 11, "out_bits": 1,
            "output_units": "shared", "input_registers": false, "running_totals": true, "pe_input_regs": false, "max_depth": 512});
        let q: SynthReport = serde_json::from_value(serde_json::json!({
            "design": "qmac_top", "kind": "qmac", "config": config, "target": "ice40-up5k", "device": "iCE40UP5K-SG48",
            "board": "iCEBreaker", "dsp_policy": "auto", "dsp_enabled": true, "keep_hierarchy": true, "seed": 1,
            "seed_runs": [{"seed": 1, "fmax_mhz": 55.4}, {"seed": 3, "fmax_mhz": 54.0}, {"seed": 4, "fmax_mhz": 56.0}], "stalled_seeds": [2],
            "requested_mhz": 50.0, "fmax_mhz": 55.4, "timing_met": true,
            "resources": {"lut4_kind": "ICESTORM_LC", "lut4": usage, "carry_cells": 0, "flip_flops": usage, "dsp": usage, "bram": usage, "io": usage},
            "synth_luts": {"total": 100, "wrapper": 10, "array": 90}, "macs_per_cycle": 1024.0, "gops": 113.4,
            "luts_per_mac": 4.33, "tools": {"yosys": "Yosys", "nextpnr": "nextpnr"}, "files": {}
        }))
        .unwrap();
        let point = SweepPoint { target: Target::Ice40Up5k, rows: 4, cols: 8, lanes: 32, weight_bits: 1, act_bits: 1, dsp: Some(DspPolicy::Auto), plain: Some([8, 8, 1]) };
        let result = SweepResult {
            point,
            qmac: Some(q),
            baseline: None,
            errors: vec![],
            baseline_does_not_fit: Some("does not fit iCE40UP5K-SG48: needs 5409 ICESTORM_LC of 5280 (102%)".into()),
        };
        let s = SweepSummary { mode: SweepMode::WithBaseline, command: Some("qmac sweep --preset headline".into()), results: vec![result] };
        let md = sweep_markdown(&s);
        assert!(md.contains("```\nqmac sweep --preset headline\n```"), "{md}");
        assert!(md.contains("ice40-up5k 4x8x32 w1a1 qmac: nextpnr's router stalled at seed 2 (stopped); its fmax is the median of seeds 1, 3, 4."), "{md}");
        assert!(md.contains("| ice40-up5k | 4x8x32 | 1 | 1 | qmac | 1024 | 4438 | 84.0 |"), "{md}");
        assert!(md.contains("| 55.4 | 113.40 | 4.33 | plain does not fit | - | auto | input_registers = false, running_totals |"), "{md}");
        assert!(md.contains("| ice40-up5k | 8x8 | 1 | 1 | baseline: does not fit iCE40UP5K-SG48: needs 5409 ICESTORM_LC of 5280 (102%) |"), "{md}");
        assert_eq!(s.failures(), 0, "a plain array that does not fit is not a failure");
        assert_eq!(design_options(&serde_json::json!({"rows": 2, "acc_bits": 9})), "-");
    }
}
