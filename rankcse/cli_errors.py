"""One way for the command-line programs to report a user's mistake: a one-line message, exit 2.

A wrong path, a misspelled model or option value, or a malformed data row is the user's to fix,
and a 60-line traceback through transformers hides the one line that says what to fix. The
programs' entry points run through :func:`exit_on_user_error`; everything else (a real bug) still
ends in a full traceback. ``RANKCSE_TRACEBACK=1`` shows the traceback of user errors too.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from rankcse.offline_models import MissingModelPackageError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# ValueError covers bad option values and malformed data (RankingDataError); FileNotFoundError
# covers missing files and models (ModelNotFoundError); the other OS errors are paths that name a
# folder where a file belongs (or the reverse) or that the user may not read or write. Their
# messages name the path.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
    MissingModelPackageError,
)


def exit_on_user_error(entry_point: Callable[[], T], program: str) -> T:
    """Run ``entry_point``; on a user error print ``<program>: error: <message>`` and exit with 2."""
    try:
        return entry_point()
    except USER_ERRORS as error:
        if os.environ.get("RANKCSE_TRACEBACK"):
            raise
        logger.debug("%s failed", program, exc_info=True)
        sys.stderr.write(f"{program}: error: {error}\n")
        raise SystemExit(2) from None
