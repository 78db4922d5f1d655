"""What every command shares: consoles, the error boundary, overrides, JSON output.

Results (tables, `--json` documents) go to stdout; messages and progress go to stderr. Colour and progress
bars switch off when stdout is not a terminal or `CI` is set. Under torchrun only rank 0 prints, and the
first rank to fail prints its error line, prefixed `rank N:` (the others raise `PeerFailed`: no message).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from typing import Any, Callable

import typer
from rich.console import Console
from rich.markup import escape

from segkd import engine
from segkd.errors import PeerFailed, SegkdError

PLAIN = os.environ.get("CI", "").lower() not in ("", "0", "false") or not sys.stdout.isatty()
RANK = int(os.environ.get("RANK", "0"))  # set by torchrun before Python starts; torch is not imported here
ERROR_PREFIX = f"rank {RANK}: " if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""

out = Console(no_color=PLAIN, highlight=False, width=None if sys.stdout.isatty() else 200,  # pipes: no wrap
              quiet=RANK != 0)
err = Console(stderr=True, no_color=PLAIN, highlight=False, quiet=RANK != 0)
fail = Console(stderr=True, no_color=PLAIN, highlight=False)  # error lines, from every rank


class State:
    debug = os.environ.get("SEGKD_DEBUG", "") not in ("", "0")


def progress_enabled() -> bool:
    """Progress bars only on an interactive terminal outside CI."""
    return not PLAIN


def say_error(message: str) -> None:
    """One red `error:` line, never wrapped (`rank N: ` first under torchrun)."""
    fail.print(f"[red]error:[/] {ERROR_PREFIX}{message}", highlight=False, soft_wrap=True)


def run_guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The command boundary: a SegkdError becomes one red `error:` line and its exit code (2 input, 1 job).

    Any other exception is a bug: one line and exit 1, the traceback only with --debug.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except PeerFailed as e:  # another rank failed first and said why
            raise typer.Exit(code=e.exit_code) from None
        except SegkdError as e:
            if State.debug:
                traceback.print_exc()
            say_error(escape(str(e)))
            raise typer.Exit(code=e.exit_code) from None
        except KeyboardInterrupt:
            say_error("interrupted")
            raise typer.Exit(code=130) from None
        except Exception as e:  # noqa: BLE001  (a bug: keep the message to one line unless --debug)
            if State.debug:
                traceback.print_exc()
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            say_error(f"{type(e).__name__}: {escape(msg)} (rerun with --debug for the traceback)")
            raise typer.Exit(code=1) from None

    return wrapper


def print_json(doc: Any) -> None:
    """One JSON document on stdout, nothing else (rank 0 only)."""
    if RANK != 0:
        return
    sys.stdout.write(json.dumps(_finite(doc), indent=2, default=_jsonable) + "\n")
    sys.stdout.flush()


def _finite(obj: Any) -> Any:
    """NaN and inf are not JSON: they become null."""
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


OVERRIDES_HELP = "Config overrides after the options: [bold]key=value[/] with dotted keys, e.g. train.epochs=10"


def start_run(cfg: Any, notes: list[str], given: set[str]) -> None:
    """What train and distill do once their config is valid: rerun under torchrun for `train.devices`, print the
    config's notes, and take the classes from the data set unless the command line (`given` keys) set them."""
    if (code := engine.launch.relaunch_if_requested(cfg.train)) is not None:
        raise typer.Exit(code)
    if cfg.resume is None:  # torch from here: the config is valid
        notes = notes + engine.loaders.adopt_dataset_classes(cfg, given)
    for note in notes:
        err.print(f"note: {note}", markup=False, soft_wrap=True)
