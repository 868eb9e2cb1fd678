"""Swagger UI served from this machine, not from a CDN: ``/docs`` works offline.

FastAPI's own ``/docs`` page loads Swagger UI's script and stylesheet from a CDN, so
without internet it renders blank. :func:`add_swagger_ui` serves the files the
``swagger-ui-py`` package ships (Swagger UI 5, which reads the OpenAPI 3.1 documents
FastAPI writes; in the lab dependency group) under
``/docs/static/``, and the page and its OAuth2 redirect page with FastAPI's own
templates (``get_swagger_ui_html``, ``get_swagger_ui_oauth2_redirect_html``).

    app = FastAPI(docs_url=None, redoc_url=None)
    add_swagger_ui(app, init_oauth=lambda: {"clientId": ..., ...})
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

__all__ = ["DOCS_PATH", "OAUTH2_REDIRECT_PATH", "STATIC_PATH", "add_swagger_ui", "assets_dir"]

DOCS_PATH: Final = "/docs"
#: Where Swagger UI sends the browser back after sign-in (register it as a redirect URI).
OAUTH2_REDIRECT_PATH: Final = "/docs/oauth2-redirect"
STATIC_PATH: Final = "/docs/static"


def assets_dir() -> Path:
    """The Swagger UI distribution inside the ``swagger-ui-py`` package (``swagger_ui``)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or spec.origin is None:  # pragma: no cover - the lab group installs it
        raise ImportError("self-hosted Swagger UI needs swagger-ui-py: pip install --group lab")
    # Only its files are used: importing the package would import its web-framework glue.
    return Path(spec.origin).parent / "static"


def add_swagger_ui(
    app: FastAPI, *, init_oauth: Callable[[], dict[str, Any] | None] = lambda: None
) -> None:
    """Serve ``/docs`` (and its OAuth2 redirect page) with local Swagger UI files.

    Build the app with ``docs_url=None`` so FastAPI's CDN page is not routed first.
    ``init_oauth`` is asked on each page load, so settings found at startup (the
    issuer's endpoints) show without rebuilding the app.
    """
    app.mount(STATIC_PATH, StaticFiles(directory=assets_dir()), name="swagger-ui-static")

    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"),
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{STATIC_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{STATIC_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{STATIC_PATH}/favicon-32x32.png",
            oauth2_redirect_url=root + OAUTH2_REDIRECT_PATH,
            init_oauth=init_oauth(),
        )

    async def redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.add_api_route(DOCS_PATH, docs, include_in_schema=False, methods=["GET"])
    app.add_api_route(OAUTH2_REDIRECT_PATH, redirect, include_in_schema=False, methods=["GET"])
