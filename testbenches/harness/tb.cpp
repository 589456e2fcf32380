// qmac self-checking Verilator testbench.
//
// Reads a vector file written by `qmac` (generator/src/vectors.rs documents the format): parameter
// writes, tiles of input steps and the reference model's expected output rows. Drives the design's
// activation and weight streams with independent random valid gaps and the output stream with random
// ready stalls, compares every output bit with the reference, checks the latency of the first tile
// against the derived value (and that no tile is faster than it), and resets the design in the middle of
// a stream to check that no stale or duplicated output survives a reset.
//
// Usage: tb <vectors> [--seed N] [--stall PCT] [--max-cycles N] [--repeat N] [--dump FILE]
// (--repeat streams the whole vector file N times, for speed measurements; --dump writes every output
// row the design sent, in hexadecimal, one line per row in the order received, before it is compared.)
// Prints one line `qmac-tb: PASS ...` or `qmac-tb: FAIL ...` (with the first mismatch) and exits 0 or 1.

#include "Vdut.h"
#include "verilated.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <chrono>
#include <cstring>
#include <deque>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

using Bits = std::vector<uint32_t>;  // little-endian 32-bit words

Bits parse_hex(const std::string& hex, int width) {
    Bits b((width + 31) / 32, 0);
    int bit = 0;
    for (auto it = hex.rbegin(); it != hex.rend(); ++it, bit += 4) {
        char c = *it;
        uint32_t v = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : 0;
        for (int k = 0; k < 4; ++k) {
            if (((v >> k) & 1) && bit + k < width) b[(bit + k) / 32] |= 1u << ((bit + k) % 32);
        }
    }
    return b;
}

std::string to_hex(const Bits& b, int width) {
    std::string s;
    for (int d = (width + 3) / 4 - 1; d >= 0; --d) {
        uint32_t nib = (b[(d * 4) / 32] >> ((d * 4) % 32)) & 0xf;
        s += "0123456789abcdef"[nib];
    }
    return s;
}

// Port access for every Verilator port type: CData/SData/IData/QData (integers) and VlWide<N>.
template <typename T>
void put(T& port, const Bits& b) {
    uint64_t v = b.empty() ? 0 : b[0];
    if (b.size() > 1) v |= static_cast<uint64_t>(b[1]) << 32;
    port = static_cast<T>(v);
}
template <std::size_t N>
void put(VlWide<N>& port, const Bits& b) {
    for (std::size_t i = 0; i < N; ++i) port[i] = i < b.size() ? b[i] : 0;
}
template <typename T>
Bits get(const T& port, int width) {
    uint64_t v = static_cast<uint64_t>(port);
    Bits b((width + 31) / 32, 0);
    b[0] = static_cast<uint32_t>(v);
    if (b.size() > 1) b[1] = static_cast<uint32_t>(v >> 32);
    return b;
}
template <std::size_t N>
Bits get(const VlWide<N>& port, int width) {
    Bits b((width + 31) / 32, 0);
    for (std::size_t i = 0; i < b.size() && i < N; ++i) b[i] = port[i];
    return b;
}

struct Beat { Bits a, w; bool last; };
struct Expect { int tile; int row; Bits y; bool last; };
struct Item {
    enum Kind { Params, Beats, Reset } kind;
    std::vector<std::pair<Bits, Bits>> writes;  // Params
    std::vector<Beat> beats;                    // Beats (one tile or an aborted prefix)
    std::vector<Bits> rows;                     // expected rows of a complete tile
    int tile = -1;
};

struct Rng {
    uint64_t s;
    uint32_t next() { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return static_cast<uint32_t>(s >> 11); }
    bool chance(int pct) { return static_cast<int>(next() % 100) < pct; }
};

[[noreturn]] void die(const std::string& msg) {
    std::printf("qmac-tb: FAIL %s\n", msg.c_str());
    std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) die("usage: tb <vectors> [--seed N] [--stall PCT] [--max-cycles N] [--repeat N] [--dump FILE]");
    uint64_t seed = 1;
    int stall = 30;
    uint64_t max_cycles = 2000000000ULL;
    int repeat = 1;
    const char* dump_path = nullptr;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--seed")) seed = std::strtoull(argv[i + 1], nullptr, 10);
        else if (!std::strcmp(argv[i], "--stall")) stall = std::atoi(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--max-cycles")) max_cycles = std::strtoull(argv[i + 1], nullptr, 10);
        else if (!std::strcmp(argv[i], "--repeat")) repeat = std::atoi(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--dump")) dump_path = argv[i + 1];
        else if (argv[i][0] == '+') --i;  // +verilator+... options go to Verilator
        else die(std::string("unknown option ") + argv[i]);
    }

    std::ifstream in(argv[1]);
    if (!in) die(std::string("cannot open ") + argv[1]);
    std::string tok;
    int aw = 0, ww = 0, yw = 0, paw = 0, pdw = 0, rows = 0, cols = 0, ob = 0, latency = 0;
    std::vector<Item> items;
    int tiles = 0;
    in >> tok;
    if (tok != "qmac-vectors") die("not a qmac vector file");
    in >> tok;  // version
    while (in >> tok) {
        if (tok == "ports") in >> aw >> ww >> yw >> paw >> pdw;
        else if (tok == "shape") in >> rows >> cols >> ob;
        else if (tok == "latency") in >> latency;
        else if (tok == "layer") {
            int n; in >> n;
            Item it{Item::Params, {}, {}, {}, -1};
            for (int i = 0; i < n; ++i) {
                std::string p, a, d; in >> p >> a >> d;
                it.writes.emplace_back(parse_hex(a, paw), parse_hex(d, pdw));
            }
            items.push_back(it);
        } else if (tok == "tile" || tok == "abort") {
            int n; in >> n;
            Item it{Item::Beats, {}, {}, {}, -1};
            for (int i = 0; i < n; ++i) {
                std::string b, a, w; in >> b >> a >> w;
                it.beats.push_back({parse_hex(a, aw), parse_hex(w, ww), tok == "tile" && i == n - 1});
            }
            if (tok == "tile") {
                it.tile = tiles++;
                for (int r = 0; r < rows; ++r) { std::string y, h; in >> y >> h; it.rows.push_back(parse_hex(h, yw)); }
                items.push_back(it);
            } else {
                items.push_back(it);
                items.push_back(Item{Item::Reset, {}, {}, {}, -1});
            }
        } else if (tok == "end") break;
        else die("bad vector file token " + tok);
    }

    FILE* dump = nullptr;
    if (dump_path && !(dump = std::fopen(dump_path, "w"))) die(std::string("cannot write ") + dump_path);

    VerilatedContext ctx;
    ctx.commandArgs(argc, argv);
    Vdut dut(&ctx);
    Rng rng{seed * 0x9e3779b97f4a7c15ULL + 1};
    uint64_t cycle = 0;
    uint64_t progress = 0;  // cycle of the last handshake or parameter write
    auto tick = [&]() {
        dut.clk_i = 0; dut.eval();
        dut.clk_i = 1; dut.eval();
        ++cycle;
        if (cycle > max_cycles) die("stopped after --max-cycles " + std::to_string(max_cycles) + " cycles");
        if (cycle - progress > 100000) die("hang: no handshake for 100000 cycles (at cycle " + std::to_string(cycle) + ")");
    };
    auto idle_inputs = [&]() {
        dut.a_valid_i = 0; dut.w_valid_i = 0; dut.a_last_i = 0; dut.prm_we_i = 0; dut.y_ready_i = 0;
    };
    auto do_reset = [&](int n) {
        idle_inputs();
        dut.rst_i = 1;
        for (int i = 0; i < n; ++i) tick();
        dut.rst_i = 0;
    };

    std::deque<Expect> expect;
    long received = 0, resets = 0;
    uint64_t last_fire_cycle = 0;
    bool latency_checked = false;
    int latency_tile = -1;  // tile whose first row must come exactly `latency` cycles after its last step
    std::vector<uint64_t> tile_done_cycle(tiles, 0);

    auto monitor = [&](bool ready) {
        // called with inputs set and clk low, after eval: check an output handshake in this cycle
        if (!(dut.y_valid_o && ready)) return;
        if (expect.empty()) die("unexpected output row at cycle " + std::to_string(cycle) + ": " + to_hex(get(dut.y_data_o, yw), yw));
        Expect e = expect.front(); expect.pop_front();
        progress = cycle;
        Bits got = get(dut.y_data_o, yw);
        if (dump) std::fprintf(dump, "%s\n", to_hex(got, yw).c_str());
        if (got != e.y || static_cast<bool>(dut.y_last_o) != e.last) {
            std::string col_msg;
            for (int c = 0; c < cols && col_msg.empty(); ++c) {
                uint32_t gv = 0, ev = 0;
                for (int k = 0; k < ob; ++k) {
                    int bit = c * ob + k;
                    gv |= ((got[bit / 32] >> (bit % 32)) & 1u) << k;
                    ev |= ((e.y[bit / 32] >> (bit % 32)) & 1u) << k;
                }
                if (gv != ev) col_msg = " column " + std::to_string(c) + " expected " + std::to_string(ev) + " got " + std::to_string(gv);
            }
            die("mismatch at tile " + std::to_string(e.tile) + " row " + std::to_string(e.row) + col_msg +
                " (row expected " + to_hex(e.y, yw) + " got " + to_hex(got, yw) + ", y_last expected " +
                std::to_string(e.last) + " got " + std::to_string(dut.y_last_o) + ") at cycle " + std::to_string(cycle));
        }
        if (e.row == 0) {
            uint64_t lat = cycle - tile_done_cycle[e.tile];
            if (lat < static_cast<uint64_t>(latency))
                die("tile " + std::to_string(e.tile) + " came out after " + std::to_string(lat) + " cycles, faster than the derived latency " + std::to_string(latency));
            if (e.tile == latency_tile) {
                if (lat != static_cast<uint64_t>(latency))
                    die("latency of an unstalled tile is " + std::to_string(lat) + " cycles, derived latency is " + std::to_string(latency));
                latency_checked = true;
                latency_tile = -1;  // only the first, unstalled tile of the run
            }
        }
        ++received;
    };

    // run with idle inputs and random output stalls until every expected row has come out
    auto drain = [&]() {
        while (!expect.empty()) {
            idle_inputs();
            bool ready = !rng.chance(stall);
            dut.y_ready_i = ready;
            dut.clk_i = 0; dut.eval();
            monitor(ready);
            tick();
        }
    };

    do_reset(3);
    bool first_tile = true;
    auto t_start = std::chrono::steady_clock::now();
    for (int rep = 0; rep < repeat; ++rep)
    for (const Item& it : items) {
        if (it.kind == Item::Params) {
            // load a layer only when idle: drain every expected row first
            drain();
            for (const auto& wr : it.writes) {
                idle_inputs();
                dut.prm_we_i = 1;
                progress = cycle;
                put(dut.prm_addr_i, wr.first);
                put(dut.prm_wdata_i, wr.second);
                tick();
            }
            idle_inputs();
            continue;
        }
        if (it.kind == Item::Reset) {
            // reset in the middle of the stream: whatever was not yet received is dropped
            do_reset(1 + static_cast<int>(rng.next() % 3));
            progress = cycle;
            expect.clear();
            ++resets;
            // the design must now be idle: nothing may come out for a while
            for (int i = 0; i < latency + rows + 4; ++i) {
                idle_inputs();
                dut.y_ready_i = 1;
                dut.clk_i = 0; dut.eval();
                if (dut.y_valid_o) die("stale output after a reset at cycle " + std::to_string(cycle));
                tick();
            }
            continue;
        }
        // stream the beats of one tile with independent gaps on both input streams
        bool exact = first_tile && it.tile >= 0;  // the first tile runs unstalled: its latency is exact
        if (exact) latency_tile = it.tile;
        size_t i = 0;
        bool a_on = false, w_on = false;
        while (i < it.beats.size()) {
            const Beat& b = it.beats[i];
            if (!a_on) a_on = exact || !rng.chance(stall);
            if (!w_on) w_on = exact || !rng.chance(stall);
            dut.a_valid_i = a_on;
            dut.w_valid_i = w_on;
            put(dut.a_data_i, b.a);
            put(dut.w_data_i, b.w);
            dut.a_last_i = b.last;
            bool ready = exact || !rng.chance(stall);
            dut.y_ready_i = ready;
            dut.clk_i = 0; dut.eval();
            bool a_fire = dut.a_valid_i && dut.a_ready_o;
            bool w_fire = dut.w_valid_i && dut.w_ready_o;
            if (a_fire != w_fire) die("activation and weight handshakes differ at cycle " + std::to_string(cycle));
            monitor(ready);
            if (a_fire) {
                progress = cycle;
                if (b.last) {
                    tile_done_cycle[it.tile] = cycle;
                    last_fire_cycle = cycle;
                    for (int r = 0; r < rows; ++r) expect.push_back({it.tile, r, it.rows[r], r == rows - 1});
                }
                ++i;
                a_on = w_on = false;
            }
            tick();
        }
        idle_inputs();
        if (exact) {
            // hold ready until the tile's first row is out, so its latency is exact
            while (!latency_checked) {
                idle_inputs();
                dut.y_ready_i = 1;
                dut.clk_i = 0; dut.eval();
                monitor(true);
                tick();
            }
            first_tile = false;
        }
    }
    drain();
    // nothing more may come out
    for (int i = 0; i < latency + rows + 8; ++i) {
        idle_inputs();
        dut.y_ready_i = 1;
        dut.clk_i = 0; dut.eval();
        if (dut.y_valid_o) die("extra output row after the last expected one at cycle " + std::to_string(cycle));
        tick();
    }
    if (tiles > 0 && !latency_checked) die("latency was never checked");
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    (void)last_fire_cycle;
    dut.final();
    if (dump && std::fclose(dump) != 0) die(std::string("cannot write ") + dump_path);
    std::printf("qmac-tb: PASS tiles=%d rows=%ld resets=%ld cycles=%llu latency=%d seed=%llu stall=%d seconds=%.3f\n", tiles * repeat, received,
                resets, static_cast<unsigned long long>(cycle), latency, static_cast<unsigned long long>(seed), stall, secs);
    return 0;
}
