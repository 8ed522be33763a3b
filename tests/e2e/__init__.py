"""End-to-end tests, by feature: the job run as users run it (local Ray, S3, several nodes, KubeRay manifests, the README)."""
