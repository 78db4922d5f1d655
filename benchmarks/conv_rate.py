"""How fast ONNX Runtime runs FastSegFormer-P's 1×1 convolutions on this CPU, against its own matrix multiply.

FastSegFormer-P spends ~80 % of its ONNX Runtime time in Conv (`benchmarks/speed.py --profile`). This prints, for
the pointwise-conv shapes of its PoolFormer MLPs and decoder at 224, the GFLOP/s (2 FLOPs per multiply-add) of a
chain of four 1×1 Conv nodes (NCHW input; ORT runs them in its NCHWc layout) and of the same chain written as
MatMul + Add on an (H·W)×C matrix. If Conv is already at ORT's GEMM rate, no fp32 graph rewrite can make the
convolutions faster: the rest of the graph is all a rewrite can remove.

It also measures the CPU's fp32 peak: a C kernel (built with the system `cc -O3 -march=native -fopenmp`, skipped
when there is none) runs 12 independent chains of 16-lane fused multiply-adds in registers on each thread, no
memory traffic, which is the most any fp32 convolution or GEMM can reach; the Conv column is also given as a share
of it.

    python benchmarks/conv_rate.py [--threads 2] [--calls 200]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from segkd.deploy.timing import Protocol, measure

# (in channels, out channels, side): PoolFormer-S12 MLPs per stage, and the decoder's 512 -> 512 convs at 28×28
SHAPES = [(64, 256, 56), (128, 512, 28), (320, 1280, 14), (512, 2048, 7), (512, 512, 28)]
LAYERS = 4  # c -> o -> c -> o -> c

FMA_KERNEL = r"""
#include <stdio.h>
#include <time.h>
#include <omp.h>
typedef float v16 __attribute__((vector_size(64)));  /* 16 fp32 lanes: one AVX-512 register, two AVX2 ones */
int main(void) {
    const long steps = 50000000;
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        struct timespec t0, t1;
        float sink = 0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        #pragma omp parallel reduction(+:sink)
        {
            v16 acc[12], b, c;
            for (int j = 0; j < 16; j++) { b[j] = 1.0000001f; c[j] = 1e-7f; }
            for (int i = 0; i < 12; i++) acc[i] = c * (float)i;
            for (long k = 0; k < steps; k++)
                for (int i = 0; i < 12; i++) acc[i] = acc[i] * b + c;  /* 12 independent FMA chains */
            for (int i = 0; i < 12; i++) sink += acc[i][0];
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double s = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
        double gflops = 2.0 * 16 * 12 * steps * omp_get_max_threads() / s / 1e9;
        if (gflops > best) best = gflops;
        if (sink == 12345.f) printf("-");  /* keep the chains alive */
    }
    printf("%.1f\n", best);
    return 0;
}
"""


def fma_peak_gflops(threads: int) -> float | None:
    """The best of 5 runs of FMA_KERNEL on `threads` threads, or None without a working C compiler."""
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "fma.c", Path(tmp) / "fma"
        src.write_text(FMA_KERNEL)
        try:
            subprocess.run(["cc", "-O3", "-march=native", "-fopenmp", str(src), "-o", str(exe)], check=True,
                           capture_output=True)
            out = subprocess.run([str(exe)], check=True, capture_output=True, text=True,
                                 env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        except (OSError, subprocess.CalledProcessError):
            return None
    return float(out.stdout.strip())


def _weights(c: int, o: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.standard_normal((o, c) if i % 2 == 0 else (c, o), dtype=np.float32) * 0.05 for i in range(LAYERS)]


def conv_chain(c: int, o: int, side: int, weights: list[np.ndarray]):
    nodes, inits, x = [], [], "x"
    for i, w in enumerate(weights):
        inits += [numpy_helper.from_array(w[:, :, None, None], f"w{i}"),
                  numpy_helper.from_array(np.zeros(w.shape[0], np.float32), f"b{i}")]
        nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"y{i}"]))
        x = f"y{i}"
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, side, side])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def matmul_chain(c: int, o: int, side: int, weights: list[np.ndarray]):
    nodes, inits, x = [], [], "x"
    for i, w in enumerate(weights):
        inits += [numpy_helper.from_array(np.ascontiguousarray(w.T), f"w{i}"),
                  numpy_helper.from_array(np.zeros(w.shape[0], np.float32), f"b{i}")]
        nodes += [helper.make_node("MatMul", [x, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"y{i}"])]
        x = f"y{i}"
    graph = helper.make_graph(nodes, "matmul", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [side * side, c])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def median_ms(model, x: np.ndarray, threads: int, calls: int) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return measure(lambda: session.run(None, {"x": x}), Protocol(warmup=20, iters=calls, min_time=0.0)).median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    peak = fma_peak_gflops(args.threads)
    print(f"fp32 FMA peak, {args.threads} threads (register-only C kernel): "
          + (f"{peak:.0f} GFLOP/s" if peak else "not measured (no C compiler with OpenMP)"))
    print(f"onnxruntime {ort.__version__}, {args.threads} threads, fp32, {LAYERS} chained 1×1 layers, median of "
          f"{args.calls} calls")
    print(f"{'shape':>22}  {'Conv ms':>8} {'GFLOP/s':>8} {'of peak':>8}  {'MatMul ms':>9} {'GFLOP/s':>8}")
    for c, o, side in SHAPES:
        weights = _weights(c, o, rng)
        flops = 2 * LAYERS * c * o * side * side
        conv = median_ms(conv_chain(c, o, side, weights), rng.standard_normal((1, c, side, side), dtype=np.float32),
                         args.threads, args.calls)
        mm = median_ms(matmul_chain(c, o, side, weights), rng.standard_normal((side * side, c), dtype=np.float32),
                       args.threads, args.calls)
        share = f"{flops / conv / 1e6 / peak:8.0%}" if peak else f"{'-':>8}"
        print(f"{f'{c}->{o} at {side}×{side}':>22}  {conv:8.2f} {flops / conv / 1e6:8.0f} {share}  {mm:9.2f} "
              f"{flops / mm / 1e6:8.0f}")


if __name__ == "__main__":
    main()
