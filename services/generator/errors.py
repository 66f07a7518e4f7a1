"""The generator's errors, under :class:`shared.errors.MarqueeError`.

A :class:`ModelError` means the model directory (or the GGUF it is built from) is missing
or unusable: an operator must act, so it is also a :class:`ConfigurationError` (exit
code 2 in the CLI). A :class:`RequestError` is one bad request (a prompt longer than the
context, an unknown kind): the service answers it with an error reply; retrying cannot help.
:class:`Stopping` is no failure: the engine was told to stop, and the requests it was
working on get no reply from this process (left unacked, they go to the next worker).
"""

from __future__ import annotations

from shared.errors import ConfigurationError, MarqueeError


class GeneratorError(MarqueeError):
    """Root of the generator's errors."""


class ModelError(GeneratorError, ConfigurationError):
    """A model directory or GGUF file is missing, incomplete or unsupported."""


class ConversionError(ModelError):
    """A GGUF could not be converted; the message says which part and why."""


class CorpusError(GeneratorError, ConfigurationError):
    """Training text that cannot be used as given (an empty folder, binary or non-UTF-8
    files, a missing dataset): the message names the file and what to do."""


class FinetuneError(GeneratorError, ConfigurationError):
    """Fine-tuning cannot run as configured (the ``finetune`` extra missing, a corpus that
    does not fit the model, a checkpoint from another run)."""


class RequestError(GeneratorError):
    """One request can never succeed as given (poison, not retriable)."""

    retriable = False


class Stopping(GeneratorError):
    """The engine is stopping (the service shuts down): the batch was abandoned, not failed."""

    retriable = True


class RecommenderUnavailable(RequestError):
    """A digest's recommendations did not come: the recommender did not answer in time, or
    had no items for the reader. The request is answered with this error, once."""
