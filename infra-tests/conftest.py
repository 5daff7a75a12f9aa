"""Shared fixtures: every .tf file parsed once, every overlay rendered once."""

from __future__ import annotations

import sys
from pathlib import Path

import hcl2
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TERRAFORM = REPO / "terraform"
MODULES = TERRAFORM / "modules"
ENV_DEV = TERRAFORM / "envs" / "dev"
K8S = REPO / "deploy" / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())

sys.path.insert(0, str(HERE))
import kustomize  # noqa: E402

# Plain values: block labels and strings without their quotes, no comment or block
# markers; expressions stay as "${...}" strings.
_HCL_OPTIONS = hcl2.SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)


def parse_tf(path: Path) -> dict:
    with path.open() as f:
        return hcl2.load(f, serialization_options=_HCL_OPTIONS)


def tf_files() -> list[Path]:
    return sorted(p for p in TERRAFORM.rglob("*.tf") if ".terraform" not in p.parts)


def module_dirs() -> list[Path]:
    return sorted(p for p in MODULES.iterdir() if p.is_dir())


class TfDir:
    """The blocks of one Terraform directory (a module or a root), merged over its files."""

    def __init__(self, path: Path):
        self.path = path
        self.files = {p.name: parse_tf(p) for p in sorted(path.glob("*.tf"))}

    def blocks(self, kind: str) -> list[dict]:
        return [b for parsed in self.files.values() for b in parsed.get(kind, [])]

    def labelled(self, kind: str) -> dict[str, dict]:
        """`variable`, `output`, `module`: name => body."""
        out: dict[str, dict] = {}
        for block in self.blocks(kind):
            for name, body in block.items():
                assert name not in out, f"{self.path}: {kind} {name} is declared twice"
                out[name] = body
        return out

    def resources(self, kind: str = "resource") -> dict[tuple[str, str], dict]:
        """`resource` / `data`: (type, name) => body."""
        out: dict[tuple[str, str], dict] = {}
        for block in self.blocks(kind):
            for rtype, named in block.items():
                for name, body in named.items():
                    out[(rtype, name)] = body
        return out

    def locals(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for block in self.blocks("locals"):
            out.update(block)
        return out


@pytest.fixture(scope="session")
def parsed_tf() -> dict[Path, dict]:
    return {p: parse_tf(p) for p in tf_files()}


@pytest.fixture(scope="session")
def modules() -> dict[str, TfDir]:
    return {p.name: TfDir(p) for p in module_dirs()}


@pytest.fixture(scope="session")
def env_dev() -> TfDir:
    return TfDir(ENV_DEV)


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    return {name: kustomize.render(K8S / "overlays" / name) for name in OVERLAYS}
