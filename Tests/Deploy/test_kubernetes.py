"""deploy/kubernetes against the Kubernetes API schema (kubernetes-validate, offline) and against
what the platform needs: a workload per component, probes, resource requests, a volume claim per
stateful component, the broker on the permission matrix (nats-server/permissions.conf, copied into
its ConfigMap) and each service on its own identity, with credentials from the secret only.

Runs in scripts/test (`python3 -m pytest Tests/Deploy`); .ci/run installs kubernetes-validate. A
missing validator is an error, never a skip.
"""

import copy
import pathlib
import re

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
PERMISSIONS = ROOT / "nats-server" / "permissions.conf"
# The matrix's identities and the variable holding each one's password: {user: NAME, password: $NAME}.
IDENTITIES = dict(re.findall(r"\{ user: ([A-Za-z0-9_-]+), password: \$([A-Z_]+)", PERMISSIONS.read_text()))
SECRET_KEYS = {"JWT_SECRET"} | set(IDENTITIES.values())


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


def test_the_matrix_names_admin_and_every_service():
    assert set(IDENTITIES) == {"admin"} | set(SERVICES), IDENTITIES


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
    service = find("Service", "nats")
    assert {p["port"] for p in service["spec"]["ports"]} == {4222, 8222}


def test_the_broker_runs_the_permission_matrix_with_every_password_from_the_secret():
    config_map = find("ConfigMap", "nats-config")
    # kubectl cannot include nats-server/permissions.conf from here: the ConfigMap holds a copy,
    # which must stay the same file.
    assert config_map["data"]["permissions.conf"] == PERMISSIONS.read_text(), \
        "deploy/kubernetes/nats.yaml's permissions.conf differs from nats-server/permissions.conf: copy it again"
    config = config_map["data"]["nats.conf"]
    assert "include ./permissions.conf" in config.splitlines()
    # The matrix is the only authorization: no second user list, no anonymous access.
    assert "authorization" not in config and "no_auth_user" not in config
    broker = find("StatefulSet", "nats")
    c = container(broker)
    assert c["args"] == ["-c", "/etc/nats/nats.conf"]
    # Both files of the ConfigMap sit side by side in /etc/nats, where the include looks.
    assert {m["name"]: m["mountPath"] for m in c["volumeMounts"]}["config"] == "/etc/nats"
    volumes = {v["name"]: v for v in broker["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"] == {"name": "nats-config"}
    env = {e["name"]: e for e in c["env"]}
    for variable in IDENTITIES.values():
        assert env[variable]["valueFrom"]["secretKeyRef"] == {"name": "microservices-nats", "key": variable}


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_connects_as_its_own_identity(name):
    env = {e["name"]: e for e in container(find("Deployment", name))["env"]}
    assert env["NATS_USER"] == {"name": "NATS_USER", "value": name}
    assert env["NATS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "microservices-nats", "key": IDENTITIES[name]}
    # The URL names the broker's Service and carries no credentials.
    assert env["NATS_URL"] == {"name": "NATS_URL", "value": "nats://nats:4222"}
    # No other identity's password reaches the service.
    assert not set(env) & set(IDENTITIES.values())


def test_the_secret_holds_flagged_placeholders_the_broker_can_read():
    secret = find("Secret", "microservices-nats")
    for key, value in secret["stringData"].items():
        assert value.startswith("replace-me"), f"{key} is not an obvious placeholder"
    for variable in IDENTITIES.values():
        # permissions.conf reads it as a variable: a bare word.
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", secret["stringData"][variable]), variable


def test_credentials_come_only_from_the_secret():
    secret = find("Secret", "microservices-nats")
    assert set(secret["stringData"]) == SECRET_KEYS
    for _, document in DOCUMENTS:
        if document["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for e in container(document)["env"]:
            if e["name"] in SECRET_KEYS | {"NATS_PASSWORD"}:
                assert "value" not in e, f"{document['metadata']['name']}: {e['name']} in plain text"
                ref = e["valueFrom"]["secretKeyRef"]
                assert ref["name"] == "microservices-nats"
                assert ref["key"] == e["name"] or (e["name"] == "NATS_PASSWORD" and ref["key"] in IDENTITIES.values())
