"""Keeping the ML libraries' own console output out of the studio's (used by the backends and by
`studio eval`). The libraries are imported only when asked to be quiet."""

from __future__ import annotations

QUIETABLE_LIBRARIES = ("diffusers", "transformers")


def quiet_library_logs(*libraries: str) -> None:
    """Silence the named libraries' own progress bars and advice on loading ("diffusers",
    "transformers"): the studio shows its own progress, and their warnings (install accelerate,
    ...) are not the person's job. Only the libraries named are imported."""
    import importlib

    for name in libraries:
        if name not in QUIETABLE_LIBRARIES:
            raise ValueError(f"cannot quiet {name!r}; expected one of {', '.join(QUIETABLE_LIBRARIES)}")
        lib = importlib.import_module(f"{name}.utils.logging")
        lib.disable_progress_bar()
        lib.set_verbosity_error()
