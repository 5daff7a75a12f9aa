"""The Terraform code, parsed with python-hcl2: the architecture the issue asks for,
and the references `terraform validate` would check if providers could be
downloaded here (variables, locals, module outputs and resources that exist)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import ENV_DEV, MODULES, REPO, TfDir, module_dirs, parse_tf, tf_files

FUNCTIONS = {"queue-api", "admitter", "goods-worker", "result-relay"}
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
    for word in ("memorystore", "statefulset"):
        assert f'"{word}"' in conditions["redis_mode"]
    assert variables["deployment_target"]["default"] in {"gke", "cloudrun", "both"}


# --- references (what `terraform validate` would catch) -------------------------

REF_VAR = re.compile(r"\bvar\.([A-Za-z_][A-Za-z0-9_-]*)")
REF_LOCAL = re.compile(r"\blocal\.([A-Za-z_][A-Za-z0-9_-]*)")
REF_VAR_ATTR = re.compile(r"\bvar\.([A-Za-z_][A-Za-z0-9_-]*)\.([A-Za-z_][A-Za-z0-9_-]*)")
REF_MODULE = re.compile(r"\bmodule\.([A-Za-z_][A-Za-z0-9_-]*)(?:\[[^\]]*\])?\.([A-Za-z_][A-Za-z0-9_-]*)(?:\.([A-Za-z_][A-Za-z0-9_-]*))?")
REF_RESOURCE = re.compile(r"(?<![.\w])((?:google|random)_[a-z0-9_]+)\.([a-z_][a-z0-9_-]*)")
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


def test_data_services_attach_to_the_private_network(env_dev: TfDir):
    calls = env_dev.labelled("module")
    for name in ("memorystore", "cloudsql"):
        assert calls[name]["network"]["id"] == "${module.network.ids.network}"
        assert calls[name]["network"]["psa_connection"] == "${module.network.psa_connection}"
    assert calls["kafka"]["subnet_id"] == "${module.network.ids.private_subnet}"


def test_kafka_cluster_and_both_topics(modules, env_dev: TfDir):
    kafka = modules["kafka"].resources()
    cluster = kafka[("google_managed_kafka_cluster", "main")]
    network = one(one(one(cluster["gcp_config"])["access_config"])["network_configs"])
    assert network["subnet"] == "${var.subnet_id}"
    topic = kafka[("google_managed_kafka_topic", "topics")]
    assert topic["partition_count"] == "${each.value.partition_count}"
    assert topic["replication_factor"] == "${each.value.replication_factor}"
    assert set(env_dev.locals()["topics"].values()) == {"waiting-queue", "result-notification"}
    topics = env_dev.labelled("module")["kafka"]["topics"]
    assert "var.kafka.partitions" in topics and "var.kafka.replication_factor" in topics


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
    assert "local.use_cloudrun" in calls["cloudrun"]["count"]
    assert "local.use_memorystore" in calls["memorystore"]["count"]
    local_values = env_dev.locals()
    assert "var.deployment_target" in local_values["use_gke"]
    assert "var.deployment_target" in local_values["use_cloudrun"]
    assert "var.redis_mode" in local_values["use_memorystore"]


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
    # Every variable Terraform sets for the bus is documented.
    documented = (REPO / "docs" / "functions.md").read_text()
    background = str({k: v for k, v in functions.items() if k != "queue-api"})
    for name in re.findall(r"DROPGATE_[A-Z_]+", env + background):
        assert f"`{name}`" in documented, f"{name} is not in docs/functions.md"


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
    # Topic-level grants only: no project-wide Pub/Sub role for anyone.
    for (rtype, _), _body in pubsub.items():
        assert rtype != "google_project_iam_member"


def test_push_subscriptions_target_the_routes_the_functions_serve(env_dev: TfDir):
    topics = env_dev.labelled("module")["pubsub"]["topics"]
    sources = {
        "/pubsub/waiting-queue": REPO / "functions" / "src" / "goods" / "push.rs",
        "/pubsub/result-notification": REPO / "functions" / "src" / "relay" / "push.rs",
    }
    for route, source in sources.items():
        assert route in str(topics), f"no push subscription targets {route}"
        assert f'"{route}"' in source.read_text(), f"{source} does not serve {route}"
    # Admitted users are published by the admitter, results by goods-worker.
    text = str(topics)
    assert 'module.iam.members["admitter"]' in text
    assert 'module.iam.members["goods-worker"]' in text
    assert 'module.iam.emails["pubsub-push"]' in str(env_dev.labelled("module")["pubsub"]["push_service_account"])
