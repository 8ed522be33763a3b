"""The mask engines, by name in engines.py: backends that turn a tile and its prompts into masks.
SAM: the batched backend (sam.py), its settings (engine_settings.py), tensor helpers
(tensors.py), fast attention and host-memory helpers, its checkpoints (checkpoint.py,
checkpoint_files.py) and how the job checks and builds it (sam_engine.py). The box-fill
baseline: box.py. What becomes of the masks is encoding/'s business."""
