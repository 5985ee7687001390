import pytest

from evals.diversity import distinct_n, diversity_summary, group_samples, rouge_l_f1, self_similarity, tokenize


def test_distinct_n_and_self_similarity_match_hand_computation():
    # prompt 1: the cat sat | the cat ran
    #   unigrams the,cat,sat,the,cat,ran: 4 unique of 6; bigrams the-cat,cat-sat,the-cat,cat-ran: 3 of 4
    #   LCS "the cat" = 2 -> ROUGE-L F1 = 2*2/(3+3)
    # prompt 2: "Hello, world" | "hello world!"  ->  [hello , world] | [hello world !]
    #   unigrams 4 unique of 6; bigrams hello-, ,-world hello-world world-! : 4 of 4; LCS 2 -> 4/6
    groups = [["the cat sat", "the cat ran"], ["Hello, world", "hello world!"]]
    assert tokenize("Hello, world") == ["hello", ",", "world"]
    assert distinct_n(groups[0], 1) == pytest.approx(4 / 6) and distinct_n(groups[0], 2) == pytest.approx(3 / 4)
    assert distinct_n(groups[1], 1) == pytest.approx(4 / 6) and distinct_n(groups[1], 2) == pytest.approx(1.0)
    assert rouge_l_f1(*groups[0]) == pytest.approx(2 / 3) and rouge_l_f1(*groups[1]) == pytest.approx(2 / 3)
    out = diversity_summary(groups, collapse_threshold=0.9)
    assert out["diversity/distinct_1"] == pytest.approx(2 / 3)
    assert out["diversity/distinct_2"] == pytest.approx((3 / 4 + 1.0) / 2)
    assert out["diversity/self_similarity"] == pytest.approx(2 / 3)
    assert out["diversity/collapse_alarm"] == 0.0


def test_self_similarity_is_the_mean_over_all_pairs():
    # pairs: (a b, a b) = 1, (a b, c d) = 0, (a b, c d) = 0  -> 1/3
    assert self_similarity(["a b", "a b", "c d"]) == pytest.approx(1 / 3)
    assert rouge_l_f1("", "") == 1.0 and rouge_l_f1("a", "") == 0.0


def test_collapse_alarm_fires_on_identical_samples_and_not_on_varied_ones():
    identical = [["the same answer every time."] * 4 for _ in range(3)]
    out = diversity_summary(identical, collapse_threshold=0.9)
    assert out["diversity/self_similarity"] == 1.0 and out["diversity/collapse_alarm"] == 1.0
    assert out["diversity/distinct_1"] == pytest.approx(1 / 4)  # k identical samples without inner repeats: 1/k

    varied = [["tea is brewed with hot water", "volcanoes erupt when pressure builds",
               "bees make honey from nectar", "the moon has phases"] for _ in range(3)]
    out = diversity_summary(varied, collapse_threshold=0.9)
    assert out["diversity/self_similarity"] < 0.3 and out["diversity/collapse_alarm"] == 0.0
    assert out["diversity/distinct_1"] > 0.9


def test_group_samples_needs_whole_groups():
    assert group_samples(list("abcdef"), 3) == [["a", "b", "c"], ["d", "e", "f"]]
    with pytest.raises(ValueError):
        group_samples(list("abcde"), 2)


def test_diversity_over_policy_samples_at_temperature_one(tiny):
    from evals.generation import DecodingSettings, generate

    k = 3
    settings = DecodingSettings(max_new_tokens=8, temperature=1.0, top_p=1.0, top_k=0, seed=0, n_samples=k)
    samples = generate(tiny.model, tiny.tokenizer, ["Explain tea.", "Explain bees."], settings,
                       model_fingerprint=tiny.fingerprint)
    groups = group_samples([s.text for s in samples], k)
    assert len(groups) == 2 and all(len(g) == k for g in groups)
    out = diversity_summary(groups, collapse_threshold=0.9)
    assert out["diversity/collapse_alarm"] == 0.0  # a random-init model sampled at T=1 does not repeat itself
    assert 0.0 <= out["diversity/self_similarity"] < 0.9


def test_diversity_config_can_be_turned_off_and_metrics_are_declared():
    from evals.catalog import known_metrics
    from harness.config import validate_config

    config = validate_config({"model": {"name": "embedded:tiny"}, "variant": "dpo",
                              "eval": {"diversity": {"n_prompts": 0}}})
    assert config.eval.diversity.n_prompts == 0
    specs = known_metrics()
    assert specs["diversity/distinct_1"].higher_is_better is True
    assert specs["diversity/self_similarity"].higher_is_better is False
    assert specs["diversity/collapse_alarm"].higher_is_better is False
