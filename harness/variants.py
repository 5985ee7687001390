"""The variant zoo: each preference-optimization variant as a registry entry.

An entry names its TRL trainer and config by import path (imported only when that variant
trains, so a DPO run never imports `trl.experimental`), its data shape, whether training
needs a reference model, and its own parameters with paper defaults and checks.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from harness.registry import Registry

DPO_LOSS_TYPES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
    "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
)


@dataclass(frozen=True)
class Param:
    default: Any
    doc: str
    check: Callable[[Any], str | None] = lambda v: None  # returns a problem, or None


@dataclass(frozen=True)
class VariantSpec:
    name: str
    fixes: str
    trainer: str  # "module:Class"
    config: str  # "module:Class"
    data_shape: Literal["paired", "unpaired"]
    needs_reference: bool
    default_beta: float
    beta_doc: str
    params: dict[str, Param] = field(default_factory=dict)
    # maps (beta, params with defaults filled) -> TRL config kwargs
    to_trl: Callable[[float, dict[str, Any]], dict[str, Any]] = lambda beta, p: {"beta": beta}

    def resolve_params(self, given: dict[str, Any]) -> dict[str, Any]:
        return {name: given.get(name, p.default) for name, p in self.params.items()}

    def trainer_class(self):
        return _import(self.trainer)

    def config_class(self):
        return _import(self.config)


def _import(path: str):
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


VARIANTS: Registry[VariantSpec] = Registry("variant")


def _number(lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False):
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return f"must be a number (got {v!r})"
        if not math.isfinite(v):  # NaN compares false with every bound and would pass them all
            return f"must be a finite number (got {v})"
        if lo is not None and (v < lo or (lo_open and v == lo)):
            return f"must be {'>' if lo_open else '>='} {lo} (got {v})"
        if hi is not None and (v > hi or (hi_open and v == hi)):
            return f"must be {'<' if hi_open else '<='} {hi} (got {v})"
        return None

    return check


def _dpo_loss_type(v: Any) -> str | None:
    return None if v in DPO_LOSS_TYPES else f"must be one of {', '.join(DPO_LOSS_TYPES)} (got {v!r})"


VARIANTS.add("dpo", VariantSpec(
    name="dpo", fixes="baseline: preference learning without a reward model",
    trainer="trl:DPOTrainer", config="trl:DPOConfig", data_shape="paired", needs_reference=True,
    default_beta=0.1, beta_doc="KL strength; higher stays closer to the reference",
    params={
        "loss_type": Param("sigmoid", "any DPOTrainer loss_type (hinge, robust, bco_pair, apo_zero, ...)", _dpo_loss_type),
        "label_smoothing": Param(0.0, "robust/cDPO label-flip probability, in [0, 0.5)", _number(0, 0.5, hi_open=True)),
    },
    to_trl=lambda beta, p: {"beta": beta, "loss_type": [p["loss_type"]], "label_smoothing": p["label_smoothing"]},
))

VARIANTS.add("ipo", VariantSpec(
    name="ipo", fixes="DPO's overconfidence on deterministic preferences (squared loss on the log-ratio gap)",
    trainer="trl:DPOTrainer", config="trl:DPOConfig", data_shape="paired", needs_reference=True,
    default_beta=0.1, beta_doc="IPO's tau: the target margin is 1/(2 tau)",
    to_trl=lambda beta, p: {"beta": beta, "loss_type": ["ipo"]},
))

VARIANTS.add("rpo", VariantSpec(
    name="rpo", fixes="the drop of chosen log-probability (adds an SFT/NLL term on chosen)",
    trainer="trl:DPOTrainer", config="trl:DPOConfig", data_shape="paired", needs_reference=True,
    default_beta=0.1, beta_doc="DPO beta of the preference term",
    params={"alpha": Param(1.0, "weight of the NLL term on chosen (TRL 1.x: loss_weights=[1, alpha])", _number(0, lo_open=True))},
    to_trl=lambda beta, p: {"beta": beta, "loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, float(p["alpha"])]},
))


def _simpo_to_trl(beta: float, p: dict[str, Any]) -> dict[str, Any]:
    # cpo_alpha defaults to 1.0 in CPOConfig, which adds a BC term: that is CPO, not SimPO.
    return {"beta": beta, "loss_type": "simpo", "cpo_alpha": 0.0, "simpo_gamma": float(p["gamma"])}


VARIANTS.add("simpo", VariantSpec(
    name="simpo", fixes="length bias; reference-free (length-normalized reward with a target margin)",
    trainer="trl.experimental.cpo:CPOTrainer", config="trl.experimental.cpo:CPOConfig",
    data_shape="paired", needs_reference=False, default_beta=2.5,
    beta_doc="reward scale (paper: 2.5 for Llama-3-8B; 2-10 typical)",
    params={"gamma": Param(1.375, "target reward margin (paper: 1.375; gamma/beta ~0.55)", _number(0))},
    to_trl=_simpo_to_trl,
))

VARIANTS.add("orpo", VariantSpec(
    name="orpo", fixes="SFT and preference in one pass; reference-free (odds-ratio penalty)",
    trainer="trl.experimental.orpo:ORPOTrainer", config="trl.experimental.orpo:ORPOConfig",
    data_shape="paired", needs_reference=False, default_beta=0.1,
    beta_doc="ORPO's lambda: weight of the odds-ratio term against the NLL term (TRL calls it beta)",
    to_trl=lambda beta, p: {"beta": beta},
))

VARIANTS.add("kto", VariantSpec(
    name="kto", fixes="unpaired thumbs-up/down data (prospect-theoretic loss)",
    trainer="trl:KTOTrainer", config="trl:KTOConfig", data_shape="unpaired", needs_reference=True,
    default_beta=0.1, beta_doc="KL strength",
    params={
        "desirable_weight": Param(None, "weight of desirable rows; None: balanced from the data", _number(0, lo_open=True)),
        "undesirable_weight": Param(None, "weight of undesirable rows; None: balanced from the data", _number(0, lo_open=True)),
    },
    to_trl=lambda beta, p: {"beta": beta},
))


def check_variant(name: Any, beta: Any, params: dict[str, Any]) -> list[str]:
    """Problems with a variant's name, beta and parameters, each naming its field."""
    if not isinstance(name, str) or name not in VARIANTS:
        close = VARIANTS.suggest(str(name))
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return [f"variant: unknown variant {name!r}{hint} (known: {', '.join(VARIANTS.names())})"]
    spec = VARIANTS.get(name)
    problems = []
    if beta is not None:
        if isinstance(beta, bool) or not isinstance(beta, (int, float)):
            pass  # the schema already reports a wrong type
        elif not math.isfinite(beta) or beta <= 0:
            problems.append(f"beta: must be > 0 for {name} (got {beta})")
    if not isinstance(params, dict):
        return problems + ["variant_params: must be a mapping"]
    for key, value in params.items():
        if key not in spec.params:
            known = ", ".join(spec.params) or "none"
            problems.append(f"variant_params.{key}: not a parameter of {name} (its parameters: {known})")
            continue
        if value is None and spec.params[key].default is None:
            continue
        issue = spec.params[key].check(value)
        if issue:
            problems.append(f"variant_params.{key}: {issue}")
    return problems


def kto_balanced_weights(n_desirable: int, n_undesirable: int) -> tuple[float, float]:
    """Weights with desirable_weight*n_d / (undesirable_weight*n_u) in [1, 4/3], as the KTO paper recommends."""
    if n_desirable == 0 or n_undesirable == 0:
        raise ValueError("KTO needs both desirable and undesirable rows")
    ratio = n_desirable / n_undesirable
    if 1.0 <= ratio <= 4 / 3:
        return 1.0, 1.0
    if ratio < 1.0:  # too few desirable rows: up-weight them to reach ratio 1
        return 1.0 / ratio, 1.0
    return 1.0, ratio / (4 / 3)  # too many desirable rows: up-weight undesirable to reach 4/3
