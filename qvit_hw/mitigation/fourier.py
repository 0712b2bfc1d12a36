"""Run-level correction: every QNN's device function, fitted over all rows of a run.

Each QNN encodes token angle x_j with one RY(x_j) on qubit j. On any device whose noise
does not depend on x (gate errors, relaxation, crosstalk, readout), every output
<Z_i>(x) is a trigonometric polynomial of degree one in each angle of its backward light
cone C_i (`light_cone`): a linear combination of the 3^|C_i| products
prod_{j in C_i} f_j(x_j), f_j in {1, cos x_j, sin x_j} (`features`). The ~70,000 rows a
QNN gets over a test split all sample that one function, so fitting it gives every row
the precision of the whole run's shots.

The fit (`fit_output`), per QNN and output, on the row-level corrected values (readout,
learned, ..., unclipped: an affine correction per physical qubit commutes with the fit):

    weights      iteratively reweighted least squares: first by shots alone, then by the
                 inverse of the variance the fit predicts, G (1 - f(x)^2 + 1/s) / s
                 (G: the group's median ratio of the rows' reported variance to the
                 binomial one, which carries the row-level corrections' gain and excess);
                 weighting by each row's own stderr would overweight rows read at exactly
                 +-1 and bias the fit. (The model is binomial at the corrected value; a
                 readout-corrected row near +-1 is noisier, binomial at its raw value.
                 Gate noise keeps a device's values off +-1, but on a device with almost
                 none the fit would weigh those rows too much.)
    groups       each placement (physical qubits) of the QNN is a device of its own; the
                 placements are fitted apart where each has at least `MIN_ROWS_PER_TERM`
                 rows per term and a chi-square test of the pooled fit against the
                 separate ones rejects pooling at level `POOL_P` (the placements differ
                 beyond their noise); otherwise one fit serves every placement. Rows
                 extrapolated to zero noise (zne) are pooled untested: what they estimate,
                 the ideal circuit's function, is the same on every placement, and what
                 sets the placements apart is each one's residual bias, which pooling
                 averages (and the pooled fit's phi carries)
    errors       coefficient covariance phi (F' W F)^-1, phi the weighted residual
                 variance per degree of freedom (1 where too few are left to estimate it);
                 a row's standard error is sqrt(f' C f), plus the readout calibration's
                 shared error where one corrected the rows (`with_readout`)

Fitted values share coefficients, so their errors are correlated across rows and images:
`FourierFit.draws` gives seeded draws of every group's coefficients from their covariance,
which the run pushes through the model's classical rest for flip probabilities.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.linalg import cho_factor, cho_solve, solve_triangular
from scipy.stats import chi2

from ..circuit import QNNSpec

MIN_ROWS_PER_TERM = 3  # a placement is fitted on its own only with this many rows per term
POOL_P = 1e-3  # placements are fitted apart where pooling them is rejected at this level
IRLS_STEPS = 1  # reweighting passes after the first, shots-weighted fit (one suffices:
# the weights depend on the fitted value only, which the first fit already has to 1e-3)
MIN_DOF = 30  # residual degrees of freedom below which phi is taken as 1
POOLED_ZNE = "pooled: every placement extrapolated to the one zero-noise function"
CHUNK_VALUES = 2**24  # rows x terms per block when forming normal equations (128 MB)


def light_cone(spec: QNNSpec, output: int) -> tuple[int, ...]:
    """The input qubits whose angle can reach <Z_output>: walking the pairs backwards,
    a pair that touches the cone joins it (both qubits, as any two-qubit gate with its
    noise may couple them)."""
    if not 0 <= output < spec.n_qubits:
        raise ValueError(f"output must be in 0..{spec.n_qubits - 1}, got {output}")
    cone = {output}
    for p, q in reversed(spec.pairs):
        if p in cone or q in cone:
            cone |= {p, q}
    return tuple(sorted(cone))


def features(x: np.ndarray) -> np.ndarray:
    """The product basis: x (N, L) angles -> (N, 3^L), term index sum_j k_j 3^(L-1-j) with
    k_j = 0, 1, 2 for 1, cos x_j, sin x_j."""
    out = np.ones((len(x), 1))
    for j in range(x.shape[1]):
        basis = np.stack([np.ones(len(x)), np.cos(x[:, j]), np.sin(x[:, j])], axis=1)
        out = (out[:, :, None] * basis[:, None, :]).reshape(len(x), -1)
    return out


def term_weights(width: int) -> np.ndarray:
    """Frequency weight of each term of `features` (how many angles it depends on): (3^L,)."""
    k = (np.arange(3**width)[:, None] // 3 ** np.arange(width)[::-1]) % 3
    return (k > 0).sum(axis=1)


def design_grid(n: int) -> np.ndarray:
    """The 3^n grid of angles {0, 2 pi / 3, 4 pi / 3} per qubit: (3^n, n). On it the product
    basis is orthogonal, so a fit is exact interpolation with uniform variance."""
    levels = 2 * np.pi / 3 * np.arange(3)
    grid = np.stack(np.meshgrid(*[levels] * n, indexing="ij"), axis=-1)
    return grid.reshape(-1, n)


@dataclass
class GroupFit:
    """One output of one QNN on one group of placements: coefficients and their errors."""

    coef: np.ndarray  # (p,)
    chol: np.ndarray  # (p, p) upper Cholesky factor R of F' W F (R' R = F' W F)
    phi: float  # dispersion: residual variance / the variance model's
    rows: int
    rss: float  # sum of weighted squared residuals (phi's numerator)
    readout: tuple[float, float] = (0.0, 0.0)  # variances of the readout offsets (`with_readout`)

    def values(self, f: np.ndarray) -> np.ndarray:
        return f @ self.coef

    def coef_stderr(self) -> np.ndarray:
        """Standard errors of `coef`: sqrt of the diagonal of phi (R' R)^-1."""
        return self.stderr(np.eye(len(self.coef)))

    def values_at(self, xc: np.ndarray) -> np.ndarray:
        """Fitted values at cone angles xc (N, L)."""
        return self.values(features(xc))

    def stderr_at(self, xc: np.ndarray) -> np.ndarray:
        f = features(xc)
        return np.sqrt(self.stderr(f) ** 2 + _readout_variance(self.values(f), self.readout))

    def drawn_at(self, xc: np.ndarray, state: np.ndarray) -> np.ndarray:
        """Values at xc (N, L) under a draw ``state`` (p + 2, m) of `draws`: (N, m)."""
        return _offset(features(xc) @ state[:-2], state[-2:])

    def stderr(self, f: np.ndarray) -> np.ndarray:
        """sqrt(f' C f) per row of features f (N, p), C = phi (R' R)^-1."""
        out = np.empty(len(f))
        chunk = max(1024, CHUNK_VALUES // len(self.coef))
        for a in range(0, len(f), chunk):
            v = solve_triangular(self.chol, f[a : a + chunk].T, trans="T")  # (p, c)
            out[a : a + chunk] = np.sqrt(self.phi * (v * v).sum(axis=0))
        return out

    def draws(self, m: int, rng: np.random.Generator) -> np.ndarray:
        """``m`` coefficient vectors from N(coef, C), then the readout offsets: (p + 2, m)."""
        e = rng.standard_normal((len(self.coef), m))
        coef = self.coef[:, None] + np.sqrt(self.phi) * solve_triangular(self.chol, e)
        return np.concatenate([coef, _offset_draws(self.readout, m, rng)])


@dataclass
class GridFit:
    """One output on one group, measured on the 3^L grid of its cone (`design_grid`): the
    cell means and their variances. The fit is exact interpolation: at any x its value
    is sum_g K(x, g) y_g with K(x, g) = prod_j (1 + 2 cos(x_j - theta_gj)) / 3 (the
    Dirichlet kernel of degree one), and its variance sum_g K(x, g)^2 v_g, both computed
    dimension by dimension in O(3^L) per row (no 3^L x 3^L matrix, so n = 8 is cheap)."""

    y: np.ndarray  # (3^L,) cell means, index as `features`' terms
    v: np.ndarray  # (3^L,) their variances
    rows: int
    phi: float = 1.0  # the variances are the model's (G (1 - y^2 + 1/s) / s per row)
    readout: tuple[float, float] = (0.0, 0.0)  # variances of the readout offsets (`with_readout`)

    @property
    def coef(self) -> np.ndarray:
        """The product-basis coefficients (orthogonal on the grid: a projection)."""
        return grid_coefficients(self.y)

    def values_at(self, xc: np.ndarray) -> np.ndarray:
        return _contract(self.y[:, None], _kernel(xc))[:, 0]

    def stderr_at(self, xc: np.ndarray) -> np.ndarray:
        k = _kernel(xc)
        var = _contract(self.v[:, None], k**2)[:, 0]
        return np.sqrt(var + _readout_variance(_contract(self.y[:, None], k)[:, 0], self.readout))

    def draws(self, m: int, rng: np.random.Generator) -> np.ndarray:
        """``m`` draws of the cell means, then the readout offsets: (3^L + 2, m)."""
        y = self.y[:, None] + np.sqrt(self.v)[:, None] * rng.standard_normal((len(self.y), m))
        return np.concatenate([y, _offset_draws(self.readout, m, rng)])

    def drawn_at(self, xc: np.ndarray, state: np.ndarray) -> np.ndarray:
        return _offset(_contract(state[:-2], _kernel(xc)), state[-2:])

    def coef_stderr(self) -> np.ndarray:
        """Standard errors of `coef` (each coefficient is a fixed combination of cells)."""
        return np.sqrt(grid_coefficients(self.v, squared=True))


def _readout_variance(z: np.ndarray, readout: tuple[float, float]) -> np.ndarray:
    """Variance of the readout offsets' shift at values z: (1 + z)^2 var a0 + (1 - z)^2 var a1."""
    z = np.clip(z, -1.0, 1.0)
    return (1.0 + z) ** 2 * readout[0] + (1.0 - z) ** 2 * readout[1]


def _offset_draws(readout: tuple[float, float], m: int, rng: np.random.Generator) -> np.ndarray:
    """``m`` draws of the readout offsets (a0, a1): (2, m) (zeros where there are none, drawn
    after the coefficients, so the coefficient draws are those of a fit without readout)."""
    return np.sqrt(np.asarray(readout))[:, None] * rng.standard_normal((2, m))


def _offset(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Values (N, m) shifted by drawn offsets (2, m): z + (1 + z) a0 - (1 - z) a1."""
    return values + (1.0 + values) * offsets[0] - (1.0 - values) * offsets[1]


def with_readout(
    out: OutputFit, qubit: np.ndarray, offsets: dict[int, tuple[float, float]]
) -> OutputFit:
    """``out`` with the readout calibration's error in its groups' values: the rows were
    corrected with rates measured on a finite number of shots, whose errors (a0, a1) per
    physical qubit (`ReadoutCalibration.offset_variances`) shift every value read on the
    qubit by (1 + z) a0 - (1 - z) a1. A group fitted on one qubit's rows carries that shift
    whole; a pooled group the share-weighted mean of its qubits', variance
    sum_q share_q^2 var_q (``qubit``: the physical qubit of each of the output's rows).

    With zne the rows were corrected at every scale with the same rates and extrapolated
    linearly (coefficients summing to 1), which leaves the same shift at the extrapolated
    value. A learned correction after readout absorbs the shift (its affine maps are fitted
    on calibration rows that carry it): the runner gives no offsets then."""
    from dataclasses import replace

    groups = {}
    for key, g in out.groups.items():
        mine = qubit if not key else qubit[qubit == key[0]]
        qubits, counts = np.unique(mine, return_counts=True)
        share = counts / counts.sum()
        var = np.array([offsets[int(q)] for q in qubits]).reshape(-1, 2)  # (Q, 2)
        a0, a1 = (share[:, None] ** 2 * var).sum(axis=0)
        groups[key] = replace(g, readout=(float(a0), float(a1)))
    return replace(out, groups=groups)


def grid_coefficients(y: np.ndarray, squared: bool = False) -> np.ndarray:
    """Product-basis coefficients from values on the 3^L grid (3^L,), one 3 x 3 transform
    per dimension (the basis is orthogonal there); ``squared``: the transform's squares,
    which map cell variances to coefficient variances."""
    theta = 2 * np.pi / 3 * np.arange(3)
    basis = np.stack([np.ones(3), np.cos(theta), np.sin(theta)])  # (term, cell)
    a = basis / (basis * basis).sum(axis=1, keepdims=True)
    if squared:
        a = a * a
    width = round(np.log(len(y)) / np.log(3))
    t = y.reshape((3,) * width)
    for j in range(width):
        t = np.moveaxis(np.tensordot(a, t, axes=([1], [j])), 0, j)
    return t.reshape(-1)


def _kernel(xc: np.ndarray) -> np.ndarray:
    """K per dimension: (N, L, 3) = (1 + 2 cos(x_j - theta_k)) / 3."""
    theta = 2 * np.pi / 3 * np.arange(3)
    return (1.0 + 2.0 * np.cos(xc[:, :, None] - theta)) / 3.0


def _contract(t: np.ndarray, k: np.ndarray) -> np.ndarray:
    """sum over cells g of prod_j k[n, j, g_j] t[g, e]: t (3^L, E), k (N, L, 3) -> (N, E),
    one dimension at a time, in row blocks that keep memory near 2^22 numbers."""
    n_rows, width, _ = k.shape
    extra = t.shape[1]
    if width == 0:
        return np.broadcast_to(t[0], (n_rows, extra)).copy()
    out = np.empty((n_rows, extra))
    step = max(1, 2**22 // max(1, 3 ** (width - 1) * extra))
    first = t.reshape(3, -1)  # (3, 3^(L-1) E)
    for a in range(0, n_rows, step):
        kk = k[a : a + step]
        acc = kk[:, 0, :] @ first  # (c, 3^(L-1) E)
        for j in range(1, width):
            acc = np.einsum("nk,nkr->nr", kk[:, j, :], acc.reshape(len(kk), 3, -1))
        out[a : a + step] = acc.reshape(len(kk), extra)
    return out


@dataclass
class OutputFit:
    """<Z_i> of one QNN: its light cone and its fit per placement (or one for all)."""

    cone: tuple[int, ...]
    groups: dict[tuple[int, ...], GroupFit | GridFit]  # (physical qubit,) -> fit; () pooled
    pooled: bool
    reason: str  # why pooled or not, for corrections.json
    p_value: float | None = None

    def fit_for(self, placement: tuple[int, ...]) -> GroupFit | GridFit:
        return self.groups[()] if self.pooled else self.groups[placement]


@dataclass
class FourierFit:
    """Every fitted output of every QNN of a run: name -> [OutputFit per output]."""

    spec: dict[str, QNNSpec]
    outputs: dict[str, list[OutputFit]]
    _draws: dict[tuple[str, int, tuple[int, ...], int], np.ndarray] = field(default_factory=dict)

    def evaluate(
        self, name: str, angles: np.ndarray, qubits: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fitted <Z> and standard errors of QNN ``name`` on rows ``angles`` (N, n) read on
        physical ``qubits`` (N, n): two (N, n) arrays."""
        z, se = np.empty(angles.shape), np.empty(angles.shape)
        for i, out in enumerate(self.outputs[name]):
            xc = angles[:, list(out.cone)]
            for placement, rows in _by_placement(qubits[:, i : i + 1], out.pooled):
                g = out.fit_for(placement)
                z[rows, i], se[rows, i] = g.values_at(xc[rows]), g.stderr_at(xc[rows])
        return z, se

    def draws(
        self,
        name: str,
        angles: np.ndarray,
        qubits: np.ndarray,
        m: int,
        seed: int,
        part: slice = slice(None),
    ) -> np.ndarray:
        """Draws ``part`` of ``m`` joint draws of the fitted values of these rows:
        (len(part), N, n). The ``m`` coefficient draws are made once per group (seeded by
        ``seed``) and shared by every call, so the rows of different images vary together
        as the fit's errors do."""
        out = np.empty((angles.shape[1], len(range(m)[part]), len(angles)))  # (n, m', N)
        for i, fit in enumerate(self.outputs[name]):
            xc = angles[:, list(fit.cone)]
            for placement, rows in _by_placement(qubits[:, i : i + 1], fit.pooled):
                key = (name, i, placement, seed)
                group = fit.fit_for(placement)
                if key not in self._draws or self._draws[key].shape[1] != m:
                    rng = np.random.default_rng([seed, *_digest(key[:3])])
                    self._draws[key] = group.draws(m, rng)
                out[i][:, rows] = group.drawn_at(xc[rows], self._draws[key][:, part]).T
        return out.transpose(1, 2, 0)

    def summary(self) -> dict[str, Any]:
        """Per QNN and output: cone, terms, groups, pooling and dispersion (JSON)."""
        return {
            name: [
                {
                    "cone": list(o.cone),
                    "terms": 3 ** len(o.cone),
                    "pooled": o.pooled,
                    "reason": o.reason,
                    "p_value": o.p_value,
                    "groups": {
                        ",".join(map(str, k)) or "all": {
                            "rows": g.rows,
                            "phi": g.phi,
                            "readout_var": list(g.readout),
                        }
                        for k, g in o.groups.items()
                    },
                }
                for o in outs
            ]
            for name, outs in self.outputs.items()
        }


def _digest(key: tuple[str, int, tuple[int, ...]]) -> list[int]:
    import hashlib

    return list(hashlib.sha256(repr(key).encode()).digest()[:8])


def _by_placement(qubits: np.ndarray, pooled: bool) -> list[tuple[tuple[int, ...], np.ndarray]]:
    """Rows grouped by the physical qubits they were read on (one group when pooled)."""
    if pooled:
        return [((), np.arange(len(qubits)))]
    keys, inverse = np.unique(qubits, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    return [(tuple(int(q) for q in k), np.flatnonzero(inverse == g)) for g, k in enumerate(keys)]


def fit_run(
    specs: dict[str, QNNSpec],
    rows: dict[str, np.ndarray],
    names: Sequence[str],
    grid: bool = False,
    readout: dict[str, dict[int, tuple[float, float]]] | None = None,
    pool: bool = False,
) -> FourierFit:
    """Fit every QNN of a run from its recorded rows (``executor.rows()``'s arrays:
    qnn, angles, estimate (unclipped row-level values), stderr, shots, qubits); ``grid``:
    the rows are `characterize`'s design (rows off the grid are ignored), else any rows;
    ``readout``: per QNN, the variances of its readout calibration's offsets by physical
    qubit (`ReadoutCalibration.offset_variances`), added to the fitted values' errors;
    ``pool``: one fit for every placement, untested (rows extrapolated to zero noise)."""
    outputs: dict[str, list[OutputFit]] = {}
    for index, name in enumerate(names):
        mine = rows["qnn"] == index
        spec = specs[name]
        # rows with the same angles, value and qubits are one execution read several times
        # (a blank patch in many images): counted once, or their one noise draw would
        # weigh as many and pull the fit (z-scores of 2-3 on the demo bundle)
        key = np.concatenate([rows["angles"][mine], rows["estimate"][mine],
                              rows["qubits"][mine]], axis=1)  # fmt: skip
        _, first = np.unique(key, axis=0, return_index=True)
        mine = np.flatnonzero(mine)[np.sort(first)]
        x, y = rows["angles"][mine], rows["estimate"][mine]
        se, shots, qubits = rows["stderr"][mine], rows["shots"][mine], rows["qubits"][mine]
        if grid:
            outputs[name] = [
                fit_grid_output(spec, i, x, y[:, i], se[:, i], shots, qubits[:, i])
                for i in range(spec.n_qubits)
            ]
        else:
            outputs[name] = fit_outputs(spec, x, y, se, shots, qubits, pool=pool)
        offsets = (readout or {}).get(name)
        if offsets:
            outputs[name] = [with_readout(o, qubits[:, i], offsets)
                             for i, o in enumerate(outputs[name])]  # fmt: skip
    return FourierFit(dict(specs), outputs)


def fit_grid_output(
    spec: QNNSpec,
    output: int,
    angles: np.ndarray,
    z: np.ndarray,
    stderr: np.ndarray,
    shots: np.ndarray,
    qubit: np.ndarray,
) -> OutputFit:
    """<Z_output> from rows on the grid (`design_grid`; other rows are ignored): per
    physical qubit, the mean and variance of every cell of the cone's 3^L grid (rows that
    differ only outside the cone are replicates); placements pooled unless a chi-square
    test of their cell means against the pooled ones rejects it at `POOL_P`."""
    cone = light_cone(spec, output)
    step = 2 * np.pi / 3
    k = angles / step
    on_grid = (np.abs(k - np.round(k)) < 1e-9).all(axis=1) & (angles >= -1e-9).all(axis=1)
    cells = (np.round(k[:, list(cone)]).astype(np.int64) % 3) @ (3 ** np.arange(len(cone))[::-1])
    gain = _gain(z, stderr, shots)
    s = np.maximum(shots.astype(np.float64), 1.0)
    exact = shots <= 0
    size = 3 ** len(cone)
    fits: dict[tuple[int, ...], GridFit] = {}
    for q in np.unique(qubit[on_grid]):
        mine = on_grid & (qubit == q)
        count = np.bincount(cells[mine], minlength=size).astype(np.float64)
        if (count == 0).any():
            raise ValueError(f"qubit {q}: the grid of output {output} is incomplete")
        mean = np.bincount(cells[mine], weights=z[mine], minlength=size) / count
        per_row = np.where(exact[mine], 0.0, _model_variance(mean[cells[mine]], s[mine], gain))
        var = np.bincount(cells[mine], weights=per_row, minlength=size) / count**2
        fits[(int(q),)] = GridFit(mean, var, int(mine.sum()))
    if len(fits) == 1:
        return OutputFit(cone, {(): next(iter(fits.values()))}, True, "one placement")
    ys = np.stack([f.y for f in fits.values()])  # (P, G)
    vs = np.stack([f.v for f in fits.values()])
    if (vs <= 0).all():  # exact rows: placements agree exactly or not at all
        same = np.allclose(ys, ys[0], atol=1e-9)
        pooled = GridFit(ys.mean(axis=0), vs.mean(axis=0), sum(f.rows for f in fits.values()))
        if same:
            return OutputFit(cone, {(): pooled}, True, "pooled: placements agree exactly")
        return OutputFit(cone, dict(fits), False, "apart: placements differ")
    w = 1.0 / np.maximum(vs, 1e-300)
    mean = (w * ys).sum(axis=0) / w.sum(axis=0)
    stat = float((w * (ys - mean) ** 2).sum())
    p_value = float(chi2.sf(stat, size * (len(fits) - 1)))
    pooled = GridFit(mean, 1.0 / w.sum(axis=0), sum(f.rows for f in fits.values()))
    return _decide(cone, pooled, dict(fits), p_value)


def _gain(z: np.ndarray, stderr: np.ndarray, shots: np.ndarray) -> float:
    """Median ratio of the rows' reported variance to the binomial one at their own value:
    what the row-level corrections did to the shot noise (1 without any)."""
    s = shots.astype(np.float64)
    exact = s <= 0
    binomial = (1.0 - np.clip(z, -1.0, 1.0) ** 2) / np.where(exact, 1.0, s)
    ratio = (stderr**2) / np.where(binomial > 0, binomial, np.nan)
    usable = ~exact & (np.abs(z) < 0.9) & np.isfinite(ratio)
    return float(np.median(ratio[usable])) if usable.any() else 1.0


def fit_outputs(
    spec: QNNSpec,
    angles: np.ndarray,
    z: np.ndarray,
    stderr: np.ndarray,
    shots: np.ndarray,
    qubits: np.ndarray,
    pool: bool = False,
) -> list[OutputFit]:
    """Every output of one QNN (z, stderr, qubits (N, n)); outputs with the same cone share
    their normal equations where the weights agree (exact rows)."""
    cache: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
    return [
        fit_output(
            spec, i, angles, z[:, i], stderr[:, i], shots, qubits[:, i], cache=cache, pool=pool
        )
        for i in range(spec.n_qubits)
    ]


def fit_output(
    spec: QNNSpec,
    output: int,
    angles: np.ndarray,
    z: np.ndarray,
    stderr: np.ndarray,
    shots: np.ndarray,
    qubit: np.ndarray,
    cache: dict[bytes, tuple[np.ndarray, np.ndarray]] | None = None,
    pool: bool = False,
) -> OutputFit:
    """Fit <Z_output> from rows: angles (N, n), z, stderr (N,) row-level values, shots
    (N,) (0: exact), qubit (N,) the physical qubit read (a placement per qubit); ``pool``:
    one fit for every placement without testing them (see `fit_run`)."""
    cone = light_cone(spec, output)
    f = features(angles[:, list(cone)])  # (N, p)
    p = f.shape[1]
    groups = _by_placement(qubit[:, None].astype(np.int64), pooled=False)
    pooled = _irls(f, z, stderr, shots, cache, cone)
    if len(groups) == 1:
        return OutputFit(cone, {(): pooled}, True, "one placement")
    if pool:
        return OutputFit(cone, {(): pooled}, True, POOLED_ZNE)
    if min(len(r) for _, r in groups) < MIN_ROWS_PER_TERM * p:
        return OutputFit(
            cone, {(): pooled}, True,
            f"pooled: a placement has fewer than {MIN_ROWS_PER_TERM} rows per term ({p} terms)",
        )  # fmt: skip
    apart = {k: _irls(f[r], z[r], stderr[r], shots[r]) for k, r in groups}
    rss_apart = sum(g.rss for g in apart.values())
    dof = len(z) - p * len(groups)
    phi = rss_apart / dof if dof >= MIN_DOF and rss_apart > 0 else 1.0
    extra = p * (len(groups) - 1)
    p_value = float(chi2.sf(max(pooled.rss - rss_apart, 0.0) / phi, extra))
    return _decide(cone, pooled, apart, p_value)


def _decide(
    cone: tuple[int, ...],
    pooled: GroupFit | GridFit,
    apart: dict[tuple[int, ...], GroupFit | GridFit],
    p_value: float,
) -> OutputFit:
    """The placements fitted apart where the test of pooling them rejects it at `POOL_P`,
    else one pooled fit for all."""
    if p_value < POOL_P:
        reason = f"apart: placements differ (pooling rejected, p = {p_value:.2g})"
        return OutputFit(cone, apart, False, reason, p_value)
    reason = f"pooled: placements agree within noise (p = {p_value:.2g})"
    return OutputFit(cone, {(): pooled}, True, reason, p_value)


def _irls(
    f: np.ndarray,
    z: np.ndarray,
    stderr: np.ndarray,
    shots: np.ndarray,
    cache: dict[bytes, tuple[np.ndarray, np.ndarray]] | None = None,
    cone: tuple[int, ...] = (),
) -> GroupFit:
    """Weighted least squares of z on features f, reweighted by the fit's own variance
    (``cache``: normal equations by cone for exact rows, whose weights never change)."""
    s = shots.astype(np.float64)
    exact = s <= 0
    gain = _gain(z, stderr, shots)
    w = np.where(exact, 1.0, s)
    coef = chol = values = None
    for _ in range(1 + IRLS_STEPS * bool((~exact).any())):
        key = repr(cone).encode() if cache is not None and exact.all() else None
        coef, chol = _solve(f, z, w, None if key is None else cache, key)
        values = f @ coef
        w = np.where(exact, 1.0, 1.0 / _model_variance(values, np.maximum(s, 1.0), gain))
    resid = z - values
    rss = float((w * resid * resid).sum())
    dof = len(z) - f.shape[1]
    enough = dof > 0 if exact.all() else dof >= MIN_DOF  # exact rows: phi is their misfit
    phi = rss / dof if enough else float(not exact.all())
    return GroupFit(coef, chol, phi, len(z), rss)


def _model_variance(values: np.ndarray, shots: np.ndarray, gain: float) -> np.ndarray:
    """The variance a row of ``shots`` (>= 1) has at fitted value ``values``: binomial at
    the value (clipped to [-1, 1]), 1 / shots added so +-1 keeps some, times the gain the
    row-level corrections put on it (`_gain`)."""
    return gain * (1.0 - np.clip(values, -1.0, 1.0) ** 2 + 1.0 / shots) / shots


def _solve(
    f: np.ndarray,
    z: np.ndarray,
    w: np.ndarray,
    cache: dict[bytes, Any] | None = None,
    key: bytes | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients of the weighted normal equations and the upper Cholesky factor R
    (R' R = F' W F); the factorisation is reused from ``cache[key]`` where given."""
    p = f.shape[1]
    if len(f) < p:
        raise ValueError(f"the fit needs at least {p} rows for {p} terms, got {len(f)}")
    chunk = max(1024, CHUNK_VALUES // p)
    rhs = np.zeros(p)
    for a in range(0, len(f), chunk):
        rhs += (f[a : a + chunk] * w[a : a + chunk, None]).T @ z[a : a + chunk]
    if cache is not None and key in cache:
        factor, scale = cache[key]
    else:
        normal = np.zeros((p, p))
        for a in range(0, len(f), chunk):
            normal += (f[a : a + chunk] * w[a : a + chunk, None]).T @ f[a : a + chunk]
        scale = np.sqrt(np.diag(normal)) + 1e-300
        jitter = 1e-12 * np.eye(p)  # guards a nearly singular design; exact fits keep 1e-9
        factor = cho_factor(normal / scale / scale[:, None] + jitter, lower=False)
        if cache is not None and key is not None:
            cache[key] = (factor, scale)
    coef = cho_solve(factor, rhs / scale) / scale
    return coef, np.triu(factor[0]) * scale


def exact_coefficients(spec: QNNSpec, weights: np.ndarray) -> list[np.ndarray]:
    """The ideal circuit's coefficients per output (on each output's cone), by exact
    interpolation on the 3^L grid: for comparison with a device's (the report's spectrum)."""
    import torch

    from ..circuit import expectations

    out = []
    for i in range(spec.n_qubits):
        cone = light_cone(spec, i)
        grid = design_grid(len(cone))
        x = np.zeros((len(grid), spec.n_qubits))
        x[:, list(cone)] = grid
        z = expectations(spec, torch.from_numpy(x), torch.from_numpy(np.asarray(weights)))
        out.append(grid_coefficients(z[:, i].double().numpy()))
    return out


def save_fit(fit: FourierFit, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A grid fit as arrays (surrogate.npz): per QNN its spec and weights; per output its
    cone and pooling; per group the cells' means and variances (``y|name|i|group``,
    ``v|...``) and its readout offsets' variances (``readout|...``), with the coefficients
    and their standard errors for readers."""
    out: dict[str, np.ndarray] = {"names": np.array(list(fit.outputs))}
    for name, outputs in fit.outputs.items():
        out[f"spec|{name}"] = np.array(json.dumps(fit.spec[name].to_dict()))
        out[f"weights|{name}"] = np.asarray(weights[name], dtype=np.float64)
        for i, o in enumerate(outputs):
            out[f"cone|{name}|{i}"] = np.array(o.cone)
            out[f"pooled|{name}|{i}"] = np.array(o.pooled)
            out[f"reason|{name}|{i}"] = np.array(o.reason)
            for key, g in o.groups.items():
                group = ",".join(map(str, key)) or "all"
                out[f"y|{name}|{i}|{group}"] = g.y
                out[f"v|{name}|{i}|{group}"] = g.v
                out[f"rows|{name}|{i}|{group}"] = np.array(g.rows)
                out[f"readout|{name}|{i}|{group}"] = np.array(g.readout)
                out[f"coef|{name}|{i}|{group}"] = g.coef
                out[f"se|{name}|{i}|{group}"] = g.coef_stderr()
    return out


def load_fit(arrays: Any) -> tuple[FourierFit, dict[str, np.ndarray]]:
    """`save_fit`'s arrays -> (FourierFit, QNN weights by name)."""
    specs, outputs, weights = {}, {}, {}
    for name in (str(n) for n in arrays["names"]):
        spec = QNNSpec.from_dict(json.loads(str(arrays[f"spec|{name}"])))
        specs[name], weights[name] = spec, np.asarray(arrays[f"weights|{name}"])
        fits = []
        for i in range(spec.n_qubits):
            prefix = f"y|{name}|{i}|"
            groups = {}
            for key in (k for k in arrays if k.startswith(prefix)):
                group = key[len(prefix) :]
                placement = () if group == "all" else tuple(int(q) for q in group.split(","))
                stored = f"readout|{name}|{i}|{group}"  # absent in files before 2026-12-05
                readout = arrays.get(stored, (0.0, 0.0))
                groups[placement] = GridFit(
                    np.asarray(arrays[key]), np.asarray(arrays[f"v|{name}|{i}|{group}"]),
                    int(arrays[f"rows|{name}|{i}|{group}"]), readout=tuple(map(float, readout)),
                )  # fmt: skip
            fits.append(
                OutputFit(
                    tuple(int(q) for q in arrays[f"cone|{name}|{i}"]),
                    groups,
                    bool(arrays[f"pooled|{name}|{i}"]),
                    str(arrays[f"reason|{name}|{i}"]),
                )
            )
        outputs[name] = fits
    return FourierFit(specs, outputs), weights
