"""A synthetic fleet with the schema and the distributions of the real data set.

A fresh machine without ``../shared/data`` still gets a fleet to train on. The
attributes follow the marginals of the real ``vehicles.csv`` (recommended prices
35-90, actual prices 0.8-2.0 times the recommendation and within 30-175, 1-5
images, descriptions of 1-250 characters skewed short, 17% with the technology
package, half street-parked).

Each vehicle's reservation count is drawn from a negative binomial (overdispersed,
like the real label) whose mean falls as the price rises above the recommendation
and grows with images, description length and the technology package; a small share
of listings is never booked at all. The constants are calibrated so that, over
5,000 vehicles, the mean count is about 6.4 and about 9% of vehicles have none, as in
the real data. Reservations are timestamps spread uniformly over 2023.

Everything is drawn from one ``numpy.random.default_rng(seed)`` in a fixed order, so a
seed always gives the same fleet.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from vroom_common.errors import InvalidInput
from vroom_pipelines.seed import FleetData, ReservationRecord, VehicleRecord

#: Upper bound on ``n``: enough for any load test, small enough to stay in memory.
MAX_VEHICLES = 1_000_000

# --- attribute distributions (marginals of the real vehicles.csv) ---------------------
TECHNOLOGY_SHARE = 0.17
STREET_PARKED_SHARE = 0.5
RECOMMENDED_PRICE_RANGE = (35, 90)  # whole currency units, inclusive
PRICE_RATIO_RANGE = (0.8, 2.0)  # actual / recommended
ACTUAL_PRICE_RANGE = (30.0, 175.0)
IMAGES_RANGE = (1, 5)  # inclusive
DESCRIPTION_RANGE = (1, 250)  # characters, inclusive
DESCRIPTION_GAMMA = (0.9, 100.0)  # shape, scale: median ~60, mean ~85 after clipping

# --- reservation count model ----------------------------------------------------------
# log(mean) = INTERCEPT + sum of effects; count ~ NegBin(DISPERSION, mean), and a listing
# is never booked with probability NEVER_BOOKED_SHARE.
INTERCEPT = 2.02
PRICE_DIFF_EFFECT = -0.012  # per currency unit above the recommended price
IMAGES_EFFECT = 0.15  # per image above 3
DESCRIPTION_EFFECT = 0.10  # per 100 characters
TECHNOLOGY_EFFECT = 0.25
DISPERSION = 4.0  # negative binomial size: variance = mean + mean^2 / DISPERSION
NEVER_BOOKED_SHARE = 0.06

RESERVATION_YEAR_START = datetime(2023, 1, 1)
SECONDS_IN_YEAR = 365 * 24 * 3600


def generate_fleet(n: int, seed: int = 42) -> FleetData:
    """``n`` vehicles (ids 1..n) and their reservations, deterministic for ``seed``.

    Raises:
        InvalidInput: ``n`` is not between 1 and ``MAX_VEHICLES``.
    """
    if not 1 <= n <= MAX_VEHICLES:
        raise InvalidInput(f"n must be between 1 and {MAX_VEHICLES} vehicles (got {n})")
    rng = np.random.default_rng(seed)

    technology = (rng.random(n) < TECHNOLOGY_SHARE).astype(np.int64)
    street_parked = (rng.random(n) < STREET_PARKED_SHARE).astype(np.int64)
    recommended = rng.integers(
        RECOMMENDED_PRICE_RANGE[0], RECOMMENDED_PRICE_RANGE[1] + 1, n
    ).astype(np.float64)
    ratio = rng.uniform(*PRICE_RATIO_RANGE, n)
    actual = np.clip(np.round(recommended * ratio, 2), *ACTUAL_PRICE_RANGE)
    num_images = rng.integers(IMAGES_RANGE[0], IMAGES_RANGE[1] + 1, n)
    description = np.clip(np.round(rng.gamma(*DESCRIPTION_GAMMA, n)), *DESCRIPTION_RANGE).astype(
        np.int64
    )

    mean = np.exp(
        INTERCEPT
        + PRICE_DIFF_EFFECT * (actual - recommended)
        + IMAGES_EFFECT * (num_images - 3)
        + DESCRIPTION_EFFECT * description / 100.0
        + TECHNOLOGY_EFFECT * technology
    )
    counts = rng.negative_binomial(DISPERSION, DISPERSION / (DISPERSION + mean))
    counts[rng.random(n) < NEVER_BOOKED_SHARE] = 0

    vehicle_ids = np.arange(1, n + 1)
    booked_ids = np.repeat(vehicle_ids, counts)
    offsets = rng.integers(0, SECONDS_IN_YEAR, booked_ids.size)
    order = np.argsort(offsets, kind="stable")  # a reservation log: oldest first

    vehicles = [
        VehicleRecord(
            vehicle_id=vehicle_id,
            technology=tech,
            actual_price=act,
            recommended_price=rec,
            num_images=images,
            street_parked=street,
            description=desc,
        )
        for vehicle_id, tech, act, rec, images, street, desc in zip(
            vehicle_ids.tolist(),
            technology.tolist(),
            actual.tolist(),
            recommended.tolist(),
            num_images.tolist(),
            street_parked.tolist(),
            description.tolist(),
            strict=True,
        )
    ]
    reservations = [
        ReservationRecord(
            vehicle_id=vehicle_id,
            created_at=RESERVATION_YEAR_START + timedelta(seconds=offset),
        )
        for vehicle_id, offset in zip(
            booked_ids[order].tolist(), offsets[order].tolist(), strict=True
        )
    ]
    return FleetData(
        vehicles=vehicles, reservations=reservations, source=f"synthetic(n={n}, seed={seed})"
    )
