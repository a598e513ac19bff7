"""The deployment files parse and agree with the code; no Docker engine runs here to build them."""

from __future__ import annotations

from pathlib import Path

import yaml

from pooldrop.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_kubernetes_manifests_parse_and_use_known_settings() -> None:
    docs = list(yaml.safe_load_all((ROOT / "deploy/kubernetes/pooldrop.yaml").read_text()))
    kinds = [d["kind"] for d in docs]
    assert {"Deployment", "Service", "Ingress", "Job", "Secret", "ConfigMap"} <= set(kinds)
    known = {f"POOLDROP_{n.upper()}" for n in Settings.model_fields}
    for d in docs:
        if d["kind"] in ("Secret", "ConfigMap"):
            values = d.get("stringData") or d.get("data")
            assert set(values) <= known, set(values) - known
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe["httpGet"]["path"] == "/readyz"


def test_compose_file_parses() -> None:
    compose = yaml.safe_load((ROOT / "deploy/docker-compose.yml").read_text())
    assert {"postgres", "redis", "minio", "pooldrop", "migrate"} <= set(compose["services"])
    env = compose["services"]["pooldrop"]["environment"]
    assert env["POOLDROP_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert env["POOLDROP_STORAGE_URL"].startswith("s3://")
