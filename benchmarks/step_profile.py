"""Where the time of one SOP training step goes: sopjax vs. its PyTorch twin, by operation class.

Run:
    python -m benchmarks.step_profile                          # widths 1/8 and 1/2, float32
    python -m benchmarks.step_profile --widths 0.5 --dtypes float32,bfloat16 --steps 4
    XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=dot python -m benchmarks.step_profile --no-defaults

Both sides run the step of :mod:`benchmarks.step_vs_pytorch` (the ``quick`` preset's SOP step at
batch 128 on N = 50,000 uint8 CIFAR-shaped images: gather, crop and flip, normalize, the
authors' PreActResNet18, the SOP loss, backward, SGD).

- JAX: XLA's own profiler (``jax.profiler`` trace, read back with ``jax.profiler.ProfileData``)
  gives the time of every executed HLO instruction; each is put in a class from the compiled
  HLO: its opcode (convolution, copy, transpose), the ops fused into it, and the name scopes
  of its source (``input``, ``tables``, ``loss``, ``optimizer`` in :mod:`sopjax.trainers.step`,
  flax's ``bn*`` module names). A convolution under ``transpose(…)`` is a backward one: the
  weight gradient if its output has a kernel's shape, else the input gradient. "host and
  gaps" is the step's wall time outside every executed instruction (dispatch, waiting).
- PyTorch: ``torch.profiler``; each operator's self time goes to the class of its nearest
  classified ancestor (``aten::convolution``, ``ConvolutionBackward0``, batch norm,
  ``Optimizer.step``, the ``input`` block, indexing of u, v, copies); "host and gaps" is the
  wall time outside every top-level operator. PyTorch computes both convolution gradients in
  one operator, so its dgrad and wgrad share one row.

Times are ms per step, summed over the threads that ran them (an op split over two cores
counts once per core's share, as the profilers report it), next to the wall time per step.
The flags in force and the load average are printed with the table; compare ratios measured
in one run, on a quiet machine.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import os
import re
import tempfile
import time

from benchmarks import step_vs_pytorch as svp

CLASSES = ("conv fwd", "conv dgrad", "conv wgrad", "conv bwd (dgrad+wgrad)", "BatchNorm", "elementwise/other",
           "input (gather, crop, flip)", "tables (u, v gather/scatter)", "loss", "optimizer update",
           "copies/transposes", "host and gaps")


# ------------------------------------------------------------------ the compiled HLO


@dataclasses.dataclass
class Instr:
    opcode: str
    shape: str
    op_name: str
    calls: str | None
    root: bool = False


def parse_hlo(text: str) -> tuple[dict, dict]:
    """({instruction name: Instr}, {computation name: [its Instrs]}) of a compiled HLO module."""
    instrs, comps, current = {}, collections.defaultdict(list), None
    head = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$")
    line_re = re.compile(r"^\s*(ROOT )?%?([\w.\-]+) = (\S+(?: \S+)*?) ([\w\-]+)\(")
    for line in text.splitlines():
        if not line.startswith(" ") and head.match(line):
            current = head.match(line).group(1)
            continue
        m = line_re.match(line)
        if not m:
            continue
        calls = re.search(r"calls=%?([\w.\-]+)", line)
        op = re.search(r'op_name="([^"]+)"', line)
        ins = Instr(m.group(4), m.group(3), op.group(1) if op else "", calls.group(1) if calls else None,
                    bool(m.group(1)))
        instrs[m.group(2)] = ins
        comps[current].append(ins)
    return instrs, comps


def _conv_direction(ins: Instr) -> str:
    inside = re.search(r"\[([\d,]*)\]", ins.shape)
    dims = [int(d) for d in inside.group(1).split(",") if d] if inside else []
    # A kernel-shaped output (3×3 or 1×1, as HWIO or OHWI) is a weight gradient; a convolution
    # under transpose(…) that outputs activations is an input gradient.
    if len(dims) == 4 and ((dims[0] == dims[1] and dims[0] in (1, 3)) or (dims[1] == dims[2] and dims[1] in (1, 3))):
        return "conv wgrad"
    return "conv dgrad" if "transpose(" in ins.op_name else "conv fwd"


def classify_jax(name: str, instrs: dict, comps: dict) -> str:
    """The class of the executed instruction ``name`` (see the module docstring)."""
    ins = instrs.get(name)
    if ins is None:
        return "elementwise/other"
    inner = comps.get(ins.calls, []) if ins.calls else []
    conv = next((i for i in [ins, *inner] if i.opcode == "convolution"), None)
    if conv is not None:
        return _conv_direction(conv)
    root = next((i for i in inner if i.root), ins)
    if root.opcode in ("copy", "transpose"):
        return "copies/transposes"
    path = root.op_name or ins.op_name
    for scope, cls in (("/input/", "input (gather, crop, flip)"), ("tables", "tables (u, v gather/scatter)"),
                       ("/loss/", "loss"), ("optimizer", "optimizer update")):
        if scope in path + "/":
            return cls
    if re.search(r"/(bn\d*|bn_final|shortcut_bn)/", path + "/"):
        return "BatchNorm"
    return "elementwise/other"


# ------------------------------------------------------------------ JAX, profiled


def _thunk_events(xplane: str, module: str):
    """(hlo op name, start ns, duration ns) of every instruction XLA executed for ``module``."""
    import jax

    pd = jax.profiler.ProfileData.from_file(xplane)
    for plane in pd.planes:
        for line in plane.lines:
            for ev in line.events:
                stats = dict(ev.stats)
                if stats.get("hlo_module") == module and "hlo_op" in stats:
                    yield stats["hlo_op"], ev.start_ns, ev.duration_ns


def _union_ns(intervals) -> float:
    total, end = 0.0, -1.0
    for s, e in sorted(intervals):
        if e > end:
            total += e - max(s, end)
            end = e
    return total


def profile_jax(cfg, x, y, steps: int) -> dict:
    """{class: ms per step, "wall": ms per step} for ``steps`` profiled steps of the JAX step."""
    import jax

    from sopjax.trainers import step as step_lib

    run, box = svp.jax_runner(cfg, x, y, keep=True)
    run(2)  # compile and warm up
    spec = step_lib.StepSpec.from_config(cfg)
    instrs, comps = parse_hlo(step_lib.device_step.lower(box["state"], box["order"][0], box["data"], spec)
                              .compile().as_text())
    out = tempfile.mkdtemp(prefix="step-profile-")
    jax.profiler.start_trace(out)
    wall = run(steps)
    jax.profiler.stop_trace()
    per, spans = collections.Counter(), []
    for op, start, dur in _thunk_events(glob.glob(f"{out}/**/*.xplane.pb", recursive=True)[0], "jit_device_step"):
        per[classify_jax(op, instrs, comps)] += dur
        spans.append((start, start + dur))
    res = {k: v / 1e6 / steps for k, v in per.items()}
    res["host and gaps"] = max(0.0, wall * 1e3 / steps - _union_ns(spans) / 1e6 / steps)
    res["wall"] = wall * 1e3 / steps
    return res


# ------------------------------------------------------------------ PyTorch, profiled

TORCH_RULES = (("ConvolutionBackward", "conv bwd (dgrad+wgrad)"), ("convolution_backward", "conv bwd (dgrad+wgrad)"),
               ("aten::convolution", "conv fwd"), ("batch_norm", "BatchNorm"), ("BatchNorm", "BatchNorm"),
               ("Optimizer.", "optimizer update"), ("input", "input (gather, crop, flip)"),
               ("IndexBackward", "tables (u, v gather/scatter)"), ("aten::index", "tables (u, v gather/scatter)"),
               ("sop_loss", "loss"), ("aten::copy_", "copies/transposes"), ("aten::contiguous", "copies/transposes"))


def classify_torch(ev) -> str:
    """Class of a profiler event: the first rule that matches it or an ancestor, nearest first."""
    node = ev
    while node is not None:
        for key, cls in TORCH_RULES:
            if key in node.name:
                return cls
        node = node.cpu_parent
    return "elementwise/other"


def profile_torch(cfg, x, y, steps: int, threads: int) -> dict:
    """{class: ms per step, "wall": ms per step} for ``steps`` profiled steps of the twin."""
    from torch.profiler import ProfilerActivity, profile

    run = svp.torch_runner(cfg, x, y, threads, labelled=True)
    run(2)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        wall = run(steps)
    per, top = collections.Counter(), []
    for ev in prof.events():
        per[classify_torch(ev)] += ev.self_cpu_time_total
        if ev.cpu_parent is None and ev.name != "ProfilerStep*":
            top.append((ev.time_range.start, ev.time_range.end))
    res = {k: v / 1e3 / steps for k, v in per.items()}
    res["host and gaps"] = max(0.0, wall * 1e3 / steps - _union_ns(top) / 1e3 / steps)
    res["wall"] = wall * 1e3 / steps
    return res


# ------------------------------------------------------------------ the table


def print_table(rows: list) -> None:
    """One column per (side, width, dtype): ms per step by class, and the wall time."""
    heads = [f"{r['side']} {r['width']:g} {r['dtype']}" for r in rows]
    print("| class (ms/step) | " + " | ".join(heads) + " |")
    print("| --- |" + " --- |" * len(rows))
    for cls in CLASSES:
        if any(r["times"].get(cls) for r in rows):
            print(f"| {cls} | " + " | ".join(f"{r['times'].get(cls, 0.0):.1f}" for r in rows) + " |")
    print("| **wall per step** | " + " | ".join(f"**{r['times']['wall']:.1f}**" for r in rows) + " |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--widths", default="0.125,0.5")
    ap.add_argument("--dtypes", default="float32")
    ap.add_argument("--steps", type=int, default=4, help="profiled steps per configuration")
    ap.add_argument("--torch-threads", type=int, default=2)
    ap.add_argument("--no-torch", action="store_true", help="profile the JAX step only")
    a = ap.parse_args(argv)
    cfg0, x, y = svp.setup(128)
    print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; load average {os.getloadavg()[0]:.2f} at start")
    rows, t0 = [], time.perf_counter()
    for width in (float(w) for w in a.widths.split(",")):
        for dtype in a.dtypes.split(","):
            cfg = dataclasses.replace(cfg0, width=width, dtype=dtype)
            rows.append({"side": "JAX", "width": width, "dtype": dtype, "times": profile_jax(cfg, x, y, a.steps)})
            if not a.no_torch:
                rows.append({"side": f"twin {a.torch_threads}t", "width": width, "dtype": dtype,
                             "times": profile_torch(cfg, x, y, a.steps, a.torch_threads)})
    print(f"load average {os.getloadavg()[0]:.2f} at end ({time.perf_counter() - t0:.0f} s)\n")
    print_table(rows)


if __name__ == "__main__":
    main()
