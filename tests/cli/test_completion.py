"""Shell completion is click's, as README says: the script a shell evaluates, and the words it offers."""

import os
import subprocess

from tests.cli.conftest import DMR


def complete(words: str, shell: str = "bash") -> str:
    env = {**os.environ, "_DMR_COMPLETE": f"{shell}_complete", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1))}  # fmt: skip
    return subprocess.run([DMR], env=env, capture_output=True, text=True, timeout=60, check=True).stdout


def test_bash_gets_a_completion_script():
    for shell in ("bash", "zsh", "fish"):
        script = subprocess.run([DMR], env={**os.environ, "_DMR_COMPLETE": f"{shell}_source"},
                                capture_output=True, text=True, timeout=60, check=True).stdout  # fmt: skip
        assert "_DMR_COMPLETE" in script, shell


def test_verbs_and_options_complete():
    assert complete("dmr un").split() == ["plain,unload"]
    verbs = {line.split(",", 1)[1] for line in complete("dmr ").split()}
    assert {"run", "ps", "df", "unload", "configure", "status", "logs", "version", "pull"} <= verbs
    assert "plain,--all" in complete("dmr unload --a").split()
