"""The messages between the window and its engine process, in one place.

They travel over a private socketpair as a multiprocessing Connection: each message is pickled
whole, so each is a frozen dataclass of picklable data (docs/DESIGN.md §2: specs and events are picklable
data). The window's side is supervisor.EngineProcess, the engine process's is engine_main; each
reads a message and dispatches on its type.

  window -> engine process
    Setup(sys_path, recipe)   first, once: the window's import path, and how to build the runner
    Run(job_id, spec, batch)  run a job; a batch job asks for interactive ones between its steps
    Nested(job_id, spec)      the answer to Want: an interactive job to run now, between steps
    NoNested()                ... or nothing is waiting any more
    Cancel(job_id)            set that job's cancel flag (it stops at its next step)
    Poke()                    an interactive request is waiting in the window: ask for it (Want)
    Refresh()                 the window looked for models again; so do we, between jobs
    Quit()                    finish up and exit

  engine process -> window
    Ready(pid)                the runner is built: send jobs
    Fatal(sentence)           the runner could not be built; the process exits
    EventMessage(event)       a job's core.events.Event, terminal ones included
    Want()                    a batch job is between steps: send the waiting interactive job

The window sends a Cancel only after the job's Run or Nested, so the engine process reads an
unknown id as a job that has already ended."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from studio.core.events import Event
from studio.core.jobs import JobSpec

# -- window -> engine process ---------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    sys_path: tuple[str, ...]  # absolute entries only (child_python.shareable_path)
    recipe: bytes  # a pickled RunnerRecipe: unpickled once sys_path is in place, as it may name any module


@dataclass(frozen=True)
class Run:
    job_id: int
    spec: JobSpec
    batch: bool  # the batch lane: interactive requests run between its steps


@dataclass(frozen=True)
class Nested:
    job_id: int
    spec: JobSpec


@dataclass(frozen=True)
class NoNested:
    pass


@dataclass(frozen=True)
class Cancel:
    job_id: int


@dataclass(frozen=True)
class Poke:
    pass


@dataclass(frozen=True)
class Refresh:
    pass


@dataclass(frozen=True)
class Quit:
    pass


ToEngine = Union[Setup, Run, Nested, NoNested, Cancel, Poke, Refresh, Quit]

# -- engine process -> window ---------------------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    pid: int


@dataclass(frozen=True)
class Fatal:
    sentence: str


@dataclass(frozen=True)
class EventMessage:
    event: Event


@dataclass(frozen=True)
class Want:
    pass


FromEngine = Union[Ready, Fatal, EventMessage, Want]
