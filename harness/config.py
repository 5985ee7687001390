"""Experiment configuration: YAML -> validated pydantic model, every problem reported at once.

Fields that depend on each other are checked together in `ExperimentConfig` (like TRL's
`DPOConfig.__post_init__`); variant-specific parameters are checked by the variant's own
schema from the registry, so a new variant brings its own checks.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import types
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from harness.errors import ConfigError


def _is_number_type(annotation: Any) -> bool:
    """int or float, alone or in a Union with None/other non-bool types (`float | None`)."""
    if annotation in (int, float):
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        args = get_args(annotation)
        return bool not in args and any(_is_number_type(a) for a in args)
    return False


def _no_bool_numbers(cls: type[BaseModel], v: Any, info: ValidationInfo) -> Any:
    # pydantic's lax mode reads True as 1 and False as 0, so YAML's `max_regression: yes` allowed any
    # drop; a number field takes numbers only (bool is an int subclass, hence the explicit check)
    field = cls.model_fields.get(info.field_name or "")
    if isinstance(v, bool) and field is not None and _is_number_type(field.annotation):
        raise ValueError(f"a number is required, not the boolean {str(v).lower()}")
    return v


_STRICT_CONFIG = ConfigDict(extra="forbid", validate_assignment=False, allow_inf_nan=False)


class _Strict(BaseModel):
    # allow_inf_nan=False: a NaN bound passes every comparison and an infinite one disables a rule, so
    # every float in a config must be a finite number (exit 2 naming the field); and no number is a boolean
    model_config = _STRICT_CONFIG
    _numbers_are_not_booleans = field_validator("*", mode="before")(classmethod(_no_bool_numbers))


class ModelConfig(_Strict):
    name: str = Field(description="embedded:smollm2-135m-instruct, embedded:tiny, an HF hub id, or a local path")
    trust_remote_code: bool = False
    allow_pickle_weights: bool = Field(False, description="load .bin/.pt checkpoints (unsafe for untrusted models)")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    revision: str | None = Field(None, description="a hub model's commit, tag or branch; unset: the hub's latest. A run "
                                                   "records the commit it loaded here (its config.json), and its "
                                                   "registered model, `harness compare` and the head-to-head rebuild "
                                                   "on that commit, whatever the hub holds later")


class FeedbackConfig(_Strict):
    """Production thumbs feedback (prompt, response, up/down, timestamp, model_version): which rows count."""

    max_age_days: float | None = Field(None, gt=0, description="keep rows at most this old (needs a timestamp per row)")
    model_versions: list[str] | None = Field(None, min_length=1,
                                             description="keep rows served by these model versions only")
    now: datetime | None = Field(None, description="the time ages are measured from; default: when the run starts. "
                                                   "Fix it for reproducible runs")
    as_pairs: bool | None = Field(None, description="build chosen/rejected pairs from prompts with both an up and a "
                                                    "down answer; default: pairs for paired variants, KTO rows for KTO")


class DataConfig(_Strict):
    source: str = Field("builtin:verifiable", description="builtin:verifiable, a JSONL/Parquet file or folder, or hf:NAME")
    split: str = "train"
    responder: Literal["policy", "template"] = Field(
        "policy", description="builtin data: answers sampled on-policy from the base model, or written by templates"
    )
    n_prompts: int = Field(48, gt=0, description="builtin data: training prompts to generate")
    samples_per_prompt: int = Field(4, ge=2, description="on-policy samples per prompt; best vs worst becomes a pair")
    sample_temperature: float = Field(0.8, gt=0)
    max_new_tokens: int = Field(64, gt=0)
    eval_fraction: float = Field(0.15, ge=0, lt=1, description="share of pairs held out for the chosen-log-prob eval")
    feedback: FeedbackConfig | None = Field(None, description="treat the source as production thumbs feedback")


class LoraConfig(_Strict):
    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | str = "all-linear"


class TrainingConfig(_Strict):
    max_steps: int = Field(16, gt=0)
    batch_size: int = Field(4, gt=0)
    gradient_accumulation_steps: int = Field(1, gt=0)
    learning_rate: float = Field(2e-4, ge=0, description="0 is valid: the adapter stays zero, a no-change cell "
                                                            "(how the gate's false-promote rate is checked end to end)")
    max_length: int = Field(192, gt=8)
    warmup_steps: int = Field(0, ge=0)
    logging_steps: int = Field(1, gt=0)
    precompute_ref_log_probs: bool = Field(
        True, description="score the reference once per row (shared by every DPO-family cell on the same data)")
    lora: LoraConfig = Field(default_factory=LoraConfig)


class KLConfig(_Strict):
    # KL is right-skewed and its bound reads the skewness, which needs 3 samples: with 2 a KL rule fails closed,
    # naming why (harness.gate); 2 stays valid so runs recorded with it can still be re-gated and force-promoted
    n_prompts: int = Field(16, gt=1, description="policy samples KL is measured on (a KL rule's bound needs 3)")
    max_new_tokens: int = Field(32, gt=0)


class SequentialConfig(_Strict):
    """Judge the eval prompts in batches and stop once every gate rule on the win rate is decided by an
    anytime-valid bound (evals.sequential): the raw win rate by a betting confidence sequence, LC and
    style-controlled win rates by normal bounds at alpha spent across the looks. Undecided at the budget
    is a fail. Judge verdicts are cached by content, so a raised budget only judges the new prompts.
    The domain tasks likewise, per task: accuracy and its paired difference from the reference by betting
    confidence sequences, up to every document of the task (eval.domain_limit)."""

    max_prompts: int | None = Field(None, gt=0, description="judging budget: at most this many of the eval.n_prompts "
                                                             "prompts (default: all of them)")
    batch_prompts: int = Field(8, gt=0, description="prompts judged between two looks")
    # above 0.5: at 0.5 the "bound" is the estimate itself (z = 0), and evals.sequential refuses it mid-run
    confidence: float = Field(0.95, gt=0.5, lt=1, description="level of the anytime bounds recorded for win-rate "
                                                              "and domain metrics no rule reads (rules use their own level)")
    domain: bool = Field(True, description="also evaluate the domain tasks' documents in batches (seeded random "
                                           "order), stopping each task once its rules are decided (evals.domain)")
    batch_items: int = Field(16, gt=0, description="domain documents per task evaluated between two looks")


# ---- eval.judge: one of these by `name` (evals.judges); a bare string "rule" is the shorthand


class _Judge(BaseModel):
    # not _Strict: its "*" validator would wrap `name`, the discriminator, where pydantic forbids a
    # before-validator; so the number fields are listed (tests/harness/test_config.py checks every one)
    model_config = _STRICT_CONFIG
    _numbers_are_not_booleans = field_validator("max_concurrency", "timeout_s", "batch_size", "max_length",
                                                "tie_margin", mode="before", check_fields=False)(
        classmethod(_no_bool_numbers))


class RuleJudgeConfig(_Judge):
    name: Literal["rule"] = "rule"


class LLMJudgeConfig(_Judge):
    name: Literal["llm"]
    base_url: str = Field(description="an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1")
    model: str = Field(description="the model name the endpoint serves")
    annotator_config: str = Field("chatgpt", description="an alpaca-eval annotator config name, or a path to one")
    api_key_env: str = Field("OPENAI_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                             description="NAME of the environment variable holding the API key (never the key)")
    max_concurrency: int = Field(4, gt=0)
    timeout_s: float = Field(60.0, gt=0)
    is_chat: bool = Field(True, description="chat completions (alpaca-eval's requires_chatml) or plain completions")
    completions_kwargs: dict[str, Any] = Field(default_factory=dict,
                                               description="merged into the annotator's completions_kwargs")


class RewardModelJudgeConfig(_Judge):
    name: Literal["reward_model"]
    model: str = Field(description="a sequence-classification model with one output: HF hub id or local path")
    batch_size: int = Field(8, gt=0)
    max_length: int = Field(1024, gt=8)
    tie_margin: float = Field(0.0, ge=0, description="score differences up to this are ties")
    trust_remote_code: bool = False


JudgeConfig = Annotated[Union[RuleJudgeConfig, LLMJudgeConfig, RewardModelJudgeConfig], Field(discriminator="name")]


class DiversityConfig(_Strict):
    n_prompts: int = Field(8, ge=0, description="held-out prompts to sample (at most eval.n_prompts); 0 turns it off")
    samples_per_prompt: int = Field(4, ge=2)
    max_new_tokens: int = Field(48, gt=0)
    collapse_threshold: float = Field(0.9, gt=0, le=1, description="collapse alarm above this mean self-similarity")


class IfevalConfig(_Strict):
    data_file: Path | None = Field(None, description="IFEval's input_data.jsonl(.gz) for the ifeval_local domain task")
    max_gen_toks: int | None = Field(None, gt=0, description="None keeps lm-eval's 1280")


class EvalConfig(_Strict):
    n_prompts: int = Field(24, ge=5, description="held-out prompts; >=5 because the LC GLM uses 5-fold CV")
    max_new_tokens: int = Field(64, gt=0)
    batch_size: int = Field(8, gt=0)
    judge: JudgeConfig = Field(default_factory=RuleJudgeConfig)
    verbosity_gap_pct: float = Field(10.0, ge=0, description="winrate/verbosity_alarm fires when raw - LC exceeds this")
    max_truncated_pct: float = Field(10.0, ge=0, le=100, description="above this share of answers cut at max_new_tokens "
                                                                      "(either side), length ratios are censored: "
                                                                      "dropped, so rules on them fail closed")
    kl: KLConfig = Field(default_factory=KLConfig)
    diversity: DiversityConfig = Field(default_factory=DiversityConfig)
    domain_tasks: list[str] = Field(default_factory=lambda: ["harness_arith_mc"])
    domain_limit: int | None = Field(40, gt=0)
    ifeval: IfevalConfig = Field(default_factory=IfevalConfig)
    n_bootstrap: int = Field(0, ge=0, description="paired bootstrap resamples; 0 (default): the analytic errors "
                                                   "alone, which `harness gate plan` simulates (a bootstrap can "
                                                   "only widen them)")
    prompts: str | dict[str, Any] = Field("builtin", description="the eval prompts (evals.eval_prompts): builtin, "
                                                                 "heldout, a JSONL/JSON/Parquet/CSV file, "
                                                                 "hf:NAME[:SPLIT], or {name: alpaca_eval, "
                                                                 "baseline_outputs: PATH}")
    allow_prompt_overlap: bool = Field(False, description="allow eval prompts that also occur in the training data "
                                                          "(normalised text); otherwise any overlap is a config error")
    sequential: SequentialConfig | None = Field(None, description="judge in batches and stop when the win-rate rules "
                                                                  "are decided (anytime-valid); None: judge every prompt")

    @field_validator("judge", mode="before")
    @classmethod
    def _judge_shorthand(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _ifeval_has_data(self) -> "EvalConfig":
        if "ifeval_local" in self.domain_tasks and self.ifeval.data_file is None:
            raise ValueError("domain task ifeval_local needs eval.ifeval.data_file (IFEval's input_data.jsonl.gz)")
        return self

    @model_validator(mode="after")
    def _sequential_fits(self) -> "EvalConfig":
        s = self.sequential
        builtin = self.prompts == "builtin"
        if s is not None and builtin and s.max_prompts is not None and s.max_prompts > self.n_prompts:
            raise ValueError(f"sequential.max_prompts ({s.max_prompts}) exceeds eval.n_prompts ({self.n_prompts}): "
                             "the budget is a share of the eval prompts; raise n_prompts")
        return self


class IterationConfig(_Strict):
    """Iterative on-policy DPO (Llama 3, Tulu 3): round 1 trains on `data`; round k >= 2 samples
    data.samples_per_prompt answers per pool prompt from round k-1's policy, ranks them with
    eval.judge, pairs best vs worst, and trains with round k-1's checkpoint as the reference."""

    prompt_pool: str = Field("builtin:verifiable", description="prompts sampled in rounds >= 2: builtin:verifiable, "
                                                               "or a JSONL/Parquet file with a `prompt` field")
    fresh_prompts: bool = Field(True, description="each round draws new prompts from the pool (a static set goes "
                                                  "stale as the policy learns it)")
    gate_vs_start: bool = Field(True, description="rounds >= 2 are also gated against the starting model: win-rate "
                                                  "and KL rules apply to the *_vs_start metrics, regression rules "
                                                  "to the start's values")


class GateRule(_Strict):
    """One rule, decided on a one-sided confidence bound by default. Direction comes from the metric's
    declaration, never from the rule.

    - `min`: the lower confidence bound must lie above it (superiority: "shown better than");
    - `max`: the upper confidence bound must lie below it;
    - `max_regression`: non-inferiority: the upper confidence bound of the drop vs `against` (paired per
      item/prompt where the eval records `<metric>_delta` and its stderr) must lie below the allowed drop.
    A bound that only touches its threshold shows nothing, so bound comparisons are strict. With
    `statistic: point` the estimate alone decides (no error rate; flagged in the report and --json).
    """

    metric: str
    name: str | None = None
    min: float | None = None
    max: float | None = None
    strict: bool = Field(False, description="statistic: point only: min/max exclude the bound itself")
    # allowed change vs a baseline, measured in the metric's own direction ("may get worse by at most")
    max_regression: float | None = Field(None, ge=0)
    relative: bool = Field(False, description="max_regression is a fraction of the baseline, not an absolute amount")
    # reference: the model this cell was trained against (the previous round when iterating);
    # start: the model the experiment started from; champion: the registry's alias
    against: Literal["reference", "champion", "start"] = "reference"
    statistic: Literal["bound", "point"] = Field("bound", description="bound: decide on a one-sided confidence bound; "
                                                                      "point: on the estimate alone (flagged)")
    # a level in (0, 1); bound rules need it above 0.5 (_has_a_bound); point rules do not read it
    confidence: float = Field(0.95, gt=0, lt=1, description="one-sided level of the bound (before a sweep's "
                                                            "Bonferroni share across its cells); above 0.5")
    required: bool = True

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if "significance" in data:
                raise ValueError("'significance' is gone: a max_regression rule is now a non-inferiority test on the "
                                 "paired drop's upper confidence bound; write `confidence: 0.95` instead "
                                 "(a non-significant drop no longer clears a regression)")
            if data.get("statistic") in ("ci_low", "ci_high"):
                raise ValueError(f"statistic {data['statistic']!r} is gone: the default `statistic: bound` reads the "
                                 "lower bound for min and the upper bound for max; remove the field")
        return data

    @model_validator(mode="after")
    def _has_a_bound(self) -> "GateRule":
        if self.min is None and self.max is None and self.max_regression is None:
            raise ValueError("a rule needs at least one of min, max, max_regression")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        if self.statistic == "bound" and self.confidence <= 0.5:
            # at 0.5 z = 0: the "bound" is the estimate itself, and below 0.5 it lies on the estimate's far
            # side, yet the report would call it a confidence bound
            raise ValueError(f"rule {self.label!r}: confidence {self.confidence:g} must lie above 0.5 for a bound "
                             "(at 0.5 the one-sided bound is the point estimate itself); to decide on the "
                             "estimate, write `statistic: point` (flagged as such in the report)")
        return self

    @property
    def label(self) -> str:
        return self.name or self.metric


class GateConfig(_Strict):
    rules: list[GateRule] = Field(default_factory=list)
    # add the default rule set (harness.gate.default_rules); a rule in `rules` with the same
    # name replaces the default one
    use_default_rules: bool = False
    allow_promote_without_rules: bool = False
    family_size: int = Field(1, ge=1, description="cells competing for one promotion (a sweep sets it): each cell's "
                                                  "bounds use alpha / family_size, so an all-equal sweep ships any "
                                                  "cell with probability at most alpha")


class RegistryConfig(_Strict):
    model_name: str = Field("po-harness", description="MLflow registered model name")
    alias: str = "champion"
    tracking_uri: str | None = Field(None, description="a remote MLflow server; default: SQLite in output_dir")


class ExperimentConfig(_Strict):
    name: str = Field("experiment", min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._ -]*$",
                      description="MLflow experiment name; letters, digits, . _ - and spaces (never a path)")
    output_dir: Path = Path("runs")
    cache_dir: Path | None = Field(None, description="model/data/generation caches; default <output_dir>/cache")
    seed: int = Field(0, ge=0, lt=2**32, description="numpy and torch seeds must lie in [0, 2**32)")
    model: ModelConfig
    variant: str = Field(description="a registered variant: dpo, ipo, rpo, simpo, orpo, kto")
    beta: float | None = Field(None, description="the variant's beta; None takes the variant's paper default")
    variant_params: dict[str, Any] = Field(default_factory=dict)
    data: DataConfig = Field(default_factory=DataConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    iterations: int = Field(1, ge=1, le=20, description="rounds of on-policy sampling + training; 1 is a single pass")
    iteration: IterationConfig = Field(default_factory=IterationConfig)

    @field_validator("beta")
    @classmethod
    def _beta_positive(cls, v: float | None) -> float | None:
        if v is not None and v <= 0:
            raise ValueError("beta must be > 0")
        return v

    @model_validator(mode="after")
    def _iterations_are_on_policy(self) -> "ExperimentConfig":
        if self.iterations > 1:
            judge = self.eval.judge.name
            pool = self.iteration.prompt_pool
            if pool.startswith("builtin:") and pool != "builtin:verifiable":
                raise ValueError(f"iteration.prompt_pool: unknown built-in pool {pool!r} (known: builtin:verifiable)")
            if judge == "rule" and pool != "builtin:verifiable":
                raise ValueError("iteration.prompt_pool: the rule judge can only rank answers to builtin:verifiable "
                                 "prompts; use an llm or reward_model judge for a prompt file")
        return self

    @property
    def resolved_cache_dir(self) -> Path:
        return self.cache_dir or self.output_dir / "cache"

    def cell_key(self) -> str:
        """Stable content key of what gets trained: same settings -> same key, on any machine.

        Paths, gate rules and registry names do not change the checkpoint, so they stay out.
        """
        payload = self.model_dump(mode="json", exclude={"output_dir", "cache_dir", "gate", "registry", "name"})
        # settings added later stay out while at their defaults, so existing cells keep their keys
        if self.iterations == 1:
            payload.pop("iterations"), payload.pop("iteration")
        if payload["data"]["feedback"] is None:
            payload["data"].pop("feedback")
        if payload["model"]["revision"] is None:
            payload["model"].pop("revision")
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.variant}-b{self.beta:g}-s{self.seed}-{digest}"


# ---------------------------------------------------------------- loading


def format_loc(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "<root>"


def set_dotted(tree: dict, dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


class DuplicateKeyError(yaml.YAMLError):
    """A key given twice in one mapping: YAML 1.2 requires unique keys, and PyYAML would keep the last."""

    def __init__(self, key: Any, line: int, first_line: int):
        self.key, self.line, self.first_line = key, line, first_line
        hint = "; merge several anchors with one `<<: [*a, *b]`" if key == "<<" else ""
        super().__init__(f"line {line}: duplicate key {key!r} (first given at line {first_line}); "
                         f"a repeated key would silently replace the first{hint}")


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a literal duplicate key in any mapping (every harness config and sweep).

    Merge keys still work: `<<: *anchor` brings in keys that an explicit key may override (the YAML merge
    spec), so only the keys written in the mapping itself are compared; several anchors go in one
    `<<: [*a, *b]`. Keys are compared as constructed, so `1`/`1.0` and `yes`/`true` collide, as in the dict.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # a complex key: unhashable, which SafeLoader reports itself
            key = "<<" if key_node.tag == "tag:yaml.org,2002:merge" else self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateKeyError(key, line, seen[key])
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def parse_overrides(pairs: list[str]) -> list[tuple[str, Any]]:
    out = []
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r}: expected key=value")
        key, raw = pair.split("=", 1)
        try:
            value = yaml.load(raw, Loader=UniqueKeyLoader) if raw != "" else ""
        except DuplicateKeyError as exc:
            raise ConfigError(f"--set {pair!r}: duplicate key {exc.key!r} in the value; a repeated key would "
                              "silently replace the first") from None
        except yaml.YAMLError:
            value = raw
        out.append((key.strip(), value))
    return out


def read_yaml_mapping(path: Path, kind: str = "config") -> dict:
    """A YAML file whose top level is a mapping (no key given twice), or a ConfigError naming the file."""
    try:
        raw = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=UniqueKeyLoader) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {kind} file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a {kind} file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a {kind}") from None
    except DuplicateKeyError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings")
    return raw


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    raw = read_yaml_mapping(Path(path))
    for key, value in parse_overrides(overrides or []):
        set_dotted(raw, key, value)
    return validate_config(raw, source=str(path))


def validate_config(raw: dict, source: str = "<config>", *, recorded: bool = False) -> ExperimentConfig:
    """Collect every problem (schema, variant parameters, gate metric names) and raise once. `recorded`: the
    config of a run that already happened (its config.json): what only a new run needs (its files and folders
    on this machine, names it will register under, rules it could not decide) is not asked of it, so a run
    recorded elsewhere, or before a check existed, can still be re-gated, compared or judged against."""
    from harness import variants  # registry of variants with their own parameter schemas

    problems: list[str] = []
    try:
        config = ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            problems.append(f"{format_loc(err['loc'])}: {err['msg']} (got {err.get('input')!r})"
                            if err["type"] not in ("missing",) else f"{format_loc(err['loc'])}: field required")
        config = None
    # Checks beyond the schema run on the raw values so they report even when the schema failed.
    if "variant" in raw:
        problems += variants.check_variant(raw["variant"], raw.get("beta"), raw.get("variant_params") or {})
    if config is not None:  # first: it declares the metrics of configured lm-eval tasks for the rule check
        problems += _unknown_domain_tasks(config.eval.domain_tasks) if recorded else load_time_problems(config)
    problems += _check_gate_metrics(raw)
    if problems:
        raise ConfigError(f"{source}: {len(problems)} problem(s) in the config", problems)
    assert config is not None
    if config.beta is None:
        config.beta = variants.VARIANTS.get(config.variant).default_beta
    return config


def _check_gate_metrics(raw: dict) -> list[str]:
    from evals.catalog import known_metrics, suggest_metric

    gate = raw.get("gate")
    # a gate (or its rules) of the wrong shape is the schema's to report (`gate: strict` names `gate`)
    rules = (gate.get("rules") or []) if isinstance(gate, dict) else []
    if not isinstance(rules, list):
        return []
    problems = []
    known = known_metrics()
    for i, rule in enumerate(rules):
        metric = rule.get("metric") if isinstance(rule, dict) else None
        if isinstance(metric, str) and metric not in known:
            close = suggest_metric(metric)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            problems.append(f"gate.rules.{i}.metric: unknown metric {metric!r}{hint}")
    return problems


def _rules_no_sequential_bound_decides(config: ExperimentConfig) -> list[str]:
    """With eval.sequential a win rate is judged until its rules are decided, so only the statistics the loop
    tracks (evals.pairwise.BOUNDED) get anytime-valid bounds; a fixed-n bound read after such a stop does not
    hold its level, and the gate refuses it. A bound rule on any other win-rate statistic could never pass."""
    if config.eval.sequential is None:
        return []
    from evals.pairwise import BOUNDED, renamed_key

    problems = []
    for i, rule in enumerate(config.gate.rules):
        if (rule.required and rule.statistic == "bound"
                and rule.metric.split("/", 1)[0] in ("winrate", "winrate_vs_champion", "winrate_vs_start")
                and renamed_key(rule.metric, "winrate") not in BOUNDED):
            problems.append(f"gate.rules.{i} ({rule.name}): {rule.metric} gets no anytime-valid bound under "
                            f"eval.sequential (only {', '.join(k.split('/')[1] for k in BOUNDED)} do), so its bound "
                            "could never be shown; use `statistic: point`, or drop eval.sequential")
    return problems


def load_time_problems(config: ExperimentConfig) -> list[str]:
    """What would otherwise fail only after training: alias names, files, folders, domain task names."""
    from harness.tracking import alias_problem, model_name_problem  # MLflow's own naming rules, copied

    problems = [f"registry.{field_name}: {why}" for field_name, why in (
        ("alias", alias_problem(config.registry.alias)), ("model_name", model_name_problem(config.registry.model_name)))
        if why]
    for field_name, path in (("output_dir", config.output_dir), ("cache_dir", config.cache_dir)):
        if path is None:
            continue
        blocker = next((p for p in [Path(path), *Path(path).parents] if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            problems.append(f"{field_name}: {path} cannot be a folder: {blocker} is a file")
    data_file = config.eval.ifeval.data_file
    if "ifeval_local" in config.eval.domain_tasks and data_file is not None and not Path(data_file).is_file():
        problems.append(f"eval.ifeval.data_file: {data_file} is not a file")
    problems += _unknown_domain_tasks(config.eval.domain_tasks)
    problems += _rules_no_sequential_bound_decides(config)
    from evals.eval_prompts import prompt_spec_problems  # the form, the file, and a judge that can judge the set

    problems += prompt_spec_problems(config.eval.prompts, judge_name=config.eval.judge.name,
                                     data_source=config.data.source)
    return problems


def _unknown_domain_tasks(tasks: list[str]) -> list[str]:
    """The harness's own tasks are checked by name at once; any other name must be in lm-eval's task
    index (read only in that case: scanning it takes seconds)."""
    from evals.domain import BUILTIN_TASKS, resolve_task

    others = [t for t in tasks if resolve_task(t) not in BUILTIN_TASKS and t != "ifeval_local"]
    if not others:
        return []
    try:
        from lm_eval.tasks import TaskManager

        manager = TaskManager()
        known = set(manager.all_tasks)
    except Exception as exc:  # lm-eval cannot list its tasks: say so rather than guess
        return [f"eval.domain_tasks: cannot check {others} against lm-eval's task index ({type(exc).__name__}: {exc})"]
    from evals.domain import declare_task_metrics

    problems = []
    for task in others:
        if task in known:  # its metrics become nameable by gate rules, with the direction lm-eval states
            declare_task_metrics(task, manager.task_index)
        else:
            close = difflib.get_close_matches(task, [*known, *BUILTIN_TASKS], n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            problems.append(f"eval.domain_tasks: unknown task {task!r}{hint}")
    return problems
