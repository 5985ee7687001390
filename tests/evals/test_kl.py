"""The KL estimator against the exact KL of a model small enough to enumerate every sequence."""
import itertools
import math

import torch

from evals.kl import exact_sequence_kl, kl_from_logprobs

VOCAB, LENGTH = 3, 3


def _autoregressive_table(seed: int):
    """A toy 'language model': next-token distribution depends on the previous token."""
    g = torch.Generator().manual_seed(seed)
    first = torch.softmax(torch.randn(VOCAB, generator=g), 0)
    trans = torch.softmax(torch.randn(VOCAB, VOCAB, generator=g) * 1.5, 1)
    return first, trans


def _token_logps(model, seq):
    first, trans = model
    out = [math.log(first[seq[0]])]
    out += [math.log(trans[a, b]) for a, b in zip(seq, seq[1:])]
    return torch.tensor(out)


def _seq_probs(model):
    return {s: float(_token_logps(model, s).sum().exp()) for s in itertools.product(range(VOCAB), repeat=LENGTH)}


def _sample(model, n, seed):
    first, trans = model
    g = torch.Generator().manual_seed(seed)
    seqs = []
    for _ in range(n):
        s = [int(torch.multinomial(first, 1, generator=g))]
        while len(s) < LENGTH:
            s.append(int(torch.multinomial(trans[s[-1]], 1, generator=g)))
        seqs.append(tuple(s))
    return seqs


def test_estimators_agree_with_exact_kl_within_two_standard_errors():
    policy, reference = _autoregressive_table(1), _autoregressive_table(2)
    exact = exact_sequence_kl(_seq_probs(policy), _seq_probs(reference))
    samples = _sample(policy, 4000, seed=0)
    estimate = kl_from_logprobs([_token_logps(policy, s) for s in samples],
                                [_token_logps(reference, s) for s in samples]).summary()
    assert exact > 0.1  # the two models really differ
    for name in ("kl/seq_kl_k1", "kl/seq_kl_k3"):
        assert abs(estimate[name] - exact) < 2 * estimate[f"{name}_stderr"], (name, estimate[name], exact)
    assert math.isclose(estimate["kl/token_kl_k1"], estimate["kl/seq_kl_k1"] / LENGTH, rel_tol=1e-9)


def test_a_model_against_itself_has_zero_kl():
    policy = _autoregressive_table(1)
    samples = _sample(policy, 50, seed=0)
    lp = [_token_logps(policy, s) for s in samples]
    summary = kl_from_logprobs(lp, lp).summary()
    assert summary["kl/seq_kl_k1"] == 0.0 and summary["kl/seq_kl_k3"] == 0.0
    assert exact_sequence_kl(_seq_probs(policy), _seq_probs(policy)) == 0.0


def test_kl_through_the_real_sampler_and_scorer_matches_the_exact_first_token_kl(tiny):
    """End to end on the tiny model: samples from evals.generation at temperature 1 (the policy's
    generation_config asks for top-k 5 and a repetition penalty, which must not apply), rescored by
    both models; with one new token the exact KL is a sum over the vocabulary."""
    import copy

    from evals.generation import DecodingSettings, batch_completion_logprobs, chat_prompt_ids, generate

    policy, tok = copy.deepcopy(tiny.model), tiny.tokenizer
    policy.generation_config.top_k, policy.generation_config.repetition_penalty = 5, 1.3
    reference = copy.deepcopy(tiny.model)
    with torch.no_grad():
        reference.model.norm.weight.mul_(1.3)  # a sharper reference: a known, moderate KL
    prompt = "Write a short poem about tea."
    ids = torch.tensor([chat_prompt_ids(tok, prompt)])
    with torch.no_grad():
        log_p = torch.log_softmax(policy(input_ids=ids).logits[0, -1].double(), -1)
        log_q = torch.log_softmax(reference(input_ids=ids).logits[0, -1].double(), -1)
    exact = float((log_p.exp() * (log_p - log_q)).sum())

    settings = DecodingSettings(max_new_tokens=1, temperature=1.0, top_p=1.0, top_k=0, seed=3, n_samples=600)
    samples = [s.token_ids for s in generate(policy, tok, [prompt], settings, model_fingerprint="kl-policy",
                                             batch_size=300)]
    prompts = [prompt] * len(samples)
    estimate = kl_from_logprobs(batch_completion_logprobs(policy, tok, prompts, samples, 300),
                                batch_completion_logprobs(reference, tok, prompts, samples, 500)).summary()
    assert exact > 0.05
    for name in ("kl/seq_kl_k1", "kl/seq_kl_k3"):
        assert abs(estimate[name] - exact) < 3 * estimate[f"{name}_stderr"], (name, estimate[name], exact)


def test_the_recorded_skewness_is_the_adjusted_sample_skewness():
    """What the gate's skew-aware KL bound reads (harness.gate.confidence_limit): G1, as scipy computes it."""
    import numpy as np
    from scipy.stats import skew

    from evals.kl import KLEstimate
    from evals.metrics import sample_skewness

    rng = np.random.default_rng(0)
    for n in (3, 8, 16, 64):
        values = rng.gamma(0.7, 2.0, n).tolist()
        expected = float(skew(values, bias=False))
        assert math.isclose(sample_skewness(values, sum(values) / n), expected, rel_tol=1e-9)
        summary = KLEstimate(seq_k1=[-v for v in values], seq_k3=values, n_tokens=n).summary()
        assert math.isclose(summary["kl/seq_kl_k3_skewness"], expected, rel_tol=1e-9)
        assert math.isclose(summary["kl/seq_kl_k1_skewness"], -expected, rel_tol=1e-9)
        assert summary["kl/n_samples"] == n
    # no spread: nothing to correct (a no-change cell's bound is its mean); two distinct values: undefined
    assert sample_skewness([0.0] * 5, 0.0) == 0.0 and sample_skewness([0.0, 0.0], 0.0) == 0.0
    assert math.isnan(sample_skewness([0.0, 1.0], 0.5))
