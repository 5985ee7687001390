"""Which names say "secret" (issue 16, finding 8): one word list for mapping keys, environment variables
scrubbed by value, `name: value` inside a message and query parameters; ordinary settings stay readable."""
import pytest

from harness.redaction import is_secret_key, redact, scrub_text

SECRET_NAMES = ["api_key", "hf_token", "credentials", "credential", "passphrase", "db_passwd", "db_pwd", "GITHUB_PAT",
                "private_key", "client_secret", "access_token", "refresh_token", "session_token", "sessionid",
                "Set-Cookie", "cookies", "secrets", "id_jwt", "url_sig", "x-api-key", "accessToken", "clientSecret",
                "privateKey", "gpgPassphrase"]
ORDINARY_NAMES = ["max_new_tokens", "n_tokens", "max_tokens", "tokenizer", "pad_token", "eos_token", "padToken",
                  "compat", "config", "path", "PWD", "pat", "keys", "tokens", "bypass", "model", "beta"]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_a_secret_name_is_a_secret_key_and_its_assigned_value_is_scrubbed(name):
    assert is_secret_key(name) and is_secret_key(f"eval.judge.completions_kwargs.{name}")
    value = "Zq81aaaabbbbccccdddd"
    for text in (f"{name}={value}", f"{{'{name}': '{value}'}}", f'"{name}": "{value}"', f"{name}: {value}"):
        assert value not in scrub_text(text), text
        assert name in scrub_text(text)  # the name says what was removed
    assert value not in scrub_text(f"https://h.example/v1?model=m&{name}={value}")
    assert redact({name: value}) == {name: "***"}


@pytest.mark.parametrize("name", ORDINARY_NAMES)
def test_an_ordinary_setting_keeps_its_value(name):
    assert not is_secret_key(name)
    text = f"{name}=Zq81aaaabbbbcccc {{'{name}': 'Zq81aaaabbbbcccc'}}"
    assert scrub_text(text) == text
    assert redact({name: "Zq81aaaabbbbcccc"}) == {name: "Zq81aaaabbbbcccc"}


def test_the_judge_config_error_of_the_review_is_scrubbed():
    # pydantic's message for `--set 'eval.judge={name: llmx, completions_kwargs: {credentials: ..., passphrase: ...}}'`
    message = ("eval.judge: Input tag 'llmx' found using 'name' does not match any of the expected tags: 'rule', "
               "'llm', 'reward_model' (got {'name': 'llmx', 'completions_kwargs': {'credentials': "
               "'Zq81aaaabbbbccccdddd', 'passphrase': 'Zq81eeeeffffgggghhhh'}})")
    clean = scrub_text(message)
    assert "Zq81" not in clean
    assert clean.endswith("{'credentials': '***', 'passphrase': '***'}})")


@pytest.mark.parametrize("env_name", ["ACME_PASSPHRASE", "ACME_CREDENTIALS", "ACME_DB_PWD", "GITHUB_PAT",
                                      "ACME_REFRESH_TOKEN", "ACME_CLIENT_SECRET", "ACME_SESSIONID"])
def test_environment_variables_named_by_the_same_list_are_scrubbed_by_value(monkeypatch, env_name):
    monkeypatch.setenv(env_name, "plain-words-no-shape-42")
    assert scrub_text("refused with plain-words-no-shape-42 at host") == "refused with *** at host"


def test_environment_variables_with_ordinary_names_are_not_scrubbed(monkeypatch):
    monkeypatch.setenv("ACME_MAX_TOKENS", "plain-words-no-shape-42")
    monkeypatch.setenv("ACME_PAD_TOKEN", "plain-words-no-shape-43")
    text = "plain-words-no-shape-42 plain-words-no-shape-43"
    assert scrub_text(text) == text


def test_a_connection_error_loses_its_url_password_and_bearer_token_but_keeps_the_rest():
    text = ("ConnectionError: failed http://alice:S3cretPassw0rd@host/v1 headers "
            "{'Authorization': 'Bearer abcdef0123456789abcdef'}")
    assert scrub_text(text) == "ConnectionError: failed http://***@host/v1 headers {'Authorization': 'Bearer ***'}"
