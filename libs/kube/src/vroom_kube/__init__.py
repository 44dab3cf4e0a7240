"""The one way to talk to the Kubernetes API server.

:class:`KubeApi` loads the client (the pod's service account, else the kubeconfig) on
first use, sends plain JSON through the client's transport (auth, TLS) with one timeout,
records our field manager on every write, and maps every failure once:

=========================  ===========================================================
404                        ``NotFound``, with the caller's hint (which setting names it)
401, 403                   ``PermissionDenied``, naming the RBAC the account needs
409                        ``Conflict``
400, 422                   ``InvalidInput``: the API server rejected what we sent; the
                           message is its reason, which names the field
other status, transport    ``DependencyUnavailable("kubernetes", ...)``: retry later
=========================  ===========================================================

Plain JSON rather than the typed API classes: they round-trip an object through their
models, which rejects valid manifests (``cpu: 1``) and drops fields the client does not
know (a custom resource's, a newer Kubernetes's).
"""

from __future__ import annotations

import json
import os
from typing import Any, Final
from urllib.parse import quote

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from vroom_common.errors import (
    Conflict,
    DependencyUnavailable,
    InvalidInput,
    NotFound,
    PermissionDenied,
    VroomError,
)

#: The dependency name in errors and logs.
KUBERNETES: Final = "kubernetes"
#: (connect, read) seconds for each API request.
REQUEST_TIMEOUT: Final = (5.0, 30.0)
#: JSON merge patch (RFC 7386). Custom resources accept it; strategic merge they do not.
MERGE_PATCH: Final = "application/merge-patch+json"

__all__ = [
    "KUBERNETES",
    "MERGE_PATCH",
    "REQUEST_TIMEOUT",
    "KubeApi",
    "api_message",
    "load_api_client",
    "namespaced",
]


def load_api_client() -> client.ApiClient:
    """A client from the pod's service account, else from the kubeconfig."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException as in_cluster:
        try:
            # KUBECONFIG as it is now (the client reads it once, at import).
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
            )
        except (config.ConfigException, OSError) as kubeconfig:
            raise DependencyUnavailable(
                KUBERNETES,
                f"not running in a cluster ({in_cluster}) and no usable kubeconfig "
                f"({kubeconfig}); set KUBECONFIG or run in a pod with a service account",
            ) from kubeconfig
    return client.ApiClient(configuration)


def api_message(exc: ApiException) -> str:
    """The ``message`` of the Kubernetes ``Status`` body, else the HTTP reason."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(exc.reason or exc.status)


def namespaced(namespace: str, *parts: str) -> str:
    """``/namespaces/<namespace>/<part>/...`` with every segment escaped."""
    return "/".join(
        ["", "namespaces", quote(namespace, safe=""), *(quote(p, safe="") for p in parts)]
    )


class KubeApi:
    """One API server, as one component (``field_manager``) of ours talks to it.

    Args:
        field_manager: Recorded in ``metadata.managedFields`` as the writer of what we
            create or patch.
        account: Who needs the RBAC a 401/403 names (``"the gateway's service account"``).
        api_client: A ``kubernetes`` client; default: in-cluster config, else the
            kubeconfig, loaded at the first request (so building a component that may
            never call the API does not fail).
    """

    def __init__(
        self,
        field_manager: str,
        account: str = "the service account",
        api_client: client.ApiClient | None = None,
    ) -> None:
        self.field_manager = field_manager
        self.account = account
        self._api_client = api_client

    def _api(self) -> client.ApiClient:
        if self._api_client is None:
            self._api_client = load_api_client()
        return self._api_client

    def request(
        self,
        what: str,
        method: str,
        path: str,
        *,
        rbac: str,
        namespace: str,
        query: list[tuple[str, str]] | None = None,
        body: dict[str, Any] | None = None,
        content_type: str = "application/json",
        hint: str = "",
    ) -> dict[str, Any]:
        """Send one request; its JSON object answer.

        ``what`` names the operation in every error (``"get CronJob ns/name"``), ``rbac``
        the permission a 401/403 says ``account`` needs in ``namespace``, ``hint`` what
        to check after a 404.
        """
        params = list(query or [])
        if method in ("POST", "PUT", "PATCH"):
            params.append(("fieldManager", self.field_manager))
        try:
            answer = self._send(method, path, params, body, content_type)
        except ApiException as exc:
            raise self._error(what, rbac, namespace, hint, exc) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise DependencyUnavailable(KUBERNETES, f"{what}: {exc or type(exc).__name__}") from exc
        except ValueError as exc:
            raise DependencyUnavailable(KUBERNETES, f"{what}: the answer is not JSON") from exc
        if not isinstance(answer, dict):
            raise DependencyUnavailable(
                KUBERNETES, f"{what}: the answer is not a JSON object: {answer!r:.200}"
            )
        return answer

    def _send(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        body: dict[str, Any] | None,
        content_type: str,
    ) -> Any:
        api = self._api()
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        request = api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = api.call_api(*request, _request_timeout=REQUEST_TIMEOUT)
        response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status <= 299:
            ApiException.from_response(http_resp=response, body=None, data=None)  # raises
        return json.loads(response.data or b"")

    def _error(
        self, what: str, rbac: str, namespace: str, hint: str, exc: ApiException
    ) -> VroomError:
        message = api_message(exc)
        status = exc.status
        if status == 404:
            return NotFound(
                f"{what}: not found (HTTP 404): {message}" + (f"; {hint}" if hint else "")
            )
        if status in (401, 403):
            return PermissionDenied(
                f"{what}: not allowed (HTTP {status}): {message}; {self.account} needs "
                f"{rbac} in namespace {namespace}"
            )
        if status == 409:
            return Conflict(f"{what}: conflict (HTTP 409): {message}")
        if status in (400, 422):
            return InvalidInput(f"{what}: rejected (HTTP {status}): {message}")
        return DependencyUnavailable(KUBERNETES, f"{what} failed (HTTP {status}): {message}")

    def close(self) -> None:
        if self._api_client is not None:
            self._api_client.close()  # type: ignore[no-untyped-call]
            self._api_client = None
