"""Pictures of backpropagation: the computational graph with each node's gradient,
training curves, the error surface over two weights, per-layer gradient flow.

Graphs are Graphviz DOT text (``dot`` renders them to SVG/PNG when installed);
plots need matplotlib (``pip install 'retrograd[viz]'``), imported only when a
picture is drawn.
"""
from .curves import load_history, plot_history
from .gradflow import GradientMonitor, plot_gradient_flow
from .graph import (Graph, GradientTrace, GraphvizNotFound, draw_graph, graph, graphviz_available,
                    to_dot, trace_gradients)
from .landscape import descent_path, loss_landscape, plot_landscape
from ._mpl import MissingDependency
from .playground import Playground, expression_playground, playground

__all__ = ["to_dot", "trace_gradients", "GradientTrace", "draw_graph", "graph", "Graph",
           "GraphvizNotFound", "graphviz_available", "plot_history", "load_history",
           "loss_landscape", "descent_path", "plot_landscape", "GradientMonitor",
           "plot_gradient_flow", "MissingDependency", "playground", "expression_playground",
           "Playground"]
