"""Files: resumable uploads, content-addressed storage, scanning, previews, attachments and access.

An upload's bytes arrive in PATCH requests. Each request writes its own segment file in the
spool (`files.dir/spool/<upload id>/`) and then commits it with a compare-and-set on the
upload's offset: two requests racing at one offset (a client that resumed while its first
connection still hung on another node) cannot both land, and no byte is written twice into
one file. When the last byte is committed the segments are streamed into the blob store
(hashed on the way, so identical content is stored once), the type is sniffed from the
content, the file is scanned when a ClamAV daemon is configured, and pictures get a preview.

Who may read a file: its uploader, and whoever may see a scope it is linked to (the members
of a room whose message carries it; later, whoever may see a case that refers to it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import aiofiles

from rooms.files.preview import make_preview
from rooms.files.scan import ScanRefused, ScanResult, ScanUnavailable
from rooms.files.sniff import HEAD_BYTES, sniff
from rooms.files.tus import CHECKSUM_MISMATCH, TusError
from server.audit.service import AuditLog, user_chain
from server.auth.service import Principal
from server.errors import AppError, BadRequest, Conflict, NotFound, Unauthorized
from server.ids import new_id, now_ms
from server.logging import get_logger
from server.permissions import Permissions
from server.scheduler import Scheduler
from server.settings import FilesSettings
from server.storage.ports import BlobStore, Storage, StorageConflict
from server.storage.records import FileLink, Job, StoredFile, Upload, UploadSegment

log = get_logger("muster.files")
CHUNK = 1024 * 1024
EXPIRE_JOB = "files.expire_uploads"
SCAN_JOB = "files.scan"
EXPIRE_EVERY_MS = 10 * 60 * 1000
SCAN_RETRY_MS = 60 * 1000
# Pictures larger than this are not read into memory for a preview.
PREVIEW_MAX_BYTES = 40 * 1024 * 1024
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class BodyInterrupted(Exception):
    """The client's connection broke while a body was arriving."""


class Scanner(Protocol):
    async def scan(self, chunks: AsyncIterator[bytes]) -> ScanResult: ...


class UserNotifier(Protocol):
    async def to_user(self, user_id: str, name: str, data: dict[str, Any]) -> None: ...


class RoomShare(Protocol):
    """What the rooms domain offers uploads that name a room (metadata `room_id`)."""

    async def check_share(self, actor: Principal, room_id: str) -> None:
        """Raise unless the actor may post files to the room."""

    async def share_file(self, actor: Principal, room_id: str, *, client_id: str, file: StoredFile) -> None:
        """Post a message carrying the file (idempotent on client_id)."""


ScopeCheck = Callable[[Principal, str], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class FileAccess:
    """A file and whether the asking user may read it (the permission table judges this)."""

    file: StoredFile
    readable: bool


def display_name(raw: str) -> str:
    """The client's file name as display text: no control characters, at most 255 characters.

    It is never used as a path; `../../etc/passwd` stays exactly that text."""
    name = CONTROL.sub("", raw).strip()
    return name[:255] or "file"


# Types a browser may show in a tab: they cannot run script (downloads also carry a sandbox CSP).
INLINE_TYPES = frozenset({
    "image/jpeg", "image/png", "image/gif", "image/webp", "video/mp4", "video/webm", "video/ogg", "audio/mpeg",
    "audio/ogg", "audio/mp4", "audio/x-m4a", "audio/wav", "audio/x-wav", "application/pdf",
})


def inline(mime: str) -> bool:
    return mime in INLINE_TYPES or mime.startswith("text/plain")


def kind_of(mime: str) -> str:
    top = mime.split("/", 1)[0]
    if top in ("image", "video", "audio"):
        return top
    if mime.startswith("text/plain"):
        return "text"
    if mime in ("application/zip", "application/x-7z-compressed", "application/x-rar-compressed",
                "application/gzip", "application/x-tar", "application/x-bzip2", "application/x-xz"):
        return "archive"
    if mime == "application/octet-stream":
        return "other"
    return "document"


class FileService:
    def __init__(
        self,
        *,
        storage: Storage,
        blobs: BlobStore,
        audit: AuditLog,
        permissions: Permissions,
        notifier: UserNotifier,
        scheduler: Scheduler,
        settings: FilesSettings,
        spool_dir: Path,
        link_secret: bytes,
        principal_lookup: Callable[[str, str], Awaitable[Principal]],
        scanner: Scanner | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._storage = storage
        self.blobs = blobs
        self._audit = audit
        self._permissions = permissions
        self._notify = notifier
        self._scheduler = scheduler
        self.settings = settings
        self._spool = spool_dir
        self._link_key = hmac.new(link_secret, b"muster file links", hashlib.sha256).digest()
        self._scanner = scanner
        # The principal of a user's device, for work finished later on their behalf (a delayed scan).
        self._principal_of = principal_lookup
        self.clock = clock
        self._scopes: dict[str, ScopeCheck] = {}
        self.rooms: RoomShare | None = None
        scheduler.register(EXPIRE_JOB, self._expire_job)
        scheduler.register(SCAN_JOB, self._scan_job)
        permissions.register("file.read", lambda _p, access: bool(access.readable))

    def register_scope(self, scope_type: str, check: ScopeCheck) -> None:
        """Say how to decide whether a user may see a scope (`room`, `case:incident`, ...)."""
        self._scopes[scope_type] = check

    async def start(self) -> None:
        self._spool.mkdir(parents=True, exist_ok=True)
        await self.blobs.open()
        # One job for the whole cluster (a fixed id): every node's start just re-arms it.
        await self._scheduler.schedule(EXPIRE_JOB, job_id=EXPIRE_JOB, due_at=self.clock() + EXPIRE_EVERY_MS)

    async def stop(self) -> None:
        await self.blobs.close()

    # -- uploads --------------------------------------------------------------------------------

    async def create_upload(self, actor: Principal, *, length: int, metadata: dict[str, str]) -> Upload:
        """Open a resumable upload of `length` bytes, checking size, quota and the target room."""
        if length > self.settings.max_upload_size:
            raise TusError(f"uploads are limited to {self.settings.max_upload_size} bytes", code="upload.too_large",
                           status=413)
        room_id = metadata.get("room_id")
        if room_id is not None:
            if self.rooms is None:
                raise BadRequest("uploads cannot name a room here", code="upload.bad_metadata")
            await self.rooms.check_share(actor, room_id)
        now = self.clock()
        quota = self.settings.user_quota
        if quota:
            used = await self._storage.owned_file_bytes(actor.user_id)
            used += await self._storage.open_upload_bytes(actor.user_id, now=now)
            if used + length > quota:
                raise TusError(f"this upload would exceed your storage quota ({used} of {quota} bytes used)",
                               code="upload.quota_exceeded", status=403)
        upload = Upload(id=new_id(), user_id=actor.user_id, device_id=actor.device_id, length=length,
                        created_at=now, expires_at=now + self.settings.upload_expiry * 1000, metadata=metadata)
        await self._storage.create_upload(upload)
        log.info("upload created", upload_id=upload.id, length=length)
        if length == 0:
            # Nothing to wait for: an empty file is complete as soon as it is announced.
            file = await self.finish(upload, actor)
            upload = replace(upload, file_id=file.id)
        return upload

    async def own_upload(self, actor: Principal, upload_id: str) -> Upload:
        """The upload, if it belongs to this user on this device and has not expired."""
        upload = await self._storage.get_upload(upload_id)
        if upload is None or upload.user_id != actor.user_id:
            raise TusError("no such upload", code="upload.not_found", status=404)
        if upload.device_id != actor.device_id:
            raise TusError("this upload belongs to another of your devices", code="upload.other_device", status=403)
        if upload.file_id is None and upload.expires_at <= self.clock():
            raise TusError("this upload has expired", code="upload.expired", status=410)
        return upload

    async def write(self, actor: Principal, upload: Upload, *, offset: int, body: AsyncIterator[bytes],
                    checksum: tuple[str, bytes] | None = None) -> Upload:
        """Append a request body at `offset`; returns the upload as it now stands (finished when complete).

        Raises BodyInterrupted after keeping what arrived (unless a checksum was promised)."""
        if offset != upload.offset:
            raise TusError(f"Upload-Offset must be {upload.offset}, the bytes received so far",
                           code="upload.offset_mismatch", status=409, headers={"Upload-Offset": str(upload.offset)})
        folder = self._spool / upload.id
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        key = f"{offset:016d}-{new_id()}"
        path = folder / key
        hasher = hashlib.new(checksum[0]) if checksum else None
        received = 0
        interrupted: BaseException | None = None
        too_long = False
        async with aiofiles.open(path, "wb") as out:
            try:
                async for chunk in body:
                    if offset + received + len(chunk) > upload.length:
                        too_long = True
                        break
                    await out.write(chunk)
                    if hasher is not None:
                        hasher.update(chunk)
                    received += len(chunk)
            except (BodyInterrupted, asyncio.CancelledError) as exc:
                interrupted = exc
            await out.flush()
            # What a 204 acknowledges must survive a crash.
            await asyncio.to_thread(_fsync, out.fileno())
            # The file is the truth: a request cancelled while a write ran in its thread still wrote it.
            received = os.fstat(out.fileno()).st_size
        if too_long:
            await _unlink(path)
            raise TusError("the body runs past Upload-Length", code="upload.exceeds_length", status=413)
        if checksum is not None and hasher is not None and (interrupted or hasher.digest() != checksum[1]):
            await _unlink(path)
            if interrupted:
                raise interrupted
            raise TusError("the body does not match Upload-Checksum", code="upload.checksum_mismatch",
                           status=CHECKSUM_MISMATCH)
        if received == 0:
            await _unlink(path)
            if interrupted:
                raise interrupted
            return upload
        segment = UploadSegment(start=offset, size=received, key=key)
        # Shielded: a cancelled request (server shutting down) still keeps the bytes it received.
        committed = await asyncio.shield(
            self._storage.commit_upload_segment(upload.id, expected_offset=offset, segment=segment))
        if not committed:
            await _unlink(path)
            if interrupted:
                raise interrupted
            current = await self._storage.get_upload(upload.id)
            raise TusError("another request wrote at this offset first", code="upload.offset_mismatch", status=409,
                           headers={"Upload-Offset": str(current.offset if current else upload.offset)})
        upload = replace(upload, offset=offset + received, segments=(*upload.segments, segment))
        await self._notify.to_user(upload.user_id, "upload.progress",
                                   {"upload_id": upload.id, "offset": upload.offset, "length": upload.length})
        if interrupted:
            log.info("upload interrupted; bytes kept", upload_id=upload.id, offset=upload.offset)
            raise interrupted
        if upload.offset == upload.length:
            file = await self.finish(upload, actor)
            upload = replace(upload, file_id=file.id)
        return upload

    async def terminate(self, actor: Principal, upload_id: str) -> None:
        """Drop an upload (tus termination). A finished upload's file stays: messages may carry it."""
        upload = await self.own_upload(actor, upload_id)
        await self._storage.delete_upload(upload.id)
        await self._remove_spool(upload.id)
        log.info("upload terminated", upload_id=upload.id, finished=upload.file_id is not None)

    async def finish(self, upload: Upload, actor: Principal | None) -> StoredFile:
        """Turn a complete upload into a file. Safe to run again after a crash (the file id is the upload id)."""
        file = await self._storage.get_file(upload.id)
        if file is None:
            file = await self._store_file(upload)
        await self._storage.finish_upload(upload.id, file_id=file.id)
        await self._remove_spool(upload.id)
        file = await self._check(file)
        await self._after_ready(file, upload, actor)
        return file

    async def store_local_file(self, path: Path, *, name: str, owner_id: str, device_id: str | None) -> StoredFile:
        """Keep a file Muster made itself (a call recording) like an upload: content-addressed, sniffed,
        scanned, audited in the owner's chain. The caller links it to where it belongs."""
        head = bytearray()

        async def content() -> AsyncIterator[bytes]:
            async with aiofiles.open(path, "rb") as f:
                while chunk := await f.read(CHUNK):
                    if len(head) < HEAD_BYTES:
                        head.extend(chunk[: HEAD_BYTES - len(head)])
                    yield chunk

        sha256, size = await self.blobs.put_blob(content())
        sniffed = sniff(bytes(head))
        file = StoredFile(id=new_id(), sha256=sha256, size=size, mime=sniffed.mime, name=display_name(name),
                          owner_id=owner_id, device_id=device_id, created_at=self.clock(),
                          status="scanning" if self._scanner is not None else "ready")
        await self._storage.create_file(file)
        await self._audit.record(chain=user_chain(owner_id), action="file.store", subject_type="file",
                                 subject_id=file.id, actor_id=owner_id, device_id=device_id,
                                 details={"name": file.name, "size": size, "sha256": sha256, "mime": file.mime})
        return await self._check(file)

    async def _store_file(self, upload: Upload) -> StoredFile:
        head = bytearray()

        async def content() -> AsyncIterator[bytes]:
            for segment in sorted(upload.segments, key=lambda s: s.start):
                async with aiofiles.open(self._spool / upload.id / segment.key, "rb") as f:
                    left = segment.size  # the committed bytes only
                    while left and (chunk := await f.read(min(CHUNK, left))):
                        left -= len(chunk)
                        if len(head) < HEAD_BYTES:
                            head.extend(chunk[: HEAD_BYTES - len(head)])
                        yield chunk

        sha256, size = await self.blobs.put_blob(content())
        if size != upload.length:
            log.error("stored upload has the wrong size", size=size, length=upload.length)
            raise AppError("the stored upload is incomplete", code="internal", status=500)
        sniffed = sniff(bytes(head))
        file = StoredFile(
            id=upload.id, sha256=sha256, size=size, mime=sniffed.mime,
            name=display_name(upload.metadata.get("filename", "")), owner_id=upload.user_id,
            device_id=upload.device_id, created_at=self.clock(),
            status="scanning" if self._scanner is not None else "ready",
        )
        try:
            await self._storage.create_file(file)
        except StorageConflict:
            existing = await self._storage.get_file(upload.id)
            assert existing is not None
            return existing
        await self._audit.record(
            chain=user_chain(upload.user_id), action="file.upload", subject_type="file", subject_id=file.id,
            actor_id=upload.user_id, device_id=upload.device_id,
            details={"name": file.name, "size": size, "sha256": sha256, "mime": file.mime},
        )
        log.info("file stored", file_id=file.id, size=size, mime=file.mime)
        return file

    async def _after_ready(self, file: StoredFile, upload: Upload, actor: Principal | None) -> None:
        await self._notify.to_user(file.owner_id, "file.ready" if file.status == "ready" else f"file.{file.status}",
                                   self.file_out(file, file.owner_id, upload.device_id))
        room_id = upload.metadata.get("room_id")
        if file.status != "ready" or room_id is None or self.rooms is None:
            return
        if actor is None:
            return
        client_id = upload.metadata.get("client_id") or f"upload:{upload.id}"
        try:
            await self.rooms.share_file(actor, room_id, client_id=client_id[:64], file=file)
        except AppError as exc:
            # The file is safe; only posting it failed (the uploader left the room meanwhile).
            log.info("could not post the uploaded file to its room", code=exc.code, file_id=file.id)

    async def _remove_spool(self, upload_id: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self._spool / upload_id, True)

    # -- scanning and previews --------------------------------------------------------------------

    async def _check(self, file: StoredFile) -> StoredFile:
        if file.status == "scanning":
            file = await self._scan(file)
        if file.status == "ready" and file.thumbnail_sha256 is None and file.mime.startswith("image/"):
            file = await self._preview(file)
        return file

    async def _scan(self, file: StoredFile) -> StoredFile:
        assert self._scanner is not None
        try:
            result = await self._scanner.scan(self.blobs.read_blob(file.sha256))
        except ScanUnavailable as exc:
            log.warning("virus scan unavailable; will retry", file_id=file.id, reason=str(exc))
            await self._scheduler.schedule(SCAN_JOB, job_id=f"scan:{file.id}", due_at=self.clock() + SCAN_RETRY_MS,
                                           payload={"file_id": file.id})
            return file
        except ScanRefused as exc:
            # Fail closed: content the scanner cannot judge is not handed out.
            result = ScanResult(clean=False, signature=f"not scanned: {exc}")
        now = self.clock()
        if result.clean:
            await self._storage.set_file_status(file.id, status="ready", scanned_at=now)
            return replace(file, status="ready", scanned_at=now)
        await self._storage.set_file_status(file.id, status="quarantined", scan_result=result.signature,
                                            scanned_at=now)
        await self._audit.record(chain=user_chain(file.owner_id), action="file.quarantine", subject_type="file",
                                 subject_id=file.id, actor_id=None, device_id=None,
                                 details={"signature": result.signature, "sha256": file.sha256, "name": file.name})
        log.warning("file quarantined", file_id=file.id, signature=result.signature)
        return replace(file, status="quarantined", scan_result=result.signature, scanned_at=now)

    async def _preview(self, file: StoredFile) -> StoredFile:
        if file.size > PREVIEW_MAX_BYTES:
            return file
        data = b"".join([chunk async for chunk in self.blobs.read_blob(file.sha256)])
        preview = await asyncio.to_thread(make_preview, data, size=self.settings.thumbnail_size,
                                          max_pixels=self.settings.max_image_pixels)
        if preview is None:
            return file

        async def one() -> AsyncIterator[bytes]:
            yield preview.data

        thumb, _ = await self.blobs.put_blob(one())
        await self._storage.set_file_preview(file.id, thumbnail_sha256=thumb, width=preview.width,
                                             height=preview.height)
        return replace(file, thumbnail_sha256=thumb, width=preview.width, height=preview.height)

    async def _scan_job(self, job: Job) -> int | None:
        file = await self._storage.get_file(str(job.payload.get("file_id", "")))
        if file is None or file.status != "scanning":
            return None
        file = await self._check(file)
        if file.status == "scanning":
            return None  # _scan scheduled the next attempt under the same job id
        upload = await self._storage.get_upload(file.id)
        if upload is not None:
            actor = None
            with contextlib.suppress(Unauthorized):
                actor = await self._principal_of(upload.user_id, upload.device_id)
            await self._after_ready(file, upload, actor)
        return None

    async def _expire_job(self, job: Job) -> int | None:
        """Remove expired unfinished uploads and their bytes; runs every ten minutes."""
        while True:
            expired = await self._storage.list_expired_uploads(now=self.clock(), limit=100)
            for upload in expired:
                await self._storage.delete_upload(upload.id)
                await self._remove_spool(upload.id)
            if expired:
                log.info("expired uploads removed", count=len(expired))
            if len(expired) < 100:
                break
        return self.clock() + EXPIRE_EVERY_MS

    # -- access ---------------------------------------------------------------------------------

    async def can_read(self, principal: Principal, file: StoredFile) -> bool:
        if file.owner_id == principal.user_id:
            return True
        for link in await self._storage.list_file_links(file.id):
            check = self._scopes.get(link.scope_type)
            if check is not None and await check(principal, link.scope_id):
                return True
        return False

    async def readable_file(self, principal: Principal, file_id: str) -> StoredFile:
        """The file, if the user may read it (refusals are audited)."""
        file = await self._storage.get_file(file_id)
        if file is None:
            raise NotFound("no such file", code="file.not_found")
        await self._permissions.require(principal, "file.read", FileAccess(file, await self.can_read(principal, file)),
                                        subject_type="file", subject_id=file_id, code="file.forbidden",
                                        message="you may not see this file")
        return file

    async def servable_file(self, principal: Principal, file_id: str) -> StoredFile:
        """A readable file whose content may be handed out (scanned clean)."""
        file = await self.readable_file(principal, file_id)
        if file.status == "quarantined":
            raise AppError("this file was quarantined by the virus scan", code="file.quarantined", status=403)
        if file.status == "scanning":
            raise AppError("this file is still being scanned", code="file.scanning", status=409,
                           headers={"Retry-After": "30"})
        return file

    # -- attachments ----------------------------------------------------------------------------

    async def attachments(self, actor: Principal, refs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Check that the actor may share each file and describe them for a message body."""
        out = []
        seen: set[str] = set()
        for ref in refs:
            file_id = str(ref["file_id"])
            if file_id in seen:
                continue
            seen.add(file_id)
            file = await self._storage.get_file(file_id)
            if file is None or not await self.can_read(actor, file):
                raise BadRequest(f"no file {file_id} that you may share", code="message.bad_attachment")
            if file.status != "ready":
                raise Conflict(f"file {file_id} is {file.status}", code=f"file.{file.status}")
            name = display_name(str(ref.get("name") or file.name))
            out.append({"file_id": file.id, "name": name, "size": file.size, "mime": file.mime,
                        "kind": kind_of(file.mime), "sha256": file.sha256,
                        "has_thumbnail": file.thumbnail_sha256 is not None, "width": file.width,
                        "height": file.height})
        return out

    async def link(self, file_ids: list[str], *, scope_type: str, scope_id: str, target_type: str, target_id: str,
                   actor: Principal | None) -> None:
        at = self.clock()
        for file_id in file_ids:
            await self._storage.add_file_link(FileLink(
                file_id=file_id, scope_type=scope_type, scope_id=scope_id, target_type=target_type,
                target_id=target_id, created_by=actor.user_id if actor else None, created_at=at))

    async def unlink(self, target_type: str, target_id: str) -> int:
        """The target (a recalled message) no longer carries its files; other links keep them visible."""
        return await self._storage.remove_file_links(target_type, target_id, at=self.clock())

    async def scope_files(self, scope_type: str, scope_id: str, *, before: int | None,
                          limit: int) -> tuple[list[tuple[FileLink, StoredFile]], bool]:
        rows = await self._storage.list_scope_files(scope_type, scope_id, before=before, limit=limit + 1)
        return rows[:limit], len(rows) > limit

    # -- wire form and signed links -------------------------------------------------------------

    def sign(self, file_id: str, what: str, user_id: str, device_id: str, exp: int) -> str:
        message = f"{file_id}|{what}|{user_id}|{device_id}|{exp}".encode()
        return hmac.new(self._link_key, message, hashlib.sha256).hexdigest()

    def link_query(self, file_id: str, what: str, user_id: str, device_id: str) -> str:
        exp = self.clock() + self.settings.link_ttl * 1000
        return f"u={user_id}&d={device_id}&exp={exp}&sig={self.sign(file_id, what, user_id, device_id, exp)}"

    def check_link(self, file_id: str, what: str, *, user_id: str, device_id: str, exp: int, sig: str) -> None:
        expected = self.sign(file_id, what, user_id, device_id, exp)
        if not hmac.compare_digest(expected, sig):
            raise Unauthorized("this download link is not valid", code="file.bad_link")
        if exp <= self.clock():
            raise Unauthorized("this download link has expired", code="file.link_expired")

    def file_out(self, file: StoredFile, user_id: str, device_id: str) -> dict[str, Any]:
        base = f"/api/files/{file.id}"
        return {
            "id": file.id, "name": file.name, "size": file.size, "mime": file.mime, "kind": kind_of(file.mime),
            "sha256": file.sha256, "status": file.status, "owner_id": file.owner_id, "created_at": file.created_at,
            "has_thumbnail": file.thumbnail_sha256 is not None, "width": file.width, "height": file.height,
            "download_url": f"{base}/content?{self.link_query(file.id, 'content', user_id, device_id)}",
            "thumbnail_url": (f"{base}/thumbnail?{self.link_query(file.id, 'thumbnail', user_id, device_id)}"
                              if file.thumbnail_sha256 else None),
        }

    def upload_out(self, upload: Upload, file: StoredFile | None) -> dict[str, Any]:
        return {"id": upload.id, "offset": upload.offset, "length": upload.length, "created_at": upload.created_at,
                "expires_at": upload.expires_at, "metadata": upload.metadata,
                "file": self.file_out(file, upload.user_id, upload.device_id) if file else None}

    async def get_file_record(self, file_id: str) -> StoredFile | None:
        return await self._storage.get_file(file_id)


def _fsync(fd: int) -> None:
    os.fsync(fd)


async def _unlink(path: Path) -> None:
    await asyncio.to_thread(path.unlink, True)
