"""Docker credential helpers: the programs ``credsStore``/``credHelpers`` in the Docker config name.

The protocol is docker-credential-helpers': run ``docker-credential-<name> get`` with the server URL
on stdin; it prints ``{"ServerURL":…,"Username":…,"Secret":…}``, or exits non-zero with
``credentials not found in native keychain`` (no credentials: the pull goes on anonymously, as
Docker's does). A user name of ``<token>`` makes the secret an identity token (an OAuth2 refresh
token). A helper that is missing or fails is an error, as in Docker, not a silent anonymous pull.

Why not a library: the only maintained Python client is inside the Docker Engine SDK (``docker``;
its old stand-alone ``dockerpycreds`` is unmaintained since 2019), a large dependency for one
subprocess call; the protocol is this small and fixed.
"""

from __future__ import annotations

import json
import subprocess

from dmr_core.errors import CredentialHelperFailed

NOT_FOUND = "credentials not found in native keychain"
TOKEN_USERNAME = "<token>"
#: Helpers may ask the user to unlock a keychain, so allow them time.
TIMEOUT_SECONDS = 60


def helper_get(helper: str, server_url: str) -> tuple[str, str] | None:
    """``(username, secret)`` that ``docker-credential-<helper>`` holds for ``server_url``, or ``None``."""
    program = f"docker-credential-{helper}"
    try:
        done = subprocess.run([program, "get"], input=server_url, capture_output=True, text=True,
                              timeout=TIMEOUT_SECONDS)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CredentialHelperFailed(f"Unauthorized: credential helper {program} (named by the Docker config) "
                                     f"could not run: {exc}") from None  # fmt: skip
    said = (done.stdout.strip() or done.stderr.strip())[:500]  # helpers report errors on stdout
    if done.returncode != 0:
        if NOT_FOUND in said:
            return None
        raise CredentialHelperFailed(f"Unauthorized: {program} get {server_url} failed: {said}")
    return _parse(program, done.stdout)


def _parse(program: str, output: str) -> tuple[str, str]:
    try:
        data = json.loads(output)
        return str(data["Username"]), str(data["Secret"])
    except (ValueError, KeyError, TypeError):
        raise CredentialHelperFailed(f"Unauthorized: {program} printed no credentials JSON") from None
