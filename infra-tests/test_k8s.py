"""The rendered Kubernetes manifests of every overlay: autoscaling, Redis, security
context, probes, configuration, traffic rules, and a schema check with
kubernetes-validate."""

from __future__ import annotations

import re
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

from conftest import ENV_DEV, K8S, OVERLAYS, REPO, TfDir, kustomize

FUNCTIONS = ("queue-api", "admitter", "goods-worker", "result-relay")
AUTOSCALED = ("queue-api", "goods-worker")
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job", "CronJob", "DaemonSet"}
# Oldest and newest minor versions the GKE release channels offer while this was written.
K8S_VERSIONS = ("1.33.0", "1.35.0")
# GKE's own resource kinds: kubernetes-validate has no schema for them.
GKE_KINDS = {"BackendConfig", "FrontendConfig", "ManagedCertificate", "PodMonitoring"}
# What each function needs in its environment (see functions/src and docs/functions.md).
REQUIRED_ENV = {
    "queue-api": {
        "DROPGATE_API_ADDR",
        "DROPGATE_HEALTH_ADDR",
        "DROPGATE_API_HEADER_TIMEOUT_MS",
        "DROPGATE_REDIS_URL",
        "DROPGATE_JWKS_URL",
        "DROPGATE_JWT_ISSUER",
        "DROPGATE_JWT_AUDIENCE",
        "DROPGATE_API_CORS_ORIGINS",
        "DROPGATE_API_TRUSTED_PROXY_HOPS",
        "DROPGATE_LOG_FORMAT",
    },
    "admitter": {
        "DROPGATE_HEALTH_ADDR",
        "DROPGATE_REDIS_URL",
        "DATABASE_URL",
        "DROPGATE_KAFKA_BROKERS",
        "DROPGATE_TOPIC_WAITING_QUEUE",
    },
    "goods-worker": {
        "DROPGATE_HEALTH_ADDR",
        "DATABASE_URL",
        "DROPGATE_KAFKA_BROKERS",
        "DROPGATE_TOPIC_WAITING_QUEUE",
        "DROPGATE_TOPIC_RESULT_NOTIFICATION",
        "DROPGATE_TOPIC_DEAD_LETTER",
        "DROPGATE_TOPIC_WINNERS",
    },
    "result-relay": {
        "DROPGATE_HEALTH_ADDR",
        "DROPGATE_REDIS_URL",
        "DROPGATE_KAFKA_BROKERS",
        "DROPGATE_TOPIC_RESULT_NOTIFICATION",
        "DROPGATE_TOPIC_DEAD_LETTER",
    },
}
# The operator CLI's pod: `dropgate event` (both stores) and `dropgate dead-letter`
# (the dead-letter topic, and the topics it replays to).
ADMIN_ENV = {
    "DROPGATE_REDIS_URL",
    "DATABASE_URL",
    "DROPGATE_KAFKA_BROKERS",
    "DROPGATE_TOPIC_WAITING_QUEUE",
    "DROPGATE_TOPIC_RESULT_NOTIFICATION",
    "DROPGATE_TOPIC_DEAD_LETTER",
}
# Secrets are made at deploy time from Secret Manager (docs/deploy.md), never in git.
EXTERNAL_SECRETS = {"dropgate-runtime", "dropgate-redis", "dropgate-seed-key", "dropgate-migrate"}


def find(docs: list[dict], kind: str, name: str) -> dict:
    hits = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(hits) == 1, f"expected one {kind}/{name}, found {len(hits)}"
    return hits[0]


def pod_spec(doc: dict) -> dict:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def workloads(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["kind"] in WORKLOAD_KINDS]


def container_env(docs: list[dict], container: dict) -> dict[str, str | None]:
    """Variable name => value (None where it comes from a Secret)."""
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        assert ref, f"{container['name']}: only ConfigMaps are loaded whole"
        env.update(find(docs, "ConfigMap", ref["name"]).get("data", {}))
    for var in container.get("env", []):
        env[var["name"]] = var.get("value")
    return env


overlay = pytest.mark.parametrize("name", OVERLAYS)


def test_there_are_dev_and_prod_overlays():
    assert {"dev", "prod"} <= set(OVERLAYS)


@overlay
def test_hpa_targets_60_percent_cpu(rendered, name):
    docs = rendered[name]
    for fn in AUTOSCALED:
        hpa = find(docs, "HorizontalPodAutoscaler", fn)
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": fn}
        cpu = [m for m in hpa["spec"]["metrics"] if m["type"] == "Resource" and m["resource"]["name"] == "cpu"]
        assert len(cpu) == 1
        assert cpu[0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 60}
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        assert "replicas" not in find(docs, "Deployment", fn)["spec"], f"{fn}: the HPA owns the replica count"


def test_redis_statefulset_has_headless_service_and_volumes():
    docs = kustomize.render(K8S / "redis")
    service = find(docs, "Service", "redis")
    assert service["spec"]["clusterIP"] == "None"
    sts = find(docs, "StatefulSet", "redis")
    assert sts["spec"]["serviceName"] == "redis"
    assert service["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    claims = sts["spec"]["volumeClaimTemplates"]
    assert claims and claims[0]["spec"]["resources"]["requests"]["storage"]
    mounts = {m["name"]: m["mountPath"] for m in pod_spec(sts)["containers"][0]["volumeMounts"]}
    assert mounts[claims[0]["metadata"]["name"]] == "/data"
    conf = find(docs, "ConfigMap", "redis-config")["data"]["redis.conf"]
    assert re.search(r"^appendonly yes$", conf, re.M), "in-cluster Redis persists with AOF"
    assert re.search(r"^maxmemory-policy noeviction$", conf, re.M)


def test_dev_runs_redis_in_cluster_and_prod_uses_memorystore(rendered):
    assert find(rendered["dev"], "Service", "redis")["spec"]["clusterIP"] == "None"
    assert not [d for d in rendered["prod"] if d["kind"] == "StatefulSet"]


def test_memorystore_is_verified_by_its_ca_and_the_in_cluster_redis_by_name(rendered):
    # Memorystore's certificate names its IP in the common name only (which rustls
    # does not read): prod checks the chain against the instance's CA; dev's own
    # Redis has a certificate naming its host, so dev keeps the full check.
    prod = find(rendered["prod"], "ConfigMap", "dropgate-config")["data"]
    dev = find(rendered["dev"], "ConfigMap", "dropgate-config")["data"]
    assert prod.get("DROPGATE_REDIS_TLS_VERIFY") == "ca"
    assert dev.get("DROPGATE_REDIS_TLS_VERIFY", "full") == "full"


@overlay
def test_containers_run_as_non_root_with_read_only_root(rendered, name):
    checked = 0
    for doc in workloads(rendered[name]):
        spec = pod_spec(doc)
        pod_ctx = spec.get("securityContext", {})
        assert spec.get("automountServiceAccountToken") is False, doc["metadata"]["name"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            ctx = c.get("securityContext", {})
            where = f"{doc['kind']}/{doc['metadata']['name']}/{c['name']}"
            assert ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True, where
            assert ctx.get("runAsUser", pod_ctx.get("runAsUser", 0)) != 0, where
            assert ctx.get("readOnlyRootFilesystem") is True, where
            assert ctx.get("allowPrivilegeEscalation") is False, where
            assert ctx.get("capabilities", {}).get("drop") == ["ALL"], where
            resources = c.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), f"{where}: {kind}"
            checked += 1
    assert checked >= len(FUNCTIONS)


@overlay
def test_functions_probe_their_health_routes(rendered, name):
    docs = rendered[name]
    for fn in FUNCTIONS:
        deployment = find(docs, "Deployment", fn)
        spec = pod_spec(deployment)
        (c,) = spec["containers"]
        assert c["command"] == [f"/usr/local/bin/{fn}"]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        env = container_env(docs, c)
        if fn == "queue-api":
            assert env["DROPGATE_API_ADDR"] == "0.0.0.0:8080" and ports["http"] == 8080
            assert spec["terminationGracePeriodSeconds"] >= 30, "SSE streams need time to drain"
        # Every function, queue-api included, serves its health and metrics on an ops
        # port of its own.
        assert env["DROPGATE_HEALTH_ADDR"] == "0.0.0.0:9090" and ports["health"] == 9090
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = c[probe]["httpGet"]
            assert get["path"] == path, f"{fn} {probe}"
            port = ports.get(get["port"], get["port"])
            assert port == 9090, f"{fn} {probe} port"


@overlay
def test_ops_ports_are_never_exposed_by_a_service_or_the_ingress(rendered, name):
    """/metrics names every event's queue length: only probes and collectors reach it."""
    docs = rendered[name]
    for service in (d for d in docs if d["kind"] == "Service"):
        for port in service["spec"]["ports"]:
            assert port.get("targetPort", port["port"]) not in ("health", 9090), f"Service/{service['metadata']['name']} exposes the ops port"
    monitors = [d for d in docs if d["kind"] == "PodMonitoring"]
    assert monitors and all(e["port"] == "health" for m in monitors for e in m["spec"]["endpoints"])


@overlay
def test_functions_get_the_environment_they_read(rendered, name):
    docs = rendered[name]
    for fn, needed in REQUIRED_ENV.items():
        (c,) = pod_spec(find(docs, "Deployment", fn))["containers"]
        env = container_env(docs, c)
        assert needed <= set(env), f"{fn} lacks {needed - set(env)}"
        assert env["DROPGATE_LOG_FORMAT"] == "json"
        if "DROPGATE_KAFKA_BROKERS" in needed:
            assert not env["DROPGATE_KAFKA_BROKERS"].endswith(".invalid:9092"), f"{name} must set the Kafka address"
    config = find(docs, "ConfigMap", "dropgate-config")["data"]
    assert config["DROPGATE_TOPIC_WAITING_QUEUE"] == "waiting-queue"
    assert config["DROPGATE_TOPIC_RESULT_NOTIFICATION"] == "result-notification"
    assert config["DROPGATE_TOPIC_DEAD_LETTER"] == "dead-letter"
    assert config["DROPGATE_TOPIC_WINNERS"] == "winners"
    # The topics Terraform creates in Managed Kafka, under the same names.
    local_values = TfDir(ENV_DEV).locals()
    names = ("DROPGATE_TOPIC_WAITING_QUEUE", "DROPGATE_TOPIC_RESULT_NOTIFICATION", "DROPGATE_TOPIC_WINNERS")
    assert {config[n] for n in names} == set(local_values["topics"].values())
    assert config["DROPGATE_TOPIC_DEAD_LETTER"] == local_values["dead_letter_topic"]
    api = find(docs, "ConfigMap", "queue-api-config")["data"]
    assert api["DROPGATE_JWKS_URL"].startswith("https://") and ".invalid" not in api["DROPGATE_JWKS_URL"]


@overlay
def test_config_and_secret_references_resolve(rendered, name):
    docs = rendered[name]
    config_maps = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    secrets_used: set[str] = set()
    for doc in workloads(docs):
        spec = pod_spec(doc)
        for c in spec["containers"]:
            for source in c.get("envFrom", []):
                assert source["configMapRef"]["name"] in config_maps
            for var in c.get("env", []):
                ref = var.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    assert ref["configMapKeyRef"]["name"] in config_maps
                if "secretKeyRef" in ref:
                    secrets_used.add(ref["secretKeyRef"]["name"])
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps
            if "secret" in volume:
                secrets_used.add(volume["secret"]["secretName"])
        assert spec["serviceAccountName"] in {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"}
    assert secrets_used <= EXTERNAL_SECRETS, secrets_used - EXTERNAL_SECRETS
    guide = (REPO / "docs" / "deploy.md").read_text()
    for secret in secrets_used:
        assert secret in guide, f"docs/deploy.md must say how to create Secret {secret}"
    assert not [d for d in docs if d["kind"] == "Secret"], "secrets never live in git"


@overlay
def test_event_admin_can_run_the_dead_letter_commands(rendered, name):
    docs = rendered[name]
    deployment = find(docs, "Deployment", "event-admin")
    (c,) = pod_spec(deployment)["containers"]
    env = container_env(docs, c)
    assert ADMIN_ENV <= set(env), f"event-admin lacks {ADMIN_ENV - set(env)}"
    assert not env["DROPGATE_KAFKA_BROKERS"].endswith(".invalid:9092"), f"{name} must set the Kafka address"
    # The NetworkPolicy that opens the brokers, and the Workload Identity its Kafka
    # tokens come from (test_workload_identity_annotations).
    assert deployment["spec"]["template"]["metadata"]["labels"].get("dropgate/uses-kafka") == "true"
    assert pod_spec(deployment)["serviceAccountName"] == "event-admin"


@overlay
def test_workload_identity_annotations(rendered, name):
    for fn in (*FUNCTIONS, "event-admin"):
        sa = find(rendered[name], "ServiceAccount", fn)
        email = sa["metadata"].get("annotations", {}).get("iam.gke.io/gcp-service-account", "")
        assert re.fullmatch(rf"[a-z0-9-]+-{fn}@[a-z0-9-]+\.iam\.gserviceaccount\.com", email), email


# Workloads that run the operator CLI's image; every other dropgate workload runs the
# services image.
ADMIN_WORKLOADS = {"db-migrate", "event-admin"}


@overlay
def test_images_come_from_artifact_registry(rendered, name):
    for doc in workloads(rendered[name]):
        workload = doc["metadata"]["name"]
        for c in pod_spec(doc)["containers"]:
            if workload == "redis":
                continue
            image = "dropgate-admin" if workload in ADMIN_WORKLOADS else "dropgate"
            assert re.fullmatch(rf"[a-z0-9-]+-docker\.pkg\.dev/[a-z0-9-]+/[a-z0-9-]+/{image}(:[\w.-]+|@sha256:[0-9a-f]{{64}})", c["image"]), f"{workload}: {c['image']}"


@overlay
def test_ingress_reaches_queue_api_with_sse_timeout(rendered, name):
    docs = rendered[name]
    ingress = find(docs, "Ingress", "queue-api")
    assert ingress["metadata"]["annotations"]["kubernetes.io/ingress.class"] == "gce"
    backends = {ingress["spec"]["defaultBackend"]["service"]["name"]}
    for rule in ingress["spec"]["rules"]:
        assert "." in rule["host"], "every rule names its public host"
        backends |= {p["backend"]["service"]["name"] for p in rule["http"]["paths"]}
    assert backends == {"queue-api"}
    service = find(docs, "Service", "queue-api")
    annotations = service["metadata"]["annotations"]
    assert yaml.safe_load(annotations["cloud.google.com/backend-config"]) == {"default": "queue-api"}
    assert yaml.safe_load(annotations["cloud.google.com/neg"]) == {"ingress": True}
    backend = find(docs, "BackendConfig", "queue-api")["spec"]
    assert backend["timeoutSec"] >= 3600, "an SSE stream must outlive the load balancer's response timeout"
    assert backend["healthCheck"]["requestPath"] == "/readyz" and backend["healthCheck"]["port"] == 9090
    cert = find(docs, "ManagedCertificate", "queue-api")["spec"]["domains"]
    assert cert == [r["host"] for r in ingress["spec"]["rules"]]


@overlay
def test_only_the_migration_job_reads_the_schema_owners_url(rendered, name):
    """The migration Job runs as db-migrate, with dropgate-migrate's URL, and grants the
    functions' user the runtime role; no other workload names that Secret."""
    docs = rendered[name]
    for doc in workloads(docs):
        spec = pod_spec(doc)
        text = str(spec)
        if doc["metadata"]["name"] == "db-migrate":
            assert spec["serviceAccountName"] == "db-migrate"
            (c,) = spec["containers"]
            env = container_env(docs, c)
            assert env["DROPGATE_DATABASE_RUNTIME_USERS"] == "dropgate"
            assert "dropgate-runtime" not in text, "the Job needs nothing of the functions' Secret"
        else:
            assert "dropgate-migrate" not in text, doc["metadata"]["name"]
            assert spec.get("serviceAccountName") != "db-migrate", doc["metadata"]["name"]
    account = find(docs, "ServiceAccount", "db-migrate")
    assert account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].split("@")[0].endswith("-db-migrate")


@overlay
def test_the_ingress_backend_is_behind_terraforms_cloud_armor_policy(rendered, name):
    """The BackendConfig names <prefix>-edge, the policy modules/cloud-armor makes, with
    the same prefix as the Ingress's reserved address (<prefix>-ingress)."""
    docs = rendered[name]
    ingress = find(docs, "Ingress", "queue-api")
    address = ingress["metadata"]["annotations"]["kubernetes.io/ingress.global-static-ip-name"]
    assert address.endswith("-ingress")
    prefix = address.removesuffix("-ingress")
    backend = find(docs, "BackendConfig", "queue-api")["spec"]
    assert backend["securityPolicy"] == {"name": f"{prefix}-edge"}


@overlay
def test_every_deployment_has_a_disruption_budget(rendered, name):
    docs = rendered[name]
    budgets = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    for doc in docs:
        if doc["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        labels = doc["spec"]["template"]["metadata"]["labels"]
        covering = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert covering, f"{doc['kind']}/{doc['metadata']['name']} has no PodDisruptionBudget"


@overlay
def test_network_policies_admit_only_what_the_design_allows(rendered, name):
    docs = rendered[name]
    policies = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}
    deny = policies["default-deny"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"} and "ingress" not in deny
    for pname, spec in policies.items():
        for rule in spec.get("ingress", []):
            for peer in rule.get("from", []):
                if "ipBlock" in peer:
                    assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/component": "queue-api"}}, (
                        f"{pname}: only queue-api accepts traffic from outside the cluster"
                    )
                    assert peer["ipBlock"]["cidr"] != "0.0.0.0/0"
    if "redis-from-functions" in policies:
        (rule,) = policies["redis-from-functions"]["ingress"]
        assert rule["from"] == [{"podSelector": {"matchLabels": {"dropgate/uses-redis": "true"}}}]
    # Each function's backend labels match what it talks to.
    uses = {
        fn: {k.split("/uses-")[1] for k in find(docs, "Deployment", fn)["spec"]["template"]["metadata"]["labels"] if "/uses-" in k}
        for fn in FUNCTIONS
    }
    assert uses == {
        "queue-api": {"redis"},
        "admitter": {"redis", "kafka", "postgres"},
        "goods-worker": {"kafka", "postgres"},
        "result-relay": {"redis", "kafka"},
    }
    # Terraform's function catalogue says the same (its `bus` is Kafka here).
    terraform_uses = {
        fn: {"kafka" if u == "bus" else u for u in spec["uses"]} for fn, spec in TfDir(ENV_DEV).locals()["functions"].items()
    }
    assert uses == terraform_uses


@overlay
def test_database_clients_reach_postgres_and_only_they_do(rendered, name):
    docs = rendered[name]
    policies = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}
    postgres = policies["functions-to-postgres"]
    assert postgres["podSelector"] == {"matchLabels": {"dropgate/uses-postgres": "true"}}
    assert postgres["policyTypes"] == ["Egress"]
    (rule,) = postgres["egress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 5432}]
    # Only the Private Service Access range Cloud SQL sits in (Terraform's default
    # network_ranges.psa, as networkpolicies.yaml says), never anything wider.
    ranges = str(TfDir(ENV_DEV).labelled("variable")["network_ranges"]["type"])
    psa = re.search(r'psa\s*=\s*optional\(string,\s*"([0-9./]+)"\)', ranges)
    assert psa, ranges
    assert [peer["ipBlock"]["cidr"] for peer in rule["to"]] == [psa.group(1)]
    # A workload with DATABASE_URL carries the label that opens that egress, and a
    # workload with the label has DATABASE_URL: no database client is cut off, and
    # nothing else may reach PostgreSQL.
    clients = set()
    for doc in workloads(docs):
        labelled = doc["spec"]["template"]["metadata"]["labels"].get("dropgate/uses-postgres") == "true"
        has_url = any("DATABASE_URL" in container_env(docs, c) for c in pod_spec(doc)["containers"])
        assert labelled == has_url, f"{doc['kind']}/{doc['metadata']['name']}: uses-postgres label {labelled}, DATABASE_URL {has_url}"
        if has_url:
            clients.add(doc["metadata"]["name"])
    assert clients == {"admitter", "goods-worker", "db-migrate", "event-admin"}, clients


@overlay
def test_redis_clients_reach_memorystore_cluster_endpoints_only_on_its_ports(rendered, name):
    """redis_mode = memorystore_cluster: the cluster's Private Service Connect endpoints
    have addresses in the private subnet; clients reach the discovery endpoint on 6379
    and the nodes on 11000-13047, and nothing else there."""
    docs = rendered[name]
    policies = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}
    redis = policies["functions-to-redis"]
    assert redis["podSelector"] == {"matchLabels": {"dropgate/uses-redis": "true"}}
    ranges = str(TfDir(ENV_DEV).labelled("variable")["network_ranges"]["type"])
    private = re.search(r'private\s*=\s*optional\(string,\s*"([0-9./]+)"\)', ranges)
    assert private, ranges
    rules = [r for r in redis["egress"] if any(p.get("ipBlock", {}).get("cidr") == private.group(1) for p in r["to"])]
    assert len(rules) == 1, redis["egress"]
    (rule,) = rules
    assert rule["to"] == [{"ipBlock": {"cidr": private.group(1)}}]
    assert rule["ports"] == [
        {"protocol": "TCP", "port": 6379},
        {"protocol": "TCP", "port": 11000, "endPort": 13047},
    ]


@overlay
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_against_the_kubernetes_schema(rendered, name, version):
    for doc in rendered[name]:
        if doc["kind"] in GKE_KINDS:
            assert doc["metadata"]["name"] and isinstance(doc["spec"], dict)
            continue
        kubernetes_validate.validate(doc, version, strict=True)


@overlay
def test_python_renderer_matches_kubectl_kustomize(rendered, name):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the Python renderer is checked against it where it is")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / name)], check=True, capture_output=True, text=True, timeout=120
    ).stdout
    theirs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out) if d}
    ours = {(d["kind"], d["metadata"]["name"]): d for d in rendered[name]}
    assert set(ours) == set(theirs)
    for key in ours:
        assert ours[key] == theirs[key], f"{key} renders differently"


# --- encrypted, verified connections ------------------------------------------------

# Store URL variable => (the dropgate-runtime key it comes from, its CA file variable,
# the dropgate-runtime key of that CA).
STORES = {
    "DROPGATE_REDIS_URL": ("redis-url", "DROPGATE_REDIS_CA_FILE", "redis-ca"),
    "DATABASE_URL": ("database-url", "DROPGATE_DATABASE_CA_FILE", "database-ca"),
}


def mounted_secret_file(spec: dict, container: dict, path: str) -> tuple[str, str] | None:
    """(Secret name, key) of the file at `path` in the container, if a Secret volume
    puts it there."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        directory = mount["mountPath"].rstrip("/")
        if not path.startswith(directory + "/"):
            continue
        secret = volumes[mount["name"]].get("secret")
        if not secret:
            continue
        relative = path[len(directory) + 1 :]
        items = secret.get("items")
        if items is None:
            return secret["secretName"], relative
        for item in items:
            if item["path"] == relative:
                return secret["secretName"], item["key"]
    return None


def test_base_config_requires_tls():
    docs = kustomize.render(K8S / "base")
    config = find(docs, "ConfigMap", "dropgate-config")["data"]
    assert config["DROPGATE_REQUIRE_TLS"] == "true"
    assert config["DROPGATE_KAFKA_SECURITY_PROTOCOL"] == "sasl_ssl"
    assert config["DROPGATE_KAFKA_SASL_MECHANISM"] == "OAUTHBEARER"


@overlay
def test_every_workload_requires_tls_and_mounts_the_store_cas(rendered, name):
    docs = rendered[name]
    checked = set()
    for doc in workloads(docs):
        if doc["metadata"]["name"] == "redis":
            continue
        spec = pod_spec(doc)
        labels = doc["spec"]["template"]["metadata"]["labels"]
        for c in spec["containers"]:
            where = f"{doc['kind']}/{doc['metadata']['name']}"
            env = container_env(docs, c)
            assert env.get("DROPGATE_REQUIRE_TLS") == "true", f"{where}: DROPGATE_REQUIRE_TLS"
            refs = {v["name"]: v.get("valueFrom", {}).get("secretKeyRef") for v in c.get("env", [])}
            # The migration Job logs in as the schema's owner, from a Secret of its own.
            secret = "dropgate-migrate" if doc["metadata"]["name"] == "db-migrate" else "dropgate-runtime"
            for url_var, (url_key, ca_var, ca_key) in STORES.items():
                if url_var not in env:
                    continue
                assert refs.get(url_var) == {"name": secret, "key": url_key}, f"{where}: {url_var} from a Secret"
                ca_path = env.get(ca_var)
                assert ca_path, f"{where}: {url_var} without {ca_var}"
                assert mounted_secret_file(spec, c, ca_path) == (secret, ca_key), f"{where}: nothing mounts {ca_path}"
                checked.add((doc["metadata"]["name"], url_var))
            if labels.get("dropgate/uses-kafka") == "true":
                assert env["DROPGATE_KAFKA_SECURITY_PROTOCOL"] == "sasl_ssl", where
                assert env["DROPGATE_KAFKA_SASL_MECHANISM"] == "OAUTHBEARER", where
    for fn in ("queue-api", "admitter", "result-relay", "event-admin"):
        assert (fn, "DROPGATE_REDIS_URL") in checked, fn
    for fn in ("admitter", "goods-worker", "db-migrate", "event-admin"):
        assert (fn, "DATABASE_URL") in checked, fn


def test_in_cluster_redis_serves_tls_only():
    docs = kustomize.render(K8S / "redis")
    conf = find(docs, "ConfigMap", "redis-config")["data"]["redis.conf"]
    settings = dict(line.split(None, 1) for line in conf.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    assert settings["port"] == "0", "no plaintext port"
    assert settings["tls-port"] == "6379"
    assert settings["tls-auth-clients"] == "no", "clients use AUTH, not certificates"
    sts = find(docs, "StatefulSet", "redis")
    spec = pod_spec(sts)
    (c,) = spec["containers"]
    for setting, key in (("tls-cert-file", "tls.crt"), ("tls-key-file", "tls.key"), ("tls-ca-cert-file", "ca.crt"), ("include", "auth.conf")):
        assert mounted_secret_file(spec, c, settings[setting]) == ("dropgate-redis", key), setting
    service = find(docs, "Service", "redis")
    assert [p["port"] for p in service["spec"]["ports"]] == [6379]


# The key the draw seeds are sealed under in PostgreSQL: only what needs a seed mounts
# it (goods-worker draws, the admitter reveals at close, event-admin seals at `event
# create` and shuffles at `event open`), from a Secret no other workload refers to.
SEED_KEY_READERS = {"goods-worker", "admitter", "event-admin"}


def secrets_referenced(spec: dict) -> set[str]:
    """Every Secret a pod refers to: volumes, env and envFrom, in any container."""
    names = {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
    for c in spec.get("initContainers", []) + spec["containers"]:
        names |= {s["secretRef"]["name"] for s in c.get("envFrom", []) if "secretRef" in s}
        names |= {v["valueFrom"]["secretKeyRef"]["name"] for v in c.get("env", []) if "secretKeyRef" in v.get("valueFrom", {})}
    return names


@overlay
def test_the_seed_key_is_mounted_for_the_seed_readers_only(rendered, name):
    docs = rendered[name]
    # The same path Terraform gives the Cloud Run services and the event-admin job.
    path = TfDir(ENV_DEV).locals()["seed_key_file"]
    with_env, with_secret = set(), set()
    for doc in workloads(docs):
        workload = doc["metadata"]["name"]
        spec = pod_spec(doc)
        if "dropgate-seed-key" in secrets_referenced(spec):
            with_secret.add(workload)
        for c in spec.get("initContainers", []) + spec["containers"]:
            env = container_env(docs, c)
            if "DROPGATE_SEED_KEY_FILE" not in env:
                continue
            with_env.add(workload)
            assert env["DROPGATE_SEED_KEY_FILE"] == path, f"{workload}: {env['DROPGATE_SEED_KEY_FILE']}"
            assert mounted_secret_file(spec, c, path) == ("dropgate-seed-key", "seed.key"), f"{workload}: nothing mounts {path}"
            (volume,) = [v for v in spec["volumes"] if v.get("secret", {}).get("secretName") == "dropgate-seed-key"]
            mode = volume["secret"].get("defaultMode", 0o644)
            # Not world-readable; the container reads it through the pod's fsGroup.
            assert mode & 0o007 == 0, f"{workload}: seed key mode {oct(mode)}"
            assert spec["securityContext"].get("fsGroup") == spec["securityContext"].get("runAsGroup"), workload
    assert with_env == SEED_KEY_READERS, with_env
    assert with_secret == SEED_KEY_READERS, with_secret
    for fn in ("queue-api", "result-relay"):
        assert fn not in with_env | with_secret, f"{fn} must not get the seed key"
    # Not in a ConfigMap every function loads, not in dropgate-runtime.
    for cm in (d for d in docs if d["kind"] == "ConfigMap"):
        assert "SEED_KEY" not in str(cm.get("data", {})), cm["metadata"]["name"]


def terraform_secret_keys() -> dict[str, set[str]]:
    """The Kubernetes Secret keys Terraform's `k8s` output says to copy, by Secret."""
    secrets = TfDir(ENV_DEV).labelled("output")["k8s"]["value"]["secrets"]
    out = {}
    for secret, value in secrets.items():
        out[secret] = set(value) if isinstance(value, dict) else set(re.findall(r'"([a-z.-]+)"\s*=', value))
    return out


@overlay
def test_secret_keys_are_the_ones_terraform_copies(rendered, name):
    docs = rendered[name]
    used: dict[str, set[str]] = {}
    for doc in workloads(docs):
        spec = pod_spec(doc)
        for c in spec["containers"]:
            for var in c.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    used.setdefault(ref["name"], set()).add(ref["key"])
            for mount in c.get("volumeMounts", []):
                # Claims of a StatefulSet's volumeClaimTemplates are not in `volumes`.
                volume = next((v for v in spec.get("volumes", []) if v["name"] == mount["name"]), {})
                secret = volume.get("secret")
                if secret and "items" in secret:
                    used.setdefault(secret["secretName"], set()).update(i["key"] for i in secret["items"])
    if any(d["kind"] == "StatefulSet" and d["metadata"]["name"] == "redis" for d in docs):
        used["dropgate-redis"] = {"auth.conf", "tls.crt", "tls.key", "ca.crt"}
    copied = terraform_secret_keys()
    for secret, keys in used.items():
        assert keys == copied[secret], f"{secret}: the manifests use {sorted(keys)}, Terraform copies {sorted(copied[secret])}"
