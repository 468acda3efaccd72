"""deploy/: every manifest valid against the Kubernetes schemas (offline, kubernetes-validate), the
InferenceService against KServe's own models, and the YAML in agreement with the image and the server:
ports, probe paths, user, drain time, the serve arguments."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = "1.31.0"


def documents() -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(DEPLOY.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            found[f"{path.name}:{document['kind']}"] = document
    return found


def containers() -> list[dict[str, Any]]:
    docs = documents()
    return [*docs["deployment.yaml:Deployment"]["spec"]["template"]["spec"]["containers"],
            *docs["inferenceservice.yaml:InferenceService"]["spec"]["predictor"]["containers"]]


@pytest.mark.parametrize("key", [k for k in documents() if not k.endswith(("InferenceService", "Kustomization"))])
def test_manifest_is_valid_kubernetes(key: str) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(documents()[key], KUBERNETES, strict=True)  # raises on any problem


UNKNOWN_FIELDS = """
import json, sys
import kserve

def unknown(klass, data, where):
    by_json = {json_name: name for name, json_name in klass.attribute_map.items()}
    found = [f"{where}.{key}" for key in data if key not in by_json]
    for key, value in data.items():
        kind = klass.openapi_types.get(by_json.get(key, ""), "")
        if isinstance(value, dict) and hasattr(kserve.models, kind):
            found += unknown(getattr(kserve.models, kind), value, f"{where}.{key}")
    return found

print(json.dumps(unknown(kserve.V1beta1InferenceServiceSpec, json.loads(sys.stdin.read()), "spec")))
"""


def unknown_fields(spec: dict[str, Any]) -> list[str]:
    """Fields of an InferenceService ``spec`` that KServe's models (recursively) lack. In a process of its
    own: KServe's protos and ours both define package ``inference`` and cannot share one descriptor pool."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", UNKNOWN_FIELDS], input=json.dumps(spec), capture_output=True,
                          text=True, timeout=120, check=True)
    return list(json.loads(done.stdout))


def test_inference_service_is_valid_for_kserve() -> None:
    """Its fields against KServe's own models; the predictor's pod fields (containers, security context)
    against the Kubernetes schema of a Pod."""
    import kubernetes_validate

    document = documents()["inferenceservice.yaml:InferenceService"]
    assert document["apiVersion"] == "serving.kserve.io/v1beta1" and document["kind"] == "InferenceService"
    assert unknown_fields(document["spec"]) == []
    assert unknown_fields({**document["spec"], "predictor": {"minReplica": 1}}) == ["spec.predictor.minReplica"]
    predictor = document["spec"]["predictor"]
    pod_fields = {k: v for k, v in predictor.items() if k in ("containers", "securityContext",
                                                               "terminationGracePeriodSeconds")}
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "predictor"},
                                  "spec": pod_fields}, KUBERNETES, strict=True)


def test_kustomization_lists_every_plain_manifest() -> None:
    listed = set(documents()["kustomization.yaml:Kustomization"]["resources"])
    plain = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml", "inferenceservice.yaml"}
    assert listed == plain


def test_manifests_agree_with_the_image_and_the_server(serve_model_path: Path) -> None:
    from serve_helpers import start_in_thread

    from bninception.cli import build_parser
    from bninception.serve.app import create_app
    from bninception.serve.config import ServeConfig

    dockerfile = (ROOT / "Dockerfile").read_text()
    serve_stage = dockerfile[dockerfile.index("AS serve\n"):]
    uid = int(re.search(r"^USER (\d+):", serve_stage, re.MULTILINE)[1])  # type: ignore[index]
    exposed = {int(p) for p in re.search(r"^EXPOSE (.+)$", serve_stage, re.MULTILINE)[1].split()}  # type: ignore[index]
    docs = documents()
    pod = docs["deployment.yaml:Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == uid and pod["securityContext"]["runAsNonRoot"]
    predictor = docs["inferenceservice.yaml:InferenceService"]["spec"]["predictor"]
    assert predictor["securityContext"]["runAsUser"] == uid
    app = create_app(serve_model_path)
    paths = set()
    with start_in_thread(app) as server:
        import urllib.request

        for container in containers():
            args = build_parser().parse_args(container["args"])  # every flag is one serve has
            assert args.command == "serve" and args.host == "0.0.0.0"
            assert {args.port, args.grpc_port} == exposed
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            drain = args.graceful_shutdown_s
            assert drain == ServeConfig().graceful_shutdown_s
            for probe in ("readinessProbe", "livenessProbe"):
                path = container[probe]["httpGet"]["path"]
                paths.add(path)
                with urllib.request.urlopen(f"{server.url}{path}", timeout=10) as answer:
                    assert answer.status == 200
            for port in container["ports"]:
                assert port["containerPort"] in exposed
    assert paths == {"/v2/health/ready", "/v2/health/live"}
    pre_stop = int(pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + drain
    assert predictor["terminationGracePeriodSeconds"] > drain
    service_ports = {p["name"]: p["port"] for p in docs["service.yaml:Service"]["spec"]["ports"]}
    assert service_ports == {"http": args.port, "grpc": args.grpc_port}
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert "/tmp" in mounts and any(v.get("emptyDir") is not None for v in pod["volumes"])


