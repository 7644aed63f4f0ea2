"""``dmr run MODEL`` as a person uses it: a real terminal (tmux), keys typed, the screen read back."""

from __future__ import annotations

import os
import shlex
import subprocess
import time

from dmr_core.testing import wait_until
from tests.cli.conftest import DMR, cli_env
from tests.cli.test_server_verbs import loaded

#: Time allowed for each thing to show on the screen (a model loads on the first question).
DEADLINE = 90.0


class Tmux:
    """A detached tmux session on a server (socket) of its own, so that no other tmux is touched."""

    def __init__(self, name: str) -> None:
        self.socket = f"dmr-test-{os.getpid()}-{name}"
        self.target = f"{name}:0.0"
        self.name = name

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True,
                              timeout=30).stdout  # fmt: skip

    def start(self, command: str) -> None:
        self.tmux("new-session", "-d", "-s", self.name, "-x", "160", "-y", "50", command)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", self.target, "-l", text)
        self.tmux("send-keys", "-t", self.target, "Enter")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.target, *keys)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", self.target)

    def wait_for(self, predicate, what: str) -> str:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            screen = self.screen()
            if predicate(screen):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{what} did not show within {DEADLINE}s; the screen:\n{self.screen()}")

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30)


def answer_after(screen: str, question: str) -> str:
    """What was printed between the question's line and the next prompt ('' if not yet done)."""
    after = screen.split(question, 1)[1] if question in screen else ""
    return after.split("\n>>> ", 1)[0].strip() if "\n>>> " in after else ""


def test_chat_in_a_terminal(cli_server):
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in cli_env(cli_server).items() if k.startswith("DMR_"))
    tmux = Tmux("chat")
    try:
        tmux.start(f"env {env} {DMR} run ai/smollm2; echo dmr exited with $?; sleep 600")
        tmux.wait_for(lambda s: "Send a message (/? for help)" in s and ">>> " in s, "the prompt")
        tmux.type("/set parameter max_tokens 24")
        tmux.wait_for(lambda s: "Set parameter 'max_tokens' to '24'" in s, "the parameter's confirmation")

        question = "What is the capital of France?"
        tmux.type(question)
        screen = tmux.wait_for(lambda s: answer_after(s, question), "a streamed answer")
        assert "Traceback" not in screen and "Error" not in answer_after(screen, question)

        tmux.type('"""Two lines:')  # multi-line input: the prompt changes until the closing quotes
        tmux.wait_for(lambda s: s.rstrip().endswith("..."), "the continuation prompt")
        tmux.type('red and blue"""')
        tmux.wait_for(lambda s: answer_after(s, 'red and blue"""'), "the answer to the multi-line message")

        tmux.type("/set parameter max_tokens 2000")
        tmux.wait_for(lambda s: "to '2000'" in s, "the second parameter's confirmation")
        story = "Write a very long story about a dragon."
        tmux.type(story)
        tmux.wait_for(lambda s: story in s and s.split(story, 1)[1].strip(), "the story's first words")
        tmux.keys("C-c")  # stops the answer, not the session: the stream closes and the server stops
        screen = tmux.wait_for(lambda s: "(stopped)\n>>>" in s, "the stopped answer and a new prompt")
        assert wait_until(lambda: not any(r.get("in_use") for r in loaded(cli_server)), timeout=15)

        tmux.type("/bye")
        tmux.wait_for(lambda s: "dmr exited with 0" in s, "dmr's exit")
    finally:
        tmux.kill()
