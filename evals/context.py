"""What the evals of one cell share: `EvalContext`, built once by the pipeline and handed to every
registered eval (evals.registry), and `EvalOutput`, what an eval hands back.

The context holds the policy with a way to score as the reference (`as_reference()`: TRL's
reference is the base with adapters disabled), the greedy generations of policy and reference on
the same held-out prompts, the KL samples (drawn once, shared by `kl` and `kl_vs_start`), the
starting model's generations in iterative rounds, and the training and held-out preference rows.
Everything expensive is computed on first use and cached on the context.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


def greedy_answers(config, model, tokenizer, prompt_texts: list[str], fingerprint: str, label: str) -> list:
    """Greedy answers at `eval.max_new_tokens`, cached on disk by content: what the win rate and length
    compare, for the reference, the policy and (iterating) the starting model alike."""
    from evals.generation import DecodingSettings, generate

    e = config.eval
    settings = DecodingSettings(max_new_tokens=e.max_new_tokens, temperature=0.0, seed=config.seed)
    return generate(model, tokenizer, prompt_texts, settings, model_fingerprint=fingerprint,
                    cache_dir=config.resolved_cache_dir, batch_size=e.batch_size, label=label)


@dataclass
class EvalOutput:
    """An eval's result: its metrics (`<eval>/<metric>` floats), and what else the run needs from it."""

    metrics: dict[str, float]
    reference: dict[str, float] = field(default_factory=dict)  # the reference's own values: `against: reference`
    start: dict[str, float] = field(default_factory=dict)  # the starting model's own values: `against: start`
    extras: dict[str, Any] = field(default_factory=dict)  # report material (per-prompt verdicts, judge info)
    tags: dict[str, str] = field(default_factory=dict)  # run tags to set


@dataclass
class EvalContext:
    config: Any  # harness.config.ExperimentConfig
    tokenizer: Any
    policy: Any  # the trained PEFT model
    policy_fingerprint: str
    reference_fingerprint: str
    prompts: list  # held-out eval prompts (harness.data.verifiable.VerifiablePrompt)
    reference_out: list  # greedy completions (evals.generation.Completion), same order as prompts
    policy_out: list
    cache_dir: Path
    # what the win rate judges the policy against: a named baseline's answers (eval.prompts: alpaca_eval),
    # else None, meaning the reference's own answers
    baseline_out: list | None = None
    baseline_name: str | None = None  # whose answers baseline_out holds (the report names it)
    train: list = field(default_factory=list)  # preference rows the policy trained on
    heldout: list = field(default_factory=list)  # held-out preference rows
    start: Any = None  # the model the experiment started from (iterative rounds >= 2), else None
    start_fingerprint: str = ""
    # the judge's stored calibration: () -> (metrics, info); the pipeline binds it to the tracker
    calibration: Callable[[], tuple[dict, dict]] | None = None
    # eval.sequential: per metric, the gate rules it must decide (evals.sequential.SequentialRule), at each
    # rule's own level; the pipeline fills it from the gate's rules (harness.gate.sequential_targets)
    sequential_targets: dict[str, list] = field(default_factory=dict)
    # the registered champion, (version, run_id), when there is one (evals.vs_champion judges against it),
    # and () -> its greedy answers to `prompts`: the pipeline binds it (harness.compare.champion_answers)
    champion: tuple[str, str] | None = None
    champion_answers: Callable[[], list] | None = None

    @property
    def eval(self):
        return self.config.eval

    @property
    def prompt_texts(self) -> list[str]:
        return [p.text for p in self.prompts]

    def as_reference(self):
        """`with ctx.as_reference(): ...` scores with the policy's adapters disabled: the reference."""
        return self.policy.disable_adapter()

    @functools.cached_property
    def kl_samples(self) -> tuple[list[str], list, list]:
        """(prompts, sampled token ids, the policy's log-probs of them): policy samples at temperature 1
        with a complete neutral decoding config, drawn once and scored by whichever model asks."""
        from evals.generation import DecodingSettings, batch_completion_logprobs, generate

        e = self.eval
        settings = DecodingSettings(max_new_tokens=e.kl.max_new_tokens, temperature=1.0, top_p=1.0, top_k=0,
                                    seed=self.config.seed + 1)
        prompts = self.prompt_texts[: e.kl.n_prompts]
        samples = generate(self.policy, self.tokenizer, prompts, settings, model_fingerprint=self.policy_fingerprint,
                           cache_dir=self.cache_dir, batch_size=e.batch_size, label="KL samples")
        ids = [s.token_ids for s in samples]
        return prompts, ids, batch_completion_logprobs(self.policy, self.tokenizer, prompts, ids, e.batch_size)

    @functools.cached_property
    def champion_out(self) -> list:
        """The champion's greedy answers to the eval prompts, computed on first use (only when an eval asks)."""
        if self.champion_answers is None:
            raise ValueError("no champion answers: the context has no champion")
        return self.champion_answers()

    @functools.cached_property
    def start_out(self) -> list:
        """The starting model's greedy answers to the eval prompts (cached by content on disk too)."""
        return greedy_answers(self.config, self.start, self.tokenizer, self.prompt_texts, self.start_fingerprint,
                              "starting model")
