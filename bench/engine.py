"""Benchmark: the SAM engine (SamBackend.predict) against the naive loop SAMRS used.

Same model, same weights, same tiles, one run:
  (a) naive: per tile SamPredictor.set_image, then predict_torch on batches of 20 boxes (fp32)
  (b) engine: SamBackend.predict on all tiles (image_batch tiles per encoder call,
      prompt_chunk boxes per decoder call, --dtype)
It prints tiles/s and boxes/s for each, the ratio b/a, and how well the masks agree.

Tiles are real sample crops (DOTA P0004 as two 824x1024 windows, P1888 whole at 712x557)
with their real horizontal boxes when ../shared/data/realsamples exists, else synthetic.
Weights are random (speed does not depend on them): 'tiny' is a FAKE few-layer SAM.

    .venv/bin/python bench/engine.py --model-type tiny --tiles 6
    .venv/bin/python bench/engine.py --model-type vit_h --device cuda --dtype bfloat16 --tiles 32
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from segment_anything import SamPredictor

from samrs_ray.masks.backend import PromptBatch, TileMasks
from samrs_ray.masks.checkpoint import MODEL_TYPES, build_sam
from samrs_ray.masks.sam import EngineSettings, SamBackend

REALSAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "realsamples"
NAIVE_BOX_BATCH = 20  # what SAMRS's script used


@dataclass
class Timing:
    seconds: float
    tiles: int
    boxes: int

    def line(self, label: str) -> str:
        return (f"{label:<8} {self.seconds:8.2f} s  {self.tiles / self.seconds:8.3f} tiles/s  "
                f"{self.boxes / self.seconds:8.2f} boxes/s")


def real_tiles(root: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(tile, boxes (N, 4) xyxy) from the real samples: windows as a 1024/824 tiler cuts them."""
    from samrs_ray.formats.dota import parse_dota

    tiles = []
    for name, windows in (("P0004", (0, 440)), ("P1888", (0,))):
        image = np.array(Image.open(root / f"dota/images/{name}.png").convert("RGB"))
        labels = parse_dota((root / f"dota/labelTxt/{name}.txt").read_bytes(), f"{name}.txt")
        for y0 in windows:
            tile = image[y0 : y0 + 1024]
            h, w = tile.shape[:2]
            boxes = []
            for annotation in labels.annotations:
                x0, top, x1, bottom = annotation.hbox
                clipped = np.clip([x0, top - y0, x1, bottom - y0], 0, [w, h, w, h])
                if (clipped[2] - clipped[0]) * (clipped[3] - clipped[1]) >= 0.7 * (x1 - x0) * (bottom - top):
                    boxes.append(clipped)
            tiles.append((tile, np.array(boxes, np.float32).reshape(-1, 4)))
    return tiles


def synthetic_tiles(count: int, boxes_per_tile: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    tiles = []
    for _ in range(count):
        corner = rng.uniform(0, 900, (boxes_per_tile, 2))
        boxes = np.concatenate([corner, corner + rng.uniform(8, 120, (boxes_per_tile, 2))], axis=1)
        tiles.append((rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8), boxes.astype(np.float32)))
    return tiles


def run_naive(model, tiles, device: torch.device) -> list[TileMasks]:
    """SAMRS's loop: set_image per tile, predict_torch on batches of 20 boxes, fp32."""
    predictor = SamPredictor(model)
    results = []
    with torch.no_grad():
        for tile, boxes in tiles:
            predictor.set_image(tile)
            masks, scores = [], []
            for start in range(0, len(boxes), NAIVE_BOX_BATCH):
                chunk = torch.as_tensor(boxes[start : start + NAIVE_BOX_BATCH], device=device)
                chunk = predictor.transform.apply_boxes_torch(chunk, tile.shape[:2])
                m, s, _ = predictor.predict_torch(None, None, boxes=chunk, multimask_output=False)
                masks.append(m[:, 0].cpu().numpy())
                scores.append(s[:, 0].cpu().numpy())
            h, w = tile.shape[:2]
            results.append(TileMasks(np.concatenate(masks) if masks else np.zeros((0, h, w), bool),
                                     np.concatenate(scores) if scores else np.zeros(0, np.float32)))
    return results


def timed(run, device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    result = run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return result, time.perf_counter() - started


def agreement(a: list[TileMasks], b: list[TileMasks]) -> tuple[float, float, int]:
    """Mean mask IoU between runs, share of bit-identical masks, most pixels flipped in one mask."""
    ious, same, worst = [], 0, 0
    for x, y in zip(a, b):
        for m, n in zip(x.masks, y.masks):
            union = (m | n).sum()
            ious.append(1.0 if union == 0 else (m & n).sum() / union)
            flipped = int((m != n).sum())
            same += flipped == 0
            worst = max(worst, flipped)
    return float(np.mean(ious)) if ious else 1.0, same / max(len(ious), 1), worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-type", choices=MODEL_TYPES, default="tiny")
    parser.add_argument("--tiles", type=int, default=6)
    parser.add_argument("--boxes-per-tile", type=int, default=0,
                        help="cap per tile; 0 = all real boxes (synthetic: 40)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--image-batch", type=int, default=EngineSettings.image_batch)
    parser.add_argument("--prompt-chunk", type=int, default=EngineSettings.prompt_chunk)
    parser.add_argument("--realsamples", type=Path, default=REALSAMPLES)
    args = parser.parse_args()

    device = torch.device(args.device)
    if (args.realsamples / "dota/images/P0004.png").is_file():
        pool, source = real_tiles(args.realsamples), "real samples (P0004 x2, P1888)"
    else:
        pool, source = synthetic_tiles(3, args.boxes_per_tile or 40), "synthetic 1024x1024"
    tiles = [pool[i % len(pool)] for i in range(args.tiles)]
    if args.boxes_per_tile:
        tiles = [(tile, boxes[: args.boxes_per_tile]) for tile, boxes in tiles]
    n_boxes = sum(len(boxes) for _, boxes in tiles)

    torch.manual_seed(0)
    model = build_sam(args.model_type).to(device).eval()  # random weights: speed does not depend on them
    settings = EngineSettings(device=args.device, dtype=args.dtype,
                              image_batch=args.image_batch, prompt_chunk=args.prompt_chunk)
    engine = SamBackend(model, args.model_type, "", settings)
    images, prompts = [t for t, _ in tiles], [
        PromptBatch("hbox", b, np.full((len(b), 8), np.nan, np.float32)) for _, b in tiles
    ]

    print(f"model sam-{args.model_type} (random weights), {args.device} {args.dtype}, "
          f"torch threads {torch.get_num_threads()}, {source}: {len(tiles)} tiles, {n_boxes} boxes; "
          f"engine image_batch={args.image_batch} prompt_chunk={args.prompt_chunk}")
    # warm-up on one tile each, so neither side pays for first-call allocation
    run_naive(model, tiles[:1], device)
    engine.predict(images[:1], prompts[:1])

    naive, naive_s = timed(lambda: run_naive(model, tiles, device), device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    batched, engine_s = timed(lambda: engine.predict(images, prompts), device)
    a, b = Timing(naive_s, len(tiles), n_boxes), Timing(engine_s, len(tiles), n_boxes)
    print(a.line("(a) naive"))
    print(b.line("(b) engine"))
    print(f"ratio b/a {naive_s / engine_s:.2f}x")
    if device.type == "cuda":
        print(f"engine peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    mean_iou, identical, worst = agreement(naive, batched)
    print(f"masks a vs b: mean IoU {mean_iou:.6f}, bit-identical {identical:.1%}, "
          f"most pixels flipped in one mask {worst}")


if __name__ == "__main__":
    main()
