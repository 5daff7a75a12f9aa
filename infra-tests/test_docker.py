"""The Dockerfile, read (no Docker engine runs here to build it): it must stay in step
with the workspace and with the Kubernetes manifests that run its binaries."""

from __future__ import annotations

import re

import yaml

from conftest import ENV_DEV, K8S, REPO, TfDir

DOCKERFILE = (REPO / "deploy" / "docker" / "Dockerfile").read_text()
# What each final stage (image) holds.
IMAGES = {
    "services": ("queue-api", "admitter", "goods-worker", "result-relay"),
    "admin": ("dropgate",),
}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def test_multi_stage_build_of_the_services_and_the_cli():
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", DOCKERFILE, re.M | re.I)
    assert len(stages) >= 2, "build and runtime stages"
    assert stages[0][0].startswith("rust:")
    bases = {name: base for base, name in stages}
    assert bases["runtime"] == "debian:bookworm-slim"
    assert bases["services"] == bases["admin"] == "runtime", "both images share the slim runtime stage"
    assert stages[-1][1] == "services", "a build without --target gives the services image"
    assert re.search(r"cargo build --release --locked -p dropgate-functions -p dropgate-tools", DOCKERFILE)
    for package in ("build-essential", "cmake", "clang", "libclang-dev", "pkg-config"):
        assert re.search(rf"\s{re.escape(package)}(\s|$)", DOCKERFILE), f"the builder needs {package}"


def test_rust_toolchain_is_at_least_the_workspace_floor():
    floor = re.search(r'^rust-version\s*=\s*"([\d.]+)"', (REPO / "Cargo.toml").read_text(), re.M)
    assert floor
    image = re.search(r"^ARG RUST_VERSION=([\d.]+)", DOCKERFILE, re.M)
    assert image and _version(image.group(1)) >= _version(floor.group(1))


def copied_binaries(stage: str) -> set[str]:
    """The binaries a final stage copies into /usr/local/bin, from its ldd check."""
    check = re.search(r"for bin in (.*?); do", stage, re.S)
    assert check, "the stage checks its binaries' libraries"
    return {word.removeprefix("/usr/local/bin/") for word in check.group(1).replace("\\", " ").split()}


def test_each_image_holds_its_binaries_only_and_runs_as_the_manifests_user():
    build = stages()["build"]
    services_loop = re.search(r'for bin in ([^;]*); do\s*\\\s*cp "target/release/\$\{bin\}" /out/services/;', build)
    assert services_loop and set(services_loop.group(1).split()) == set(IMAGES["services"])
    assert "cp target/release/dropgate /out/admin/" in build
    users = {}
    for image, binaries in IMAGES.items():
        stage = stages()[image]
        assert copied_binaries(stage) == set(binaries), image
        assert f"COPY --from=build /out/{image}/ /usr/local/bin/" in stage, image
        user = re.findall(r"^USER\s+(\d+)(?::(\d+))?", stage, re.M)
        assert user and user[-1][0] != "0", f"the {image} image runs as a non-root user"
        users[image] = user[-1][0]
    # base/ runs the services; migrate/ and admin/ run the CLI's image.
    for directory, image in (("base", "services"), ("migrate", "admin"), ("admin", "admin")):
        for path in (K8S / directory).glob("*.yaml"):
            for doc in yaml.safe_load_all(path.read_text()):
                if not doc or doc.get("kind") not in ("Deployment", "Job"):
                    continue
                spec = doc["spec"]["template"]["spec"]
                assert str(spec["securityContext"]["runAsUser"]) == users[image], f"{path.name}: runAsUser matches the {image} image's USER"
                command = spec["containers"][0]["command"][0]
                if command.startswith("/usr/local/bin/"):
                    assert command.removeprefix("/usr/local/bin/") in IMAGES[image], f"{path.name}: {command} is in the {image} image"


def test_dockerignore_keeps_the_context_small_and_secret_free():
    lines = {l.strip() for l in (REPO / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")}
    for pattern in ("**/target", ".git", ".dropgate", "**/*.tfstate*"):
        assert pattern in lines, pattern
    for needed in ("core", "functions", "tools", "migrations", "tests", "Cargo.toml", "Cargo.lock"):
        assert needed not in lines, f"cargo build needs {needed}"


def stages() -> dict[str, str]:
    """Dockerfile text per stage name."""
    parts = re.split(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", DOCKERFILE, flags=re.M | re.I)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def apt_packages(stage: str) -> set[str]:
    installs = re.findall(r"apt-get install[^&]*?((?:\\\n|[^\n&])*)", stage)
    return {word for chunk in installs for word in chunk.replace("\\", " ").split() if not word.startswith("-")}


def test_openssl_for_librdkafka_tls_in_both_stages():
    build, runtime = stages()["build"], stages()["runtime"]
    assert {"pkg-config", "libssl-dev"} <= apt_packages(build), "librdkafka's TLS/SASL links OpenSSL"
    assert {"libssl3", "ca-certificates"} <= apt_packages(runtime), "OpenSSL and the public roots at run time"
    assert "libssl-dev" not in apt_packages(runtime), "headers stay in the build stage"
    assert 'cargo build --release --locked -p dropgate-functions -p dropgate-tools --features "${CARGO_FEATURES}"' in build
    for image in IMAGES:
        assert re.search(r'ldd "\$bin" \| grep -q "not found"', stages()[image]), f"the {image} stage checks its binaries' libraries"


CLOUDBUILD = REPO / "deploy" / "cloudbuild.yaml"


def test_cloud_build_builds_both_images_and_pushes_them_by_commit():
    config = yaml.safe_load(CLOUDBUILD.read_text())
    images = {
        "services": "${_IMAGE_REPOSITORY}/dropgate:${COMMIT_SHA}",
        "admin": "${_IMAGE_REPOSITORY}/dropgate-admin:${COMMIT_SHA}",
    }
    builds = [s for s in config["steps"] if s["name"].startswith("gcr.io/cloud-builders/docker") and "build" in s.get("args", [])]
    assert len(builds) == len(images), "one docker build step per image"
    for step in builds:
        args = step["args"]
        assert "--file=deploy/docker/Dockerfile" in args and args[-1] == ".", "builds deploy/docker/Dockerfile from the repository root"
        (target,) = [a.removeprefix("--target=") for a in args if a.startswith("--target=")]
        assert f"--tag={images[target]}" in args, target
        assert "--build-arg=CARGO_FEATURES=${_CARGO_FEATURES}" in args, "both builds share one build stage"
        assert "DOCKER_BUILDKIT=1" in step.get("env", []), "the Dockerfile's cache mounts need BuildKit"
    assert {a.removeprefix("--target=") for s in builds for a in s["args"] if a.startswith("--target=")} == set(images)
    assert sorted(config["images"]) == sorted(images.values()), "Cloud Build pushes both tagged images"
    # A user-specified service account needs its logs outside the default bucket.
    assert config["options"]["logging"] == "CLOUD_LOGGING_ONLY"
    assert int(config["timeout"].rstrip("s")) >= 3600, "a release build of the workspace takes longer than the default 10 minutes"
    text = CLOUDBUILD.read_text()
    used = set(re.findall(r"\$\{(_[A-Z_]+)\}", text))
    assert used <= set(config["substitutions"]), used - set(config["substitutions"])
    guide = (REPO / "docs" / "deploy.md").read_text()
    assert "gcloud builds submit . --config deploy/cloudbuild.yaml" in guide
    assert "COMMIT_SHA=" in guide and "_IMAGE_REPOSITORY=" in guide


def test_build_upload_leaves_out_state_and_caches():
    lines = {l.strip() for l in (REPO / ".gcloudignore").read_text().splitlines() if l.strip() and not l.startswith("# ")}
    for pattern in ("#!include:.gitignore", ".git", "**/target", "**/.terraform", "**/*.tfstate*", "**/*.tfvars"):
        assert pattern in lines, pattern
    for needed in ("core", "functions", "tools", "migrations", "Cargo.toml", "Cargo.lock", "deploy"):
        assert needed not in lines, f"the build needs {needed}"


# --- emulators/docker-compose.yml: the local Redpanda -------------------------------

COMPOSE = REPO / "emulators"


def test_compose_creates_the_topics_terraform_creates_in_kafka():
    """The compose stack's Redpanda gets the topics Managed Kafka gets (winners
    included, which goods-worker produces to), and compose.env names only those."""
    services = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())["services"]
    command = " ".join(services["topics"]["command"])
    created = re.search(r"rpk topic create ((?:[a-z][a-z-]* )+)-p ", command)
    assert created, command
    local_values = TfDir(ENV_DEV).locals()
    expected = {*local_values["topics"].values(), local_values["dead_letter_topic"]}
    assert set(created.group(1).split()) == expected, created.group(1)
    env = dict(re.findall(r"^(DROPGATE_TOPIC_[A-Z_]+)='([^']*)'$", (COMPOSE / "compose.env").read_text(), re.M))
    assert env.get("DROPGATE_TOPIC_WINNERS") == "winners", env
    assert set(env.values()) <= expected, env
