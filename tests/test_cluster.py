"""The Kubernetes/KubeRay manifests in cluster/ are ones the API server and KubeRay accept, agree
with each other and with the image, keep credentials out, and run a command line the CLI accepts."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
NAMESPACE = "samrs"
ENTRY_SCRIPT = ["python", "jobs/generate.py"]
MANIFESTS = ["raycluster.yaml", "rayjob.yaml", "raycronjob.yaml", "cronjob.yaml", "secret.example.yaml"]
CRON = re.compile(r"^\S+ \S+ \S+ \S+ \S+$")


def load(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((CLUSTER / name).read_text()) if doc is not None]


def one(name: str, kind: str) -> dict[str, Any]:
    docs = [d for d in load(name) if d["kind"] == kind]
    assert len(docs) == 1, f"{name}: expected one {kind}, found {len(docs)}"
    return docs[0]


def nightly_configmap() -> dict[str, Any]:
    return one("cronjob.yaml", "ConfigMap")


def embedded_rayjob() -> dict[str, Any]:
    """The RayJob the CronJob's pod creates every night (kept in its ConfigMap)."""
    return yaml.safe_load(nightly_configmap()["data"]["rayjob.yaml"])


def rayjob_specs() -> dict[str, dict[str, Any]]:
    """Every RayJob spec in cluster/, by where it lives."""
    return {
        "rayjob.yaml": one("rayjob.yaml", "RayJob")["spec"],
        "raycronjob.yaml jobTemplate": one("raycronjob.yaml", "RayCronJob")["spec"]["jobTemplate"],
        "cronjob.yaml ConfigMap rayjob.yaml": embedded_rayjob()["spec"],
    }


def cluster_specs() -> dict[str, dict[str, Any]]:
    specs = {"raycluster.yaml": one("raycluster.yaml", "RayCluster")["spec"]}
    specs.update({where: spec["rayClusterSpec"] for where, spec in rayjob_specs().items()})
    return specs


def pod_specs(cluster_spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "head", cluster_spec["headGroupSpec"]["template"]["spec"]
    for group in cluster_spec["workerGroupSpecs"]:
        yield group["groupName"], group["template"]["spec"]


def all_objects() -> Iterator[tuple[str, dict[str, Any]]]:
    for name in MANIFESTS:
        for doc in load(name):
            yield name, doc
    yield "cronjob.yaml ConfigMap rayjob.yaml", embedded_rayjob()


def containers_anywhere(node: Any) -> Iterator[dict[str, Any]]:
    """Every container (and init container) in any nested structure."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from value
            else:
                yield from containers_anywhere(value)
    elif isinstance(node, list):
        for item in node:
            yield from containers_anywhere(item)


def entrypoint_args(entrypoint: str) -> list[str]:
    words = shlex.split(entrypoint)
    assert words[:2] == ENTRY_SCRIPT, f"entrypoint must start with {' '.join(ENTRY_SCRIPT)}: {entrypoint!r}"
    return words[2:]


def dockerfile_args() -> dict[str, str]:
    text = (CLUSTER / "Dockerfile").read_text()
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.M))


def dockerfile_workdir() -> str:
    (workdir,) = re.findall(r"^WORKDIR (\S+)$", (CLUSTER / "Dockerfile").read_text(), flags=re.M)
    return workdir


# --- every manifest -------------------------------------------------------------------------


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_parses_with_identity_and_namespace(name: str) -> None:
    docs = load(name)
    assert docs, f"{name} is empty"
    for doc in docs:
        assert re.fullmatch(r"v1|[a-z0-9.]+/v\d+\w*", str(doc.get("apiVersion"))), doc.get("apiVersion")
        assert isinstance(doc.get("kind"), str) and doc["kind"]
        assert doc["metadata"].get("name"), f"{name}: {doc['kind']} without metadata.name"
        assert doc["metadata"].get("namespace") == NAMESPACE, f"{name}: {doc['kind']} not in {NAMESPACE}"


def test_kinds_and_api_versions() -> None:
    assert one("raycluster.yaml", "RayCluster")["apiVersion"] == "ray.io/v1"
    assert one("rayjob.yaml", "RayJob")["apiVersion"] == "ray.io/v1"
    assert one("raycronjob.yaml", "RayCronJob")["apiVersion"] == "ray.io/v1"
    assert one("cronjob.yaml", "CronJob")["apiVersion"] == "batch/v1"
    assert one("cronjob.yaml", "Role")["apiVersion"] == "rbac.authorization.k8s.io/v1"
    assert one("cronjob.yaml", "RoleBinding")["apiVersion"] == "rbac.authorization.k8s.io/v1"
    assert one("secret.example.yaml", "Secret")["apiVersion"] == "v1"
    embedded = embedded_rayjob()
    assert (embedded["apiVersion"], embedded["kind"]) == ("ray.io/v1", "RayJob")


# --- the Ray cluster ------------------------------------------------------------------------


@pytest.mark.parametrize("where", list(cluster_specs()))
def test_cluster_spec_has_what_kuberay_requires(where: str) -> None:
    spec = cluster_specs()[where]
    assert spec["rayVersion"] == dockerfile_args()["RAY_VERSION"], "rayVersion must match the image's Ray"
    assert spec["enableInTreeAutoscaling"] is True

    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0", "the head is CPU-only"
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0", "the dashboard must be reachable"
    head_container = head["template"]["spec"]["containers"][0]
    assert 8265 in [p["containerPort"] for p in head_container["ports"]]
    assert "nvidia.com/gpu" not in head_container.get("resources", {}).get("limits", {})

    groups = spec["workerGroupSpecs"]
    assert groups and len({g["groupName"] for g in groups}) == len(groups)
    for group in groups:
        assert 0 == group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]
    gpu_groups = [
        g for g in groups
        if any(c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu") == 1
               for c in g["template"]["spec"]["containers"])
    ]
    assert gpu_groups, "no worker group asks for nvidia.com/gpu: 1"
    assert all(g["maxReplicas"] >= 1 for g in gpu_groups)

    for group_name, pod in pod_specs(spec):
        assert pod["containers"], group_name
        for container in pod["containers"]:
            assert container["name"] and container["image"], group_name
    for params in [head["rayStartParams"], *[g["rayStartParams"] for g in groups]]:
        # KubeRay's rayStartParams is map[string]string: a bare number or bool is rejected.
        assert all(isinstance(v, str) for v in params.values()), params


def test_every_copy_of_the_cluster_spec_is_identical() -> None:
    specs = cluster_specs()
    reference = specs.pop("raycluster.yaml")
    for where, spec in specs.items():
        assert spec == reference, f"{where}: rayClusterSpec drifted from raycluster.yaml"


def test_every_ray_pod_uses_the_same_image_and_runs_as_non_root() -> None:
    images = set()
    for where, spec in cluster_specs().items():
        for group_name, pod in pod_specs(spec):
            assert pod["securityContext"]["runAsNonRoot"] is True, f"{where} {group_name}"
            images.update(c["image"] for c in pod["containers"])
    cron_pod = one("cronjob.yaml", "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    images.update(c["image"] for c in cron_pod["containers"])
    assert len(images) == 1, f"manifests use different images: {images}"


# --- RayJobs --------------------------------------------------------------------------------


@pytest.mark.parametrize("where", list(rayjob_specs()))
def test_rayjob_spec_has_what_kuberay_requires(where: str) -> None:
    spec = rayjob_specs()[where]
    assert spec["entrypoint"].strip()
    assert spec["shutdownAfterJobFinishes"] is True
    assert isinstance(spec["ttlSecondsAfterFinished"], int) and spec["ttlSecondsAfterFinished"] >= 0
    assert 0 < spec["activeDeadlineSeconds"] < 24 * 3600, "a stuck night must end before the next"
    assert "headGroupSpec" in spec["rayClusterSpec"]
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert isinstance(runtime_env, dict)
    assert runtime_env["working_dir"] == dockerfile_workdir(), "jobs/generate.py lives in the image's WORKDIR"
    assert "env_vars" not in runtime_env or not any(k.startswith("AWS_") for k in runtime_env["env_vars"])


def test_one_off_and_nightly_run_the_same_job() -> None:
    specs = list(rayjob_specs().values())
    assert all(spec == specs[0] for spec in specs[1:])


@pytest.mark.parametrize("where", list(rayjob_specs()))
def test_entrypoint_is_accepted_by_the_cli_parser(where: str) -> None:
    from samrs_ray.cli import build_parser  # the contract: samrs-ray generate and jobs/generate.py

    args = entrypoint_args(rayjob_specs()[where]["entrypoint"])
    parser = build_parser()
    try:
        parsed = parser.parse_args(["generate", *args])
    except SystemExit as error:
        pytest.fail(f"{where}: `samrs-ray generate` rejects {args}: exit {error.code}")
    values = {str(v) for v in vars(parsed).values()}
    for uri in [a for a in args if a.startswith("s3://")]:
        assert uri in values, f"{where}: {uri} was not parsed into any option"
    assert {"sota", "sam", "vit_h"} <= values
    # The check can fail: the same parser rejects a flag it does not know.
    with pytest.raises(SystemExit):
        parser.parse_args(["generate", *args, "--no-such-flag"])


def test_entrypoint_script_exists() -> None:
    assert (REPO / ENTRY_SCRIPT[1]).is_file(), f"manifests run {ENTRY_SCRIPT[1]}, which is missing"


# --- schedules ------------------------------------------------------------------------------


def test_raycronjob_uses_only_confirmed_fields() -> None:
    spec = one("raycronjob.yaml", "RayCronJob")["spec"]
    assert CRON.match(spec["schedule"]), spec["schedule"]
    # Fields of KubeRay 1.6's alpha RayCronJob (sample + quick start); anything else may be
    # rejected or silently pruned by the CRD's schema.
    assert set(spec) <= {"schedule", "jobTemplate", "suspend"}
    assert spec.get("suspend", False) is False


def test_cronjob_forbids_overlap_and_creates_the_rayjob() -> None:
    cronjob = one("cronjob.yaml", "CronJob")["spec"]
    assert CRON.match(cronjob["schedule"]), cronjob["schedule"]
    assert cronjob["concurrencyPolicy"] == "Forbid"
    job = cronjob["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] > rayjob_specs()["cronjob.yaml ConfigMap rayjob.yaml"]["activeDeadlineSeconds"], (
        "the waiting pod must outlive the RayJob's own deadline, or Forbid stops protecting"
    )
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")

    account = one("cronjob.yaml", "ServiceAccount")["metadata"]["name"]
    assert pod["serviceAccountName"] == account
    role = one("cronjob.yaml", "Role")
    assert any(
        "ray.io" in rule["apiGroups"] and "rayjobs" in rule["resources"] and "create" in rule["verbs"]
        for rule in role["rules"]
    ), "the Role must allow creating rayjobs.ray.io"
    binding = one("cronjob.yaml", "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
    assert {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE} in binding["subjects"]

    configmap = nightly_configmap()
    (volume,) = [v for v in pod["volumes"] if "configMap" in v]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    (container,) = pod["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    script_path = container["command"][-1]
    assert script_path == f"{mount['mountPath']}/run-nightly.sh" and "run-nightly.sh" in configmap["data"]
    script = configmap["data"]["run-nightly.sh"]
    assert f"kubectl create -f {mount['mountPath']}/rayjob.yaml" in script


def test_nightly_script_is_valid_bash(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    assert bash, "bash is needed to check the nightly script"
    script = tmp_path / "run-nightly.sh"
    script.write_text(nightly_configmap()["data"]["run-nightly.sh"])
    checked = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_embedded_rayjob_gets_a_new_name_each_night() -> None:
    metadata = embedded_rayjob()["metadata"]
    assert "name" not in metadata, "`kubectl create` of a fixed name fails on the second night"
    assert metadata["generateName"].endswith("-")
    assert metadata["namespace"] == NAMESPACE
    # The script prunes old nights by this label.
    assert metadata["labels"]["app.kubernetes.io/component"] == "nightly"
    assert "app.kubernetes.io/component=nightly" in nightly_configmap()["data"]["run-nightly.sh"]


# --- credentials ----------------------------------------------------------------------------

SECRET_WORDS = re.compile(r"(SECRET|PASSWORD|TOKEN|ACCESS_KEY|AWS_)", re.I)
AWS_KEY_ID = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")


def test_credentials_come_only_from_the_secret() -> None:
    secret_name = one("secret.example.yaml", "Secret")["metadata"]["name"]
    ray_containers = 0
    for where, doc in all_objects():
        if doc["kind"] == "Secret":
            continue
        for container in containers_anywhere(doc.get("spec", {})):
            for env in container.get("env", []):
                if SECRET_WORDS.search(env["name"]):
                    assert "value" not in env, f"{where}: literal value for {env['name']}"
                    assert "secretKeyRef" in env["valueFrom"], f"{where}: {env['name']} not from a Secret"
            if container["name"].startswith("ray-"):
                ray_containers += 1
                refs = [e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e]
                assert refs == [secret_name], f"{where}: {container['name']} does not load {secret_name}"
    assert ray_containers >= 4 * 3, "expected head + 2 worker groups in 4 cluster specs"


@pytest.mark.parametrize("path", [*(CLUSTER / m for m in MANIFESTS), REPO / "jobs" / "runtime_env.yaml"])
def test_no_key_material_in_files(path: Path) -> None:
    text = path.read_text()
    assert not AWS_KEY_ID.search(text), f"{path.name}: looks like an AWS access key id"
    assert not re.search(r"aws_secret_access_key\s*[:=]\s*['\"]?[A-Za-z0-9/+]{30,}", text, re.I), path.name


def test_secret_example_holds_placeholders_only() -> None:
    secret = one("secret.example.yaml", "Secret")
    data = secret["stringData"]
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(data)
    assert "REPLACE" in data["AWS_ACCESS_KEY_ID"] and "REPLACE" in data["AWS_SECRET_ACCESS_KEY"]
    assert "example" in data.get("AWS_ENDPOINT_URL", "example")


# --- image and runtime env ------------------------------------------------------------------


def test_dockerfile_builds_on_ray_with_cuda_torch_as_non_root() -> None:
    text = (CLUSTER / "Dockerfile").read_text()
    args = dockerfile_args()
    (base,) = re.findall(r"^FROM (\S+)", text, flags=re.M)
    resolved = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
    assert re.fullmatch(r"rayproject/ray:\d+\.\d+\.\d+-py3\d+-cu\d+", resolved), resolved
    assert resolved.endswith(f"-{args['CUDA']}") and "whl/${CUDA}" in text, "base CUDA and torch CUDA differ"
    users = re.findall(r"^USER (\S+)", text, flags=re.M)
    assert users and users[-1] not in ("root", "0"), "the image must end as a non-root user"
    assert re.search(r"pip install [^\n]*\s\.\s", text), "the image must install this repository"
    assert (CLUSTER / "Dockerfile.dockerignore").is_file()


def test_runtime_env_file_is_valid_for_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.runtime_env import RuntimeEnv

    runtime_env = yaml.safe_load((REPO / "jobs" / "runtime_env.yaml").read_text())
    assert runtime_env["working_dir"] == "."
    assert not any(SECRET_WORDS.search(k) for k in runtime_env.get("env_vars", {}))
    monkeypatch.chdir(REPO)  # `ray job submit` runs from the repository root
    validated = RuntimeEnv(**runtime_env)
    assert validated.working_dir() == "."
