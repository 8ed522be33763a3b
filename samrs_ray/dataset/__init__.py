"""The dataset on storage: where each file goes (layout.py), the Parquet manifests (manifest.py),
committed versions and leases (versions.py), the tables as Delta Lake tables that any engine
reads (delta.py), what is already done and the clean-up (incremental.py), the scene cache
(scene_cache.py), and bytes on any fsspec store with its one retry policy and the run's store
error budget's hook (storage.py). Nothing here knows of Ray."""
