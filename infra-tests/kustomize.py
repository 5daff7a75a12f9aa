#!/usr/bin/env python3
"""Render deploy/k8s kustomizations without the kustomize binary.

The checks must run on machines that have neither kustomize nor kubectl, so this
implements the subset of kustomize our own kustomizations use: `resources` (files and
directories), `images`, and `patches` (inline or from a file; strategic-merge patches
matched by kind and name, JSON 6902 patches with a kind/name target). Anything else
is refused loudly rather than rendered wrongly; when kubectl is present,
test_k8s.py compares this output with `kubectl kustomize`.

Usage: kustomize.py DIR [-o FILE]   (prints multi-document YAML)
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

SUPPORTED_KEYS = {"apiVersion", "kind", "resources", "images", "patches"}
SUPPORTED_PATCH_KEYS = {"patch", "path", "target"}
SUPPORTED_TARGET_KEYS = {"kind", "name", "namespace"}


class RenderError(Exception):
    """The kustomization uses something this renderer does not implement."""


def _load_all(path: Path) -> list[dict]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def _ident(doc: dict) -> tuple[str, str, str]:
    meta = doc.get("metadata", {})
    return doc["kind"], meta.get("namespace", ""), meta["name"]


def _merge(base: Any, patch: Any, where: str) -> Any:
    """Strategic merge limited to maps: lists of maps would need the per-field merge
    keys of the Kubernetes schema, so a patch that touches one is refused."""
    if isinstance(patch, dict) and isinstance(base, dict):
        if "$patch" in patch:
            raise RenderError(f"{where}: $patch directives are not supported")
        out = dict(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = _merge(out[key], value, f"{where}.{key}")
            else:
                out[key] = copy.deepcopy(value)
        return out
    if isinstance(patch, list) and any(isinstance(item, dict) for item in patch):
        raise RenderError(f"{where}: strategic-merge patches of lists of maps are not supported; use a JSON 6902 patch")
    return copy.deepcopy(patch)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise RenderError(f"JSON pointer must start with '/': {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _json6902(doc: dict, ops: list[dict], where: str) -> None:
    for op in ops:
        kind = op.get("op")
        parts = _pointer(op["path"])
        parent: Any = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        if kind in ("replace", "add"):
            value = copy.deepcopy(op["value"])
            if isinstance(parent, list):
                if last == "-":
                    parent.append(value)
                elif kind == "add":
                    parent.insert(int(last), value)
                else:
                    parent[int(last)] = value
            else:
                if kind == "replace" and last not in parent:
                    raise RenderError(f"{where}: replace of a missing path {op['path']}")
                parent[last] = value
        elif kind == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            else:
                del parent[last]
        else:
            raise RenderError(f"{where}: JSON patch op {kind!r} is not supported")


def _matches(doc: dict, target: dict) -> bool:
    kind, namespace, name = _ident(doc)
    return (
        target.get("kind", kind) == kind
        and target.get("name", name) == name
        and target.get("namespace", namespace) == namespace
    )


def _apply_patch(docs: list[dict], entry: dict, base_dir: Path) -> None:
    unknown = set(entry) - SUPPORTED_PATCH_KEYS
    if unknown:
        raise RenderError(f"{base_dir}: patch keys {sorted(unknown)} are not supported")
    text = entry["patch"] if "patch" in entry else (base_dir / entry["path"]).read_text()
    body = yaml.safe_load(text)
    target = entry.get("target")
    if target is not None and set(target) - SUPPORTED_TARGET_KEYS:
        raise RenderError(f"{base_dir}: target keys {sorted(set(target) - SUPPORTED_TARGET_KEYS)} are not supported")
    if isinstance(body, list):
        if target is None:
            raise RenderError(f"{base_dir}: a JSON 6902 patch needs a target")
        hits = [i for i, d in enumerate(docs) if _matches(d, target)]
        if not hits:
            raise RenderError(f"{base_dir}: no resource matches patch target {target}")
        for i in hits:
            _json6902(docs[i], body, f"{base_dir} -> {_ident(docs[i])}")
        return
    if not isinstance(body, dict):
        raise RenderError(f"{base_dir}: a patch must be a map or a list of operations")
    if target is None:
        target = {"kind": body["kind"], "name": body["metadata"]["name"]}
        if "namespace" in body.get("metadata", {}):
            target["namespace"] = body["metadata"]["namespace"]
    hits = [i for i, d in enumerate(docs) if _matches(d, target)]
    if not hits:
        raise RenderError(f"{base_dir}: no resource matches patch {target}")
    for i in hits:
        docs[i] = _merge(docs[i], body, f"{base_dir} -> {_ident(docs[i])}")


def _split_image(image: str) -> tuple[str, str]:
    """Split `name[:tag][@digest]` into the name and the rest (':tag', '@digest' or both)."""
    ref, at, digest = image.partition("@")
    name, rest = ref, ""
    if ":" in ref.rsplit("/", 1)[-1]:
        name, tag = ref.rsplit(":", 1)
        rest = ":" + tag
    if at:
        rest += "@" + digest
    return name, rest


def _pod_specs(doc: dict) -> list[dict]:
    spec = doc.get("spec", {})
    if doc.get("kind") == "CronJob":
        return [spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})]
    if "template" in spec:
        return [spec["template"].get("spec", {})]
    if doc.get("kind") == "Pod":
        return [spec]
    return []


def _apply_images(docs: list[dict], images: list[dict]) -> None:
    for rule in images:
        for doc in docs:
            for pod in _pod_specs(doc):
                for group in ("initContainers", "containers"):
                    for container in pod.get(group, []):
                        name, rest = _split_image(container["image"])
                        if name != rule["name"]:
                            continue
                        new_name = rule.get("newName", name)
                        if "digest" in rule:
                            rest = "@" + rule["digest"]
                        elif "newTag" in rule:
                            rest = ":" + str(rule["newTag"])
                        container["image"] = new_name + rest


def render(directory: Path | str) -> list[dict]:
    """Resources of the kustomization in `directory`, with its transformations applied."""
    directory = Path(directory)
    kfile = directory / "kustomization.yaml"
    with kfile.open() as f:
        kustomization = yaml.safe_load(f) or {}
    unknown = set(kustomization) - SUPPORTED_KEYS
    if unknown:
        raise RenderError(f"{kfile}: keys {sorted(unknown)} are not supported by this renderer")
    docs: list[dict] = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        docs.extend(render(path) if path.is_dir() else _load_all(path))
    seen: set[tuple[str, str, str]] = set()
    for doc in docs:
        ident = _ident(doc)
        if ident in seen:
            raise RenderError(f"{kfile}: {ident} is defined twice")
        seen.add(ident)
    for entry in kustomization.get("patches", []):
        _apply_patch(docs, entry, directory)
    _apply_images(docs, kustomization.get("images", []))
    return docs


def dump(docs: list[dict]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=True, default_flow_style=False)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory")
    parser.add_argument("-o", "--output", help="write here instead of stdout")
    args = parser.parse_args(argv)
    try:
        text = dump(render(args.directory))
    except (RenderError, KeyError, OSError, yaml.YAMLError) as e:
        print(f"kustomize.py: {e}", file=sys.stderr)
        return 1
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
