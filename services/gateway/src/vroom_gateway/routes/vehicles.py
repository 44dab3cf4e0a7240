"""Vehicles: save and delete new arrivals, list the fleet, read features, the stores.

The database is reached through SQLAlchemy (blocking: the calls run in the thread pool);
online features through the feature service.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Final

from anyio import from_thread
from fastapi import APIRouter, Depends, Path
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from vroom_common.errors import NotFound
from vroom_common.schemas import (
    MAX_BATCH_VEHICLES,
    MAX_VEHICLE_ID,
    VEHICLE_ID_RULE,
    VehicleFeatures,
)
from vroom_db.queries import delete_new_arrival, vehicle_ids, vehicle_source, vehicles_with_label
from vroom_db.vehicles import insert_vehicle, publish_vehicle_saved_async
from vroom_features import FEATURE_NAMES
from vroom_features.schemas import StoresInfo, VehicleFeatureVector
from vroom_gateway.clients.features import FeatureServiceClient
from vroom_gateway.deps import FeaturesDep, RedisDep, SessionsDep, SettingsDep
from vroom_gateway.schemas import (
    DeletedVehicle,
    FeatureStoreName,
    SavedVehicleOut,
    VehicleFeaturesOut,
    VehicleOut,
)
from vroom_gateway.security import authenticate

router = APIRouter(tags=["vehicles"])

VehicleId = Annotated[int, Path(gt=0, le=MAX_VEHICLE_ID, description=VEHICLE_ID_RULE)]

#: Online lookups per feature-service call when listing everyone's features.
_ONLINE_CHUNK: Final = MAX_BATCH_VEHICLES


@router.post("/vehicles", dependencies=[Depends(authenticate)])
async def save_vehicle(
    vehicle: VehicleFeatures, sessions: SessionsDep, redis: RedisDep, settings: SettingsDep
) -> SavedVehicleOut:
    """Save a new arrival (source ``ui``), then publish its vehicle-saved event. When
    Redis is down the vehicle is still saved and ``event_published`` is false."""
    vehicle_id = await run_in_threadpool(insert_vehicle, sessions, vehicle)
    published = await publish_vehicle_saved_async(redis, vehicle_id, settings.stream_maxlen)
    return SavedVehicleOut(vehicle_id=vehicle_id, event_published=published)


def _delete(
    sessions: sessionmaker[Session], vehicle_id: int, features: FeatureServiceClient
) -> None:
    """In one transaction: check the vehicle, delete its row, remove its online features,
    commit. A feature service that is down rolls the deletion back (503), so a vehicle
    is never half deleted; runs in a worker thread."""
    with sessions.begin() as session:
        source = vehicle_source(session, vehicle_id)
        if source is None:
            raise NotFound(f"vehicle {vehicle_id} not found")
        if source != "ui":
            raise NotFound(
                f"vehicle {vehicle_id} is a fleet vehicle: only new arrivals (source ui) "
                "can be deleted"
            )
        if not delete_new_arrival(session, vehicle_id):
            # Another request deleted it between our read and our delete (the row lock
            # makes this one wait, then find nothing): it is gone, once.
            raise NotFound(f"vehicle {vehicle_id} not found")
        from_thread.run(features.delete_online, vehicle_id)


@router.delete("/vehicles/{vehicle_id}", dependencies=[Depends(authenticate)])
async def delete_vehicle(
    vehicle_id: VehicleId, sessions: SessionsDep, features: FeaturesDep
) -> DeletedVehicle:
    """Delete a new arrival and its online features; 404 for fleet vehicles and
    unknown ids."""
    await run_in_threadpool(_delete, sessions, vehicle_id, features)
    return DeletedVehicle(vehicle_id=vehicle_id)


def _all_vehicles(sessions: sessionmaker[Session]) -> list[VehicleOut]:
    with sessions() as session:
        return [VehicleOut.model_validate(row) for row in vehicles_with_label(session)]


@router.get("/vehicles")
async def list_vehicles(sessions: SessionsDep) -> list[VehicleOut]:
    """Every vehicle: id, raw attributes, source and observed reservations."""
    return await run_in_threadpool(_all_vehicles, sessions)


def _out(
    vehicle_id: int, row: VehicleFeatureVector | None, store: FeatureStoreName
) -> VehicleFeaturesOut:
    """The answer for one vehicle: its features from ``store``, or none anywhere."""
    if row is None:
        return VehicleFeaturesOut(vehicle_id=vehicle_id, materialized=False, store="none")
    return VehicleFeaturesOut(
        **row.model_dump(include=set(FEATURE_NAMES)),
        vehicle_id=vehicle_id,
        materialized=True,
        store=store,
    )


async def _online(
    features: FeatureServiceClient, ids: Sequence[int]
) -> dict[int, VehicleFeatureVector]:
    found: dict[int, VehicleFeatureVector] = {}
    for start in range(0, len(ids), _ONLINE_CHUNK):
        answer = await features.online(ids[start : start + _ONLINE_CHUNK])
        found.update({row.vehicle_id: row for row in answer.found if row.vehicle_id is not None})
    return found


def _ids(sessions: sessionmaker[Session]) -> list[int]:
    with sessions() as session:
        return vehicle_ids(session)


def _exists(sessions: sessionmaker[Session], vehicle_id: int) -> bool:
    with sessions() as session:
        return vehicle_source(session, vehicle_id) is not None


@router.get("/vehicles/features")
async def all_vehicle_features(
    sessions: SessionsDep, features: FeaturesDep
) -> list[VehicleFeaturesOut]:
    """Features of every vehicle: the offline store first, the online store for the
    rest (new arrivals); ``materialized: false`` when neither holds them."""
    ids = await run_in_threadpool(_ids, sessions)
    offline = {row.vehicle_id: row for row in (await features.offline()).rows}
    online = await _online(features, [i for i in ids if i not in offline])
    out: list[VehicleFeaturesOut] = []
    for vehicle_id in ids:
        if vehicle_id in offline:
            out.append(_out(vehicle_id, offline[vehicle_id], "offline"))
        else:
            out.append(_out(vehicle_id, online.get(vehicle_id), "online"))
    return out


@router.get("/vehicles/{vehicle_id}/features")
async def vehicle_features(
    vehicle_id: VehicleId, sessions: SessionsDep, features: FeaturesDep
) -> VehicleFeaturesOut:
    """One vehicle's features (offline store first, online as fallback); 404 for an
    unknown vehicle."""
    if not await run_in_threadpool(_exists, sessions, vehicle_id):
        raise NotFound(f"vehicle {vehicle_id} not found")
    row = await features.offline_row(vehicle_id)
    if row is not None:
        return _out(vehicle_id, row, "offline")
    online = await _online(features, [vehicle_id])
    return _out(vehicle_id, online.get(vehicle_id), "online")


@router.get("/stores")
async def stores(features: FeaturesDep) -> StoresInfo:
    """Offline store (Parquet), online store (Redis) and the feature view's facts."""
    return await features.stores()
