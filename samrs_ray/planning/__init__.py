"""From a scene's files to tile rows: planning a scene (plan.py) into windows (tiling.py), the
prompts of each tile's objects (prompts.py) and the polygon geometry they share (geometry.py).
Nothing here knows of Ray."""
