"""The ``hearth`` command line (click + rich); the entry point is :func:`hearth.cli.main.main`.

Commands are thin: they parse options, make one or a few client calls, and render.
No rule of the job engine lives here.
"""
