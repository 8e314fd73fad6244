"""Signed approvals with SSH keys: `ssh-keygen -Y sign` / `-Y verify`, git's allowed-signers format."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ect.errors import EctError

NAMESPACE = "ect-review"
MAX_SIG = 8192  # an armored SSH signature is well under 1 KiB
VERIFY_TIMEOUT = 10.0


def _ssh_keygen() -> str:
    exe = shutil.which("ssh-keygen")
    if exe is None:
        raise EctError("signed approvals need ssh-keygen (install openssh-client)")
    return exe


def sign(payload: bytes, key: Path) -> str:
    """An armored SSH signature of `payload` made with the private key file `key`."""
    if not key.is_file():
        raise EctError(f"signing key not found: {key}")
    with tempfile.TemporaryDirectory(prefix="ect-sign-") as tmp:
        data = Path(tmp) / "payload"
        data.write_bytes(payload)
        proc = subprocess.run(
            [_ssh_keygen(), "-Y", "sign", "-q", "-f", str(key), "-n", NAMESPACE, str(data)],
            capture_output=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        sig = data.with_name("payload.sig")
        if proc.returncode != 0 or not sig.exists():
            detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise EctError(f"cannot sign with {key}: {detail[-1] if detail else 'ssh-keygen failed'}")
        return sig.read_text()


def verify(payload: bytes, signature: str, principal: str, allowed_signers: bytes) -> bool:
    """Whether `signature` over `payload` was made by a key listed for `principal`."""
    return verify_key(payload, signature, principal, allowed_signers) is not None


def verify_key(payload: bytes, signature: str, principal: str, allowed_signers: bytes) -> str | None:
    """The signing key's fingerprint when `signature` over `payload` was made by a key listed for
    `principal` (compared exactly as `ssh-keygen -Y verify` does: no case folding), else None."""
    if not signature or not principal or not allowed_signers.strip() or len(signature) > MAX_SIG:
        return None
    if any(c in principal for c in "\n\r,*?!\0") or principal.startswith("-"):
        return None
    exe = shutil.which("ssh-keygen")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory(prefix="ect-verify-") as tmp:
        signers = Path(tmp) / "allowed_signers"
        signers.write_bytes(allowed_signers)
        sig = Path(tmp) / "sig"
        sig.write_text(signature)
        try:
            proc = subprocess.run(
                [exe, "-Y", "verify", "-f", str(signers), "-I", principal, "-n", NAMESPACE, "-s", str(sig)],
                input=payload,
                capture_output=True,
                check=False,
                env={**os.environ, "LC_ALL": "C"},
                timeout=VERIFY_TIMEOUT,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        if proc.returncode != 0:
            return None
        found = re.search(rb"key (\S+:\S+)", proc.stdout + proc.stderr)
        return found.group(1).decode() if found else "?"
