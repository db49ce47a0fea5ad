"""Test setup: run against the source tree, and keep compile caches out of the user's home."""
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TINYJIT_CACHE_DIR", os.path.join(tempfile.gettempdir(), "tinyjit-test-cache"))
