"""The one exception type that the command line turns into a single line on stderr."""


class VaekitError(Exception):
    """Bad input or an impossible request, described in one line for the user.

    The message names the input (file, option, run directory) and the problem. The command
    line prints it as ``vaekit: error: <message>`` and exits with status 2, no traceback.
    """
