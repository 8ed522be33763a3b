"""The model types a job can ask for, per engine, and their official release files.

Kept apart from checkpoint.py so that the configuration, the CLI and the Ray stages that
never build a model can name model types without importing torch and segment_anything
(about 3 s of CPU per process).
"""

MODEL_TYPES = ("vit_h", "vit_l", "vit_b", "tiny")

# The engine's batch sizes, written once for the engine (masks/engine_settings.py) and the job (config.py):
# tiles per image-encoder call, and prompts per decoder call on GPUs and on CPUs (where big
# chunks cost memory faults; bench/RESULTS.md).
IMAGE_BATCH = 4
PROMPT_CHUNK_GPU, PROMPT_CHUNK_CPU = 64, 4


# The release files named in the segment-anything README.
OFFICIAL_CHECKPOINTS: dict[str, str] = {
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
}

# The other engines' model types ('tiny': a FAKE with seeded random weights, for tests) and the
# release files named in the sam2 and sam-hq READMEs.
SAM2_TYPES = ("hiera_t", "hiera_s", "hiera_b+", "hiera_l", "tiny")
HQ_TYPES = ("vit_b", "vit_l", "vit_h", "tiny")
ENGINE_CHECKPOINTS: dict[str, dict[str, str]] = {
    "sam2": {
        "hiera_t": "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_tiny.pt",
        "hiera_s": "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_small.pt",
        "hiera_b+": "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_base_plus.pt",
        "hiera_l": "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_large.pt",
    },
    "hq-sam": {
        "vit_b": "https://huggingface.co/lkeab/hq-sam/resolve/main/sam_hq_vit_b.pth",
        "vit_l": "https://huggingface.co/lkeab/hq-sam/resolve/main/sam_hq_vit_l.pth",
        "vit_h": "https://huggingface.co/lkeab/hq-sam/resolve/main/sam_hq_vit_h.pth",
    },
}
