//! Generation speed: building and printing every module of a design, in memory.
//! Run with `cargo bench -p qmac`; figures in docs/performance.md.

use criterion::{criterion_group, criterion_main, Criterion};
use qmac::config::{Config, EncodingName, RawConfig};

fn bench_generate(c: &mut Criterion) {
    let cases = [
        ("w4a4_8x8x4", RawConfig::default()),
        ("w4a4_64x64x4", RawConfig { rows: 64, cols: 64, ..RawConfig::default() }),
        ("w1a1_64x64x64_xnor", RawConfig { rows: 64, cols: 64, lanes: 64, max_depth: 1 << 16, weight_bits: 1, weight_encoding: EncodingName::Odd, act_bits: 1, act_encoding: EncodingName::Odd, ..RawConfig::default() }),
        ("w8a8_64x64x16", RawConfig { rows: 64, cols: 64, lanes: 16, weight_bits: 8, act_bits: 8, ..RawConfig::default() }),
    ];
    for (name, raw) in cases {
        let cfg = Config::new(raw).unwrap();
        c.bench_function(&format!("generate {name}"), |b| b.iter(|| qmac::emit::generate(std::hint::black_box(&cfg))));
    }
}

criterion_group!(benches, bench_generate);
criterion_main!(benches);
