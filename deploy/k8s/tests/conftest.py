"""Fixtures of the deploy/k8s tests: the generator module, the services as it reads them, and
both overlays rendered by ``kubectl kustomize`` (skipped with a message where kubectl is
missing)."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

K8S = Path(__file__).resolve().parents[1]
REPO = K8S.parents[1]
OVERLAYS = ("dev", "production")


@pytest.fixture(scope="session")
def generator() -> ModuleType:
    """The ``k8s_manifests`` package, which lives beside the manifests, not in the workspace."""
    if str(K8S) not in sys.path:
        sys.path.insert(0, str(K8S))
    return importlib.import_module("k8s_manifests")


@pytest.fixture(scope="session")
def services(generator: ModuleType) -> list[Any]:
    return list(generator.read_services())


_rendered: dict[str, list[dict[str, Any]]] = {}


def render(overlay: str) -> list[dict[str, Any]]:
    """The overlay as ``kubectl kustomize`` renders it, one dict per object."""
    if overlay not in _rendered:
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            pytest.skip("kubectl is not installed: the rendered overlays cannot be checked here")
        result = subprocess.run(
            [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        _rendered[overlay] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return _rendered[overlay]


class Manifests(list[dict[str, Any]]):
    """The objects of one rendered overlay."""

    def __init__(self, overlay: str, objects: list[dict[str, Any]]) -> None:
        super().__init__(objects)
        self.overlay = overlay

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self if o["kind"] == kind]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.overlay}: {kind}/{name}: {len(found)} found"
        return found[0]


@pytest.fixture
def all_overlays() -> dict[str, list[dict[str, Any]]]:
    return {overlay: render(overlay) for overlay in OVERLAYS}


@pytest.fixture(params=OVERLAYS)
def manifests(request: pytest.FixtureRequest) -> Manifests:
    return Manifests(str(request.param), render(str(request.param)))


@pytest.fixture
def dev_manifests() -> Manifests:
    return Manifests("dev", render("dev"))


@pytest.fixture
def production() -> Manifests:
    return Manifests("production", render("production"))
