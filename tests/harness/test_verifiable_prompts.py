import random

from harness.data.verifiable import Instruction, make_prompts, template_answer


def test_train_and_eval_prompts_never_overlap_and_are_deterministic():
    train, held = make_prompts(120, 0), make_prompts(30, 0, split="eval")
    assert not {p.text for p in train} & {p.text for p in held}
    assert [p.text for p in make_prompts(120, 0)] == [p.text for p in train]


def test_template_answers_follow_or_break_every_instruction():
    rng = random.Random(0)
    for prompt in make_prompts(150, 1):
        assert prompt.score(template_answer(prompt, comply=True, rng=rng)) == 1.0, prompt.text
        assert prompt.score(template_answer(prompt, comply=False, rng=rng)) == 0.0, prompt.text


def test_verifiers_on_hand_written_answers():
    assert Instruction("max_words", 3).check("one two three") and not Instruction("max_words", 3).check("a b c d")
    assert Instruction("bullets", 2).check("- a\n- b") and not Instruction("bullets", 2).check("- a")
    assert Instruction("keyword", "tea").check("I like Tea.") and not Instruction("keyword", "tea").check("teapot")
    assert Instruction("lowercase").check("all lower") and not Instruction("lowercase").check("Not")
    assert Instruction("ending", "Bye.").check("ok. Bye.") and not Instruction("ending", "Bye.").check("Bye. ok")
    assert Instruction("no_commas").check("a b") and not Instruction("no_commas").check("a, b")
