"""Post-training int8 against quantisation-aware (QAT) int8, both run by ONNX Runtime, beside their fp32 graphs.

    python benchmarks/qat.py --fp32 FP32.pt --qat QAT.pt --data DATA [--ops conv] [--out DIR] [--json]

`FP32.pt` is a trained fp32 checkpoint, `QAT.pt` a checkpoint of a `quant.qat=true` run (e.g. started from
FP32.pt with `model.weights=FP32.pt`, distilled from it as the teacher). Written to DIR (a temp folder by default):
  fp32.onnx        FP32.pt, fp32 graph
  ptq.int8.onnx    FP32.pt quantised after training: `segkd export --int8`'s recipe (MinMax calibration on the
                   val split, op set --ops, the logits' op fp32)
  qat.onnx         QAT.pt's weights with fake quantisation off (BatchNorm folded)
  qat.int8.onnx    QAT.pt's fake-quantised model with its learned scales (`segkd export --int8` of QAT.pt)
The QAT int8 graph is checked against the fake-quantised PyTorch model (argmax agreement on every val image,
>= 99.5 %). Every file is scored on the val split at the configs' input size (ONNX Runtime, CPU, batch 1) and
timed in interleaved rounds, so load from other processes hits each file alike.

The commands behind the figures quoted in the QAT note (issue 19), on the demo data (`segkd demo`):
    segkd train --preset demo/fastsegformer-p-demo.yaml --data demo/oranges name=fp32-p train.epochs=12
    segkd distill --preset demo/fastsegformer-p-demo.yaml --data demo/oranges name=qat-p quant.qat=true \\
        model.weights=runs/train/fp32-p/weights/best.pt teacher.weights=runs/train/fp32-p/weights/best.pt \\
        train.epochs=2 train.lr=2e-4
    python benchmarks/qat.py --fp32 runs/train/fp32-p/weights/best.pt --qat runs/distill/qat-p/weights/best.pt \\
        --data demo/oranges
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from segkd.deploy.artifacts import ExportRequest, ValScorer
from segkd.deploy.export import export_onnx
from segkd.deploy.loading import load_model
from segkd.deploy.onnx_model import OnnxModel
from segkd.deploy.qat_export import QAT_MIN_AGREEMENT, export_qat_int8, float_twin
from segkd.deploy.quantize import INT8_OP_SETS, calibration_images, quantize_int8
from segkd.deploy.verify import parity_inputs, verify_onnx
from segkd.quant import is_qat


def run(fp32_ckpt: Path, qat_ckpt: Path, data: Path, out: Path, ops: str, log) -> dict:
    fp32, qat = load_model(fp32_ckpt), load_model(qat_ckpt)
    if not is_qat(qat.model):
        raise SystemExit(f"{qat_ckpt}: not a QAT checkpoint (train it with quant.qat=true)")
    log("exporting fp32 and post-training int8")
    base = export_onnx(fp32.model, fp32.meta, out / "fp32.onnx")
    calib = calibration_images(data, fp32.config["data"])
    ptq = quantize_int8(base.path, out / "ptq.int8.onnx", base.meta, calib, op_types=INT8_OP_SETS[ops])
    log("exporting the QAT checkpoint: fp32 twin and int8 with its learned scales")
    qbase = export_onnx(float_twin(qat.model), qat.meta, out / "qat.onnx")
    qint8 = export_qat_int8(qat.model, qat.meta, out / "qat.int8.onnx")
    pre = qint8.meta.preprocess()
    inputs = parity_inputs([pre(im)[0] for im in calib], tuple(qint8.meta.input_size), [], 1, "int8")
    parity = verify_onnx(OnnxModel(qint8.path, "cpu"), qat.model, inputs, "int8", QAT_MIN_AGREEMENT)
    log("scoring and timing the four files")
    scorer = ValScorer(base, fp32, ExportRequest(out / "fp32.onnx"), data)
    files = {"fp32": base.path, "ptq int8": ptq.path, "qat fp32": qbase.path, "qat int8": qint8.path}
    scores = scorer.score(files)
    return {"fp32": str(fp32_ckpt), "qat": str(qat_ckpt), "arch": fp32.meta.arch, "data": str(data), "ops": ops,
            "input_size": list(base.meta.input_size), "val_images": len(scorer.dataset),
            "threads": torch.get_num_threads(), "qat_spec": qat.model.qat_spec.describe(),
            "qat_parity": {"agreement": parity.agreement, "passed": parity.passed, "images": len(inputs)},
            "rows": {name: {"file": str(files[name]), "mIoU": 100 * scores[name][0], "ms": scores[name][1],
                            "mb": files[name].stat().st_size / 2**20} for name in files}}


def print_table(doc: dict) -> None:
    print(f"{'graph':<10} {'val mIoU (%)':>12} {'ms/image':>9} {'FPS':>7} {'MB':>6}  file")
    for name, r in doc["rows"].items():
        print(f"{name:<10} {r['mIoU']:>12.2f} {r['ms']:>9.2f} {1000 / r['ms']:>7.1f} {r['mb']:>6.1f}  {r['file']}")
    rows = doc["rows"]
    p = doc["qat_parity"]
    print(f"QAT int8 vs fp32: {rows['qat int8']['mIoU'] - rows['fp32']['mIoU']:+.2f} mIoU; post-training int8 vs "
          f"fp32: {rows['ptq int8']['mIoU'] - rows['fp32']['mIoU']:+.2f}; int8 latency QAT/PTQ "
          f"{rows['qat int8']['ms'] / rows['ptq int8']['ms']:.2f}×; QAT int8 labels = fake-quant PyTorch on "
          f"{p['agreement']:.3f}% of pixels ({p['images']} val images, {'ok' if p['passed'] else 'FAILED'})")
    h, w = doc["input_size"]
    print(f"device cpu (ONNX Runtime, {doc['threads']} threads), {doc['arch']}, input {h}×{w}, batch 1, "
          f"{doc['val_images']} val images, int8 op set {doc['ops']}; QAT: {doc['qat_spec']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fp32", type=Path, required=True, help="trained fp32 checkpoint")
    parser.add_argument("--qat", type=Path, required=True, help="checkpoint of a quant.qat=true run")
    parser.add_argument("--data", type=Path, required=True, help="dataset folder (val split: calibration, scores)")
    parser.add_argument("--ops", default="conv", choices=list(INT8_OP_SETS), help="post-training int8 op set")
    parser.add_argument("--out", type=Path, default=None, help="keep the ONNX files here")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    args = parser.parse_args()
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        doc = run(args.fp32, args.qat, args.data, out, args.ops, log)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print_table(doc)


if __name__ == "__main__":
    main()
