#!/usr/bin/env bash
# The README's first command as a new user types it: `segkd demo`, timed, with each step's wall time and result.
#
#     bash benchmarks/first_run.sh [WORKDIR] [--quick]      # default: a fresh temporary folder, the full demo
#
# Runs segkd from this checkout (python -m segkd with PYTHONPATH at the repo root) and prints the machine, the load
# average before and after, the total wall time, then one line per step (seconds, val/test mIoU) and the demo's
# table. Wall times are those of the machine it runs on: on a CPU shared with other jobs they are inflated, so
# quote the load with them.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d -t segkd-first-run.XXXXXX)}"
shift || true
mkdir -p "$work" && cd "$work"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" CI=1

echo "# segkd demo in $work ($(getconf _NPROCESSORS_ONLN) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
     "torch threads: ${OMP_NUM_THREADS:-all}, load average at start: $(cut -d' ' -f1-3 /proc/loadavg))"
start=$(date +%s.%N)
python -m segkd demo --out demo --json "$@" > demo.json 2> demo.log || { echo "FAILED: see $work/demo.log"; tail -3 demo.log; exit 1; }
wall=$(echo "$(date +%s.%N) - $start" | bc)
python - "$wall" <<'PY'
import json, sys
doc = json.load(open("demo.json"))
print(f"# total wall {float(sys.argv[1]):.1f} s, load average at the end: {open('/proc/loadavg').read().split()[:3]}")
print(f"{'step':<8} {'wall s':>8}  result")
for name, step in doc["steps"].items():
    if step.get("best_miou") is not None:
        result = f"best val mIoU {100 * step['best_miou']:.2f} % (epoch {step['best_epoch']})"
    elif name == "eval":
        result = "test mIoU " + ", ".join(f"{m} {100 * r['mIoU']:.2f} %" for m, r in step.items() if isinstance(r, dict))
    else:
        result = ""
    if "pid" in step:
        result += " (side by side with the other run)"
    print(f"{name:<8} {step['seconds']:>8.1f}  {result}")
fps = lambda v: "      -" if v is None else f"{v:7.1f}"
for row in doc["table"]:
    print(f"{row['model']:<34} test mIoU {row['miou']:6.2f} %  FPS: eager {fps(row.get('eager_fps'))}  "
          f"ONNX fp32 {fps(row.get('onnx_fps'))}  ONNX int8 {fps(row.get('int8_fps'))}")
print(f"distilled vs alone: {doc['kd_gain']:+.2f} test mIoU points")
PY
