import os
import sys

# the shared case table (tests/cases.py) is imported by several test modules
sys.path.insert(0, os.path.dirname(__file__))
