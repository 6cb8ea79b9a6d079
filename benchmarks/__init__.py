"""Benchmarks: each module measures one part of Bundlewise on the real servers and writes its figures.

A benchmark module defines ``main(argv) -> int`` (runs it, writes ``benchmarks/results/<name>.json``),
``RESULTS_FILE`` and ``markdown(results) -> str`` (its section of ``docs/benchmarks.md``);
``python -m benchmarks.run`` (``make bench``) runs every such module and rewrites the document.
"""
