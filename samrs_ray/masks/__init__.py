"""The mask engine: backends that turn a tile and its prompts into masks (SAM in sam.py with
its fast attention and host-memory helpers, the box-fill baseline in box.py), and loading
SAM checkpoints (checkpoint.py). What becomes of the masks is encoding/'s business."""
