"""Entry point for `ray job submit`: the same job as `samrs-ray generate`, on the cluster the
job was submitted to.

    ray job submit --address http://HEAD:8265 --runtime-env jobs/runtime_env.yaml -- \
        python jobs/generate.py --preset sota --images s3://... --labels s3://... --out s3://...

--model picks the mask engine: sam (default), sam2 (SAM 2.1), hq-sam (HQ-SAM) or box; each takes
its own --model-type (`samrs-ray generate --help` lists them).
"""

import sys

from samrs_ray.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--address" not in argv:
        argv += ["--address", "auto"]  # inside a Ray job: join its cluster, never start another
    sys.exit(main(["generate", *argv]))
