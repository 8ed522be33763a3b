"""The dataset on storage: where each file goes (layout.py), the Parquet manifests (manifest.py),
committed versions and leases (versions.py), what is already done and the clean-up
(incremental.py), the scene cache (scene_cache.py), and bytes on any fsspec store
(storage.py). Nothing here knows of Ray."""
