#!/usr/bin/env bash
# Slug pack/unpack benchmark: builds a ~50 MB app-like tree (python-like sources + random
# binaries), packs and unpacks it with zeroku-slug's code (via the slugbench example),
# and compares with `tar czf` / `tar xzf` of the same tree. Also checks reproducibility: the
# tree is packed again from a copy made in a different order, and with a single worker thread
# (taskset), and the sha256 must not change.
#
# Usage: bench/slug.sh [WORKDIR]      (needs python3, tar, gzip; taskset optional)
set -euo pipefail

cd "$(dirname "$0")/.."
WORK="${1:-$(mktemp -d /tmp/slugbench.XXXXXX)}"
mkdir -p "$WORK"
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT

TREE="$WORK/tree"
python3 - "$TREE" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(42)
words = ("self value result config request response handler session index buffer cache "
         "user item data logger parser client server token stream record batch").split()
def py_file(n):
    out = [f'"""Module {n}: generated for the slug benchmark."""', "import os", "import sys", ""]
    for i in range(rng.randint(8, 24)):
        a, b = rng.choice(words), rng.choice(words)
        out.append(f"def {a}_{b}_{i}({a}, {b}=None):")
        out.append(f'    """Return the {a} for {b}."""')
        for j in range(rng.randint(3, 10)):
            out.append(f"    {rng.choice(words)}_{j} = {a}.get('{rng.choice(words)}', {rng.randint(0, 999)})")
        out.append(f"    return {a}\n")
    return "\n".join(out).encode()
total = 0
n = 0
while total < 20 * 1024 * 1024:           # ~20 MB of sources in nested packages
    d = os.path.join(root, "site-packages", f"pkg{n // 50}", f"sub{(n // 10) % 5}")
    os.makedirs(d, exist_ok=True)
    data = py_file(n)
    with open(os.path.join(d, f"mod{n}.py"), "wb") as f:
        f.write(data)
    total += len(data)
    n += 1
os.makedirs(os.path.join(root, "bin"), exist_ok=True)
for i in range(10):                        # ~30 MB of incompressible binaries
    with open(os.path.join(root, "bin", f"blob{i}.so"), "wb") as f:
        f.write(os.urandom(3 * 1024 * 1024))
    os.chmod(os.path.join(root, "bin", f"blob{i}.so"), 0o755)
os.symlink("blob0.so", os.path.join(root, "bin", "libmain.so"))
with open(os.path.join(root, "Procfile"), "w") as f:
    f.write("web: python app.py\n")
PY

echo "building slugbench (release)..." >&2
cargo build --quiet --release -p zeroku-slug --example slugbench
BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/examples/slugbench"

sync
"$BIN" "$TREE" "$WORK/run1" > "$WORK/run1.txt"
get() { awk -v k="$1" '$1 == k { print $2 }' "$2"; }

# Reproducibility: a copy created in reverse order with fresh mtimes, and a one-thread run.
COPY="$WORK/copy"
( cd "$TREE" && find . -depth -print ) | tac | while read -r p; do
  if [ -L "$TREE/$p" ]; then ln -s "$(readlink "$TREE/$p")" "$COPY/$p"
  elif [ -d "$TREE/$p" ]; then mkdir -p "$COPY/$p"
  else cp -p --no-preserve=timestamps "$TREE/$p" "$COPY/$p"; fi
done
"$BIN" "$COPY" "$WORK/run2" > "$WORK/run2.txt"
if command -v taskset >/dev/null; then
  taskset -c 0 "$BIN" "$TREE" "$WORK/run3" > "$WORK/run3.txt"
else
  cp "$WORK/run1.txt" "$WORK/run3.txt"
fi

# tar czf / tar xzf of the same tree.
t0=$(date +%s.%N)
tar czf "$WORK/tree.tgz" -C "$TREE" .
t1=$(date +%s.%N)
mkdir "$WORK/untar"
tar xzf "$WORK/tree.tgz" -C "$WORK/untar"
t2=$(date +%s.%N)

IN=$(get input_bytes "$WORK/run1.txt")
python3 - "$IN" "$(get image_bytes "$WORK/run1.txt")" "$(get pack_secs "$WORK/run1.txt")" \
  "$(get unpack_secs "$WORK/run1.txt")" "$(get verify_secs "$WORK/run1.txt")" \
  "$(stat -c %s "$WORK/tree.tgz")" "$t0" "$t1" "$t2" <<'PY'
import sys
inb, img, ps, us, vs, tgz, t0, t1, t2 = sys.argv[1:]
inb, img, tgz = int(inb), int(img), int(tgz)
ps, us, vs, t0, t1, t2 = map(float, (ps, us, vs, t0, t1, t2))
ts, tus = t1 - t0, t2 - t1
mb = inb / 1e6
print(f"input tree: {mb:.1f} MB")
print(f"{'':18}{'size MB':>10}{'ratio':>8}{'pack s':>9}{'pack MB/s':>11}{'unpack s':>10}{'unpack MB/s':>13}")
print(f"{'slug (squashfs)':18}{img/1e6:>10.1f}{img/inb:>8.2f}{ps:>9.2f}{mb/ps:>11.1f}{us:>10.2f}{mb/us:>13.1f}")
print(f"{'tar czf':18}{tgz/1e6:>10.1f}{tgz/inb:>8.2f}{ts:>9.2f}{mb/ts:>11.1f}{tus:>10.2f}{mb/tus:>13.1f}")
print(f"sha256 verify of the image: {vs:.2f} s ({img/1e6/vs:.0f} MB/s)")
PY
S1=$(get sha256 "$WORK/run1.txt"); S2=$(get sha256 "$WORK/run2.txt"); S3=$(get sha256 "$WORK/run3.txt")
echo "sha256: $S1"
if [ "$S1" = "$S2" ] && [ "$S1" = "$S3" ]; then
  echo "reproducible: yes (reordered copy with new mtimes, and single-threaded pack, give the same sha256)"
else
  echo "reproducible: NO (original $S1, reordered copy $S2, single-threaded $S3)"; exit 1
fi
