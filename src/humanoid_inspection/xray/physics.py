"""Attenuation physics: materials, xraylib coefficients, polychromatic transmission tables.

Beer-Lambert for a polychromatic beam and an energy-integrating detector: a pixel behind
t_k mm of material k records the deposited energy

    S = sum_E n(E) eta(E) E exp(-sum_k mu_k(E) t_k)

with n(E) the photons per pixel in energy bin E, eta(E) = 1 - exp(-mu_scint(E) d) the absorption
of the scintillator and mu_k(E) = (mu/rho)_k(E) rho_k the linear attenuation coefficient,
(mu/rho) the total cross section with coherent scattering from xraylib (CS_Total_CP, mixture
rule over mass fractions). Beam hardening follows: the effective coefficient -d ln S / dt falls
with thickness. `TransmissionTable` tabulates S(t), the mean and the rms deposited energy per
detected photon for one material on a uniform thickness grid, so a radiograph costs one table
look-up per pixel instead of a sum over energy bins.

Units: thickness mm, energy keV, mu in 1/mm, mass attenuation cm^2/g, density g/cm^3.
"""

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class Material:
    """A material as mass fractions of elements and a density.

    Attributes:
        name: identifier.
        fractions: ((element symbol, mass fraction), ...), fractions summing to 1.
        density: g/cm^3.
        description: what it stands for.
    """

    name: str
    fractions: tuple
    density: float
    description: str = field(default='', compare=False)


def _normalised(fractions: dict) -> tuple:
    total = sum(fractions.values())
    return tuple((symbol, value / total) for symbol, value in fractions.items())


# EN AC-46000 AlSi9Cu3(Fe), the usual high-pressure die-casting alloy (close to A380):
# typical analysis, aluminium balance.
ALSI9CU3 = Material('AlSi9Cu3', _normalised({
    'Al': 85.35, 'Si': 9.0, 'Cu': 3.0, 'Fe': 0.9, 'Zn': 1.0, 'Mn': 0.3, 'Mg': 0.3,
    'Ni': 0.1, 'Ti': 0.05}), 2.75, 'EN AC-46000 die-casting alloy')
# alpha-Al15(Fe,Mn)3Si2 'sludge': iron-rich intermetallic inclusion of secondary Al alloys.
FE_INTERMETALLIC = Material('fe_intermetallic', _normalised({
    'Al': 64.4, 'Fe': 20.0, 'Mn': 6.7, 'Si': 8.9}), 3.6,
    'alpha-Al15(Fe,Mn)3Si2 sludge particle')
# corundum / oxide inclusion (thick oxide, die lubricant residue converted)
ALUMINA = Material('alumina', _normalised({'Al': 52.9, 'O': 47.1}), 3.95, 'Al2O3 oxide')
# foreign metal (ladle / shot-sleeve fragment), low-carbon steel
STEEL = Material('steel', _normalised({'Fe': 98.8, 'Mn': 0.8, 'C': 0.2, 'Si': 0.2}), 7.85,
                 'low-carbon steel fragment')
# CsI:Tl scintillator of the flat-panel detector
CSI = Material('CsI', _normalised({'Cs': 51.15, 'I': 48.85}), 4.51, 'CsI:Tl scintillator')
AIR = Material('air', _normalised({'N': 75.5, 'O': 23.2, 'Ar': 1.3}), 1.205e-3, 'dry air')

MATERIALS = {m.name: m for m in (ALSI9CU3, FE_INTERMETALLIC, ALUMINA, STEEL, CSI, AIR)}


def get_material(name_or_material) -> Material:
    """Look up a material by name (or pass a Material through).

    Raises:
        ValueError: for an unknown name.
    """
    if isinstance(name_or_material, Material):
        return name_or_material
    try:
        return MATERIALS[name_or_material]
    except KeyError:
        raise ValueError(f"unknown material '{name_or_material}'; "
                         f'known: {sorted(MATERIALS)}') from None


@lru_cache(maxsize=256)
def _mass_attenuation_cached(fractions: tuple, energies: tuple) -> np.ndarray:
    import xraylib  # noqa: PLC0415 (heavy C extension, loaded when first needed)

    values = np.zeros(len(energies))
    for symbol, weight in fractions:
        values += weight * np.array([xraylib.CS_Total_CP(symbol, float(e)) for e in energies])
    values.flags.writeable = False
    return values


def mass_attenuation(material, energies_kev) -> np.ndarray:
    """Total mass attenuation coefficient (mu/rho, cm^2/g) from xraylib, mixture rule.

    Args:
        material: Material or material name.
        energies_kev: photon energies (keV), 1..1000.

    Returns:
        Array of mu/rho values (cm^2/g), same length as energies.

    Raises:
        ValueError: for an unknown material or an energy outside 1..1000 keV.
    """
    material = get_material(material)
    energies = np.atleast_1d(np.asarray(energies_kev, float))
    if energies.size and (energies.min() < 1.0 or energies.max() > 1000.0):
        raise ValueError('energies must lie in 1..1000 keV')
    return _mass_attenuation_cached(material.fractions, tuple(energies.tolist())).copy()


def linear_attenuation(material, energies_kev) -> np.ndarray:
    """Linear attenuation coefficient mu (1/mm) = (mu/rho) * rho / 10."""
    material = get_material(material)
    return mass_attenuation(material, energies_kev) * material.density / 10.0


def filter_transmission(filtration, energies_kev) -> np.ndarray:
    """exp(-sum mu t) of a stack of filters ((material name or element symbol, mm), ...)."""
    energies = np.asarray(energies_kev, float)
    total = np.zeros_like(energies)
    for name, mm in filtration:
        if name in MATERIALS:
            total += linear_attenuation(name, energies) * float(mm)
        else:
            import xraylib  # noqa: PLC0415

            z = xraylib.SymbolToAtomicNumber(name)
            density = xraylib.ElementDensity(z)
            mu = np.array([xraylib.CS_Total_CP(name, float(e)) for e in energies])
            total += mu * density / 10.0 * float(mm)
    return np.exp(-total)


def scintillator_absorption(energies_kev, thickness_mm: float, material=CSI) -> np.ndarray:
    """Fraction of photons absorbed in the scintillator, 1 - exp(-mu d)."""
    if thickness_mm <= 0:
        raise ValueError(f'scintillator thickness must be > 0 mm, got {thickness_mm}')
    return 1.0 - np.exp(-linear_attenuation(material, energies_kev) * thickness_mm)


class TransmissionTable:
    """Polychromatic transmission through one material, tabulated against thickness.

    Args:
        energies_kev: bin centres (keV).
        photons: photons per pixel per bin reaching the object (open beam).
        response: detector absorption per bin (0..1).
        material: the material the table is for.
        max_thickness_mm: table range (thicker clamps to the last entry).
        step_mm: table step.
    """

    def __init__(self, energies_kev, photons, response, material=ALSI9CU3,
                 max_thickness_mm: float = 300.0, step_mm: float = 0.02):
        self.energies = np.asarray(energies_kev, float)
        self.photons = np.asarray(photons, float)
        self.response = np.asarray(response, float)
        self.material = get_material(material)
        self.mu = linear_attenuation(self.material, self.energies)
        self.step = float(step_mm)
        self.inv_step = 1.0 / self.step
        self.thickness = np.arange(0.0, max_thickness_mm + step_mm, step_mm)
        weights = self.photons * self.response  # detected photons per bin, open beam
        quanta = np.empty(self.thickness.size)
        signal = np.empty(self.thickness.size)
        second = np.empty(self.thickness.size)
        for start in range(0, self.thickness.size, 2048):
            t = self.thickness[start:start + 2048, None]
            transmitted = weights * np.exp(-self.mu * t)
            quanta[start:start + 2048] = transmitted.sum(1)
            signal[start:start + 2048] = (transmitted * self.energies).sum(1)
            second[start:start + 2048] = (transmitted * self.energies ** 2).sum(1)
        quanta = np.maximum(quanta, 1e-300)
        self.signal_table = signal.astype(np.float32)
        self.mean_energy_table = (signal / quanta).astype(np.float32)
        self.rms_energy_table = np.sqrt(second / quanta).astype(np.float32)
        self.open_signal = float(signal[0])

    def _lookup(self, table: np.ndarray, thickness_mm: np.ndarray) -> np.ndarray:
        # not lookup()'s twin: the float64 fraction makes this float64 (the ground truth's
        # contrasts and d' are computed with it), where lookup() interpolates in float32 in
        # place. One shared routine would change the simulated truth, so the labels of every
        # training set, in the last bits
        position = np.asarray(thickness_mm, np.float32) * np.float32(self.inv_step)
        np.clip(position, 0.0, table.size - 1.001, out=position)
        index = position.astype(np.int32)
        fraction = position - index
        low = table[index]
        return low + (table[index + 1] - low) * fraction

    def lookup(self, thickness_mm, energies: bool = True) -> tuple:
        """(signal, mean energy, rms energy) per pixel in one pass (shared interpolation);
        without `energies` (signal, None, None): the expected image of a sound part needs
        no photon energies, and the two lookups are most of the table's cost there."""
        position = np.asarray(thickness_mm, np.float32) * np.float32(self.inv_step)
        np.clip(position, 0.0, self.signal_table.size - 1.001, out=position)
        index = position.astype(np.int32)
        fraction = position - index
        results = []
        tables = (self.signal_table, self.mean_energy_table, self.rms_energy_table) \
            if energies else (self.signal_table,)
        for table in tables:
            low = table[index]
            high = table[index + 1]
            high -= low
            high *= fraction
            high += low
            results.append(high)
        return tuple(results) + (None,) * (3 - len(results))

    def signal(self, thickness_mm) -> np.ndarray:
        """Deposited energy per pixel (keV) behind the given thickness (mm)."""
        return self._lookup(self.signal_table, thickness_mm)

    def mean_energy(self, thickness_mm) -> np.ndarray:
        """Mean deposited energy per detected photon (keV)."""
        return self._lookup(self.mean_energy_table, thickness_mm)

    def rms_energy(self, thickness_mm) -> np.ndarray:
        """Root-mean-square deposited energy per detected photon (keV)."""
        return self._lookup(self.rms_energy_table, thickness_mm)

    def effective_mu(self, thickness_mm) -> np.ndarray:
        """Effective attenuation coefficient -d ln S / dt (1/mm) at the given thickness."""
        t = np.asarray(thickness_mm, float)
        h = 0.05
        upper = np.log(self.signal(t + h).astype(float))
        lower = np.log(self.signal(np.maximum(t - h, 0.0)).astype(float))
        return -(upper - lower) / (t + h - np.maximum(t - h, 0.0))

    def exact_signal(self, thicknesses: dict) -> np.ndarray:
        """Deposited energy summed bin by bin (no table) behind several materials.

        Args:
            thicknesses: {material name: thickness array (mm)}, arrays of equal shape.

        Returns:
            (signal, mean energy, rms energy) arrays of that shape, keV.
        """
        exponent = None
        for name, t in thicknesses.items():
            mu = linear_attenuation(name, self.energies)
            term = np.asarray(t, float)[..., None] * mu
            exponent = term if exponent is None else exponent + term
        transmitted = self.photons * self.response * np.exp(-exponent)
        quanta = np.maximum(transmitted.sum(-1), 1e-300)
        signal = (transmitted * self.energies).sum(-1)
        second = (transmitted * self.energies ** 2).sum(-1)
        return signal, signal / quanta, np.sqrt(second / quanta)
