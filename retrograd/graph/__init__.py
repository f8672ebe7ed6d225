"""Symbol-to-symbol differentiation (seed 004): graphs of the same ops as eager
mode, their symbolic gradients, optimisation passes, memory planning and a
compiled executor.

    from retrograd.graph import Graph      # define-then-run (Marian)
    step = rg.compile(fn)                  # trace-and-compile (JAX)
"""
from .api import Compiled, Graph, compile, compile_step
from .executor import Executable, plan_memory
from ..errors import TraceError      # (defined with the other errors; the same class)
from .ir import ShapeDtype, Var
from .program import Node, Program, cse, dce, fold_constants, lower, optimize, simplify

__all__ = ["Graph", "Var", "compile", "compile_step", "Compiled", "TraceError", "ShapeDtype",
           "Program", "Node", "lower", "optimize", "cse", "dce", "fold_constants", "simplify",
           "Executable", "plan_memory"]
