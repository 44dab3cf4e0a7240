"""An async client of the feature service (HTTP): on-the-fly compute, online lookup,
readiness. One pooled ``httpx.AsyncClient``, opened by the app's lifespan."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import httpx
import numpy as np
import numpy.typing as npt

from vroom_common.errors import DependencyUnavailable, InvalidInput, NotFound
from vroom_common.observability import REQUEST_ID_HEADER, current_request_id
from vroom_common.schemas import (
    FeatureMatrix,
    OfflineFeatureRow,
    OfflineFeatures,
    OnlineDeletion,
    OnlineFeatures,
    StoresInfo,
    VehicleFeatures,
)
from vroom_features import FEATURE_NAMES

#: The dependency name in error messages.
FEATURE_SERVICE: Final = "feature service"
DEFAULT_TIMEOUT_S: Final = 2.0


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return response.text[:500]


class FeatureServiceClient:
    """The feature service at ``base_url``."""

    def __init__(self, base_url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.base_url = base_url
        self.timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None

    async def open(self) -> None:
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, 1.0)),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        self._client = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise DependencyUnavailable(FEATURE_SERVICE, "the HTTP client is not open")
        return self._client

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One request with the caller's request id; errors by meaning. Not retried:
        the pool reconnects by itself and the deadline is short."""
        request_id = current_request_id()
        headers = {REQUEST_ID_HEADER: request_id} if request_id else None
        try:
            response = await self.client.request(method, path, json=body, headers=headers)
        except httpx.TransportError as exc:
            raise DependencyUnavailable(
                FEATURE_SERVICE, f"{self.base_url}{path}: {type(exc).__name__} {exc}".strip()
            ) from exc
        if response.status_code >= 500:
            raise DependencyUnavailable(
                FEATURE_SERVICE,
                f"{self.base_url}{path}: {response.status_code} {_detail(response)}",
            )
        if response.status_code == 404:
            raise NotFound(_detail(response))
        if response.status_code >= 400:
            raise InvalidInput(f"the feature service refused the input: {_detail(response)}")
        return response.json()

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        return await self._call("POST", path, body)

    async def compute(self, vehicles: Sequence[VehicleFeatures]) -> npt.NDArray[np.float32]:
        """Features of the vehicles' raw attributes: ``[N, 5]`` float32, contract order."""
        body = {"vehicles": [v.model_dump() for v in vehicles]}
        matrix = FeatureMatrix.model_validate(await self._post("/v1/features/compute", body))
        if tuple(matrix.feature_names) != tuple(FEATURE_NAMES):
            raise DependencyUnavailable(
                FEATURE_SERVICE,
                f"answered columns {matrix.feature_names}, expected {list(FEATURE_NAMES)}",
            )
        return np.asarray(matrix.features, dtype=np.float32).reshape(len(vehicles), -1)

    async def online(self, vehicle_ids: Sequence[int]) -> OnlineFeatures:
        """The online store's features of these vehicles (and the ids it does not hold)."""
        body = {"vehicle_ids": list(vehicle_ids)}
        return OnlineFeatures.model_validate(await self._post("/v1/features/online", body))

    async def offline(self) -> OfflineFeatures:
        """Every row of the offline store (``available: false`` when it has none)."""
        return OfflineFeatures.model_validate(await self._call("GET", "/v1/features/offline"))

    async def offline_row(self, vehicle_id: int) -> OfflineFeatureRow | None:
        """One vehicle's offline row; ``None`` when the offline store does not hold it."""
        try:
            body = await self._call("GET", f"/v1/features/offline/{vehicle_id}")
        except NotFound:
            return None
        return OfflineFeatureRow.model_validate(body)

    async def delete_online(self, vehicle_id: int) -> OnlineDeletion:
        """Remove a vehicle's features from the online store (idempotent)."""
        body = await self._call("DELETE", f"/v1/features/online/{vehicle_id}")
        return OnlineDeletion.model_validate(body)

    async def stores(self) -> StoresInfo:
        """The offline and online stores' state and the feature view's facts."""
        return StoresInfo.model_validate(await self._call("GET", "/v1/stores"))

    async def is_ready(self) -> bool:
        """``GET /readyz`` answers 200 (Redis up, feature view registered)."""
        try:
            response = await self.client.get("/readyz")
        except httpx.HTTPError:
            return False
        return response.status_code == 200
