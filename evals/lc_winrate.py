"""Raw and length-controlled (LC) win rates of an alpaca-eval annotation file (`harness lc-winrate`).

Two recipes:

- `length_controlled_v1` (the official AlpacaEval leaderboard GLM) when the caller passes both fixed
  inputs: the per-instruction difficulty table and the "gamed rows" (alpaca-eval's HF
  `df_gamed.csv`: the baseline's verbose/concise variants, used to regularise the length slope
  towards the baseline's). Only meaningful for the 805 AlpacaEval instructions in their original
  order, because difficulty is looked up by row position, as alpaca-eval does. The numbers must be
  comparable with the leaderboard, so nothing of it is re-implemented: the raw win rate is
  `alpaca_eval.metrics.get_winrate`, and the LC win rate is alpaca-eval 0.6.6's
  `make_dmatrix_for_model` + `fit_LogisticRegressionCV` with its `GLM_INFO` formulas. Only the
  featurisation is rebuilt here, line for line after `_get_featurized_data`, because that function
  always calls `hf_hub_download` (this code must work offline and never touch the hub) and
  `get_length_controlled_winrate` may write weight files into site-packages. The gamed rows give
  the length slope data on both sides of equal length by design, which is what identifies it.
- `length_controlled_identified` for any other prompt set: `evals.winrate_stats` (an unpenalised
  fit of the verdict on tanh of the standardised length difference, evaluated at equal length,
  reported only where the lengths identify it; see that module and docs/lc_validity.md).
  alpaca-eval's `length_controlled_minimal` GLM is NOT used any more: its intercept is
  L1-penalised and its length feature saturates when the policy is always longer or shorter, so on
  a length-only judge it gave LC 0.35 [0.01, 2.9] (always longer) or 99.9 (always shorter) where
  the truth was 50. When LC is not identified, `lc_identified` is False, `lc_reason` says why, and
  the LC fields are NaN.

Uncertainty (official recipe): a paired bootstrap over prompts. Each replicate resamples annotation rows with
replacement and recomputes both win rates on the same rows; the interval is the percentile
interval. The LC replicates are real GLM refits, not a resampling of the per-row predictions: with
the minimal recipe every row has the same prediction (no per-instruction feature), so bootstrapping
the mean of predictions would give a zero-width interval and hide the estimation error of the
fitted weights. To keep that affordable, each replicate refits with the regularisation strength
`C` that the full-data cross-validation chose (alpaca-eval's `fit_LogisticRegressionCV` with
`n_splits=0`) instead of re-running the 5-fold x 10-C search: one liblinear fit (~5-10 ms) instead
of fifty (~0.1 s), so 200 replicates on 805 rows take ~3 s instead of ~20 s. The interval
therefore treats the chosen `C` as fixed. Measured against re-running the CV in every replicate
(200 replicates, seed 0): claude-2 / v1 gave the same interval within 0.05 pp; gpt4_gamed / minimal
gave a bootstrap SE of 5.4 pp instead of 6.1 pp, so under the minimal recipe the interval can be
~10% too narrow. One exception: when the full-data fit shrinks every weight to 0 (no signal at
the chosen C), each replicate re-runs the CV, since refits at that C would all return exactly 50.

What LC can and cannot remove: the GLM models the judge's length preference as logistic in
tanh(standardised length gap). A synthetic judge of exactly that shape, rewarding padding only,
gives raw ~89% and LC within 0.2 pp of 50; a judge whose logit grows linearly in characters
(sigmoid(padding_chars / 300)) is over-corrected to LC ~31-40, because tanh saturates.

Standard errors: `win_rate_stderr` is alpaca-eval's analytic SEM of the row preferences (the
leaderboard's `standard_error`). Official recipe: `lc_win_rate_stderr` is the bootstrap standard
deviation of the LC replicates (NaN without bootstrap). alpaca-eval's own `lc_standard_error` is
deliberately not used: it is the SEM of the per-row predictions, which ignores the GLM's estimation
error and is exactly 0 under the minimal recipe. Identified recipe: the stderr and interval of
`evals.winrate_stats` (delta method, HC3 sandwich; coverage measured in docs/lc_validity.md).
"""
from __future__ import annotations

import functools
import gzip
import json
import logging
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import NormalDist
from types import ModuleType

import numpy as np
import pandas as pd

from evals.winrate_stats import winrate_statistics  # also declares winrate/win_rate_pct and lc_win_rate_pct
from harness.errors import HarnessInputError

OFFICIAL_RECIPE = "length_controlled_v1"
IDENTIFIED_RECIPE = "length_controlled_identified"

REQUIRED_ANNOTATION_FIELDS = ("instruction", "output_1", "output_2", "preference", "generator_1", "generator_2")
_TEXT_FIELDS = ("instruction", "output_1", "output_2", "generator_1", "generator_2")
GAMED_ROW_COLUMNS = ("index", "preference", "std_delta_len", "instruction_difficulty", "not_gamed_baseline")

# Two tables built from different difficulty estimates would silently give a fit that is not v1.
_DIFFICULTY_MISMATCH_TOLERANCE = 1e-9

class AnnotationError(HarnessInputError, ValueError):
    """Annotations that cannot be scored; the message names the file (or row), line and field. Bad
    input to the CLI (exit 2, harness.errors); still a ValueError for callers that catch that."""


@dataclass(frozen=True)
class LCWinRate:
    """Win rates in percent. Official recipe: CI and LC-stderr fields are NaN when the bootstrap was
    disabled. LC fields are NaN when LC is not identified (`lc_reason` says why)."""

    win_rate_pct: float
    win_rate_stderr: float
    lc_win_rate_pct: float
    lc_win_rate_stderr: float
    n: int
    n_wins: int
    n_draws: int
    lc_ci_low: float
    lc_ci_high: float
    win_rate_ci_low: float
    win_rate_ci_high: float
    recipe: str
    lc_identified: bool = True
    lc_reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def to_summary(self, prefix: str = "winrate") -> dict[str, float | int]:
        """Flat `<eval>/<metric>` keys, uncertainty under the suffixes evals.metrics knows; the LC keys
        are left out when LC is not identified, so a gate rule on them fails closed."""
        summary = {
            f"{prefix}/win_rate_pct": self.win_rate_pct,
            f"{prefix}/win_rate_pct_stderr": self.win_rate_stderr,
            f"{prefix}/win_rate_pct_ci_low": self.win_rate_ci_low,
            f"{prefix}/win_rate_pct_ci_high": self.win_rate_ci_high,
            f"{prefix}/lc_identified": float(self.lc_identified),
            f"{prefix}/n": self.n,
        }
        if self.lc_identified:
            summary |= {
                f"{prefix}/lc_win_rate_pct": self.lc_win_rate_pct,
                f"{prefix}/lc_win_rate_pct_stderr": self.lc_win_rate_stderr,
                f"{prefix}/lc_win_rate_pct_ci_low": self.lc_ci_low,
                f"{prefix}/lc_win_rate_pct_ci_high": self.lc_ci_high,
            }
        return summary


# --------------------------------------------------------------------------------------------
# alpaca-eval access


@functools.cache
def _alpaca_eval() -> tuple[ModuleType, ModuleType]:
    """(glm_winrate, winrate) modules, imported on first use.

    Lazy because alpaca-eval pulls in `datasets` (~2-3 s), which merely importing `evals` (for the
    metric registry) should not pay. Its `import pkg_resources` warns on every import; that is
    alpaca-eval's noise, not ours, so it is silenced here and only here.
    """
    root_logger = logging.getLogger()
    root_level = root_logger.level
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*pkg_resources is deprecated.*", category=UserWarning)
        from alpaca_eval.metrics import glm_winrate, winrate
    # alpaca_eval.annotators.base sets the root logger to INFO on import; that is the harness's call
    root_logger.setLevel(root_level)
    return glm_winrate, winrate


# --------------------------------------------------------------------------------------------
# loading


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _validated_record(record: object, where: str) -> dict:
    if not isinstance(record, dict):
        raise AnnotationError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for field in REQUIRED_ANNOTATION_FIELDS:
        if field not in record:
            raise AnnotationError(f"{where}, field {field!r}: missing")
    for field in _TEXT_FIELDS:
        if not isinstance(record[field], str):
            raise AnnotationError(f"{where}, field {field!r}: expected a string, got {record[field]!r}")
    preference = record["preference"]
    # bool is an int subclass; a judge that says `true` has not given a preference
    if preference is not None and (isinstance(preference, bool) or not isinstance(preference, (int, float))):
        raise AnnotationError(f"{where}, field 'preference': expected a number, got {preference!r}")
    if preference is not None and not _is_valid_preference(float(preference)):
        raise AnnotationError(
            f"{where}, field 'preference': {preference!r} is outside alpaca-eval's scale "
            "(1 = output_1 wins, 2 = output_2 wins, 1.5 or 0 = draw, null = no verdict)"
        )
    return record


def _is_valid_preference(preference: float) -> bool:
    return math.isnan(preference) or preference == 0 or 1 <= preference <= 2


def load_annotations(path: str | Path) -> pd.DataFrame:
    """Read judged pairs from JSONL, JSONL.gz or a JSON list (optionally gzipped), keeping row order.

    Row order matters: the official recipe looks instruction difficulty up by row position.
    A `null` preference means the judge gave no verdict; like alpaca-eval, such rows are left out
    of the win rates. Errors name the file, the 1-based line (record number for a JSON list) and
    the field.
    """
    path = Path(path)
    try:
        with _open_text(path) as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError, EOFError) as error:
        raise AnnotationError(f"{path}: cannot read: {error}") from error

    records: list[dict] = []
    if text.lstrip().startswith("["):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as error:
            raise AnnotationError(f"{path}, line {error.lineno}: invalid JSON: {error.msg}") from error
        except (ValueError, RecursionError) as error:  # nesting deeper than the stack, a 5000-digit integer
            raise AnnotationError(f"{path}: invalid JSON: {type(error).__name__}: {str(error)[:200]}") from None
        for record_number, record in enumerate(parsed, start=1):
            records.append(_validated_record(record, f"{path}, record {record_number}"))
    else:
        # split at \n only: splitlines() also splits at U+2028/U+2029, which JSON allows inside strings
        for line_number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise AnnotationError(f"{path}, line {line_number}: invalid JSON: {error.msg}") from error
            except (ValueError, RecursionError) as error:  # nesting deeper than the stack, a 5000-digit integer
                raise AnnotationError(f"{path}, line {line_number}: invalid JSON: {type(error).__name__}: "
                                      f"{str(error)[:200]}") from None
            records.append(_validated_record(record, f"{path}, line {line_number}"))
    if not records:
        raise AnnotationError(f"{path}: no annotations")

    annotations = pd.DataFrame.from_records(records)
    annotations["preference"] = pd.to_numeric(annotations["preference"], errors="raise").astype(float)
    return annotations


def _read_csv(path: Path) -> pd.DataFrame:
    """A CSV(.gz) table, or AnnotationError naming the file (and the line, when pandas says which)."""
    try:
        return pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise AnnotationError(f"{path}: not a readable CSV file: {str(error).strip()}") from None


def _numeric_column(table: pd.DataFrame, column: str, path: Path, *, integer: bool = False) -> pd.Series:
    """The column as numbers, or AnnotationError naming file, data row (1-based, after the header) and field."""
    values = pd.to_numeric(table[column], errors="coerce")
    bad = values.isna() | (~np.isfinite(values.fillna(0))) | ((values % 1 != 0) if integer else False)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        expected = "an integer" if integer else "a finite number"
        raise AnnotationError(f"{path}, row {row + 1}, field {column!r}: expected {expected}, "
                              f"got {table[column].iloc[row]!r}")
    return values.astype(int if integer else float)


def load_instruction_difficulty(path: str | Path) -> pd.Series:
    """`index,instruction_difficulty` CSV -> Series indexed by instruction row position."""
    path = Path(path)
    table = _read_csv(path)
    missing = [column for column in ("index", "instruction_difficulty") if column not in table.columns]
    if missing:
        raise AnnotationError(f"{path}: missing column(s) {missing}; expected 'index,instruction_difficulty'")
    index = _numeric_column(table, "index", path, integer=True)
    if index.duplicated().any():
        raise AnnotationError(f"{path}, field 'index': duplicated values {index[index.duplicated()].tolist()[:5]}")
    difficulty = _numeric_column(table, "instruction_difficulty", path)
    difficulty.index = pd.Index(index, name="index")
    difficulty.name = "instruction_difficulty"
    return difficulty


def load_gamed_rows(path: str | Path) -> pd.DataFrame:
    """Stand-in for alpaca-eval's HF `df_gamed.csv` (CSV or CSV.gz), validated like `lc_winrate` does."""
    path = Path(path)
    table = _read_csv(path)
    for column in ("index", "preference", "std_delta_len", "instruction_difficulty"):
        if column in table.columns:  # a missing column is named by _validated_gamed_rows
            _numeric_column(table, column, path, integer=column == "index")
    try:
        return _validated_gamed_rows(table, source=str(path))
    except ValueError as error:  # its messages name the file and the field
        raise AnnotationError(str(error)) from None


def _validated_gamed_rows(gamed_rows: pd.DataFrame, source: str = "gamed_rows") -> pd.DataFrame:
    missing = [column for column in GAMED_ROW_COLUMNS if column not in gamed_rows.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; expected {', '.join(GAMED_ROW_COLUMNS)}")
    gamed_rows = gamed_rows.copy()
    not_gamed = gamed_rows["not_gamed_baseline"]
    if not_gamed.dtype != bool:
        as_text = not_gamed.astype(str).str.strip().str.lower()
        if not as_text.isin(["true", "false", "1", "0", "1.0", "0.0"]).all():
            raise ValueError(f"{source}: 'not_gamed_baseline' must be boolean")
        not_gamed = as_text.isin(["true", "1", "1.0"])
    # alpaca-eval weights rows by this flag: a True here would count a gamed row as the model's own
    if not_gamed.any():
        raise ValueError(f"{source}: gamed rows must have not_gamed_baseline=False")
    gamed_rows["not_gamed_baseline"] = not_gamed.astype(bool)
    for column in ("preference", "std_delta_len", "instruction_difficulty"):
        gamed_rows[column] = pd.to_numeric(gamed_rows[column], errors="raise").astype(float)
    # unlike annotations, df_gamed stores preferences already mapped to [0, 1]
    if not gamed_rows["preference"].between(0, 1).all():
        raise ValueError(f"{source}: 'preference' must lie in [0, 1] (df_gamed stores preference - 1)")
    gamed_rows["index"] = gamed_rows["index"].astype(int)
    return gamed_rows


# --------------------------------------------------------------------------------------------
# the GLM, alpaca-eval's code with our features


def _featurize(
    preference_0_to_1: np.ndarray,
    delta_len_chars: np.ndarray,
    row_positions: np.ndarray,
    row_difficulty: np.ndarray | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train rows and zero-length-difference test rows, as alpaca-eval's `_get_featurized_data` builds them."""
    delta = pd.Series(delta_len_chars, dtype=float)
    # not centred, sample std (ddof=1), as alpaca-eval; 0/0 (no length variation, or one row)
    # would be NaN and patsy would silently drop the row, so treat it as "no length difference"
    std_delta_len = (delta / delta.std()).fillna(0.0)
    rows = pd.DataFrame({"preference": preference_0_to_1, "index": row_positions, "std_delta_len": std_delta_len})
    if row_difficulty is not None:
        rows["instruction_difficulty"] = row_difficulty
    rows["not_gamed_baseline"] = True

    test_columns = ["not_gamed_baseline"] if row_difficulty is None else ["instruction_difficulty", "not_gamed_baseline"]
    test_rows = rows[test_columns].copy()
    test_rows["std_delta_len"] = 0
    return rows, test_rows


def _fit_glm(
    rows: pd.DataFrame,
    test_rows: pd.DataFrame,
    recipe: str,
    gamed_rows: pd.DataFrame | None,
    fixed_C: float | None = None,
):
    """(fitted sklearn model, per-row P(model wins | no length difference)).

    `fixed_C=None` runs alpaca-eval's cross-validated fit; a value skips the search (bootstrap).
    """
    import sklearn

    glm_winrate, _ = _alpaca_eval()
    glm_info = glm_winrate.GLM_INFO[recipe]
    regularize_lambda = glm_info["regularize_to_baseline_lambda"]
    if regularize_lambda:
        # ignore_index: alpaca-eval keeps duplicated labels here, which only works while nothing
        # is dropped; positions are what its fit uses anyway (it resets the index for CV groups)
        train = pd.concat([gamed_rows, rows], axis=0, ignore_index=True)
        # divided by 2 because there are two gamed baselines (alpaca-eval's weighting)
        sample_weight = train["not_gamed_baseline"].astype(float) + (
            regularize_lambda * (~train["not_gamed_baseline"])
        ).astype(float) / 2
    else:
        train = rows
        sample_weight = None

    train_xy, test_x = glm_winrate.make_dmatrix_for_model(train, test_rows, formula=glm_info["formula"])
    is_judged = train_xy["preference"].notna()
    train_xy = train_xy[is_judged]
    if sample_weight is not None:
        sample_weight = sample_weight[is_judged.to_numpy()]

    fit_kwargs = dict(glm_info["kwargs"])
    if fixed_C is not None:
        fit_kwargs.update(n_splits=0, C=fixed_C)
    # fit_LogisticRegressionCV flips sklearn's global metadata-routing switch on; scope it so the
    # rest of the process keeps sklearn's defaults. The penalty= deprecation chatter is
    # alpaca-eval's call style; sklearn < 1.10 still honours penalty="l1" over l1_ratio.
    with sklearn.config_context(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*'penalty' was deprecated.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r"Inconsistent values: penalty=", category=UserWarning)
        warnings.filterwarnings("ignore", message=r"The default value for l1_ratios", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r"The fitted attributes of LogisticRegressionCV", category=FutureWarning)
        model = glm_winrate.fit_LogisticRegressionCV(
            train_xy, "preference", is_ytrue_proba=True, sample_weight=sample_weight, **fit_kwargs
        )
    return model, model.predict_proba(test_x)[:, 1]


# --------------------------------------------------------------------------------------------
# public entry point


def _validated_annotations(annotations: pd.DataFrame) -> pd.DataFrame:
    missing = [field for field in REQUIRED_ANNOTATION_FIELDS if field not in annotations.columns]
    if missing:
        raise AnnotationError(f"annotations: missing column(s) {missing}")
    if len(annotations) == 0:
        raise AnnotationError("annotations: no rows")
    for field in ("output_1", "output_2"):
        is_text = annotations[field].map(lambda value: isinstance(value, str))
        if not is_text.all():
            bad_row = int(np.flatnonzero(~is_text.to_numpy())[0])
            raise AnnotationError(f"annotations, row {bad_row + 1}, field {field!r}: expected a string")
    preference = pd.to_numeric(annotations["preference"], errors="coerce").astype(float)
    is_bad = (preference.isna() & annotations["preference"].notna()) | ~preference.map(_is_valid_preference)
    if is_bad.any():
        bad_row = int(np.flatnonzero(is_bad.to_numpy())[0])
        raise AnnotationError(
            f"annotations, row {bad_row + 1}, field 'preference': {annotations['preference'].iloc[bad_row]!r} "
            "is not 1..2, 0 (draw) or missing"
        )
    for field in ("generator_1", "generator_2"):
        names = annotations[field].unique()
        if len(names) != 1:
            raise ValueError(f"annotations: expected one {field}, got {sorted(map(str, names))[:5]}")
    return annotations.assign(preference=preference)


def _difficulty_by_row(
    n_rows: int, instruction_difficulty: pd.Series, gamed_rows: pd.DataFrame
) -> np.ndarray:
    positions = np.arange(n_rows)
    difficulty = instruction_difficulty.reindex(positions)
    if difficulty.isna().any():
        missing = positions[difficulty.isna().to_numpy()]
        raise ValueError(
            f"instruction_difficulty has no value for row position(s) {missing[:5].tolist()}"
            f"{' ...' if len(missing) > 5 else ''}; the official recipe needs the AlpacaEval prompt set in order"
        )
    # alpaca-eval takes difficulty from df_gamed itself; two disagreeing tables are two different GLMs
    difficulty_in_gamed = gamed_rows.drop_duplicates("index").set_index("index")["instruction_difficulty"]
    shared = difficulty_in_gamed.index.intersection(instruction_difficulty.index)
    gap = (difficulty_in_gamed.loc[shared] - instruction_difficulty.loc[shared]).abs().max()
    if len(shared) and gap > _DIFFICULTY_MISMATCH_TOLERANCE:
        raise ValueError(
            f"instruction_difficulty disagrees with gamed_rows' instruction_difficulty (max gap {gap:.3g}); "
            "they must come from the same estimate"
        )
    return difficulty.to_numpy(dtype=float)


def _percentile_interval(replicates: np.ndarray, level: float) -> tuple[float, float]:
    finite = replicates[np.isfinite(replicates)]
    if len(finite) == 0:
        return float("nan"), float("nan")
    tail = (1 - level) / 2
    low, high = np.quantile(finite, [tail, 1 - tail])
    return float(low), float(high)


def _std_or_nan(replicates: np.ndarray) -> float:
    finite = replicates[np.isfinite(replicates)]
    return float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan")


def _check_arguments(instruction_difficulty, gamed_rows, n_bootstrap: int, level: float) -> None:
    if (instruction_difficulty is None) != (gamed_rows is None):
        raise ValueError(
            "the official recipe needs both instruction_difficulty and gamed_rows; pass neither for the identified recipe"
        )
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")


def _enough_for_cv(recipe: str, n_judged: int) -> bool:
    """alpaca-eval's GroupKFold needs at least one judged prompt per fold; fewer: LC is NaN, with a warning."""
    min_judged_for_lc = _alpaca_eval()[0].GLM_INFO[recipe]["kwargs"]["n_splits"]
    if n_judged < min_judged_for_lc:
        warnings.warn(
            f"LC win rate needs at least {min_judged_for_lc} judged rows (alpaca-eval's {min_judged_for_lc}-fold "
            f"CV), got {n_judged}; reporting it as NaN",
            stacklevel=3,
        )
        return False
    return True


def _identified_lc(annotations: pd.DataFrame, n_judged: int, n_bootstrap: int, level: float, seed: int):
    """(LC, stderr, (ci_low, ci_high), identified, reason) by evals.winrate_stats (NaNs when not identified)."""
    nan = float("nan")
    if n_judged == 0:
        return nan, nan, (nan, nan), False, "no judged rows"
    stats = winrate_statistics(annotations["preference"], annotations["output_1"].str.len(),
                               annotations["output_2"].str.len(), n_bootstrap=n_bootstrap, seed=seed)
    if not stats.summary["winrate/lc_identified"]:
        return nan, nan, (nan, nan), False, stats.lc_reason
    z = NormalDist().inv_cdf(0.5 + level / 2)
    lc, stderr = stats.summary["winrate/lc_win_rate_pct"], stats.summary["winrate/lc_win_rate_pct_stderr"]
    return lc, stderr, (max(0.0, lc - z * stderr), min(100.0, lc + z * stderr)), True, ""


def _bootstrap(preference_0_to_1: np.ndarray, lc_pct, model, n_bootstrap: int, level: float, seed: int):
    """Paired bootstrap over prompts: (LC interval, LC stderr, raw interval). C is chosen once by
    alpaca-eval's CV on all rows and reused for every replicate (see the module docstring), unless that
    fit zeroed every weight: replicates at the same C would then all say exactly 50 and fake certainty,
    so each replicate re-runs the CV (slower, but rare). `lc_pct=None`: raw only."""
    nan = float("nan")
    n_rows = len(preference_0_to_1)
    has_signal = model is not None and bool(np.any(model.coef_))
    selected_C = float(np.ravel(model.C_)[0]) if has_signal else None
    rng = np.random.default_rng(seed)
    lc_replicates_pct = np.full(n_bootstrap, nan)
    win_rate_replicates_pct = np.full(n_bootstrap, nan)
    for replicate in range(n_bootstrap):
        sample = rng.integers(0, n_rows, size=n_rows)
        if lc_pct is not None:
            lc_replicates_pct[replicate], _ = lc_pct(sample, fixed_C=selected_C)
        if np.isfinite(preference_0_to_1[sample]).any():
            win_rate_replicates_pct[replicate] = np.nanmean(preference_0_to_1[sample]) * 100
    lc_ci = _percentile_interval(lc_replicates_pct, level) if lc_pct is not None else (nan, nan)
    lc_stderr = _std_or_nan(lc_replicates_pct) if lc_pct is not None else nan
    return lc_ci, lc_stderr, _percentile_interval(win_rate_replicates_pct, level)


def lc_winrate(
    annotations: pd.DataFrame,
    *,
    instruction_difficulty: pd.Series | None = None,
    gamed_rows: pd.DataFrame | None = None,
    n_bootstrap: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> LCWinRate:
    """Raw and LC win rate (percent) of `generator_2` (output_2) over the reference `generator_1` (output_1).

    `annotations`: one row per prompt (in prompt order): instruction, output_1, output_2, preference
    (1 = output_1 wins, 2 = output_2 wins, 1.5 or 0 = draw, fractional allowed, NaN = no verdict),
    generator_1, generator_2. Both `instruction_difficulty` (by row position) and `gamed_rows`: the
    official `length_controlled_v1` recipe; neither: `length_controlled_identified` (evals.winrate_stats;
    where lengths do not identify LC, `lc_identified` is False, `lc_reason` says why, LC is NaN).
    `n_bootstrap=0`: no bootstrap (raw CI NaN; the official recipe's LC CI and stderr NaN). Official
    recipe with fewer than 5 judged rows: LC NaN with a warning. A model judged against itself gets
    LC = 50 by construction (as alpaca-eval)."""
    _check_arguments(instruction_difficulty, gamed_rows, n_bootstrap, level)
    annotations = _validated_annotations(annotations).reset_index(drop=True)
    raw = _alpaca_eval()[1].get_winrate(annotations[["preference"]])
    n_rows = len(annotations)
    recipe = IDENTIFIED_RECIPE if gamed_rows is None else OFFICIAL_RECIPE
    row_difficulty = None
    if gamed_rows is not None:
        gamed_rows = _validated_gamed_rows(gamed_rows).drop(columns=["model"], errors="ignore")
        row_difficulty = _difficulty_by_row(n_rows, instruction_difficulty, gamed_rows)

    # alpaca-eval: 0 means draw; work with preference - 1 in [0, 1]
    preference_0_to_1 = annotations["preference"].replace({0.0: 1.5}).to_numpy(dtype=float) - 1
    delta_len_chars = (annotations["output_1"].str.len() - annotations["output_2"].str.len()).to_numpy(dtype=float)
    row_positions = np.arange(n_rows)
    is_self_match = annotations["generator_1"].iloc[0] == annotations["generator_2"].iloc[0]
    n_judged = int(np.isfinite(preference_0_to_1).sum())
    nan = float("nan")
    lc_win_rate_pct, model, identified, reason = nan, None, True, ""
    lc_ci, win_rate_ci, lc_stderr = (nan, nan), (nan, nan), nan

    # LC resampled in the bootstrap below: the self-match (always 50) and the official GLM
    is_lc_estimable = is_self_match
    if is_self_match:
        lc_win_rate_pct = 50.0  # by construction, as alpaca-eval
    elif recipe == IDENTIFIED_RECIPE:
        lc_win_rate_pct, lc_stderr, lc_ci, identified, reason = _identified_lc(annotations, n_judged, n_bootstrap,
                                                                                level, seed)
    else:
        is_lc_estimable = _enough_for_cv(recipe, n_judged)

    def lc_pct(sample: np.ndarray, fixed_C: float | None):
        if is_self_match:
            return 50.0, None
        rows, test_rows = _featurize(
            preference_0_to_1[sample], delta_len_chars[sample], row_positions[sample], row_difficulty[sample]
        )
        fitted, predicted = _fit_glm(rows, test_rows, recipe, gamed_rows, fixed_C=fixed_C)
        return float(predicted.mean() * 100), fitted

    if recipe == OFFICIAL_RECIPE and is_lc_estimable and not is_self_match:
        lc_win_rate_pct, model = lc_pct(row_positions, fixed_C=None)
    if n_bootstrap > 0:
        boot_lc_ci, boot_lc_stderr, win_rate_ci = _bootstrap(preference_0_to_1, lc_pct if is_lc_estimable else None,
                                                             model, n_bootstrap, level, seed)
        if is_lc_estimable:
            lc_ci, lc_stderr = boot_lc_ci, boot_lc_stderr

    return LCWinRate(win_rate_pct=float(raw["win_rate"]), win_rate_stderr=float(raw["standard_error"]),
                     lc_win_rate_pct=lc_win_rate_pct, lc_win_rate_stderr=lc_stderr, n=int(raw["n_total"]),
                     n_wins=int(raw["n_wins"]), n_draws=int(raw["n_draws"]), lc_ci_low=lc_ci[0], lc_ci_high=lc_ci[1],
                     win_rate_ci_low=win_rate_ci[0], win_rate_ci_high=win_rate_ci[1], recipe=recipe,
                     lc_identified=identified, lc_reason=reason)
