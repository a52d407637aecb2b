"""The one base class of errors a user can act on.

Every boundary (CLI, config, file import, checkpoint load, token files …)
raises a subclass with a message that says what was wrong and how to fix it;
``musicrl`` prints such errors without a traceback and exits with status 2.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["MusicrlError"]


class MusicrlError(Exception):
    """An error caused by input the user can fix; the message says how."""
