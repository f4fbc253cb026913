"""deploy/kubernetes against the Kubernetes API schema (kubernetes-validate, offline) and against
what the platform needs: a workload per component, probes, resource requests, a volume claim per
stateful component, and credentials that come from the secret only.

Runs in scripts/test (`python3 -m pytest Tests/Deploy`); .ci/run installs kubernetes-validate. A
missing validator is an error, never a skip.
"""

import copy
import pathlib

import kubernetes_validate
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
# The oldest Kubernetes release the manifests are checked against; every field they use is older.
K8S_VERSION = "1.29.0"
SERVICES = {
    "auth-service": 8081,
    "notification-service": 8082,
    "data-processing-service": 8083,
    "analytics-service": 8084,
}
SECRET_KEYS = {"JWT_SECRET", "NATS_URL", "NATS_USER", "NATS_PASSWORD"}


def load_all():
    documents = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                documents.append((path.name, document))
    return documents


DOCUMENTS = load_all()


def find(kind, name):
    matches = [d for _, d in DOCUMENTS if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def container(workload):
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_there_are_manifests():
    assert len(DOCUMENTS) >= 16, [f"{f}: {d['kind']}/{d['metadata']['name']}" for f, d in DOCUMENTS]


@pytest.mark.parametrize("document", [d for _, d in DOCUMENTS], ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in DOCUMENTS])
def test_every_resource_matches_the_api_schema_strictly(document):
    kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_the_validator_rejects_what_the_api_server_would():
    deployment = copy.deepcopy(find("Deployment", "auth-service"))
    container(deployment)["readinesProbe"] = container(deployment).pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    deployment = copy.deepcopy(find("Deployment", "auth-service"))
    container(deployment)["ports"][0]["containerPort"] = "8081"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


@pytest.mark.parametrize("name,port", SERVICES.items())
def test_each_service_has_probes_resources_a_claim_and_a_service(name, port):
    deployment = find("Deployment", name)
    assert deployment["spec"]["replicas"] == 1
    # One writer per store: a rolling update would start a second pod on the same volume.
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    c = container(deployment)
    assert c["image"] == f"microservices-nats/{name}:dev"
    assert {"name": "http", "containerPort": port} in c["ports"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"cpu", "memory"} <= set(c["resources"]["requests"])
    env = {e["name"]: e for e in c["env"]}
    assert env["HTTP_PORT"]["value"] == str(port)
    assert env["DATA_DIR"]["value"] == "/data"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["data"] == "/data"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    claim = volumes["data"]["persistentVolumeClaim"]["claimName"]
    assert find("PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteOnce"]
    security = deployment["spec"]["template"]["spec"]["securityContext"]
    # The image's user "app" (Dockerfile); fsGroup makes the claim writable for it.
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001 and security["fsGroup"] == 10001
    service = find("Service", name)
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["port"] == port


def test_the_broker_has_a_store_probes_and_its_config():
    broker = find("StatefulSet", "nats")
    c = container(broker)
    assert c["image"] == "microservices-nats/nats-server:dev"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"cpu", "memory"} <= set(c["resources"]["requests"])
    claims = {t["metadata"]["name"]: t for t in broker["spec"]["volumeClaimTemplates"]}
    assert {m["name"]: m["mountPath"] for m in c["volumeMounts"]}["store"] == "/data"
    assert claims["store"]["spec"]["resources"]["requests"]["storage"]
    assert broker["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 10002  # nats-server/Dockerfile
    config = find("ConfigMap", "nats-config")["data"]["nats.conf"]
    # JetStream is on and keeps its store on the claimed volume: the services' streams survive the pod.
    assert "jetstream {" in config and "store_dir: /data " in config
    # The credentials come from the environment (the secret), not from the ConfigMap.
    assert "user: $NATS_USER" in config and "password: $NATS_PASSWORD" in config
    service = find("Service", "nats")
    assert {p["port"] for p in service["spec"]["ports"]} == {4222, 8222}
    # The services' NATS_URL names this Service.
    assert "@nats:4222" in find("Secret", "microservices-nats")["stringData"]["NATS_URL"]


def test_credentials_come_only_from_the_secret():
    secret = find("Secret", "microservices-nats")
    assert set(secret["stringData"]) == SECRET_KEYS
    for _, document in DOCUMENTS:
        if document["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for e in container(document)["env"]:
            if e["name"] in SECRET_KEYS:
                assert "value" not in e, f"{document['metadata']['name']}: {e['name']} in plain text"
                ref = e["valueFrom"]["secretKeyRef"]
                assert ref["name"] == "microservices-nats" and ref["key"] == e["name"]
