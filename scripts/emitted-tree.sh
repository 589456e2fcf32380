#!/usr/bin/env bash
# Generate every design of the co-simulation matrix (testbenches/tests/cosim.rs), every file in
# configs/ and a seeded random sample of the whole configuration space, once with qmac built from
# BASE_REV and once with qmac built from the work tree, and compare the two trees byte for byte.
#
#   scripts/emitted-tree.sh BASE_REV [OUT_DIR]        OUT_DIR defaults to target/emitted-tree
#
# The configurations are written by the work tree (minimal TOML: only the fields that differ from the
# defaults), and both sides generate through the public CLI only (`qmac generate --config`), so
# BASE_REV may be any commit with that CLI. BASE_REV is exported (git archive) and built in its own
# target directory, target/emitted-tree-base, kept for the next run.
#
# Output: OUT_DIR/configs/{cosim/<test group>,named,random}/*.toml, OUT_DIR/{base,head}/<same path>/
# (a build directory, or <path>.error with the message when qmac rejects the configuration), and a
# summary. Exit status 1 if any design's Verilog (rtl/, filelist.f) differs, or if the work tree
# rejects a configuration that BASE_REV accepts. Differences only in manifest.json and config.toml
# (a new configuration field, say) and configurations that only the work tree accepts (a new
# feature) are listed but do not fail. Set EMITTED_TREE_RANDOM=<count> to change the random sample
# (default 400).
set -euo pipefail

die() { echo "emitted-tree: $*" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: scripts/emitted-tree.sh BASE_REV [OUT_DIR]"
root=$(git rev-parse --show-toplevel)
base_sha=$(git -C "$root" rev-parse --verify --quiet "$1^{commit}") || die "not a commit: $1"
target=${CARGO_TARGET_DIR:-$root/target}
out=$(realpath -m "${2:-$target/emitted-tree}")
marker=.qmac-emitted-tree
if [ -e "$out" ]; then
    # replace only a tree this script wrote
    [ -f "$out/$marker" ] || [ -z "$(ls -A "$out")" ] || die "$out exists and was not written by this script; choose another OUT_DIR"
    rm -rf "$out"
fi
mkdir -p "$out/configs/named"
touch "$out/$marker"
cd "$root"

echo "== configurations from the work tree"
cargo build --release --quiet -p qmac --bin qmac
QMAC_DUMP_CONFIGS="$out/configs/cosim" cargo test --release --quiet -p qmac-testbenches --test cosim >/dev/null
cargo run --release --quiet -p qmac-testbenches --example random_configs -- "$out/configs/random" "${EMITTED_TREE_RANDOM:-400}"
cp configs/*.toml "$out/configs/named/"
head_bin="$out/qmac-head"
cp "$target/release/qmac" "$head_bin"

echo "== qmac at $base_sha"
# a plain export of the commit (no git worktree to clean up); its files carry the commit's time, so
# the next run against the same commit rebuilds nothing
src="$target/emitted-tree-base/src"
rm -rf "$src"
mkdir -p "$src"
git -C "$root" archive "$base_sha" | tar -x -C "$src"
(cd "$src" && CARGO_TARGET_DIR="$target/emitted-tree-base" cargo build --release --quiet -p qmac --bin qmac)
base_bin="$out/qmac-base"
cp "$target/emitted-tree-base/release/qmac" "$base_bin"

echo "== generating"
same=0; differ=0; meta=0; new=0; lost=0; rejected=0; n=0
report=()
while IFS= read -r f; do
    rel=${f#"$out/configs/"}; rel=${rel%.toml}
    ok=()
    for side in base head; do
        bin=$head_bin; [ $side = base ] && bin=$base_bin
        dir="$out/$side/$rel"
        mkdir -p "$(dirname "$dir")"
        if "$bin" generate --config "$f" -o "$dir" >/dev/null 2>"$dir.error"; then rm -f "$dir.error"; ok+=(1); else ok+=(0); fi
    done
    n=$((n + 1))
    case "${ok[0]}${ok[1]}" in
        11)
            if ! diff -rq "$out/base/$rel/rtl" "$out/head/$rel/rtl" >/dev/null || ! cmp -s "$out/base/$rel/filelist.f" "$out/head/$rel/filelist.f"; then
                differ=$((differ + 1)); report+=("verilog differs: $rel")
            elif ! diff -rq "$out/base/$rel" "$out/head/$rel" >/dev/null; then
                meta=$((meta + 1)); report+=("manifest/config differ: $rel")
            else
                same=$((same + 1))
            fi ;;
        01) new=$((new + 1)); report+=("only the work tree accepts: $rel") ;;
        10) lost=$((lost + 1)); report+=("the work tree rejects: $rel ($(head -c 200 "$out/head/$rel.error"))") ;;
        00) rejected=$((rejected + 1)); report+=("both reject: $rel") ;;
    esac
done < <(find "$out/configs" -name '*.toml' | LC_ALL=C sort)

for line in "${report[@]+"${report[@]}"}"; do echo "$line"; done | head -50
echo "designs: $n (cosim $(find "$out/configs/cosim" -name '*.toml' | wc -l), named $(find "$out/configs/named" -name '*.toml' | wc -l), random $(find "$out/configs/random" -name '*.toml' | wc -l))"
echo "byte-identical: $same; verilog differs: $differ; only manifest/config differ: $meta; only the work tree accepts: $new; the work tree rejects: $lost; both reject: $rejected"
echo "trees: $out/base $out/head (diff -r to inspect)"
[ "$differ" -eq 0 ] && [ "$lost" -eq 0 ]
