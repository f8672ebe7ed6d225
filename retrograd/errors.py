"""Exceptions a user can cause, one family so they can be caught together."""


class RetrogradError(RuntimeError):
    """Base class for errors raised by retrograd itself."""


class ShapeError(RetrogradError, ValueError):
    """Operand shapes do not fit the op; the message names the op and the shapes."""


class GradcheckError(RetrogradError, AssertionError):
    """Analytic and numeric gradients disagree; the message names input and entry."""
