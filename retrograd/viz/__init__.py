"""Pictures of backpropagation: the computational graph with each node's gradient.

Graphs are Graphviz DOT text (``dot`` renders them to SVG/PNG when installed).
"""
from .graph import (Graph, GradientTrace, GraphvizNotFound, draw_graph, graph, graphviz_available,
                    to_dot, trace_gradients)

__all__ = ["to_dot", "trace_gradients", "GradientTrace", "draw_graph", "graph", "Graph",
           "GraphvizNotFound", "graphviz_available"]
