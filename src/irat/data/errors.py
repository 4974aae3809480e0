"""The one exception the data package raises for bad input: missing, corrupt or malformed files,
unknown dataset names and impossible split sizes. Its message says what was wrong and how to fix it."""


class DataError(ValueError):
    """A dataset could not be found, fetched, verified or read; the message says what to do."""
