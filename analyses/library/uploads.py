"""Upload size limits enforced while a multipart body streams in (pages and API alike)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import FileUploadHandler, SkipFile, StopFutureHandlers
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.utils.datastructures import ImmutableList

# --------------------------------------------------------------------------- upload size
# Room for the multipart headers and the text fields (whose size Django itself caps with
# DATA_UPLOAD_MAX_MEMORY_SIZE) on top of the file limits, when judging Content-Length.
_MULTIPART_OVERHEAD_BYTES = 64 * 1024


class UploadLimitHandler(FileUploadHandler):
    """Refuses oversized uploads while they stream in, before anything reaches disk.

    `file_limits` maps each expected file field to its own limit; file fields not in it are
    skipped unread. Bytes are also counted across ALL file parts (a field repeated a hundred
    times cannot add up past the sum of the limits), and a request whose Content-Length is
    already over that sum plus room for the text fields has every file part skipped from the
    start. Without this handler Django would write every file part to disk before any view
    code runs. The rest of the request body is still read (and discarded) and the text
    fields parsed, so the browser gets a normal page with the message instead of a reset
    connection. `refusal` / `refusal_field` say why and where.
    """

    def __init__(self, request: HttpRequest | None = None, *, file_limits: dict[str, int], kind: str) -> None:
        super().__init__(request)
        self.file_limits = dict(file_limits)
        self.total_limit = sum(self.file_limits.values())
        self.kind = kind
        self.received = 0
        self.total_received = 0
        self.refusal: str | None = None
        self.refusal_field: str = "file"
        self._field: str | None = None
        self._refuse_everything = False
        self._discarding = False

    def _refuse(self, *, field: str, message: str) -> None:
        if self.refusal is None:  # the first reason is the one the user needs
            self.refusal, self.refusal_field = message, field

    def handle_raw_input(
        self, input_data: Any, META: Any, content_length: int, boundary: Any, encoding: str | None = None
    ) -> None:
        text_room = settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0
        if content_length and content_length > self.total_limit + text_room + _MULTIPART_OVERHEAD_BYTES:
            self._refuse_everything = True
            self._refuse(
                field="file",
                message=f"The upload is larger than the limit of {filesizeformat(self.total_limit)} "
                f"for a {self.kind} file.",
            )
        return None

    def new_file(self, field_name: str, *args: Any, **kwargs: Any) -> None:
        self.received = 0
        self._field = field_name
        self._discarding = False
        if self._refuse_everything:
            raise SkipFile()
        if field_name not in self.file_limits:
            # Not a field of the form: read and drop it here. (SkipFile would also close the
            # file parts already received, breaking an otherwise valid upload.)
            self._discarding = True
            raise StopFutureHandlers()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        if self._discarding:
            return None  # no later handler sees the bytes
        field = self._field or ""
        self.received += len(raw_data)
        self.total_received += len(raw_data)
        limit = self.file_limits.get(field, 0)
        if self.received > limit:
            what = f"The {self.kind} file" if field == "file" else f"The {field.replace('_', ' ')}"
            self._refuse(field=field, message=f"{what} is larger than the limit of {filesizeformat(limit)}.")
            raise SkipFile()
        if self.total_received > self.total_limit:
            self._refuse(
                field="file",
                message=f"The upload is larger than the limit of {filesizeformat(self.total_limit)} "
                f"for a {self.kind} file.",
            )
            raise SkipFile()
        return raw_data

    def file_complete(self, file_size: int) -> SimpleUploadedFile | None:
        if self._discarding:
            # An empty stand-in, so no later handler hands out the previous part's file under
            # this field's name; forms ignore fields they do not have.
            return SimpleUploadedFile("discarded", b"")
        return None


def install_upload_limit(
    request: HttpRequest, *, file_limits: dict[str, int], kind: str
) -> UploadLimitHandler:
    handler = UploadLimitHandler(request, file_limits=file_limits, kind=kind)
    handlers = request.upload_handlers
    if isinstance(handlers, ImmutableList):  # the body was read already: what its insert() raises
        raise AttributeError("You cannot alter upload handlers after the upload has been processed.")
    handlers.insert(0, handler)
    return handler
