"""A small Label Studio HTTP client: authentication, errors, and the few endpoints geoal uses.

Tokens: a personal access token (a JWT refresh token, Label Studio's default since 1.17) is
exchanged at ``/api/token/refresh/`` for an access token that lives a few minutes and is
renewed when the server says it expired; a legacy token is sent as ``Authorization: Token``.
The token is never logged, stored or put into a message: every message this module builds
from server output goes through :meth:`Client.scrub`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Sequence
from typing import Any

from geoal.errors import ConfigError, GeoalError

TOKEN_ENV = ("LABEL_STUDIO_API_KEY", "LABEL_STUDIO_TOKEN")
UPLOAD_URL_PREFIX = "/data/"  # Label Studio serves uploaded files under MEDIA_URL = /data/
UPLOAD_BATCH = 50  # chip images per upload request


class LabelStudioError(GeoalError):
    """Label Studio cannot be reached, refuses the token, or refuses a request."""


class LabelStudioNotFound(LabelStudioError):
    """The server answered 404: the project or task does not exist (any more)."""


def resolve_token(token: str | None) -> str:
    """The token from ``--token``, else from $LABEL_STUDIO_API_KEY or $LABEL_STUDIO_TOKEN."""
    if token and token.strip():
        return token.strip()
    for name in TOKEN_ENV:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    raise LabelStudioError(
        "no Label Studio token: set LABEL_STUDIO_API_KEY (or give --token) to a personal access "
        "token from Label Studio > Account & Settings > Personal Access Token"
    )


def normalize_url(url: str) -> str:
    """``http(s)://host[:port][/prefix]`` without a trailing slash."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
        raise ConfigError(
            f"--url {redact_url(url)!r}: give the Label Studio address, e.g. http://localhost:8080"
        )
    if "@" in url.split("://", 1)[1].split("/", 1)[0]:
        # requests would send them as HTTP Basic auth in place of the token
        raise ConfigError(
            f"--url {redact_url(url)!r}: Label Studio signs in with the token, not with "
            "'user:password@' in the address; give the URL without them"
        )
    return url


def redact_url(url: str) -> str:
    """``url`` with the password of ``user:password@host`` replaced by ``***``, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "<the --url given>"
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def token_kind(token: str) -> str:
    """'refresh' (a personal access token), 'access' (a JWT access token) or 'legacy'."""
    parts = token.split(".")
    if len(parts) != 3:
        return "legacy"
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return "legacy"
    kind = payload.get("token_type") if isinstance(payload, dict) else None
    return kind if kind in ("refresh", "access") else "legacy"


class Client:
    """One Label Studio server as one user: ``Client(url, token)``; use as a context manager."""

    def __init__(self, url: str, token: str, *, timeout: float = 60.0) -> None:
        import requests

        self.url = normalize_url(url)
        self.timeout = timeout
        self._token = token
        self._kind = token_kind(token)
        self._access: str | None = token if self._kind == "access" else None
        self._session = requests.Session()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()

    def scrub(self, text: str) -> str:
        """``text`` with the token (and the access token made from it) blanked out."""
        for secret in (self._token, self._access):
            if secret:
                text = text.replace(secret, "***")
        return text

    # -- transport -----------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        kwargs.setdefault("timeout", self.timeout)
        try:
            return self._session.request(method, self.url + path, **kwargs)
        except requests.ConnectionError:
            raise LabelStudioError(
                f"cannot reach Label Studio at {self.url} (connection refused or unknown host): "
                "is the server running? (bash scripts/labelstudio_server.sh starts a local one)"
            ) from None
        except requests.Timeout:
            raise LabelStudioError(
                f"Label Studio at {self.url} did not answer within {kwargs['timeout']:g} s"
            ) from None
        except requests.RequestException as exc:
            raise LabelStudioError(
                self.scrub(f"request to {self.url} failed: {type(exc).__name__}")
            ) from None

    def _detail(self, response: Any) -> str:
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if isinstance(body, dict):
            body = body.get("detail") or body.get("validation_errors") or body
        text = body if isinstance(body, str) else json.dumps(body)
        # scrubbed whole, then cut: a cut through a secret would leave most of it unscrubbed
        text = self.scrub(" ".join(text.split()))
        return text[:400] + ("..." if len(text) > 400 else "")

    def _rejected(self, response: Any) -> LabelStudioError:
        return LabelStudioError(
            f"token rejected by {self.url} (HTTP {response.status_code}: {self._detail(response)}); "
            "check LABEL_STUDIO_API_KEY or --token"
        )

    def _refresh(self) -> str:
        r = self._send("POST", "/api/token/refresh/", json={"refresh": self._token})
        if r.status_code in (400, 401, 403):
            raise self._rejected(r)
        if r.status_code == 404:
            raise LabelStudioError(
                f"{self.url} does not accept personal access tokens (no /api/token/refresh/): "
                "is it Label Studio 1.17 or later? Use its legacy token instead"
            )
        self._raise_for(r, "/api/token/refresh/")
        try:
            access = r.json().get("access")
        except (ValueError, AttributeError):
            access = None
        if not isinstance(access, str):
            raise LabelStudioError(f"{self.url}: /api/token/refresh/ gave no access token")
        return access

    def _authorization(self, renew: bool = False) -> str:
        if self._kind == "legacy":
            return f"Token {self._token}"
        if self._kind == "refresh" and (self._access is None or renew):
            self._access = self._refresh()
        return f"Bearer {self._access}"

    def _raise_for(self, response: Any, path: str) -> None:
        code = response.status_code
        if code in (401, 403):
            raise self._rejected(response)
        if code == 404:
            raise LabelStudioNotFound(f"{self.url}{path}: not found ({self._detail(response)})")
        if code >= 400:
            raise LabelStudioError(f"{self.url}{path}: HTTP {code}: {self._detail(response)}")

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """An authenticated request (``path`` from the server root, e.g. ``/api/projects/``).

        Raises LabelStudioError for an unreachable server, a rejected token (401/403) and any
        other error status; LabelStudioNotFound for 404. Returns the requests Response.
        """
        headers = dict(kwargs.pop("headers", {}))
        headers["Authorization"] = self._authorization()
        r = self._send(method, path, headers=headers, **kwargs)
        if r.status_code == 401 and self._kind == "refresh":  # the access token expired: renew once
            headers["Authorization"] = self._authorization(renew=True)
            r = self._send(method, path, headers=headers, **kwargs)
        self._raise_for(r, path)
        return r

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """:meth:`request` and decode the JSON answer."""
        r = self.request(method, path, **kwargs)
        try:
            return r.json()
        except ValueError:
            raise LabelStudioError(
                f"{self.url}{path}: expected JSON, got {r.headers.get('content-type', 'nothing')} "
                "(is this URL a Label Studio server?)"
            ) from None

    # -- endpoints -----------------------------------------------------------

    def whoami(self) -> dict[str, Any]:
        """The token's user (checks the server and the token)."""
        return dict(self.json("GET", "/api/current-user/whoami"))

    def project(self, project_id: int) -> dict[str, Any] | None:
        """A project's settings, or None if it does not exist (deleted)."""
        try:
            return dict(self.json("GET", f"/api/projects/{int(project_id)}"))
        except LabelStudioNotFound:
            return None

    def create_project(self, title: str, description: str, label_config: str) -> dict[str, Any]:
        """Create a project with this labelling config."""
        body = {"title": title[:50], "description": description, "label_config": label_config}
        return dict(self.json("POST", "/api/projects/", json=body))

    def upload_files(self, project_id: int, files: Sequence[tuple[str, bytes]]) -> list[str]:
        """Upload (name, content) files into a project without making tasks of them.

        Returns the URL path under which Label Studio serves each file (same order), for use
        in task data: the images travel with the tasks, no shared folder or internet needed.
        """
        urls: list[str] = []
        for start in range(0, len(files), UPLOAD_BATCH):
            batch = files[start : start + UPLOAD_BATCH]
            multipart = {
                f"file{start + k}": (name, content, _mime(name))
                for k, (name, content) in enumerate(batch)
            }
            answer = self.json(
                "POST",
                f"/api/projects/{int(project_id)}/import",
                params={"commit_to_project": "false"},
                files=multipart,
                timeout=max(self.timeout, 300.0),
            )
            ids = answer.get("file_upload_ids") if isinstance(answer, dict) else None
            if not isinstance(ids, list) or len(ids) != len(batch):
                raise LabelStudioError(
                    f"{self.url}: uploading {len(batch)} images gave {ids!r} file upload ids"
                )
            listed = self.json(
                "GET",
                f"/api/projects/{int(project_id)}/file-uploads",
                params={"ids": json.dumps(ids)},
            )
            by_id = {int(f["id"]): str(f["file"]) for f in listed}
            for file_id, (name, _) in zip(ids, batch, strict=True):
                stored = by_id.get(int(file_id))
                if stored is None or not stored.endswith(name):
                    raise LabelStudioError(
                        f"{self.url}: uploaded image {name} is not listed as file {file_id}"
                    )
                urls.append(UPLOAD_URL_PREFIX + stored.lstrip("/"))
        return urls

    def import_tasks(self, project_id: int, tasks: Sequence[dict[str, Any]]) -> list[int]:
        """Create tasks (with their predictions); returns the new task ids."""
        if not tasks:
            return []
        answer = self.json(
            "POST",
            f"/api/projects/{int(project_id)}/import",
            params={"return_task_ids": "true"},
            json=list(tasks),
            timeout=max(self.timeout, 300.0),
        )
        ids = answer.get("task_ids") if isinstance(answer, dict) else None
        if not isinstance(ids, list) or len(ids) != len(tasks):
            raise LabelStudioError(
                f"{self.url}: importing {len(tasks)} tasks into project {project_id} gave "
                f"{'no' if ids is None else len(ids)} task ids"
            )
        return [int(i) for i in ids]

    def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
        """Every task of a project with its annotations (Label Studio's JSON export)."""
        tasks = self.json(
            "GET",
            f"/api/projects/{int(project_id)}/export",
            params={"exportType": "JSON", "download_all_tasks": "true"},
            timeout=max(self.timeout, 300.0),
        )
        if not isinstance(tasks, list):
            raise LabelStudioError(f"{self.url}: the export of project {project_id} is not a list")
        return tasks


def connect(url: str, token: str | None = None) -> Client:
    """A client for ``url`` with the token from ``token`` or the environment, checked once."""
    client = Client(url, resolve_token(token))
    try:
        client.whoami()
    except BaseException:
        client.close()
        raise
    return client


def _mime(name: str) -> str:
    return "image/jpeg" if name.lower().endswith((".jpg", ".jpeg")) else "image/png"
