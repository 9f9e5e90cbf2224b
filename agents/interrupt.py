"""Ctrl-C during an attack: the first stops at the next step boundary, the second at once.

:class:`StepBoundaryInterrupt` replaces Python's SIGINT handler for the duration of the
query loop (only in the main thread, and only when the handler is still Python's default,
so an application's own handler is left alone). The first Ctrl-C sets :attr:`requested`
and the loop ends after the step in flight, so the run is wrapped up as a finished one.
The second raises ``KeyboardInterrupt`` at once, except inside :meth:`step` (a step and
its journal record), where it waits for the record to reach the disk: a paid answer is
never dropped. A third Ctrl-C raises even there.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading


class StepBoundaryInterrupt:
    """Context manager for the query loop; see the module docstring."""

    def __init__(self):
        self.requested = False
        self._presses = 0
        self._in_step = self._pending = False
        self._installed = False

    def __enter__(self) -> "StepBoundaryInterrupt":
        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self._installed = False

    def _handle(self, signum, frame) -> None:
        self._presses += 1
        if self._presses == 1:
            self.requested = True
            print("\nCtrl-C: stopping after this step and saving the run (Ctrl-C again to stop at once)",
                  file=sys.stderr, flush=True)
            return
        if self._in_step and self._presses == 2:
            self._pending = True  # raised once this step's answers are journaled
            return
        self.__exit__()
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def step(self):
        """One step and its journal record: a second Ctrl-C inside waits for its end."""
        self._in_step = True
        try:
            yield
        finally:
            self._in_step = False
        if self._pending:
            self.__exit__()
            raise KeyboardInterrupt
