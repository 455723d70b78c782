"""Synthetic building sensor data, one distribution per edge site (non-IID).

Each sample is a 24-hour window of one building: outdoor and indoor temperature, humidity and
electrical power, summarised into features; the label is the HVAC mode the building's controller
chooses for the next hour (idle, heating, cooling). The control rule is the same everywhere, so a
shared model exists, but sites differ in climate, building size, sensor calibration and thus
class balance: a cold site sees mostly heating, a mild one more cooling. A model trained on one
site alone is biased; federated averaging over all sites is what generalises.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MODES: tuple[str, ...] = ("idle", "heating", "cooling")
HOURS = 24
HEATING_BELOW_C = 20.0
COOLING_ABOVE_C = 23.0
LABEL_NOISE = 0.04


@dataclass(frozen=True)
class SiteClimate:
    outdoor_mean_c: float
    daily_swing_c: float
    humidity_mean: float
    building_kw: float
    # How well the building holds heat: indoor follows outdoor by this fraction.
    leakage: float
    # The site's indoor thermometers read this much off; the model must cope.
    sensor_offset_c: float


# Fitted to nothing: chosen so that the three sites' class balances differ markedly.
CLIMATES: dict[str, SiteClimate] = {
    "delft": SiteClimate(7.0, 6.0, 0.82, 40.0, 0.30, 0.4),
    "eindhoven": SiteClimate(13.0, 9.0, 0.70, 80.0, 0.35, -0.3),
    "ghent": SiteClimate(19.0, 7.0, 0.76, 25.0, 0.45, 0.2),
    "frankfurt": SiteClimate(12.0, 8.0, 0.72, 60.0, 0.35, 0.0),
}
DEFAULT_CLIMATE = SiteClimate(12.0, 8.0, 0.75, 50.0, 0.35, 0.0)
FEATURES = 9


@dataclass(frozen=True)
class Dataset:
    features: FloatArray
    labels: IntArray

    def __len__(self) -> int:
        return len(self.labels)

    def split(self, test_fraction: float) -> tuple[Dataset, Dataset]:
        cut = int(len(self) * (1.0 - test_fraction))
        return (
            Dataset(self.features[:cut], self.labels[:cut]),
            Dataset(self.features[cut:], self.labels[cut:]),
        )


def site_seed(site: str, salt: int = 0) -> int:
    """A stable seed per site, so that a shard that moves regenerates the same data (the
    site's data, read from the region's replica) wherever it runs."""
    return (sum((index + 1) * ord(char) for index, char in enumerate(site)) * 7919 + salt) % 2**31


def generate(site: str, samples: int, seed: int) -> Dataset:
    climate = CLIMATES.get(site, DEFAULT_CLIMATE)
    rng = np.random.default_rng(seed)
    hours = np.arange(HOURS, dtype=np.float64)
    day_shift = rng.uniform(-8.0, 8.0, size=(samples, 1))
    swing = climate.daily_swing_c * rng.uniform(0.6, 1.4, size=(samples, 1))
    phase = rng.uniform(0.0, HOURS, size=(samples, 1))
    outdoor = (
        climate.outdoor_mean_c
        + day_shift
        + swing * np.sin(2 * np.pi * (hours[None, :] + phase) / HOURS)
        + rng.normal(0.0, 0.8, size=(samples, HOURS))
    )
    # Indoor temperature drifts towards outdoor through the envelope and is pulled back to a
    # comfortable band by the HVAC; occupancy adds heat.
    occupancy = rng.uniform(0.0, 3.0, size=(samples, 1))
    indoor = (
        21.5
        + climate.leakage * (outdoor - 21.5)
        + occupancy
        + rng.normal(0.0, 0.5, size=(samples, HOURS))
    )
    next_hour_indoor = indoor[:, -1] + 0.5 * (indoor[:, -1] - indoor[:, -4]) / 3.0
    labels = np.zeros(samples, dtype=np.int64)
    labels[next_hour_indoor < HEATING_BELOW_C] = 1
    labels[next_hour_indoor > COOLING_ABOVE_C] = 2
    flip = rng.random(samples) < LABEL_NOISE
    labels[flip] = rng.integers(0, len(MODES), size=int(flip.sum()))

    humidity = np.clip(
        climate.humidity_mean - 0.01 * (outdoor - climate.outdoor_mean_c), 0.05, 1.0
    ) + rng.normal(0.0, 0.03, size=(samples, HOURS))
    load = np.abs(indoor - 21.5)
    power = climate.building_kw * (0.3 + 0.1 * load) * rng.uniform(0.8, 1.2, size=(samples, 1))
    measured_indoor = indoor + climate.sensor_offset_c
    end_hour = (phase[:, 0] + HOURS) % HOURS
    features = np.column_stack(
        [
            outdoor.mean(axis=1) / 20.0,
            (outdoor[:, -1] - outdoor[:, -4]) / 10.0,
            (measured_indoor[:, -1] - 21.5) / 3.0,
            (measured_indoor[:, -1] - measured_indoor[:, -4]) / 3.0,
            (measured_indoor.mean(axis=1) - 21.5) / 3.0,
            humidity.mean(axis=1),
            np.log(power.mean(axis=1)) / 5.0,
            np.sin(2 * np.pi * end_hour / HOURS),
            np.cos(2 * np.pi * end_hour / HOURS),
        ]
    )
    return Dataset(features.astype(np.float64), labels)


def site_dataset(site: str, samples: int, test_fraction: float = 0.25) -> tuple[Dataset, Dataset]:
    """The site's (train, test) split."""
    return generate(site, samples, site_seed(site)).split(test_fraction)


def reference_set(sites: list[str], samples_per_site: int) -> Dataset:
    """A labelled validation set with every site's distribution, as the job's owner keeps
    centrally to judge the global model; drawn apart from the sites' training data."""
    parts = [generate(site, samples_per_site, site_seed(site, salt=1)) for site in sites]
    return Dataset(
        np.concatenate([part.features for part in parts]),
        np.concatenate([part.labels for part in parts]),
    )
