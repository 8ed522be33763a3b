"""What people look at: statistics (stats.py) and their figures (figures.py), the gallery page
(gallery.py), and mask IoU against ground truth (evaluate.py). shard_tasks.py maps a function
over a version's shards, in this process or, for large versions, on Ray."""
