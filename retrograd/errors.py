"""Exceptions a user can cause, one family so they can be caught together."""


class RetrogradError(RuntimeError):
    """Base class for errors raised by retrograd itself."""


class MissingDependency(RetrogradError, ImportError):
    """An optional package a feature needs is not installed; the message names the extra
    that installs it."""


class ShapeError(RetrogradError, ValueError):
    """Operand shapes do not fit the op; the message names the op and the shapes."""


class SettingError(RetrogradError, ValueError):
    """An option or an environment variable holds a value it cannot take; the message
    names it, the value, and the values it can."""


class GradcheckError(RetrogradError, AssertionError):
    """Analytic and numeric gradients disagree; the message names input and entry."""


class AnomalyError(RetrogradError):
    """Under ``rg.detect_anomaly()``: an op made NaN or Inf out of finite values, in
    forward or in its VJP; the message names the op and the source line behind it."""


class AxisError(ShapeError, IndexError):
    """An axis or an index is out of range for the tensor's shape: both a ShapeError (so a
    ValueError) and an IndexError, as NumPy's AxisError, so ``except IndexError`` works."""


class TraceError(RetrogradError):
    """Something that needs a concrete value was asked of a symbolic one (a graph value of
    rg.compile or Graph); ``retrograd.graph.TraceError`` is this class."""
