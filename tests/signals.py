"""Child processes that take Ctrl-C as a terminal delivers it. A job started in the background of a
non-interactive shell (``nohup make test &``, some CI runners) inherits SIGINT *ignored*, and a Python started
with SIGINT ignored never raises KeyboardInterrupt: a test that sends SIGINT must reset it in the child."""

import signal


def default_sigint() -> None:
    """``preexec_fn`` for ``subprocess.Popen``: SIGINT back to its default disposition in the child, so Python
    installs its KeyboardInterrupt handler there whatever the test runner's own disposition is."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
