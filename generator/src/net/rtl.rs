//! Every compute stage of a network through the generated array in Verilator, on real data.
//!
//! Layers with the same hardware ([`QuantizedNet::hardware`]) run on one array and share one Verilator
//! build; builds are cached in `<cache>/models/<name>-<hash>`, the hash taken over the generated Verilog
//! and the testbench, so an unchanged design is never built twice. Each layer is one testbench run: its
//! parameter loads (one per group of `cols` output channels) and tiles, the reference model's expected
//! outputs, every output row the array sends written out (`--dump`) and compared. The codes the array
//! sent are what the host hands on (max-pool, flatten) to the next layer.

use super::chain::{NetRun, QCompute, QuantizedNet, StageRun};
use super::NetError;
use crate::config::Config;
use crate::emit;
use crate::sim::{self, BuildOptions, SimError};
use crate::vectors::{render, unpack_hex, Item};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Options of [`simulate`].
#[derive(Clone, Debug)]
pub struct RtlOptions {
    /// Where built models are kept.
    pub cache: PathBuf,
    /// Scratch directory for vector files, dumps and logs.
    pub work: PathBuf,
    /// Stall seed.
    pub seed: u64,
    /// Stall probability on every stream, percent (0: cycle counts without back-pressure).
    pub stall_pct: u32,
    /// Model build options.
    pub build: BuildOptions,
    /// Print progress to stderr.
    pub progress: bool,
}

/// One Verilator build.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ModelBuild {
    /// The array's short name.
    pub array: String,
    /// The model directory.
    pub dir: String,
    /// True if it was already in the cache.
    pub cached: bool,
    /// Build time, seconds (0 when cached).
    pub seconds: f64,
    /// The layers that ran on it.
    pub layers: Vec<String>,
}

/// One compute stage in the RTL.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LayerRtl {
    /// Layer name.
    pub name: String,
    /// Index into [`RtlRun::builds`].
    pub build: usize,
    /// Every output code equal to the reference's.
    pub bit_exact: bool,
    /// The testbench's failure, if any.
    pub failure: Option<String>,
    /// Output codes compared.
    pub codes: usize,
    /// Tiles streamed.
    pub tiles: usize,
    /// Simulated clock cycles (parameter loads, tiles, drain).
    pub cycles: u64,
    /// Wall time of the simulation, seconds.
    pub seconds: f64,
}

/// The network through the RTL.
#[derive(Clone, Debug)]
pub struct RtlRun {
    /// The integer run; every compute stage's codes are the array's (the reference's where the array
    /// failed).
    pub run: NetRun,
    /// Per compute stage.
    pub layers: Vec<LayerRtl>,
    /// The builds.
    pub builds: Vec<ModelBuild>,
    /// Total build time.
    pub build_time: Duration,
    /// Total simulation time (testbench runs, including writing vectors and reading dumps).
    pub sim_time: Duration,
}

/// FNV-1a, 64 bits: a stable hash of the design text (the cache key).
fn fnv64(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The Verilator model of `cfg` from the cache, or built into it. Returns the executable, the model
/// directory, whether it was cached, and the build time.
pub fn model(
    cfg: &Config,
    cache: &Path,
    opts: &BuildOptions,
) -> Result<(PathBuf, PathBuf, bool, Duration), NetError> {
    let g = emit::generate(cfg);
    let mut parts: Vec<&str> = g.rtl.iter().map(|(_, t)| t.as_str()).collect();
    parts.push(sim::TB_CPP);
    let dir = cache
        .join("models")
        .join(format!("{}-{:016x}", cfg.short_name(), fnv64(&parts)));
    let exe = dir.join("sim/obj/tb");
    if exe.is_file() {
        return Ok((exe, dir, true, Duration::ZERO));
    }
    let models = cache.join("models");
    std::fs::create_dir_all(&models).map_err(|source| NetError::Io {
        path: models.clone(),
        source,
    })?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = models.join(format!(".build-{}-{nanos}", std::process::id()));
    let built = (|| {
        emit::write(cfg, &tmp)?;
        let info = sim::build_info(&tmp)?;
        let (_, t) = sim::build_in(&info, opts, &tmp.join("sim"))?;
        Ok::<Duration, NetError>(t)
    })();
    let t = match built {
        Ok(t) => t,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    if std::fs::rename(&tmp, &dir).is_err() {
        // built meanwhile by another run: keep that one
        let _ = std::fs::remove_dir_all(&tmp);
        if !exe.is_file() {
            return Err(SimError::build_dir(&dir, "cannot move the built model into the cache".into()).into());
        }
    }
    Ok((exe, dir, false, t))
}

/// Read the testbench's dump of one layer back into GEMM-order codes `[patches][out]`.
fn read_dump(
    path: &Path,
    run: &StageRun,
    cfg: &Config,
    patches: usize,
    out: usize,
) -> Result<Vec<u64>, NetError> {
    let text = std::fs::read_to_string(path).map_err(|source| NetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let (rows, cols, ob) = (cfg.rows as usize, cfg.cols as usize, cfg.out_bits());
    let mut lines = text.lines();
    let mut codes = vec![0u64; patches * out];
    let bad = |why: &str| NetError::Sim(SimError::Mismatch(format!("{}: {why}", path.display())));
    for (group, layer) in run.layers.iter().enumerate() {
        let tiles = layer
            .items
            .iter()
            .filter(|i| matches!(i, Item::Tile(_)))
            .count();
        for block in 0..tiles {
            for r in 0..rows {
                let line = lines
                    .next()
                    .ok_or_else(|| bad("fewer output rows than tiles sent"))?;
                let row = unpack_hex(line, cols, ob)
                    .ok_or_else(|| bad("an output row that is not a row of codes"))?;
                let p = block * rows + r;
                for (c, &v) in row.iter().enumerate() {
                    let o = group * cols + c;
                    if p < patches && o < out {
                        codes[p * out + o] = v;
                    }
                }
            }
        }
    }
    Ok(codes)
}

/// Run `n` samples `x` through the network with every compute stage in the RTL.
pub fn simulate(
    q: &QuantizedNet,
    x: &[f32],
    n: usize,
    opts: &RtlOptions,
) -> Result<RtlRun, NetError> {
    std::fs::create_dir_all(&opts.work).map_err(|source| NetError::Io {
        path: opts.work.clone(),
        source,
    })?;
    let hw = q.hardware()?;
    let mut builds: Vec<Option<(PathBuf, ModelBuild)>> = vec![None; hw.len()];
    let mut layers = Vec::new();
    let (mut build_time, mut sim_time) = (Duration::ZERO, Duration::ZERO);
    let computes = q.computes().len();
    let run = q.run(x, n, |c: &QCompute, cfg: &Config, run: &mut StageRun| {
        let h = hw.iter().position(|h| h.layers.contains(&run.compute)).expect("every layer has hardware");
        if builds[h].is_none() {
            if opts.progress {
                eprintln!("qmac net: array {} for {} layer(s): building the Verilator model (or taking it from the cache)", super::chain::array_name(cfg), hw[h].layers.len());
            }
            let (exe, dir, cached, t) = model(cfg, &opts.cache, &opts.build)?;
            build_time += t;
            if opts.progress {
                eprintln!("qmac net: array {}: {}", super::chain::array_name(cfg), if cached { "cached model".to_string() } else { format!("built in {:.1} s", t.as_secs_f64()) });
            }
            builds[h] = Some((exe, ModelBuild { array: super::chain::array_name(cfg), dir: dir.display().to_string(), cached, seconds: t.as_secs_f64(), layers: Vec::new() }));
        }
        let (exe, b) = builds[h].as_mut().expect("built above");
        b.layers.push(c.name.clone());
        let t0 = Instant::now();
        let stem = format!("{:02}-{}", c.index, c.name.replace(|ch: char| !ch.is_ascii_alphanumeric() && ch != '-' && ch != '_', "_"));
        let vectors = opts.work.join(format!("{stem}.vectors.txt"));
        let dump = opts.work.join(format!("{stem}.rtl.txt"));
        let text = render(cfg, &run.layers)?;
        std::fs::write(&vectors, text).map_err(|source| NetError::Io { path: vectors.clone(), source })?;
        let tiles: usize = run.layers.iter().map(|l| l.items.len()).sum();
        let (out, patches) = (c.layer.geometry.out_channels, run.codes.len() / c.layer.geometry.out_channels);
        let result = sim::run_dump(exe, &vectors, opts.seed, opts.stall_pct, &dump, &opts.work.join(format!("{stem}.log")));
        let mut rec = LayerRtl { name: c.name.clone(), build: h, bit_exact: false, failure: None, codes: run.codes.len(), tiles, cycles: 0, seconds: 0.0 };
        match result {
            Ok(rep) => {
                rec.cycles = rep.cycles;
                let rtl = read_dump(&dump, run, cfg, patches, out)?;
                let rtl = super::lower::to_channel_major(&rtl, n, out);
                rec.bit_exact = rtl == run.codes;
                if !rec.bit_exact {
                    rec.failure = Some("the codes read back differ from the reference".into());
                }
                run.codes = rtl;
            }
            Err(SimError::Mismatch(m)) => rec.failure = Some(m),
            Err(e) => return Err(e.into()),
        }
        rec.seconds = t0.elapsed().as_secs_f64();
        sim_time += t0.elapsed();
        if opts.progress {
            let verdict = if rec.bit_exact { "bit-exact".to_string() } else { format!("NOT bit-exact: {}", rec.failure.as_deref().unwrap_or("")) };
            eprintln!("qmac net: [{}/{computes}] {}: {} codes in {tiles} tiles, {} cycles, {:.2} s: {verdict}", run.compute + 1, c.name, rec.codes, rec.cycles, rec.seconds);
        }
        layers.push(rec);
        Ok(())
    })?;
    let builds = builds.into_iter().flatten().map(|(_, b)| b).collect();
    Ok(RtlRun {
        run,
        layers,
        builds,
        build_time,
        sim_time,
    })
}
