"""Errors a user can act on.

Every problem caused by input (a bad file, an illegal setting, a download that cannot happen here)
raises a subclass of :class:`PlaygroundError`. It is a ``ValueError`` so plain callers can catch it
as one, and its message is a full sentence meant to be shown on the page as it is.
"""


class PlaygroundError(ValueError):
    """Bad input or an impossible request, with a message a user can read and act on."""


class DatasetError(PlaygroundError):
    """A dataset could not be built: unreadable, empty, too large, unsafe or unknown."""


class DownloadUnavailable(DatasetError):
    """A dataset or model needs a download and the network cannot be reached."""


class TrainingDiverged(PlaygroundError):
    """The loss became NaN or infinite; training stopped. The message says what to change."""
