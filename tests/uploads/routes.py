"""Mounts the batch and tus routers on a test server whose app does not mount them yet.

``api/app.py`` is edited elsewhere; once it includes these routers this is a no-op.
"""

from __future__ import annotations

import importlib

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

ROUTERS = {
    "pooldrop.api.routes.batches": "/api/v1/pools/{pool_id}/batches",
    "pooldrop.api.routes.tus": "/api/v1/tus/",
}


def ensure_mounted(app: FastAPI) -> None:
    paths = {r.path for r in app.routes if isinstance(r, APIRoute)}
    for module, probe in ROUTERS.items():
        if probe not in paths:
            router: APIRouter = importlib.import_module(module).router
            app.include_router(router)
