"""Benchmark: every model engine (sam, sam2, hq-sam) on the same real tiles and box prompts: the
engine's tiles/s, and the IoU of its masks against that engine's own official predictor in fp32
(SamPredictor, SAM2ImagePredictor, segment_anything_hq's SamPredictor; the predictor's defaults,
multimask_output=False), for the engine in fp32 and in bf16 where the device has native bf16.

    .venv/bin/python -m bench.other_engines        # CPU: the FAKE tiny models, P0004 + P1888 (3 tiles)
    .venv/bin/python -m bench.other_engines --device cuda --sam-type vit_h --sam2-type hiera_l --hq-type vit_h \
        --copies 4 --out $OUT                      # the GPU machine's run (bench/gpu_steps.py --engines)

Weights are random (seeded; speed does not depend on them, and equality is all the IoU checks).
The tiles and prompts are the job's own (bench.common.planned_tiles). Each engine's official
predictor runs first on all tiles (its time is reported too: one tile per image-encoder call, the
boxes in chunks of 64), then the engine: a warm-up tile, then all tiles in one predict() call.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import REALSAMPLES, Spec, agreement, make_scenes, planned_tiles, timed

CHUNK = 64  # boxes per official predictor call


def build(engine: str, model_type: str) -> torch.nn.Module:
    """The engine's model of `model_type`, random weights with a fixed seed."""
    torch.manual_seed(0)
    if engine == "sam":
        from samrs_ray.masks.checkpoint import build_sam

        return build_sam(model_type)
    if engine == "sam2":
        from samrs_ray.masks.sam2_model import build_sam2_model

        return build_sam2_model(model_type)
    from samrs_ray.masks.hq_sam_model import build_hq_sam

    return build_hq_sam(model_type)


def official(engine: str, model: torch.nn.Module, image: np.ndarray, boxes: np.ndarray,
             device: torch.device) -> np.ndarray:
    """The official predictor's masks (N, H, W) bool for image (H, W, 3) uint8 and boxes (N, 4) xyxy, fp32."""
    height, width = image.shape[:2]
    out = []
    with torch.no_grad():
        if engine == "sam2":
            from sam2.sam2_image_predictor import SAM2ImagePredictor

            predictor = SAM2ImagePredictor(model)
            predictor.set_image(image)
            for start in range(0, len(boxes), CHUNK):
                masks, _, _ = predictor.predict(box=boxes[start:start + CHUNK], multimask_output=False)
                out.append(masks.reshape(-1, height, width) > 0)
            return np.concatenate(out) if out else np.zeros((0, height, width), bool)
        if engine == "sam":
            from segment_anything import SamPredictor
        else:
            from samrs_ray.masks.hq_sam_model import modules

            modules()
            from segment_anything_hq import SamPredictor
        predictor = SamPredictor(model)
        predictor.set_image(image)
        for start in range(0, len(boxes), CHUNK):
            chunk = predictor.transform.apply_boxes_torch(torch.as_tensor(boxes[start:start + CHUNK], device=device),
                                                          (height, width))
            masks = predictor.predict_torch(None, None, boxes=chunk, multimask_output=False)[0]
            out.append(masks[:, 0].cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, height, width), bool)


def backend(engine: str, model: torch.nn.Module, model_type: str, device: str, dtype: str, args: argparse.Namespace):
    from samrs_ray.masks.engine_settings import EngineSettings

    settings = EngineSettings(device=device, dtype=dtype, image_batch=args.image_batch, prompt_chunk=args.prompt_chunk,
                              sdpa=engine == "sam", pack=True)
    if engine == "sam":
        from samrs_ray.masks.sam import SamBackend

        return SamBackend(model, model_type, "", settings)
    if engine == "sam2":
        from samrs_ray.masks.sam2 import Sam2Backend

        return Sam2Backend(model, model_type, "", settings)
    from samrs_ray.masks.hq_sam import HqSamBackend

    return HqSamBackend(model, model_type, "", settings)


def unpacked(results) -> list[np.ndarray]:
    from samrs_ray.masks.backend import unpack_masks

    return [r.masks if r.masks is not None else unpack_masks(r.bits, *r.shape) for r in results]


def run_engine(engine: str, model_type: str, tiles, args: argparse.Namespace) -> dict[str, Any]:
    from samrs_ray.masks.engine_settings import supports_bfloat16

    device = torch.device(args.device)
    model = build(engine, model_type).to(device).eval()
    reference, seconds = timed(lambda: [official(engine, model, t.image, t.prompts.boxes, device) for t in tiles],
                               device)
    row: dict[str, Any] = {"engine": engine, "model_type": model_type, "tiles": len(tiles),
                           "boxes": sum(len(t.prompts) for t in tiles), "official_fp32_s": seconds}
    for dtype in ("float32", "bfloat16"):
        if dtype == "bfloat16" and not supports_bfloat16(device):
            row["bfloat16"] = "n/a: no native bf16 on this device"
            continue
        runner = backend(engine, model, model_type, args.device, dtype, args)
        images, prompts = [t.image for t in tiles], [t.prompts for t in tiles]
        runner.predict(images[:1], prompts[:1])  # warm-up
        results, seconds = timed(lambda: runner.predict(images, prompts), device)
        row[dtype] = {"seconds": seconds, "tiles_per_s": len(tiles) / seconds,
                      **agreement(unpacked(results), reference),
                      "min_iou": min(float((m & n).sum() / max(1, (m | n).sum()))
                                     for x, y in zip(unpacked(results), reference) for m, n in zip(x, y))}
    return row


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [f"Engines on {rows[0]['tiles']} real tiles ({rows[0]['boxes']} boxes), device {args.device}, "
             f"image_batch {args.image_batch}, prompt_chunk {args.prompt_chunk}", "",
             "| engine | type | official fp32 s | engine fp32 tiles/s | IoU vs official (mean / min) | "
             "engine bf16 tiles/s | bf16 IoU vs official fp32 (mean / min) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        fp32, bf16 = r["float32"], r["bfloat16"]
        bf = (f"{bf16['tiles_per_s']:.2f} | {bf16['mean_iou']:.4f} / {bf16['min_iou']:.4f}" if isinstance(bf16, dict)
              else f"{bf16} | -")
        lines.append(f"| {r['engine']} | {r['model_type']} | {r['official_fp32_s']:.1f} | {fp32['tiles_per_s']:.2f} | "
                     f"{fp32['mean_iou']:.4f} / {fp32['min_iou']:.4f} | {bf} |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engines", default="sam,sam2,hq-sam")
    parser.add_argument("--sam-type", default="tiny")
    parser.add_argument("--sam2-type", default="tiny")
    parser.add_argument("--hq-type", default="tiny")
    parser.add_argument("--image-batch", type=int, default=4)
    parser.add_argument("--prompt-chunk", type=int, default=None, help="default: 64 on CUDA, 4 on a CPU")
    parser.add_argument("--out", type=Path, help="write engines.json and engines.md here")


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    args.prompt_chunk = args.prompt_chunk or (64 if args.device.startswith("cuda") else 4)
    types = {"sam": args.sam_type, "sam2": args.sam2_type, "hq-sam": args.hq_type}
    with tempfile.TemporaryDirectory() as work:
        make_scenes(args.realsamples, args.scenes.split(","), args.copies, Path(work) / "scenes")
        spec = Spec(model_type="tiny", checkpoint="", scenes=str(Path(work) / "scenes"), device=args.device,
                    dtype=None, image_batch=args.image_batch, prompt_chunk=args.prompt_chunk, repeats=1, num_cpus=1,
                    workdir=work)
        tiles = planned_tiles(spec)
    rows = []
    for engine in args.engines.split(","):
        started = time.monotonic()
        rows.append(run_engine(engine, types[engine], tiles, args))
        print(f"{engine} {types[engine]}: {time.monotonic() - started:.0f} s", flush=True)
    text = markdown(rows, args)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "engines.json").write_text(json.dumps(rows, indent=1))
        (args.out / "engines.md").write_text(text + "\n")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", default="P0004,P1888")
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--realsamples", type=Path, default=REALSAMPLES)
    add_arguments(parser)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
