"""The compiled extensions of the journal, built by the normal ``pip install``.

pyproject.toml holds the metadata; this file only adds the C extensions
(setuptools ``ext_modules``). Each is optional for a user's install: a machine
without a C compiler gets the pure-Python path (journal._native says which one is
in use). ``JOURNAL_REQUIRE_NATIVE=1`` (set by ``make setup``) makes a failed build
an error instead, so that a warning in our C code (-Werror) cannot silently leave a
developer or CI on the pure-Python path.
"""

from __future__ import annotations

import os

import numpy
from setuptools import Extension, setup

REQUIRED = os.environ.get("JOURNAL_REQUIRE_NATIVE", "") not in ("", "0")
C_FLAGS = [
    "-std=c11",
    "-O2",
    "-Wall",
    "-Wextra",
    "-Werror",
    # The record head is written through a struct laid over the mapping's bytes.
    "-fno-strict-aliasing",
]
C_HEADERS = ["journal/_c/layout.h", "journal/_c/atomics.h", "journal/_c/orderbook_read.h"]


def extension(name: str, source: str, **options: object) -> Extension:
    return Extension(
        name,
        sources=[source],
        depends=C_HEADERS,
        extra_compile_args=C_FLAGS + os.environ.get("JOURNAL_EXTRA_CFLAGS", "").split(),
        extra_link_args=os.environ.get("JOURNAL_EXTRA_LDFLAGS", "").split(),
        optional=not REQUIRED,
        **options,  # type: ignore[arg-type]
    )


ext_modules = [
    # W: the writer's hot path, the shared-memory atomics and the futex calls.
    extension("journal._cwriter", "journal/_c/cwriter.c"),
    # R: the Reader's next-record step (journal/_c/creader.c); its level views are
    # numpy arrays made with numpy's C API, hence numpy's headers at build time.
    extension(
        "journal._creader",
        "journal/_c/creader.c",
        include_dirs=[numpy.get_include()],
    ),
]

setup(ext_modules=ext_modules)
