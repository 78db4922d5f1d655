"""`segkd presets`: list the shipped paper configurations, or show one fully resolved."""

from __future__ import annotations

from typing import Optional

import torch
import typer
from rich.table import Table

from segkd.commands.common import out, print_json
from segkd.config import config_to_dict, dump_config, load_config, preset_names, size_hw
from segkd.errors import ConfigError, SegkdError
from segkd.models import build_model, model_family


def preset_rows() -> list[dict]:
    """One summary row per shipped preset; params counted on the meta device (no memory, no weights)."""
    rows = []
    for name in preset_names():
        cfg = load_config(name)
        row = {"name": name, "family": "", "params_m": None, "input_size": list(size_hw(cfg.data.input_size)),
               "distill": cfg.distill is not None, "paper": cfg.paper}
        try:
            row["family"] = model_family(cfg.model.arch)
            row["params_m"] = _count_params(config_to_dict(cfg)["model"]) / 1e6
        except SegkdError:
            row["family"] = f"{cfg.model.arch} (planned)"
        rows.append(row)
    return rows


def main(
    action: Optional[str] = typer.Argument(None, help="[bold]show[/] to print one preset resolved."),
    name: Optional[str] = typer.Argument(None, help="Preset name or YAML path (with show)."),
    taps: bool = typer.Option(False, "--taps", help="With show: list the model's feature taps and shapes."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document instead of a table."),
) -> None:
    """List presets (name, model family, params, input size, paper), or show one fully resolved.

    Example: [bold]segkd presets[/]  ·  [bold]segkd presets show fastsegformer-p --taps[/]
    """
    if action is None:
        rows = preset_rows()
        if as_json:
            print_json(rows)
            return
        table = Table(title="segkd presets")
        for col in ("name", "family", "params (M)", "input", "KD", "paper"):
            table.add_column(col, justify="right" if col == "params (M)" else "left")
        for r in rows:
            params = f"{r['params_m']:.2f}" if r["params_m"] is not None else "-"
            h, w = r["input_size"]
            table.add_row(r["name"], r["family"], params, f"{h}×{w}", "✓" if r["distill"] else "", r["paper"])
        out.print(table)
        return
    if action != "show":
        raise ConfigError(f"unknown action '{action}' (use: segkd presets show NAME)")
    if name is None:
        raise ConfigError("segkd presets show needs a preset NAME")
    cfg = load_config(name)
    if taps:
        shapes = _tap_shapes(cfg)
        if as_json:
            print_json({k: list(v) for k, v in shapes.items()})
            return
        table = Table(title=f"{name}: feature taps at {size_hw(cfg.data.input_size)}")
        table.add_column("tap")
        table.add_column("shape (B×C×H×W)")
        for k, v in shapes.items():
            table.add_row(k, "×".join(map(str, v)))
        out.print(table)
        return
    if as_json:
        print_json(config_to_dict(cfg))
    else:
        out.print(dump_config(cfg), end="", markup=False)


def _count_params(model_cfg: dict) -> int:
    """Parameters of the model a config describes: built on the meta device (no memory), else on the CPU."""
    try:
        with torch.device("meta"):
            model = build_model(model_cfg)
    except (NotImplementedError, RuntimeError):  # a model whose __init__ reads tensor values
        model = build_model(model_cfg)
    return sum(p.numel() for p in model.parameters())


def _tap_shapes(cfg) -> dict:
    model = build_model(config_to_dict(cfg)["model"])
    return model.tap_shapes(size_hw(cfg.data.input_size))
