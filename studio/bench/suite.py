"""`studio bench`: the performance suite (docs/DESIGN.md §8).

Each figure is a ratio or a median from one run, measured against the plain library call in the
same process, so machine noise cancels out as far as it can. Results are written as JSON with the
machine's description under benchmarks/, and benchmarks/README.md's table is rebuilt from them."""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

from studio.core.atomic import write_text_atomic


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    goal: str = ""
    meets_goal: Optional[bool] = None
    details: dict = field(default_factory=dict)


def seconds(fn: Callable[[], object]) -> float:
    """Wall-clock seconds one call of `fn` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def machine() -> dict:
    import os

    import torch

    from studio.core.machine import cpu_name

    cpu = cpu_name()

    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        info["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return info


def machine_key(info: dict) -> str:
    return "cuda-" + info["cuda"].replace(" ", "-").lower() if info.get("cuda") else f"cpu-{info['cores']}core"


def run_suite(out_dir: Path, quick: bool = False, only: Optional[list[str]] = None) -> int:
    from studio.bench import (
        drag_workloads,
        gguf_workloads,
        morph_workloads,
        onnx_workloads,
        process_workloads,
        workloads,
    )

    benches = {
        "image_overhead": workloads.image_overhead,
        "emoji_sd_overhead": workloads.embedded_sd_overhead,
        "image_previews": workloads.image_previews,
        "text_overhead": workloads.text_overhead,
        "prose_text": workloads.prose_text,
        "gguf_text": gguf_workloads.gguf_text,
        "continue_reuse": gguf_workloads.continue_reuse,
        "gui_stall": workloads.gui_stall,
        "cold_start": workloads.cold_start,
        "morph_export": morph_workloads.morph_export,
        "slider_drag": drag_workloads.slider_drag,
        "engine_process": process_workloads.engine_process,
        "onnx_vs_torch": onnx_workloads.onnx_vs_torch,
    }
    unknown = set(only or []) - set(benches)
    if unknown:
        print(f"studio: unknown benchmark {sorted(unknown)[0]!r}; choose from {', '.join(benches)}.", file=sys.stderr)
        return 2
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="studio-bench-") as tmp:
        for name, bench in benches.items():
            if only and name not in only:
                continue
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            for figure in bench(Path(tmp), quick):
                figures.append(figure)
                print(
                    f"  {figure.name}: {figure.value:.3f} {figure.unit}  (goal {figure.goal or '-'})", file=sys.stderr
                )
    info = machine()
    record = {
        "machine": info,
        "date": time.strftime("%Y-%m-%d"),
        "quick": quick,
        "figures": [asdict(f) for f in figures],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{machine_key(info)}.json"
    if only and path.exists():  # a partial run updates its own figures and keeps the rest
        old = json.loads(path.read_text())
        kept = [f for f in old.get("figures", []) if f["name"] not in {g.name for g in figures}]
        record["figures"] = kept + record["figures"]
    write_text_atomic(path, json.dumps(record, indent=2) + "\n")
    write_readme(out_dir)
    print(path)
    return 0


def write_readme(out_dir: Path) -> None:
    """Rebuild benchmarks/README.md from every result file in the folder."""
    lines = [
        "# Benchmarks",
        "",
        "Recorded by `studio bench` (`make bench`). Each figure is measured in one run against the plain",
        "library call in the same process; ratios > 1 mean the studio is slower than the bare call.",
        "",
    ]
    for path in sorted(out_dir.glob("*.json")):
        record = json.loads(path.read_text())
        m = record["machine"]
        lines += [
            f"## {path.stem}",
            "",
            f"{m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gb', '?')} GB, GPU: {m.get('cuda') or 'none'}; "
            f"torch {m.get('torch')}, Python {m.get('python')}; {record.get('date')}"
            + (" (quick run)" if record.get("quick") else ""),
            "",
            "| figure | value | goal | met | details |",
            "|---|---|---|---|---|",
        ]
        for f in record["figures"]:
            met = {True: "yes", False: "no", None: "-"}[f.get("meets_goal")]
            details = ", ".join(f"{k} {_short(v)}" for k, v in (f.get("details") or {}).items())
            lines.append(f"| {f['name']} | {f['value']:.3f} {f['unit']} | {f.get('goal') or '-'} | {met} | {details} |")
        lines.append("")
    write_text_atomic(out_dir / "README.md", "\n".join(lines))


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + " ".join(_short(v) for v in value) + "]"
    return str(value)
