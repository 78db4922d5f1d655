#!/usr/bin/env bash
# The README's story as a new user types it: `segkd demo`, then every command the demo prints, in order.
# Prints each command's wall time and its mIoU (val for train/distill: the best epoch; test for eval).
#
#     bash benchmarks/first_run.sh [WORKDIR]        # default: a fresh temporary folder
#
# Runs segkd from this checkout (python -m segkd with PYTHONPATH at the repo root). Wall times are those of the
# machine it runs on: on a CPU shared with other jobs they are inflated, so say so when quoting them (there,
# OMP_NUM_THREADS=1 avoids PyTorch's threads waiting on each other while the other jobs hold the cores).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d -t segkd-first-run.XXXXXX)}"
mkdir -p "$work" && cd "$work"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" CI=1
segkd() { python -m segkd "$@"; }

echo "# segkd first run in $work ($(getconf _NPROCESSORS_ONLN) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
     "torch threads: ${OMP_NUM_THREADS:-all}, load average at start: $(cut -d' ' -f1 /proc/loadavg))"
start=$(date +%s.%N)
segkd demo --out demo --json > demo.json
printf '%-8s %8s  %s\n' "step" "wall s" "result"
printf '%-8s %8.1f  %s\n' "demo" "$(echo "$(date +%s.%N) - $start" | bc)" "demo/oranges"
python -c "import json; print('\n'.join(json.load(open('demo.json'))['next']))" > commands.txt

n=0
while IFS= read -r cmd; do
  n=$((n + 1))
  start=$(date +%s.%N)
  eval "$cmd" > "step$n.out" 2> "step$n.log" || { echo "FAILED ($?): $cmd"; tail -3 "step$n.log"; exit 1; }
  wall=$(echo "$(date +%s.%N) - $start" | bc)
  result=$(python - "$cmd" "step$n.out" <<'PY'
import csv, json, re, sys
from pathlib import Path
cmd, out = sys.argv[1], Path(sys.argv[2])
name = re.search(r" name=(\S+)", cmd)
if cmd.startswith(("segkd train", "segkd distill")):
    run = Path("runs", cmd.split()[1], name.group(1))
    rows = [r for r in csv.DictReader(open(run / "results.csv")) if r["val/mIoU"]]
    best = max(rows, key=lambda r: float(r["val/mIoU"]))
    print(f"val mIoU {100 * float(best['val/mIoU']):.2f} % (best of {len(rows)} epochs, epoch {best['epoch']})  {run}")
elif cmd.startswith("segkd eval"):
    text = out.read_text()
    print("test " + re.search(r"mIoU[^\n]*", text).group(0).strip())
else:
    lines = [l for l in out.read_text().splitlines() if l.strip()]
    print(lines[-1][:150] if lines else "done")
PY
)
  printf '%-8s %8.1f  %s\n' "$n $(echo "$cmd" | cut -d' ' -f2)" "$wall" "$result"
  echo "         \$ $cmd"
done < commands.txt
