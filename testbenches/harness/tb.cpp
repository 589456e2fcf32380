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

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <chrono>
#include <cstring>
#include <deque>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace {

using Bits = std::vector<uint32_t>;  // little-endian 32-bit words

[[noreturn]] void die(const std::string& msg);

// A bus value of `width` bits from at most ceil(width / 4) hexadecimal digits.
Bits parse_hex(const std::string& hex, int width, const char* what) {
    if (hex.empty() || hex.size() > static_cast<size_t>((width + 3) / 4))
        die(std::string("vector file: ") + what + " value of " + std::to_string(hex.size()) + " digits for a " + std::to_string(width) + "-bit bus");
    Bits b((width + 31) / 32, 0);
    int bit = 0;
    for (auto it = hex.rbegin(); it != hex.rend(); ++it, bit += 4) {
        char c = *it;
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) die(std::string("vector file: ") + what + " value is not hexadecimal");
        uint32_t v = (c >= '0' && c <= '9') ? c - '0' : c - 'a' + 10;
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

// A number from the command line or the vector file, within [lo, hi].
long long bounded(const std::string& text, long long lo, long long hi, const std::string& what) {
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno != 0 || v < lo || v > hi)
        die(what + " is " + text.substr(0, 24) + "; allowed " + std::to_string(lo) + ".." + std::to_string(hi));
    return v;
}

// Bits a port holds (an integer type or a VlWide; the ports are references, sizeof gives the type's).
#define PORT_BITS(port) static_cast<long long>(8 * sizeof(Vdut::port))

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) die("usage: tb <vectors> [--seed N] [--stall PCT] [--max-cycles N] [--repeat N] [--dump FILE]");
    uint64_t seed = 1;
    int stall = 30;
    uint64_t max_cycles = 2000000000ULL;
    int repeat = 1;
    const char* dump_path = nullptr;
    for (int i = 2; i < argc; i += 2) {
        if (argv[i][0] == '+') { --i; continue; }  // +verilator+... options go to Verilator
        if (i + 1 >= argc) die(std::string("option ") + argv[i] + " needs a value");
        std::string v = argv[i + 1];
        if (!std::strcmp(argv[i], "--seed")) seed = static_cast<uint64_t>(bounded(v, 0, INT64_MAX, "--seed"));
        else if (!std::strcmp(argv[i], "--stall")) stall = static_cast<int>(bounded(v, 0, 100, "--stall"));
        else if (!std::strcmp(argv[i], "--max-cycles")) max_cycles = static_cast<uint64_t>(bounded(v, 1, INT64_MAX, "--max-cycles"));
        else if (!std::strcmp(argv[i], "--repeat")) repeat = static_cast<int>(bounded(v, 1, 1000000, "--repeat"));
        else if (!std::strcmp(argv[i], "--dump")) dump_path = argv[i + 1];
        else die(std::string("unknown option ") + argv[i]);
    }

    // The vector file is checked as it is read: every count against what the rest of the file can
    // hold (so no count can ask for more memory than the file's size justifies), every width against
    // the design's ports, and the end marker must be there.
    std::ifstream in(argv[1], std::ios::binary);
    if (!in) die(std::string("cannot open ") + argv[1]);
    in.seekg(0, std::ios::end);
    const long long file_size = static_cast<long long>(in.tellg());
    in.seekg(0, std::ios::beg);
    auto left = [&]() -> long long {
        long long pos = static_cast<long long>(in.tellg());
        return pos < 0 ? 0 : file_size - pos;
    };
    std::string tok;
    int aw = 0, ww = 0, yw = 0, paw = 0, pdw = 0, rows = 0, cols = 0, ob = 0, latency = -1;
    std::vector<Item> items;
    int tiles = 0;
    bool ended = false;
    auto word = [&](const char* what) {
        std::string w;
        if (!(in >> w)) die(std::string("vector file ends inside ") + what + " (cut short?)");
        return w;
    };
    auto number = [&](const char* what, long long lo, long long hi) {
        return bounded(word(what), lo, hi, std::string("vector file: ") + what);
    };
    auto tag = [&](const char* expected, const char* what) {
        std::string t = word(what);
        if (t != expected) die(std::string("vector file: ") + what + " line starts with `" + t.substr(0, 16) + "`, expected `" + expected + "`");
    };
    auto header_done = [&]() {
        if (rows == 0 || aw == 0 || latency < 0) die("vector file: a record before the ports, shape and latency lines");
    };
    if (word("the header") != "qmac-vectors") die("not a qmac vector file");
    if (word("the header") != "1") die("vector file version is not 1");
    while (in >> tok) {
        if (tok == "ports") {
            aw = static_cast<int>(number("a_data width", 1, PORT_BITS(a_data_i)));
            ww = static_cast<int>(number("w_data width", 1, PORT_BITS(w_data_i)));
            yw = static_cast<int>(number("y_data width", 1, PORT_BITS(y_data_o)));
            paw = static_cast<int>(number("prm_addr width", 1, PORT_BITS(prm_addr_i)));
            pdw = static_cast<int>(number("prm_wdata width", 1, PORT_BITS(prm_wdata_i)));
        } else if (tok == "shape") {
            rows = static_cast<int>(number("rows", 1, 64));
            cols = static_cast<int>(number("cols", 1, 64));
            ob = static_cast<int>(number("out_bits", 1, 64));  // codes 1..8 bits; logits up to 64
            if (cols * ob != yw) die("vector file: cols x out_bits = " + std::to_string(cols * ob) + " is not the y_data width " + std::to_string(yw));
        } else if (tok == "latency") {
            latency = static_cast<int>(number("latency", 0, 100000));
        } else if (tok == "layer") {
            header_done();
            // a write is at least `p 0 0\n`: 6 bytes
            long long n = number("layer write count", 0, left() / 6);
            Item it{Item::Params, {}, {}, {}, -1};
            for (long long i = 0; i < n; ++i) {
                tag("p", "a parameter write");
                std::string a = word("a parameter write"), d = word("a parameter write");
                it.writes.emplace_back(parse_hex(a, paw, "parameter address"), parse_hex(d, pdw, "parameter data"));
            }
            items.push_back(std::move(it));
        } else if (tok == "tile" || tok == "abort") {
            header_done();
            bool tile = tok == "tile";
            // a step is at least `b 0 0\n` (6 bytes), an output row `y 0\n` (4 bytes)
            long long n = number("step count", 1, (left() - (tile ? 4LL * rows : 0)) / 6);
            Item it{Item::Beats, {}, {}, {}, -1};
            for (long long i = 0; i < n; ++i) {
                tag("b", "a step");
                std::string a = word("a step"), w = word("a step");
                it.beats.push_back({parse_hex(a, aw, "a_data"), parse_hex(w, ww, "w_data"), tile && i == n - 1});
            }
            if (tile) {
                it.tile = tiles++;
                for (int r = 0; r < rows; ++r) {
                    tag("y", "an output row");
                    it.rows.push_back(parse_hex(word("an output row"), yw, "y_data"));
                }
                items.push_back(std::move(it));
            } else {
                items.push_back(std::move(it));
                items.push_back(Item{Item::Reset, {}, {}, {}, -1});
            }
        } else if (tok == "end") {
            ended = true;
            break;
        } else if (in.eof()) {
            die("vector file ends inside a record name (cut short?)");
        } else die("bad vector file token " + tok.substr(0, 24));
    }
    if (!ended) die("vector file has no end marker (cut short?)");
    if (tiles == 0) die("vector file has no tile: nothing to check");

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
                uint64_t gv = 0, ev = 0;
                for (int k = 0; k < ob; ++k) {
                    int bit = c * ob + k;
                    gv |= static_cast<uint64_t>((got[bit / 32] >> (bit % 32)) & 1u) << k;
                    ev |= static_cast<uint64_t>((e.y[bit / 32] >> (bit % 32)) & 1u) << k;
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
    if (!latency_checked) die("latency was never checked");
    if (received == 0) die("no output row was checked");
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    (void)last_fire_cycle;
    dut.final();
    if (dump && std::fclose(dump) != 0) die(std::string("cannot write ") + dump_path);
    std::printf("qmac-tb: PASS tiles=%d rows=%ld resets=%ld cycles=%llu latency=%d seed=%llu stall=%d seconds=%.3f\n", tiles * repeat, received,
                resets, static_cast<unsigned long long>(cycle), latency, static_cast<unsigned long long>(seed), stall, secs);
    return 0;
}
