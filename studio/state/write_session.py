"""WriteSession: what the Write tab does with jobs, without a widget.

It holds the writer's Document (studio.writing) and turns a person's action into a job: Continue at
a cursor, Retry a generation, or choose one of the model's alternatives for a token it wrote and
carry on from there. It builds the TextJob from the document, follows that job's handle, streams
its tokens into the generation (through the editor's DocumentBridge when there is one, so each
generation is one undo step, or straight into the Document), logs every token with its
alternatives, and keeps what the model read. It also measures what continuing at the cursor would
send the model, for the context viewer (a ContextJob: only the newest request answers).

The widgets bind to it: they pass plain values in (a cursor offset, the model id, instruct on or
off) and repaint on its signals. Tests drive it without a window."""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Optional

from PySide6.QtCore import QObject, Signal

from studio.core.errors import DocumentError, StudioError
from studio.core.events import ContextResult, Token
from studio.core.jobs import ContextJob, TextJob
from studio.state.jobs import JobHandle, JobList
from studio.state.write_tokens import GenerationEdits, TokenAt, TokenLog, TokenRecord, TokenSink
from studio.writing.document import Document, GenerationId, sampler_problem

NOT_TAKING_JOBS = "The engine is not taking jobs."


class WriteSession(QObject):
    """The writer's document and the one text job writing into it (at most one at a time)."""

    running_changed = Signal(bool)  # a generation started (True) or ended (False)
    document_replaced = Signal(object)  # Document: set_document() put another one in place
    seed_drawn = Signal(object)  # int: the seed a run got when the document's seed is random (past 32 bits)
    context_used = Signal(object)  # ContextResult: what the running generation's model read
    context_waiting = Signal()  # a context measurement was asked for; its answer comes later
    context_measured = Signal(object)  # ContextResult: what continuing at the cursor would send
    context_problem = Signal(str)  # why it cannot be measured, in one sentence

    def __init__(self, jobs: JobList, document: Optional[Document] = None, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.jobs = jobs
        self.document = document or Document()
        # How the model's text goes in: the editor's bridge when there is an editor (set by the
        # workspace), else the Document itself.
        self.edits: Optional[GenerationEdits] = None
        self.tokens = TokenLog()
        self.job: Optional[JobHandle] = None  # the generation running now
        self.last_generation: Optional[GenerationId] = None
        self.last_context: Optional[ContextResult] = None  # what the model read for the last job
        self._sink: Optional[TokenSink] = None
        self._context_job: Optional[JobHandle] = None  # the newest measurement asked for

    def set_document(self, document: Document) -> None:
        """Work on another document from now on: a generation still running is stopped (its text
        so far stays in the old one), and no token records carry over."""
        if self.job is not None:
            job, self.job = self.job, None
            self._end_stream()
            job.cancel()
            self.running_changed.emit(False)
        self.document = document
        self.tokens.clear()
        self.last_generation = None
        self.document_replaced.emit(document)

    def is_running(self) -> bool:
        return self.job is not None

    # -- continue, stop, retry ------------------------------------------------------------------

    def text_job(self, model: str, cursor: int, instruct: bool = False) -> TextJob:
        """The job that continues at `cursor`: the story is assembled on the engine, with the
        model's own tokenizer (DocumentError when the cursor is not in the text)."""
        return self.document.story_job(model, cursor, instruct=instruct)

    def continue_at(self, cursor: int, model: str, instruct: bool = False) -> Optional[JobHandle]:
        """Let the model carry on from `cursor` (a Python offset); its words go in there."""
        return self._start("continue", model, instruct, cursor=cursor)

    def retry(self, cursor: int, model: str, instruct: bool = False) -> Optional[JobHandle]:
        """A new sample in place of the generation at `cursor` (else the last one), with a new
        seed when the seed is random; the earlier samples stay reachable with step_alternative."""
        return self._start("retry", model, instruct, cursor=cursor)

    def choose_alternative(self, pos: int, choice: int, model: str, instruct: bool = False) -> Optional[JobHandle]:
        """Rewrite the model's token at document offset `pos` with its alternative number
        `choice`, drop what the model wrote after it, and continue from there. The sample that
        was there stays reachable with step_alternative."""
        token = self.tokens.at(self.document, pos)
        if token is None or not 0 <= choice < len(token.record.alternatives):
            return None
        return self._start("branch", model, instruct, token=token, choice=choice)

    def stop(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def _start(
        self, how: str, model: str, instruct: bool, cursor: int = 0, token: Optional[TokenAt] = None, choice: int = 0
    ) -> Optional[JobHandle]:
        """Start a job: "continue" at `cursor`, "retry" the generation there, or "branch":
        rewrite `token` with its alternative `choice` and carry on from there."""
        if self.job is not None:
            return None
        document = self.document
        problem = sampler_problem(document.sampler)
        if problem:
            self.jobs.error.show(problem[0].upper() + problem[1:] + ".")
            return None
        gen_id: Optional[GenerationId] = None
        if token is not None:  # branch: the model reads up to the token, then the chosen one
            gen_id, cursor = token.generation, token.start
        elif how == "retry":  # the model reads what came before the generation
            gen_id = self.current_generation(cursor)
            if gen_id is None:
                return None
            cursor = document.generation_range(gen_id)[0]
        chosen = token.record.alternatives[choice][0] if token is not None else ""
        try:
            spec = self.text_job(model, cursor, instruct)
            if token is not None:  # the story reads on through the chosen token
                story = document.story_context(cursor)
                spec = dataclasses.replace(spec, story=dataclasses.replace(story, text=story.text + chosen))
        except DocumentError as error:
            self.jobs.error.show(str(error))
            return None
        job = self.jobs.submit_or_report(spec)
        if job is None:
            return None
        if document.sampler["seed"] is None:
            self.seed_drawn.emit(spec.seed)  # shows which seed this text got
        edits = self.edits or document
        keep: list[TokenRecord] = []
        if gen_id is None:
            gen_id = edits.add_generation(cursor)
        elif token is None:
            edits.retry(gen_id)  # the sample shown now is kept as an alternative
        else:
            sample = document.shown_alternative(gen_id)
            offset = token.record.offset
            shown = document.alternatives(gen_id)[sample]
            # The new sample starts with the model's text up to the token, then the chosen one;
            # their records come along, so the tokens before it can still be hovered and chosen.
            keep = self.tokens.records(gen_id, sample)[: token.index] + [
                TokenRecord(offset, chosen, token.record.alternatives)
            ]
            edits.retry(gen_id, shown[:offset] + chosen)
        records = self.tokens.start(gen_id, document.shown_alternative(gen_id), keep)
        self.last_generation = gen_id
        self.job = job
        self._sink = TokenSink(edits, document, gen_id, records, self)
        job.token.connect(partial(self._on_token, job))
        job.context_used.connect(partial(self._on_context_used, job))
        job.ended.connect(partial(self._on_ended, job))
        self.running_changed.emit(True)
        if job.is_done:  # ended before it could be followed (stopped at once): nothing more comes
            self._on_ended(job)
        return job

    def _on_token(self, job: JobHandle, token: Token) -> None:
        if job is self.job and self._sink is not None and token.text:
            self._sink.add(token.text, token.alternatives)

    def _on_context_used(self, job: JobHandle, context: ContextResult) -> None:
        if job is self.job:
            self.last_context = context
            self.context_used.emit(context)

    def _on_ended(self, job: JobHandle) -> None:
        if job is not self.job:
            return
        self._end_stream()
        self.job = None
        self.running_changed.emit(False)

    def _end_stream(self) -> None:
        if self._sink is not None:
            self._sink.close()  # tokens that arrived before the end stay: they were shown as written
            self._sink = None

    def close(self) -> None:
        """The studio is closing: what has streamed in so far is written into the document."""
        self._end_stream()

    # -- samples and tokens -----------------------------------------------------------------------

    def current_generation(self, cursor: int) -> Optional[GenerationId]:
        """The generation at `cursor`, else the last one while it is still in the text."""
        gen_id = self.document.generation_at(cursor)
        if gen_id is None and self.last_generation in self.document.generations():
            gen_id = self.last_generation
        return gen_id

    def samples_at(self, cursor: int) -> Optional[tuple[int, int]]:
        """(the sample shown, how many there are) for the current generation; None without one."""
        gen_id = self.current_generation(cursor)
        if gen_id is None:
            return None
        return self.document.shown_alternative(gen_id), len(self.document.alternatives(gen_id))

    def step_alternative(self, cursor: int, step: int) -> bool:
        """Show the sample `step` away from the current one (-1: ◀, +1: ▶); False when there is
        none there, or while the model writes."""
        gen_id = self.current_generation(cursor)
        if gen_id is None or self.job is not None:
            return False
        index = self.document.shown_alternative(gen_id) + step
        if not 0 <= index < len(self.document.alternatives(gen_id)):
            return False
        (self.edits or self.document).show_alternative(gen_id, index)
        self.last_generation = gen_id
        return True

    def token_at(self, pos: int) -> Optional[TokenAt]:
        """The model's token at document offset `pos` (or just before it: the mouse sits between
        characters)."""
        return self.tokens.at(self.document, pos) or (self.tokens.at(self.document, pos - 1) if pos else None)

    # -- the context viewer -----------------------------------------------------------------------

    def measure_context(self, cursor: int, model: str, instruct: bool = False) -> Optional[JobHandle]:
        """Ask the engine what continuing at `cursor` would send the model (measured there with its
        tokenizer); the answer comes as context_measured, or context_problem says why not."""
        if not model:
            return None
        try:
            spec = ContextJob.of(self.text_job(model, cursor, instruct))
            spec.validate()  # a memory or world info entry past a job's limits: a SpecError
        except StudioError as error:
            self.context_problem.emit(str(error))
            return None
        job = self._context_job = self.jobs.submit_or_report(spec)
        if job is None:
            self.context_problem.emit(self.jobs.error.message or NOT_TAKING_JOBS)
            return None
        job.finished.connect(partial(self._on_context_measured, job))
        job.failed.connect(partial(self._on_context_failed, job))
        self.context_waiting.emit()
        return job

    def _on_context_measured(self, job: JobHandle, result: object) -> None:
        # An older request that still got through is not news: the newest one answers.
        if job is self._context_job and isinstance(result, ContextResult):
            self._context_job = None
            self.context_measured.emit(result)

    def _on_context_failed(self, job: JobHandle, message: str) -> None:
        if job is self._context_job:
            self._context_job = None
            self.context_problem.emit(message)
