"""System passwords through PAM, with the optional ``python-pam`` package (``sdrest[pam]``).

The package is imported when a server is set up, never at import time: a server that does not use
PAM does not need it, and one that does fails at start-up with a message saying what to install,
rather than on the first login.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType

from sdrest.errors import SdrestError
from sdrest.settings import AuthSettings

logger = logging.getLogger(__name__)

PAM_SERVICE = "login"
"""The PAM service checked: the one console logins use."""
INSTALL_HINT = "install the PAM extra: pip install 'sdrest[pam]' (the python-pam package)"


class AuthSetupError(SdrestError):
    """The authentication settings cannot work on this machine (a start-up error)."""

    status = 500
    code = "auth_setup"


def load_pam() -> ModuleType | None:
    """The ``pam`` module of python-pam, or None when it is not installed."""
    try:
        return importlib.import_module("pam")
    except ImportError:
        return None


class PamChecker:
    """Checks a user's system password with PAM (blocking: call it off the event loop)."""

    def __init__(self, module: ModuleType, service: str = PAM_SERVICE) -> None:
        self._module = module
        self.service = service

    def authenticate(self, username: str, password: str) -> bool:
        """Whether PAM accepts ``password`` for ``username``."""
        try:
            # A fresh authenticator per call: python-pam's object keeps per-call state (code,
            # reason) and calls may run on several threads at once.
            authenticator = self._module.pam()
            return bool(authenticator.authenticate(username, password, service=self.service))
        except Exception:  # a PAM module misbehaving must read as "no", not crash the request
            logger.exception("PAM check for %r failed", username)
            return False


def pam_for(auth: AuthSettings, module: ModuleType | None = None) -> PamChecker | None:
    """The PAM checker the settings need (None when they need none); a clear error at start-up
    when they need one and python-pam is missing.

    - ``pam``: every password is a system password: PAM is required.
    - ``unix``: PAM checks the password sent at login. Without PAM, only a trusted proxy header
      (``--trust-unix-user-header``) can say who the caller is; with neither, no one could ever
      log in, which is refused here rather than discovered later.
    """
    if auth.auth_mode not in ("pam", "unix"):
        return None
    module = module if module is not None else load_pam()
    if module is not None:
        return PamChecker(module)
    if auth.auth_mode == "pam":
        raise AuthSetupError(f"--auth-mode pam checks system passwords with PAM: {INSTALL_HINT}")
    if not auth.trust_unix_user_header:
        raise AuthSetupError(
            "--auth-mode unix checks passwords with PAM, which is not available: "
            f"{INSTALL_HINT}, or run behind a proxy that sets X-Unix-User and pass "
            "--trust-unix-user-header"
        )
    logger.info("unix auth without PAM: callers are identified by the X-Unix-User header only")
    return None
