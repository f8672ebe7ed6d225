"""The one exception of the data package."""
from ..errors import RetrogradError


class DataError(RetrogradError, ValueError):
    """A data file or dataset argument is invalid; the message names the file and where."""
