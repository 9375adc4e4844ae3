"""The one exception type that the command line turns into a single line on stderr."""


class VaekitError(Exception):
    """Bad input or an impossible request, described in one line for the user.

    The message names the input (file, option, run directory) and the problem. The command
    line prints it as ``vaekit: error: <message>`` and exits with status 2, no traceback.
    """


class VaekitWarning(UserWarning):
    """Something the user should know that does not stop the work (e.g. files a folder of
    images holds that are not images). The command line prints it as ``vaekit: warning: ...``."""


class RunFinished(Exception):
    """A run asked to resume has nothing left to do, and nothing was written. Not an error: the
    message says how to extend the run; the command line prints it and exits with status 0."""
