"""Batched generation shared by every eval, cached by a content hash.

The cache key is (model fingerprint, prompts, decoding settings), so the reference's
generations are reused by every experiment that shares the reference, and a changed
checkpoint can never be served another model's text.

Decoding is exactly `DecodingSettings`, nothing else: transformers fills every setting the caller
leaves unset from the model's `generation_config.json` (repetition_penalty, min_p, typical_p,
no_repeat_ngram_size, top_k, extra EOS ids...) and then from its global defaults (top_k=50), so
temperature-1 "samples" for KL and diversity would not be samples from the policy. `generate` hides
the model's generation config for the call and passes a complete one (top_k=0, top_p as set,
every other processor at its neutral default). A row ends at the tokenizer's EOS or at
max_new_tokens; a pad token the model samples before that (pad != eos) is a token of the answer, and
whether the answer hit the limit is recorded (`Completion.hit_limit`): length metrics on cut answers
are censored (evals.length).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from rich.progress import Progress

from harness.atomic_io import read_json, write_json_atomic


@dataclass(frozen=True)
class DecodingSettings:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = off; KL sampling needs the untruncated distribution
    seed: int = 0
    n_samples: int = 1  # samples per prompt (only with temperature > 0)


@dataclass
class Completion:
    prompt: str
    text: str
    token_ids: list[int]  # generated ids, without the prompt and without padding
    hit_limit: bool = False  # stopped at max_new_tokens without an EOS: the answer was cut

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)


def chat_prompt_ids(tokenizer, prompt: str) -> list[int]:
    """The prompt as the model sees it in training and evaluation: the chat template, once."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer(prompt)["input_ids"]


# 2: neutral decoding config, pad tokens kept inside answers, hit_limit recorded (older entries lack both)
_CACHE_FORMAT = 2


def cache_key(model_fingerprint: str, prompts: list[str], settings: DecodingSettings) -> str:
    payload = json.dumps({"model": model_fingerprint, "prompts": prompts, "settings": asdict(settings),
                          "format": _CACHE_FORMAT}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def generation_config(tokenizer, settings: DecodingSettings):
    """The complete decoding config: sampling at `temperature` with top_k off (0, not None: None would
    become transformers' default 50) and `top_p`, or greedy; every other logits processor is left at
    its neutral global default because `generate` hides the model's own config (see the module doc)."""
    from transformers import GenerationConfig

    common = dict(max_new_tokens=settings.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                  eos_token_id=tokenizer.eos_token_id, num_beams=1, num_return_sequences=1)
    if settings.temperature > 0:
        return GenerationConfig(do_sample=True, temperature=settings.temperature, top_p=settings.top_p,
                                top_k=settings.top_k, **common)
    return GenerationConfig(do_sample=False, **common)


@contextlib.contextmanager
def _model_generation_config_hidden(model):
    """Replace the generation config of every transformers model inside `model` (a PEFT wrapper
    forwards to the one it wraps) with an empty one while `generate` runs, so nothing is inherited."""
    from transformers import GenerationConfig

    swapped = [(m, m.__dict__["generation_config"]) for m in model.modules()
               if isinstance(m.__dict__.get("generation_config"), GenerationConfig)]
    for module, _ in swapped:
        module.generation_config = GenerationConfig()
    try:
        yield
    finally:
        for module, saved in swapped:
            module.generation_config = saved


def completion_ids(row: list[int], eos_token_id: int, max_new_tokens: int) -> tuple[list[int], bool]:
    """(the answer's token ids, whether it hit the limit) from one generated row. The answer ends at
    its first EOS, kept (its probability is part of the sequence's likelihood); what follows is
    padding. A pad id before any EOS (pad != eos) was sampled: it is part of the answer."""
    if eos_token_id in row:
        return row[: row.index(eos_token_id) + 1], False
    return row, len(row) >= max_new_tokens


@torch.no_grad()
def _generate_batch(model, tokenizer, prompt_ids: list[list[int]],
                    settings: DecodingSettings) -> list[tuple[list[int], bool]]:
    pad = tokenizer.pad_token_id
    width = max(len(p) for p in prompt_ids)
    # left padding: every row's next token is at the same position
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompt_ids])
    attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompt_ids])
    with _model_generation_config_hidden(model):
        out = model.generate(input_ids=input_ids, attention_mask=attention,
                             generation_config=generation_config(tokenizer, settings))
    return [completion_ids(row, tokenizer.eos_token_id, settings.max_new_tokens) for row in out[:, width:].tolist()]


def generate(
    model,
    tokenizer,
    prompts: list[str],
    settings: DecodingSettings,
    *,
    model_fingerprint: str,
    cache_dir: Path | None = None,
    batch_size: int = 8,
    label: str = "generating",
) -> list[Completion]:
    """Completions in prompt order (n_samples per prompt, consecutive)."""
    key = cache_key(model_fingerprint, prompts, settings)
    cache_path = Path(cache_dir) / "generations" / f"{key}.json" if cache_dir else None
    if cache_path is not None:
        cached = read_json(cache_path)
        if cached is not None:
            return [Completion(**c) for c in cached]
    was_training = model.training
    model.eval()
    torch.manual_seed(settings.seed)
    expanded = [p for p in prompts for _ in range(settings.n_samples)]
    ids = [chat_prompt_ids(tokenizer, p) for p in expanded]
    # sort by length so batches pad little; restore order afterwards
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    results: dict[int, tuple[list[int], bool]] = {}
    with Progress(transient=True) as progress:
        task = progress.add_task(label, total=len(order))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            for i, gen in zip(chunk, _generate_batch(model, tokenizer, [ids[i] for i in chunk], settings)):
                results[i] = gen
            progress.advance(task, len(chunk))
    if was_training:
        model.train()
    completions = []
    for i, prompt in enumerate(expanded):
        gen, hit_limit = results[i]
        text = tokenizer.decode([t for t in gen if t != tokenizer.eos_token_id], skip_special_tokens=True).strip()
        completions.append(Completion(prompt=prompt, text=text, token_ids=gen, hit_limit=hit_limit))
    if cache_path is not None:
        write_json_atomic(cache_path, [asdict(c) for c in completions])
    return completions


@torch.no_grad()
def completion_logprobs(model, tokenizer, prompt: str, completion_ids: list[int]) -> torch.Tensor:
    """Per-token log-probabilities of `completion_ids` after the chat-formatted prompt."""
    return batch_completion_logprobs(model, tokenizer, [prompt], [completion_ids])[0]


@torch.no_grad()
def batch_completion_logprobs(model, tokenizer, prompts: list[str], completions: list[list[int]],
                              batch_size: int = 8) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    pad = tokenizer.pad_token_id
    for start in range(0, len(prompts), batch_size):
        seqs, spans = [], []
        for prompt, comp in zip(prompts[start : start + batch_size], completions[start : start + batch_size]):
            p = chat_prompt_ids(tokenizer, prompt)
            seqs.append(p + list(comp))
            spans.append((len(p), len(comp)))
        width = max(len(s) for s in seqs)
        input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])  # right padding
        attention = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
        # logits only where a completion token is predicted: the vocabulary projection and its softmax
        # over the prompt positions are most of the cost, and nothing reads them
        keep = width - min(p_len for p_len, _ in spans) + 1
        supports_keep = getattr(model, "_supports_logits_to_keep", lambda: False)()
        logits = model(input_ids=input_ids, attention_mask=attention,
                       **({"logits_to_keep": keep} if supports_keep else {})).logits
        first = width - logits.shape[1]  # input position of logits[:, 0]
        for row, (p_len, c_len) in enumerate(spans):
            logp = torch.log_softmax(logits[row, p_len - 1 - first : p_len - 1 - first + c_len].float(), dim=-1)
            targets = input_ids[row, p_len : p_len + c_len]
            out.append(logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1))
    return out
