"""Batched generation shared by every eval, cached by a content hash.

The cache key is (model fingerprint, prompts, decoding settings), so the reference's
generations are reused by every experiment that shares the reference, and a changed
checkpoint can never be served another model's text.
"""
from __future__ import annotations

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


def cache_key(model_fingerprint: str, prompts: list[str], settings: DecodingSettings) -> str:
    payload = json.dumps({"model": model_fingerprint, "prompts": prompts, "settings": asdict(settings)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


@torch.no_grad()
def _generate_batch(model, tokenizer, prompt_ids: list[list[int]], settings: DecodingSettings) -> list[list[int]]:
    pad = tokenizer.pad_token_id
    width = max(len(p) for p in prompt_ids)
    # left padding: every row's next token is at the same position
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompt_ids])
    attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompt_ids])
    kwargs = dict(max_new_tokens=settings.max_new_tokens, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
    if settings.temperature > 0:
        kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k or None)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    out = model.generate(input_ids=input_ids, attention_mask=attention, **kwargs)
    rows = []
    for row in out[:, width:].tolist():
        ids = []
        for t in row:
            if t == tokenizer.eos_token_id:
                ids.append(t)  # keep EOS: its probability is part of the sequence's likelihood
                break
            if t == pad and pad != tokenizer.eos_token_id:
                break
            ids.append(t)
        rows.append(ids)
    return rows


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
    results: dict[int, list[int]] = {}
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
        gen = results[i]
        text = tokenizer.decode([t for t in gen if t != tokenizer.eos_token_id], skip_special_tokens=True).strip()
        completions.append(Completion(prompt=prompt, text=text, token_ids=gen))
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
        logits = model(input_ids=input_ids, attention_mask=attention).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        targets = input_ids[:, 1:]
        token_logp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        for row, (p_len, c_len) in enumerate(spans):
            out.append(token_logp[row, p_len - 1 : p_len - 1 + c_len].clone())
    return out
