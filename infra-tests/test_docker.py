"""The Dockerfile, read (no Docker engine runs here to build it): it must stay in step
with the workspace and with the Kubernetes manifests that run its binaries."""

from __future__ import annotations

import re

import yaml

from conftest import K8S, REPO

DOCKERFILE = (REPO / "deploy" / "docker" / "Dockerfile").read_text()
BINARIES = ("queue-api", "admitter", "goods-worker", "result-relay", "dropgate")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def test_multi_stage_build_of_the_functions_crate():
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", DOCKERFILE, re.M | re.I)
    assert len(stages) >= 2, "build and runtime stages"
    assert stages[0][0].startswith("rust:")
    assert stages[-1][0] == "debian:bookworm-slim"
    assert re.search(r"cargo build --release --locked -p dropgate-functions", DOCKERFILE)
    for package in ("build-essential", "cmake", "clang", "libclang-dev", "pkg-config"):
        assert re.search(rf"\s{re.escape(package)}(\s|$)", DOCKERFILE), f"the builder needs {package}"


def test_rust_toolchain_is_at_least_the_workspace_floor():
    floor = re.search(r'^rust-version\s*=\s*"([\d.]+)"', (REPO / "Cargo.toml").read_text(), re.M)
    assert floor
    image = re.search(r"^ARG RUST_VERSION=([\d.]+)", DOCKERFILE, re.M)
    assert image and _version(image.group(1)) >= _version(floor.group(1))


def test_image_holds_every_binary_and_runs_as_the_manifests_user():
    for name in BINARIES:
        assert re.search(rf"\b{re.escape(name)}\b", DOCKERFILE), name
    user = re.findall(r"^USER\s+(\d+)(?::(\d+))?", DOCKERFILE, re.M)
    assert user and user[-1][0] != "0", "the image runs as a non-root user"
    for path in (K8S / "base").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Deployment":
                ctx = doc["spec"]["template"]["spec"]["securityContext"]
                assert str(ctx["runAsUser"]) == user[-1][0], f"{path.name}: runAsUser matches the image's USER"
                command = doc["spec"]["template"]["spec"]["containers"][0]["command"][0]
                assert command.removeprefix("/usr/local/bin/") in BINARIES


def test_dockerignore_keeps_the_context_small_and_secret_free():
    lines = {l.strip() for l in (REPO / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")}
    for pattern in ("**/target", ".git", ".dropgate", "**/*.tfstate*"):
        assert pattern in lines, pattern
    for needed in ("core", "functions", "migrations", "tests", "Cargo.toml", "Cargo.lock"):
        assert needed not in lines, f"cargo build needs {needed}"
