"""pytest configuration for the chapters (collected by nbval from this folder).

Kernels started by nbval inherit this process's environment: execute the chapters with
single-threaded BLAS and the inline figure backend, exactly as ``python -m lorabook.reexecute`` and the book build do.
"""

from lorabook.reexecute import prepare_chapter_environment

prepare_chapter_environment()
