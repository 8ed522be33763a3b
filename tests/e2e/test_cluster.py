"""The KubeRay manifests: cluster/base holds the job once, cluster/overlays/* render the variants
with `kubectl kustomize`. Every rendered object must pass the schema the API server checks it
against, strictly (KubeRay kinds against the real CRDs, core kinds with kubernetes-validate); the
variants must agree with each other and with the image, keep credentials out, and run a command
line the CLI accepts."""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests import REPO, SHARED

CLUSTER = REPO / "cluster"
OVERLAYS = CLUSTER / "overlays"
BASE_RAYJOB = CLUSTER / "base" / "rayjob.yaml"
CRDS = SHARED / "data" / "kuberay-crds"  # see its SOURCES.md
KUBERAY_VERSIONS = ["1.6.2", "1.7.0"]
K8S_VERSION = "1.37"  # the newest Kubernetes whose schemas kubernetes-validate ships
NAMESPACE = "samrs"
ENTRY_SCRIPT = ["python", "jobs/generate.py"]
CRON = re.compile(r"^\S+ \S+ \S+ \S+ \S+$")
# What each overlay renders (kinds, sorted).
VARIANTS = {
    "raycluster": ["RayCluster"],
    "rayjob": ["RayJob"],
    "raycronjob": ["RayCronJob"],
    "cronjob": ["ConfigMap", "CronJob", "Role", "RoleBinding", "ServiceAccount"],
}


# --- rendering ------------------------------------------------------------------------------


@functools.cache
def _kustomize(variant: str) -> str:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(OVERLAYS / variant)], capture_output=True, text=True, timeout=60
    )
    assert rendered.returncode == 0, f"kubectl kustomize cluster/overlays/{variant}:\n{rendered.stderr}"
    return rendered.stdout


def render(variant: str) -> list[dict[str, Any]]:
    """The objects `kubectl apply -k cluster/overlays/<variant>` would send (a fresh copy)."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: the variants are rendered with `kubectl kustomize`")
    return [doc for doc in yaml.safe_load_all(_kustomize(variant)) if doc is not None]


def one(variant: str, kind: str) -> dict[str, Any]:
    (doc,) = [d for d in render(variant) if d["kind"] == kind]
    return doc


@dataclass
class NightlyRun:
    returncode: int
    output: str
    rayjob: dict[str, Any]  # what the script sent to `kubectl create`
    kubectl_calls: list[str]


# kubectl for run-nightly.sh without an API server: `patch --local` needs none, so the real kubectl
# runs it; the rest answers as the API server would for a RayJob that ends with $JOB_STATUS.
FAKE_KUBECTL = """#!/bin/bash
echo "$*" >> "$CALLS"
case "$1" in
  patch) exec "$REAL_KUBECTL" "$@" ;;
  create) cat > "$CREATED"; echo rayjob.ray.io/samrs-nightly-x7k2p ;;
  get)
    case "$*" in
      *jobDeploymentStatus*) echo Complete ;;
      *jobStatus*) echo "$JOB_STATUS" ;;
      *) printf 'rayjob.ray.io/night-%s\\n' 1 2 3 ;;  # the nightly RayJobs, oldest first
    esac ;;
  delete) ;;
  *) exit 2 ;;
esac
"""


def run_nightly(tmp_path: Path, job_status: str, keep_nights: int) -> NightlyRun:
    """Run the CronJob pod's script as the pod does: from the rendered ConfigMap's files."""
    configmap = one("cronjob", "ConfigMap")
    mount = tmp_path / "etc-samrs-nightly"
    mount.mkdir()
    for key, text in configmap["data"].items():
        (mount / key).write_text(text)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(FAKE_KUBECTL)
    (bin_dir / "kubectl").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "REAL_KUBECTL": shutil.which("kubectl"),
        "CALLS": str(tmp_path / "calls"),
        "CREATED": str(tmp_path / "created.yaml"),
        "JOB_STATUS": job_status,
        "KEEP_NIGHTS": str(keep_nights),
    }
    done = subprocess.run(["bash", str(mount / "run-nightly.sh")], env=env, capture_output=True,
                          text=True, timeout=60)
    assert (tmp_path / "created.yaml").is_file(), f"the script created no RayJob:\n{done.stdout}{done.stderr}"
    return NightlyRun(
        returncode=done.returncode,
        output=done.stdout + done.stderr,
        rayjob=yaml.safe_load((tmp_path / "created.yaml").read_text()),
        kubectl_calls=(tmp_path / "calls").read_text().splitlines(),
    )


@pytest.fixture(scope="module")
def nightly_rayjob(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The RayJob the nightly CronJob's pod creates."""
    return run_nightly(tmp_path_factory.mktemp("nightly"), "SUCCEEDED", keep_nights=14).rayjob


def kuberay_objects(variant: str, nightly_rayjob: dict[str, Any]) -> list[dict[str, Any]]:
    """The variant's KubeRay objects, counting the RayJob that the CronJob creates every night."""
    objects = [o for o in render(variant) if o["apiVersion"].startswith("ray.io/")]
    return objects + [nightly_rayjob] if variant == "cronjob" else objects


@pytest.fixture(scope="module")
def cluster_specs(nightly_rayjob: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every Ray cluster spec the variants bring, by where it lives."""
    return {
        "raycluster": one("raycluster", "RayCluster")["spec"],
        "rayjob": one("rayjob", "RayJob")["spec"]["rayClusterSpec"],
        "raycronjob": one("raycronjob", "RayCronJob")["spec"]["jobTemplate"]["rayClusterSpec"],
        "cronjob's nightly RayJob": nightly_rayjob["spec"]["rayClusterSpec"],
    }


@pytest.fixture(scope="module")
def rayjob_specs(nightly_rayjob: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every RayJob spec the variants run, by where it lives."""
    return {
        "rayjob": one("rayjob", "RayJob")["spec"],
        "raycronjob": one("raycronjob", "RayCronJob")["spec"]["jobTemplate"],
        "cronjob's nightly RayJob": nightly_rayjob["spec"],
    }


def pod_specs(cluster_spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "head", cluster_spec["headGroupSpec"]["template"]["spec"]
    for group in cluster_spec["workerGroupSpecs"]:
        yield group["groupName"], group["template"]["spec"]


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


def dockerfile_args() -> dict[str, str]:
    text = (CLUSTER / "Dockerfile").read_text()
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.M))


def dockerfile_workdir() -> str:
    (workdir,) = re.findall(r"^WORKDIR (\S+)$", (CLUSTER / "Dockerfile").read_text(), flags=re.M)
    return workdir


# --- schemas --------------------------------------------------------------------------------


def strict_schema(node: dict[str, Any]) -> dict[str, Any]:
    """A CRD's OpenAPI v3 schema as JSON Schema that rejects every field the schema does not name.

    The API server prunes such fields silently; here they are errors, except under a node that
    says x-kubernetes-preserve-unknown-fields. (`nullable` occurs only under status, which
    manifests never set.)
    """
    node = dict(node)
    if "properties" in node:
        node["properties"] = {name: strict_schema(sub) for name, sub in node["properties"].items()}
        if "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = strict_schema(node["additionalProperties"])
    if "items" in node:
        node["items"] = strict_schema(node["items"])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in node:
            node[key] = [strict_schema(sub) for sub in node[key]]
    if node.get("x-kubernetes-int-or-string"):
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return node


@functools.cache
def crd_validator(version: str, kind: str) -> jsonschema.Draft4Validator:
    path = CRDS / version / f"ray.io_{kind.lower()}s.yaml"
    if not path.is_file():
        pytest.fail(f"KubeRay {version} CRD for {kind} not found at {path} (see {CRDS}/SOURCES.md)")
    crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # ~1 MB each
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    # OpenAPI v3.0 schemas are JSON Schema draft 4 plus x-kubernetes-* extensions.
    return jsonschema.Draft4Validator(strict_schema(v1["schema"]["openAPIV3Schema"]))


def crd_errors(obj: dict[str, Any], version: str) -> list[str]:
    return sorted(f"{e.json_path}: {e.message}" for e in crd_validator(version, obj["kind"]).iter_errors(obj))


def k8s_error(obj: dict[str, Any]) -> str | None:
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return f"{'.'.join(map(str, error.path))}: {error.message}"
    return None


# --- every variant --------------------------------------------------------------------------


def test_the_overlays_are_the_documented_variants() -> None:
    assert sorted(p.name for p in OVERLAYS.iterdir() if p.is_dir()) == sorted(VARIANTS)
    readme = (CLUSTER / "README.md").read_text()
    for variant in VARIANTS:
        assert f"kubectl apply -k cluster/overlays/{variant}" in readme, variant


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_renders_its_objects_in_the_namespace(variant: str) -> None:
    docs = render(variant)
    assert sorted(d["kind"] for d in docs) == VARIANTS[variant]
    for doc in docs:
        where = f"{variant}: {doc['kind']}"
        assert doc["metadata"].get("name"), f"{where} without metadata.name"
        assert doc["metadata"].get("namespace") == NAMESPACE, f"{where} not in {NAMESPACE}"
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "samrs-ray", where
    # The base marks its objects local-config; an overlay must not send that mark along.
    assert "config.kubernetes.io/local-config" not in yaml.safe_dump(docs)


@pytest.mark.parametrize("version", KUBERAY_VERSIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_kuberay_objects_match_the_crd_strictly(
    variant: str, version: str, nightly_rayjob: dict[str, Any]
) -> None:
    for obj in kuberay_objects(variant, nightly_rayjob):
        expected = []
        if obj["kind"] == "RayCronJob" and version == "1.6.2":
            # timeZone came with KubeRay 1.7: a 1.6 API server would drop it without a word.
            expected = ["$.spec: Additional properties are not allowed ('timeZone' was unexpected)"]
        assert crd_errors(obj, version) == expected, f"{variant}: {obj['kind']} against KubeRay {version}"


def rename(node: dict[str, Any], old: str, new: str) -> None:
    node[new] = node.pop(old)


# Mistakes in a RayCluster's spec, and the errors each must give.
MISTAKES: dict[str, tuple[Callable[[dict[str, Any]], Any], list[str]]] = {
    "misspelled field": (
        lambda spec: rename(spec, "workerGroupSpecs", "workerGroupSpec"),
        ["$.spec: Additional properties are not allowed ('workerGroupSpec' was unexpected)"],
    ),
    "misspelled required field": (
        lambda spec: rename(spec["workerGroupSpecs"][0], "minReplicas", "minReplica"),
        ["$.spec.workerGroupSpecs[0]: 'minReplicas' is a required property",
         "$.spec.workerGroupSpecs[0]: Additional properties are not allowed ('minReplica' was unexpected)"],
    ),
    "misspelled pod field": (
        lambda spec: rename(spec["headGroupSpec"]["template"]["spec"]["containers"][0], "envFrom", "envFromm"),
        ["$.spec.headGroupSpec.template.spec.containers[0]: "
         "Additional properties are not allowed ('envFromm' was unexpected)"],
    ),
    "wrong type": (
        lambda spec: spec["workerGroupSpecs"][0].update(replicas="0"),
        ["$.spec.workerGroupSpecs[0].replicas: '0' is not of type 'integer'"],
    ),
    "not in the enum": (
        lambda spec: spec["autoscalerOptions"].update(upscalingMode="Fast"),
        ["$.spec.autoscalerOptions.upscalingMode: 'Fast' is not one of ['Default', 'Aggressive', 'Conservative']"],
    ),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_crd_check_rejects_a_mistake(mistake: str) -> None:
    mutate, errors = MISTAKES[mistake]
    raycluster = one("raycluster", "RayCluster")
    mutate(raycluster["spec"])
    assert crd_errors(raycluster, "1.7.0") == sorted(errors)


@pytest.mark.parametrize("variant", VARIANTS)
def test_core_objects_match_the_kubernetes_schemas_strictly(variant: str) -> None:
    for obj in render(variant):
        if not obj["apiVersion"].startswith("ray.io/"):
            assert k8s_error(obj) is None, f"{variant}: {obj['kind']}: {k8s_error(obj)}"


def test_kubernetes_check_rejects_a_misspelled_field() -> None:
    cronjob = one("cronjob", "CronJob")
    rename(cronjob["spec"], "concurrencyPolicy", "concurrencyPolicyy")
    assert "'concurrencyPolicyy' was unexpected" in (k8s_error(cronjob) or "")


# --- the Ray cluster ------------------------------------------------------------------------


def test_every_variant_brings_the_same_cluster(cluster_specs: dict[str, dict[str, Any]]) -> None:
    reference = cluster_specs["raycluster"]
    for where, spec in cluster_specs.items():
        assert spec == reference, f"{where}: cluster spec differs from the RayCluster's"


def test_cluster_spec_has_what_kuberay_requires() -> None:
    spec = one("raycluster", "RayCluster")["spec"]
    assert spec["rayVersion"] == dockerfile_args()["RAY_VERSION"], "rayVersion must match the image's Ray"
    assert spec["enableInTreeAutoscaling"] is True
    # Ray 2.60 uses token authentication: KubeRay makes the token and hands it to every Ray pod.
    assert spec["authOptions"] == {"mode": "token"}

    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0", "the head runs no tasks or actors"
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


def test_every_ray_pod_uses_the_same_image_and_runs_as_non_root(
    cluster_specs: dict[str, dict[str, Any]],
) -> None:
    images = set()
    for where, spec in cluster_specs.items():
        for group_name, pod in pod_specs(spec):
            assert pod["securityContext"]["runAsNonRoot"] is True, f"{where} {group_name}"
            images.update(c["image"] for c in pod["containers"])
    cron_pod = one("cronjob", "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    images.update(c["image"] for c in cron_pod["containers"])
    assert len(images) == 1, f"manifests use different images: {images}"


# --- RayJobs --------------------------------------------------------------------------------


def test_every_variant_runs_the_same_job(rayjob_specs: dict[str, dict[str, Any]]) -> None:
    reference = rayjob_specs["rayjob"]
    for where, spec in rayjob_specs.items():
        assert spec == reference, f"{where}: RayJob spec differs from the one-off RayJob's"


def test_rayjob_spec_has_what_kuberay_requires() -> None:
    spec = one("rayjob", "RayJob")["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] >= 0
    assert 0 < spec["activeDeadlineSeconds"] < 24 * 3600, "a stuck night must end before the next"
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env["working_dir"] == dockerfile_workdir(), "jobs/generate.py lives in the image's WORKDIR"
    assert not any(k.startswith("AWS_") for k in runtime_env.get("env_vars", {}))


def test_entrypoint_declares_the_gpu_and_the_cli_accepts_it() -> None:
    from samrs_ray.cli.parser import build_parser  # the contract: samrs-ray generate and jobs/generate.py

    words = shlex.split(one("rayjob", "RayJob")["spec"]["entrypoint"])
    assert words[:2] == ENTRY_SCRIPT, f"the entrypoint must start with {' '.join(ENTRY_SCRIPT)}"
    args = words[2:]
    parser = build_parser()
    try:
        parsed = parser.parse_args(["generate", *args])
    except SystemExit as error:
        pytest.fail(f"`samrs-ray generate` rejects {args}: exit {error.code}")
    # SAM on GPU workers that idle at 0 pods: only a declared GPU makes the autoscaler start one.
    assert (parsed.preset, parsed.model, parsed.model_type) == ("sota", "sam", "vit_h")
    assert "--gpus-per-actor" in args and parsed.gpus_per_actor == 1
    values = {str(v) for v in vars(parsed).values()}
    for uri in [a for a in args if a.startswith("s3://")]:
        assert uri in values, f"{uri} was not parsed into any option"
    # The check can fail: the same parser rejects a flag it does not know.
    with pytest.raises(SystemExit):
        parser.parse_args(["generate", *args, "--no-such-flag"])


def test_entrypoint_script_exists() -> None:
    assert (REPO / ENTRY_SCRIPT[1]).is_file(), f"manifests run {ENTRY_SCRIPT[1]}, which is missing"


# --- schedules ------------------------------------------------------------------------------


def test_both_schedules_run_at_the_same_time() -> None:
    raycronjob = one("raycronjob", "RayCronJob")["spec"]
    cronjob = one("cronjob", "CronJob")["spec"]
    assert CRON.match(raycronjob["schedule"]), raycronjob["schedule"]
    assert (raycronjob["schedule"], raycronjob["timeZone"]) == (cronjob["schedule"], cronjob["timeZone"])
    assert raycronjob.get("suspend", False) is False


def test_cronjob_forbids_overlap_and_mounts_the_rayjob() -> None:
    cronjob = one("cronjob", "CronJob")["spec"]
    assert cronjob["concurrencyPolicy"] == "Forbid"
    job = cronjob["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] > one("rayjob", "RayJob")["spec"]["activeDeadlineSeconds"], (
        "the waiting pod must outlive the RayJob's own deadline, or Forbid stops protecting"
    )
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")

    account = one("cronjob", "ServiceAccount")["metadata"]["name"]
    assert pod["serviceAccountName"] == account
    role = one("cronjob", "Role")
    assert any(
        "ray.io" in rule["apiGroups"] and "rayjobs" in rule["resources"] and "create" in rule["verbs"]
        for rule in role["rules"]
    ), "the Role must allow creating rayjobs.ray.io"
    binding = one("cronjob", "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
    assert {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE} in binding["subjects"]

    configmap = one("cronjob", "ConfigMap")
    (volume,) = [v for v in pod["volumes"] if "configMap" in v]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    (container,) = pod["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert container["command"][-1] == f"{mount['mountPath']}/run-nightly.sh"
    assert {"KEEP_NIGHTS"} <= {e["name"] for e in container["env"]}
    assert sorted(configmap["data"]) == ["nightly-patch.yaml", "rayjob.yaml", "run-nightly.sh"]
    assert configmap["data"]["rayjob.yaml"] == BASE_RAYJOB.read_text(), "the ConfigMap must carry base/rayjob.yaml as is"


@pytest.mark.parametrize("job_status", ["SUCCEEDED", "FAILED"])
def test_nightly_script_creates_tonights_rayjob_and_prunes_old_nights(tmp_path: Path, job_status: str) -> None:
    night = run_nightly(tmp_path, job_status, keep_nights=2)
    assert (night.returncode == 0) == (job_status == "SUCCEEDED"), night.output

    metadata = night.rayjob["metadata"]
    assert "name" not in metadata, "`kubectl create` of a fixed name fails on the second night"
    assert metadata["generateName"] == "samrs-nightly-"
    assert "namespace" not in metadata, "tonight's RayJob goes in the CronJob's namespace"
    assert metadata["labels"] == {"app.kubernetes.io/name": "samrs-ray", "app.kubernetes.io/component": "nightly"}
    assert night.rayjob["spec"] == one("rayjob", "RayJob")["spec"]

    # Oldest first, keep the newest 2 of 3: only night-1 goes, by the label the RayJob carries.
    assert "get rayjobs -l app.kubernetes.io/component=nightly --sort-by=.metadata.creationTimestamp -o name" in night.kubectl_calls
    assert [c for c in night.kubectl_calls if c.startswith("delete")] == ["delete rayjob.ray.io/night-1"]


# --- credentials ----------------------------------------------------------------------------

SECRET_WORDS = re.compile(r"(SECRET|PASSWORD|TOKEN|ACCESS_KEY|AWS_)", re.I)
AWS_KEY_ID = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")


def secret_example() -> dict[str, Any]:
    return yaml.safe_load((CLUSTER / "secret.example.yaml").read_text())


def test_credentials_come_only_from_the_secret(nightly_rayjob: dict[str, Any]) -> None:
    secret_name = secret_example()["metadata"]["name"]
    objects = [(variant, doc) for variant in VARIANTS for doc in render(variant)]
    objects.append(("cronjob's nightly RayJob", nightly_rayjob))
    ray_containers = 0
    for where, doc in objects:
        for container in containers_anywhere(doc.get("spec", {})):
            for env in container.get("env", []):
                if SECRET_WORDS.search(env["name"]):
                    assert "value" not in env, f"{where}: literal value for {env['name']}"
                    assert "secretKeyRef" in env["valueFrom"], f"{where}: {env['name']} not from a Secret"
            if container["name"].startswith("ray-"):
                ray_containers += 1
                refs = [e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e]
                assert refs == [secret_name], f"{where}: {container['name']} does not load {secret_name}"
    assert ray_containers == 4 * 3, "expected head + 2 worker groups in 4 cluster specs"


@pytest.mark.parametrize(
    "path",
    [*sorted(p for p in CLUSTER.rglob("*") if p.suffix in (".yaml", ".sh")), REPO / "jobs" / "runtime_env.yaml"],
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_no_key_material_in_files(path: Path) -> None:
    text = path.read_text()
    assert not AWS_KEY_ID.search(text), "looks like an AWS access key id"
    assert not re.search(r"aws_secret_access_key\s*[:=]\s*['\"]?[A-Za-z0-9/+]{30,}", text, re.I)


def test_secret_example_holds_placeholders_only() -> None:
    secret = secret_example()
    assert secret["metadata"]["namespace"] == NAMESPACE
    assert k8s_error(secret) is None, k8s_error(secret)
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
    assert re.search(r"pip install [^\n]*\s\"?\.(\[[\w,-]+\])?\"?\s", text), "the image must install this repository"
    assert (CLUSTER / "Dockerfile.dockerignore").is_file()


def test_runtime_env_file_is_valid_for_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.runtime_env import RuntimeEnv

    runtime_env = yaml.safe_load((REPO / "jobs" / "runtime_env.yaml").read_text())
    assert runtime_env["working_dir"] == "."
    assert not any(SECRET_WORDS.search(k) for k in runtime_env.get("env_vars", {}))
    monkeypatch.chdir(REPO)  # `ray job submit` runs from the repository root
    validated = RuntimeEnv(**runtime_env)
    assert validated.working_dir() == "."
