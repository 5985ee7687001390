"""Policy samples are samples: generation at temperature 1 draws from the scorer's softmax even when the
model's generation_config.json asks for a repetition penalty, top-k, min-p, typical-p and n-gram
blocking; rows end only at EOS or the limit, and the limit is recorded."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from evals.generation import DecodingSettings, batch_completion_logprobs, chat_prompt_ids, completion_ids, generate

PROMPT = "Write a short poem about tea."
N_SAMPLES = 1200


@pytest.fixture(scope="module")
def opinionated_model(tiny):
    """The tiny model with a generation config a hub model might ship; a copy, so the session's model is untouched."""
    model = copy.deepcopy(tiny.model)
    config = model.generation_config
    config.repetition_penalty, config.top_k, config.min_p, config.typical_p = 1.5, 10, 0.05, 0.9
    config.no_repeat_ngram_size, config.do_sample = 1, True
    return model, tiny.tokenizer


def _first_token_probabilities(model, tokenizer) -> np.ndarray:
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([chat_prompt_ids(tokenizer, PROMPT)])).logits[0, -1].double()
    return torch.softmax(logits, -1).numpy()


def _chi_square_p(first_tokens: list[int], probabilities: np.ndarray) -> float:
    """Pearson's test of the first-token counts against `probabilities`: every token expected >= 5
    times is its own bin, the rest are pooled."""
    expected = probabilities * len(first_tokens)
    own = np.flatnonzero(expected >= 5)
    counts = np.bincount(first_tokens, minlength=len(probabilities)).astype(float)
    observed = np.append(counts[own], counts.sum() - counts[own].sum())
    wanted = np.append(expected[own], expected.sum() - expected[own].sum())
    return float(chisquare(observed, wanted * observed.sum() / wanted.sum()).pvalue)


def test_first_tokens_at_temperature_one_follow_the_scorers_softmax(opinionated_model):
    model, tokenizer = opinionated_model
    probabilities = _first_token_probabilities(model, tokenizer)
    settings = DecodingSettings(max_new_tokens=1, temperature=1.0, top_p=1.0, top_k=0, seed=0, n_samples=N_SAMPLES)
    samples = generate(model, tokenizer, [PROMPT], settings, model_fingerprint="tiny-opinionated", batch_size=400)
    first = [s.token_ids[0] for s in samples]
    assert len(set(first)) > 50  # far more distinct tokens than top_k=10 or min_p would allow
    assert _chi_square_p(first, probabilities) > 1e-3

    # the scorer KL uses gives the same probabilities to the sampled tokens
    scored = batch_completion_logprobs(model, tokenizer, [PROMPT] * 5, [[t] for t in first[:5]])
    assert np.allclose([float(s[0]) for s in scored], np.log(probabilities[first[:5]]), atol=1e-4)
    assert model.generation_config.repetition_penalty == 1.5  # the model's own config is back in place

    # the same test has the power to see inherited settings: a bare generate() takes them from the config
    torch.manual_seed(0)
    ids = torch.tensor([chat_prompt_ids(tokenizer, PROMPT)] * 500)
    inherited = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=1,
                               temperature=1.0, pad_token_id=tokenizer.pad_token_id)
    assert _chi_square_p(inherited[:, -1].tolist(), probabilities) < 1e-6


def test_a_peft_wrapped_model_samples_without_its_base_config(opinionated_model):
    from peft import LoraConfig, get_peft_model

    base, tokenizer = opinionated_model
    policy = get_peft_model(copy.deepcopy(base), LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    settings = DecodingSettings(max_new_tokens=1, temperature=1.0, seed=1, n_samples=600)
    first = [s.token_ids[0] for s in generate(policy, tokenizer, [PROMPT], settings, model_fingerprint="peft",
                                              batch_size=300)]
    assert len(set(first)) > 30  # top_k=10 from the base's config would allow at most 10
    assert policy.get_base_model().generation_config.top_k == 10


def test_rows_end_at_eos_or_the_limit_and_a_sampled_pad_is_a_token():
    eos, pad = 2, 0
    assert completion_ids([5, pad, 7, eos, pad, pad], eos, 6) == ([5, pad, 7, eos], False)
    assert completion_ids([5, pad, 7, 9], eos, 4) == ([5, pad, 7, 9], True)  # no EOS: cut at the limit
    assert completion_ids([5, 6, 7, eos], eos, 4) == ([5, 6, 7, eos], False)  # EOS as the last allowed token
    assert completion_ids([eos, eos, eos], eos, 3) == ([eos], False)  # pad == eos: the fill is EOS


def test_hit_limit_is_recorded_and_cached(tiny, tmp_path):
    settings = DecodingSettings(max_new_tokens=3, temperature=0.0)
    prompts = ["Say hi.", "Name a colour."]
    first = generate(tiny.model, tiny.tokenizer, prompts, settings, model_fingerprint="tiny", cache_dir=tmp_path)
    again = generate(tiny.model, tiny.tokenizer, prompts, settings, model_fingerprint="tiny", cache_dir=tmp_path)
    assert first == again
    for completion in first:
        ended_at_eos = completion.token_ids[-1] == tiny.tokenizer.eos_token_id
        assert completion.hit_limit is (not ended_at_eos)
        assert completion.hit_limit is (len(completion.token_ids) == 3 and not ended_at_eos)
