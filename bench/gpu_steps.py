"""python3 -m bench.gpu_steps --device cuda --model-type vit_h --copies 8 --out $OUT

Benchmark: the GPU engine steps of issue 18 (part 3), one at a time, each against exact fp32.
The command above is the GPU session's one run (one H100/H200, from the checkout's root, about
8 minutes of device time in all: --budget-s 480 guards it, the device call needs a timeout of
~540 s). Optional before it, ~1-2 min: `pytest tests/masks/test_flash_relpos.py
tests/masks/test_engine_steps.py`, whose CUDA tests check the kernel and the CUDA steps.

CPU dry run (fake tiny SAM, one tile; the CUDA-only steps are reported as skipped; ~3 min on 2 cores):

    .venv/bin/python -m bench.gpu_steps --device cpu --model-type tiny --scenes P1888 --copies 1 --repeats 1 --out /tmp/gpu-steps

Needs no network: random weights (written once, or --checkpoint), torch with Triton,
segment_anything, numpy, Pillow (no Ray), and the real DOTA samples (2.8 MB), by default at
../shared/data/realsamples beside the checkout. A device machine gets only the checkout: copy
them into an ignored folder first (`cp -r ../shared/data/realsamples .cache/`), carry
`.cache/realsamples` and add `--realsamples .cache/realsamples`.

Baseline G0 is the job's GPU engine today (what the Ray job's MaskActor builds on a GPU: bf16
autocast, image_batch 4, prompt_chunk 64, SDPA with the rel-pos bias as attn_mask, masks packed
on the device, one sync per tile; 14.6 tiles/s for ViT-H on an H100, bench/RESULTS.md). Each
later step changes one thing on top of the steps kept before it, runs in its own Python process
(bench/fast_path.py's step_worker: allocator, compile and autotune state stay in it) and is kept
only if it pays: at least --min-speedup faster than the last kept step, and its masks' mean IoU
against exact fp32 no more than --max-iou-drop below that step's.

  G1 flash attention with the rel-pos bias fused in (samrs_ray/masks/flash_relpos.py, Triton)
  G2 image_batch 8        G3 image_batch 16
  G4 one device sync per encoder batch instead of one per tile
  G5 mask upsampling in bf16
  G6 CUDA graphs for the prompt encoder + mask decoder (torch.compile reduce-overhead, chunks padded)
  G7 torch.compile of each image-encoder block, static shapes (max-autotune-no-cudagraphs on CUDA)
  G8 int8 dynamic quantisation of the encoder's Linear layers (CUDA: torch._int_mm; CPU: torch.ao)

The steps that compile come last, so that when the budget runs short it is they that are left
out: a step that compiles starts only with as much budget left as the longest compiling step
so far took, any step only with --min-step-s left, and each is killed after --step-timeout-s or
at the budget's end. Per step: best-of-R seconds on the same tiles, tiles/s, boxes/s, speed-up over the last kept
step and over G0, warm-up (compile and autotune time), GPU peak memory, and against the exact
fp32 reference (fast_path.EXACT: SamPredictor's masks bit for bit) the masks' mean IoU and the
relative error of the first tile's low-resolution logits. Written to --out as gpu_steps.json
and gpu_steps.md, with each step's log under logs/.

The other engines on the GPU (issue 26): `python3 -m bench.gpu_steps --engines sam,sam2,hq-sam
--device cuda --sam-type vit_h --sam2-type hiera_l --hq-type vit_h --copies 4 --out $OUT` runs
bench/other_engines.py instead of the steps: per engine, tiles/s in fp32 and bf16 and the masks'
IoU against that engine's own official fp32 predictor (about 4 minutes on an H100 for 8 tiles).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from bench.common import Spec, add_input_arguments, agreement, load_masks, prepare_inputs
from bench.fast_path import EXACT, step_worker

# The job's engine on a GPU (samrs_ray/job/actor.py with resolve_engine's GPU defaults).
BASELINE = dict(dtype="bfloat16", image_batch=4, prompt_chunk=64, sdpa=True, pack=True)


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    change: dict[str, Any] = field(default_factory=dict)  # EngineSettings fields on top of the kept steps
    needs_cuda: str = ""  # why the step means nothing without CUDA ("" when it runs anywhere)
    transform: str = ""  # a model change made before the engine is built (TRANSFORMS)


STEPS = (
    Step("G1", "flash attention, rel-pos bias fused (Triton)", dict(attention="flash-relpos"),
         needs_cuda="Triton kernel; its CPU check is tests/masks/test_flash_relpos.py"),
    Step("G2", "image_batch 8", dict(image_batch=8)),
    Step("G3", "image_batch 16", dict(image_batch=16)),
    Step("G4", "one sync per encoder batch", dict(sync="batch"), needs_cuda="a CPU engine never waits"),
    Step("G5", "mask upsampling in bf16", dict(upsample_dtype="bfloat16")),
    Step("G6", "CUDA graphs: decoder, chunk padded", dict(decoder_graphs=True), needs_cuda="CUDA graphs"),
    Step("G7", "compile encoder blocks, static shapes", dict(compile=True, compile_blocks=True, static_shapes=True)),
    Step("G8", "int8 dynamic quant, encoder Linear", transform="int8"),
)
COMPILE_MODE = {"cuda": "max-autotune-no-cudagraphs", "cpu": None}  # CPU: max-autotune would take the dry run's time


def step_change(step: Step, device: str) -> dict[str, Any]:
    if step.change.get("compile_blocks"):
        return dict(step.change, compile_mode=COMPILE_MODE.get(device))
    return step.change


# --- int8 (a model change, not yet an engine setting: it moves into sam.py if it pays) ----------


class Int8Linear(torch.nn.Module):
    """A Linear with int8 weights (one scale per output channel) and int8 activations (one scale
    per row, computed at run time), multiplied by torch._int_mm on the int8 tensor cores.

    Forward: x (..., in) -> (..., out) in x's dtype. _int_mm needs more than 16 rows and `in`,
    `out` multiples of 8: SAM's encoder has thousands of token rows and widths of 1280/3840/5120.
    """

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-8) / 127  # (out,)
        self.register_buffer("weight", torch.round(weight / scale[:, None]).to(torch.int8))  # (out, in)
        self.register_buffer("weight_scale", scale)
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1]).float()
        scale = rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127  # (M, 1)
        quantised = torch.round(rows / scale).to(torch.int8)
        # weight.t() is column-major (in, out), the layout _int_mm's second operand needs
        out = torch._int_mm(quantised, self.weight.t()).float() * scale * self.weight_scale
        if self.bias is not None:
            out = out + self.bias.float()
        return out.to(x.dtype).reshape(*x.shape[:-1], -1)


class Float32In(torch.nn.Module):
    """torch.ao's dynamic quantised Linear takes float32 only; bf16 autocast hands it bf16."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.float()).to(x.dtype)


def quantise_int8(model: torch.nn.Module) -> None:
    """Every Linear of the image encoder in int8: torch._int_mm on CUDA, torch.ao dynamic quant
    (fbgemm, CPU only) elsewhere. Changes `model` in place."""
    encoder = model.image_encoder
    if next(encoder.parameters()).is_cuda:
        swap_linears(encoder, Int8Linear)
        return
    with warnings.catch_warnings():  # torch.ao's eager quantisation is deprecated for torchao (not installed here)
        warnings.simplefilter("ignore")
        torch.ao.quantization.quantize_dynamic(encoder, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    swap_linears(encoder, Float32In, torch.ao.nn.quantized.dynamic.Linear)


def swap_linears(module: torch.nn.Module, wrap: Callable[[torch.nn.Module], torch.nn.Module],
                 kind: type = torch.nn.Linear) -> None:
    for name, child in module.named_children():
        if isinstance(child, kind):
            setattr(module, name, wrap(child))
        else:
            swap_linears(child, wrap, kind)


TRANSFORMS: dict[str, Callable[[torch.nn.Module], None]] = {"int8": quantise_int8}


# --- running steps ---------------------------------------------------------------------------


class StepError(Exception):
    """A step that failed or ran out of time; the message says which and why."""


def worker(job_path: Path) -> None:
    job = json.loads(job_path.read_text())
    transform = TRANSFORMS[job["transform"]] if job["transform"] else None
    result = step_worker(Spec(**job["spec"]), job["settings"], job["name"], transform, job["warm_up"])
    cuda = torch.device(job["settings"]["device"]).type == "cuda"
    result["machine"] = {"device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
                         "torch": torch.__version__, "python": platform.python_version(),
                         "triton": triton_version()}
    job_path.with_suffix(".result.json").write_text(json.dumps(result))


def triton_version() -> Optional[str]:
    try:
        return importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        return None


def run_step(spec: Spec, name: str, settings: dict[str, Any], transform: str, timeout: float, logs: Path,
             warm_up: bool = True) -> dict[str, Any]:
    """One step in a fresh process, killed (with the compile workers it started) after `timeout` s."""
    job = Path(spec.workdir) / f"step-{name}.json"
    job.write_text(json.dumps({"spec": dataclasses.asdict(spec), "settings": settings, "name": name,
                               "transform": transform, "warm_up": warm_up}))
    log = logs / f"{name}.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "bench.gpu_steps", "--worker", str(job)], stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = process.wait(timeout=max(timeout, 1))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: the worker and its compile workers
            process.wait()
            raise StepError(f"timed out after {timeout:.0f} s") from None
    if code != 0:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        raise StepError(f"failed (exit {code}): {lines[-1][:160] if lines else 'no output'}")
    return json.loads(job.with_suffix(".result.json").read_text())


@dataclass
class Outcome:
    name: str
    title: str
    status: str  # "measured" | "skipped (...)" | "not run (...)" | "failed ..." | "timed out ..."
    settings: dict[str, Any] = field(default_factory=dict)
    transform: str = ""
    wall_s: float = 0.0  # the whole step: process start, model load, warm-up, runs
    result: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    kept: Optional[bool] = None
    reason: str = ""


def figures(result: dict, workdir: Path, name: str, reference: list[np.ndarray]) -> dict[str, Any]:
    """Speed and agreement with the exact fp32 reference of one measured step."""
    best = min(result["seconds"])
    agree = agreement(reference, load_masks(workdir / f"masks-{name}.npz"))
    exact = np.load(workdir / "logits-exact.npy")
    rel = float(np.linalg.norm(np.load(workdir / f"logits-{name}.npy") - exact) / np.linalg.norm(exact))
    return {"seconds": best, "all_seconds": result["seconds"], "tiles_per_s": result["tiles"] / best,
            "boxes_per_s": result["boxes"] / best, "warm_up_s": result["warm_up"], "gpu_peak": result["cuda_peak"],
            "peak_rss": result["peak_rss"], "dtype_used": result["dtype_used"], "mean_iou": agree["mean_iou"],
            "identical": agree["identical"], "worst_flipped": agree["worst_flipped"], "logits_rel_err": rel}


def decide(step: Outcome, last: Outcome, args: argparse.Namespace) -> None:
    """Keep a step that is at least --min-speedup faster than the last kept one without losing
    more than --max-iou-drop of mean IoU against fp32."""
    speedup = last.figures["seconds"] / step.figures["seconds"]
    drop = last.figures["mean_iou"] - step.figures["mean_iou"]
    step.kept = speedup >= args.min_speedup and drop <= args.max_iou_drop
    step.reason = (f"{speedup:.2f}x" + ("" if speedup >= args.min_speedup else f" < {args.min_speedup}x")
                   + (f", IoU -{drop:.4f} > {args.max_iou_drop}" if drop > args.max_iou_drop else ""))


def main() -> None:
    if "--engines" in sys.argv:  # the engines' comparison has options of its own
        from bench import other_engines

        return other_engines.main()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_input_arguments(parser, copies=8)
    parser.add_argument("--out", type=Path, help="folder for gpu_steps.json, gpu_steps.md, logs/ (default: a temp dir)")
    parser.add_argument("--steps", default=",".join(s.name for s in STEPS), help="some of G1..G8 (G0 always runs)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per step; the best counts")
    parser.add_argument("--budget-s", type=float, default=480, help="start no step after this many seconds in all")
    parser.add_argument("--min-step-s", type=float, default=30, help="start a step only with this much budget left")
    parser.add_argument("--step-timeout-s", type=float, default=300, help="kill a step after this long")
    parser.add_argument("--min-speedup", type=float, default=1.03)
    parser.add_argument("--max-iou-drop", type=float, default=0.005)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    chosen = args.steps.split(",") if args.steps else []
    unknown = set(chosen) - {s.name for s in STEPS}
    if unknown:
        sys.exit(f"unknown steps {sorted(unknown)}; choose from {[s.name for s in STEPS]}")
    if not (args.realsamples / "dota/images").is_dir():
        sys.exit(f"real samples not found at {args.realsamples} (see --realsamples)")
    started = time.perf_counter()
    out = args.out or Path(tempfile.mkdtemp(prefix="samrs-gpu-steps-out-"))
    (out / "logs").mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="samrs-gpu-steps-"))
    try:
        spec = Spec(model_type=args.model_type, checkpoint=prepare_inputs(args, workdir),
                    scenes=str(workdir / "scenes"), device=args.device, dtype=None, image_batch=1,
                    prompt_chunk=None, repeats=args.repeats, num_cpus=0, workdir=str(workdir))
        print(f"inputs ready after {time.perf_counter() - started:.0f} s; budget {args.budget_s:.0f} s", flush=True)
        outcomes = run_all(args, spec, workdir, out / "logs", chosen, started)
        report(args, outcomes, out, time.perf_counter() - started)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_all(args: argparse.Namespace, spec: Spec, workdir: Path, logs: Path, chosen: list[str],
            started: float) -> list[Outcome]:
    left = lambda: args.budget_s - (time.perf_counter() - started)  # noqa: E731
    cuda = torch.device(args.device).type == "cuda"

    def measure(outcome: Outcome, warm_up: bool = True) -> Outcome:
        timeout = min(args.step_timeout_s, left())
        print(f"[{outcome.name}] {outcome.title}: running (timeout {timeout:.0f} s, {left():.0f} s of budget left)",
              flush=True)
        begun = time.perf_counter()
        try:
            outcome.result = run_step(spec, outcome.name, outcome.settings, outcome.transform, timeout, logs, warm_up)
            outcome.status = "measured"
        except StepError as error:
            outcome.status = str(error)
        outcome.wall_s = time.perf_counter() - begun
        return outcome

    exact = measure(Outcome("exact", "exact fp32 reference (one cold run)", "", dict(EXACT, device=args.device)),
                    warm_up=False)
    if exact.status != "measured":
        sys.exit(f"the exact fp32 reference {exact.status}; see {logs / 'exact.log'}")
    reference = load_masks(workdir / "masks-exact.npz")
    exact.figures = figures(exact.result, workdir, "exact", reference)
    base = measure(Outcome("G0", "baseline: the job's GPU engine", "", dict(BASELINE, device=args.device)))
    if base.status != "measured":
        sys.exit(f"the baseline {base.status}; see {logs / 'G0.log'}")
    base.figures, base.kept, base.reason = figures(base.result, workdir, "G0", reference), True, "baseline"
    print_step(base, base, base)
    outcomes, last = [exact, base], base
    compiling = 0.0  # the longest step so far that compiled: what the next compiling step needs at least
    for step in STEPS:
        if step.name not in chosen:
            continue
        title = step.title + (f" ({'torch._int_mm' if cuda else 'torch.ao'})" if step.transform == "int8" else "")
        outcome = Outcome(step.name, title, "", dict(last.settings, **step_change(step, args.device)),
                          step.transform or last.transform)
        outcomes.append(outcome)
        compiles = bool(outcome.settings.get("compile") or outcome.settings.get("decoder_graphs"))
        needed = max(args.min_step_s, compiling if compiles else 0.0)
        if step.needs_cuda and not cuda:
            outcome.status = f"skipped (needs CUDA: {step.needs_cuda})"
        elif left() < needed:
            outcome.status = f"not run (budget: {left():.0f} s left, ~{needed:.0f} s needed)"
        else:
            measure(outcome)
            compiling = max(compiling, outcome.wall_s if compiles else 0.0)
        if outcome.status == "measured":
            outcome.figures = figures(outcome.result, workdir, step.name, reference)
            decide(outcome, last, args)
            print_step(outcome, last, base)
            last = outcome if outcome.kept else last
        else:
            print(f"[{step.name}] {step.title}: {outcome.status}", flush=True)
    return outcomes


def print_step(step: Outcome, last: Outcome, base: Outcome) -> None:
    f = step.figures
    print(f"[{step.name}] {step.title}: {f['seconds']:.2f} s, {f['tiles_per_s']:.2f} tiles/s, "
          f"{last.figures['seconds'] / f['seconds']:.2f}x vs last kept, {base.figures['seconds'] / f['seconds']:.2f}x "
          f"vs G0, warm-up {f['warm_up_s']:.0f} s, {gib(f['gpu_peak'])}, IoU vs fp32 {f['mean_iou']:.4f}: "
          f"{'kept' if step.kept else 'dropped'} ({step.reason}); step {step.wall_s:.0f} s", flush=True)


def gib(n: Optional[float]) -> str:
    return "-" if n is None else f"GPU {n / 2**30:.1f} GiB"


def table(outcomes: list[Outcome]) -> list[str]:
    base = next(o for o in outcomes if o.name == "G0")
    rows = ["| step | what | s | tiles/s | vs last kept | vs G0 | warm-up s | GPU peak | mean IoU vs fp32 "
            "| logits rel err | kept |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    last = base
    for o in outcomes:
        if o.status != "measured":
            rows.append(f"| {o.name} | {o.title} | {o.status} | | | | | | | | |")
            continue
        f = o.figures
        vs_last = "" if o.name in ("exact", "G0") else f"{last.figures['seconds'] / f['seconds']:.2f}x"
        kept = "" if o.kept is None else ("yes" if o.kept else "no") + f" ({o.reason})"
        rows.append(f"| {o.name} | {o.title} | {f['seconds']:.2f} | {f['tiles_per_s']:.2f} | {vs_last} | "
                    f"{base.figures['seconds'] / f['seconds']:.2f}x | {f['warm_up_s']:.0f} | "
                    f"{gib(f['gpu_peak']).removeprefix('GPU ')} | {f['mean_iou']:.5f} | {f['logits_rel_err']:.1e} "
                    f"| {kept} |")
        last = o if o.kept and o.name != "exact" else last
    return rows


def report(args: argparse.Namespace, outcomes: list[Outcome], out: Path, elapsed: float) -> None:
    measured = [o for o in outcomes if o.status == "measured"]
    machine = measured[-1].result["machine"]
    first = measured[0].result
    final = [o for o in outcomes if o.kept][-1]
    header = [f"`{' '.join(['python3', '-m', 'bench.gpu_steps', *sys.argv[1:]])}`", "",
              f"sam-{args.model_type} (random weights) on {args.device} ({machine['device']}), "
              f"torch {machine['torch']}, triton {machine['triton']}; {first['tiles']} tile(s), {first['boxes']} boxes, "
              f"best of {args.repeats}; {elapsed:.0f} s in all (budget {args.budget_s:.0f} s)", "",
              f"kept: {', '.join(o.name for o in outcomes if o.kept)}; engine settings at the end: "
              f"{json.dumps({k: v for k, v in final.settings.items() if k != 'device'})}"
              + (f" + {final.transform}" if final.transform else "")]
    not_run = [o.name for o in outcomes if o.status.startswith("not run")]
    if not_run:
        header.append(f"not run for lack of budget: {', '.join(not_run)}")
    lines = [*header, "", *table(outcomes)]
    (out / "gpu_steps.md").write_text("\n".join(lines) + "\n")
    (out / "gpu_steps.json").write_text(json.dumps({
        "argv": sys.argv[1:], "machine": machine, "elapsed_s": elapsed, "not_run": not_run,
        "kept": [o.name for o in outcomes if o.kept], "final_settings": final.settings,
        "steps": [dataclasses.asdict(o) | {"result": {k: v for k, v in o.result.items() if k != "machine"}}
                  for o in outcomes]}, indent=1))
    print("\n" + "\n".join(lines) + f"\n\nwritten: {out / 'gpu_steps.md'}, {out / 'gpu_steps.json'}, {out / 'logs'}")


if __name__ == "__main__":
    main()
