"""HTTP routes of uploads (the tus 1.0 protocol) and files (downloads with Range and ETag)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from rooms.files.models import DownloadQuery, FileListOut, FileOut, RoomFilesQuery, UploadOut
from rooms.files.ranges import parse_range
from rooms.files.service import CHUNK, BodyInterrupted, FileService, inline
from rooms.files.tus import (
    OFFSET_CONTENT_TYPE,
    VERSION,
    TusError,
    check_resumable,
    format_metadata,
    http_date,
    options_headers,
    parse_checksum,
    parse_length,
    parse_metadata,
    unsupported_defer_length,
)
from rooms.views import ROOMS
from server.auth.service import Principal
from server.errors import AppError, Unauthorized
from server.http.api import Api, ApiRequest, Handler
from server.kernel import KERNEL, authenticate_request
from server.storage.records import StoredFile, Upload

api = Api()
FILES = web.AppKey("muster.files", FileService)
TUS = ["uploads (tus 1.0)"]
TAGS = ["files"]
TUS_ERRORS = (403, 404, 409, 410, 412, 413, 415, 460)
# Downloads must never run as a page of Muster's origin, whatever the content claims to be.
DOWNLOAD_CSP = "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; sandbox"


def tus_route(handler: Handler) -> Handler:
    """Every tus response, errors included, carries Tus-Resumable."""

    @functools.wraps(handler)
    async def wrapped(req: ApiRequest[Any, Any]) -> Any:
        try:
            return await handler(req)
        except AppError as exc:
            exc.headers = {"Tus-Resumable": VERSION, **(exc.headers or {})}
            raise

    return wrapped


def _upload_headers(upload: Upload) -> dict[str, str]:
    headers = {"Tus-Resumable": VERSION, "Upload-Offset": str(upload.offset), "Cache-Control": "no-store"}
    if upload.file_id is None:
        headers["Upload-Expires"] = http_date(upload.expires_at)
    else:
        headers["Muster-File-Id"] = upload.file_id
    return headers


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.content.iter_chunked(CHUNK):
            yield chunk
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, ConnectionError) as exc:
        raise BodyInterrupted(str(exc) or type(exc).__name__) from None


async def _write(req: ApiRequest[Any, Any], upload: Upload, offset: int) -> Upload:
    checksum = parse_checksum(req.request.headers.get("Upload-Checksum"))
    try:
        return await req.app[FILES].write(req.principal, upload, offset=offset, body=_body(req.request),
                                          checksum=checksum)
    except BodyInterrupted:
        # Nobody is listening any more; the bytes that arrived are kept (without a checksum).
        raise TusError("the connection broke during the upload", code="upload.interrupted", status=400) from None


@api.route("OPTIONS", "/api/uploads", summary="tus discovery: version, extensions, maximum size", tags=TUS,
           auth=False, raw=True, status=204, content_type="")
async def upload_options(req: ApiRequest[None, None]) -> web.Response:
    """Answers Tus-Version, Tus-Extension, Tus-Max-Size and Tus-Checksum-Algorithm."""
    return web.Response(status=204, headers=options_headers(req.app[FILES].settings.max_upload_size))


@api.route("POST", "/api/uploads", summary="tus creation: open a resumable upload", tags=TUS, raw=True,
           status=201, content_type="", errors=TUS_ERRORS)
@tus_route
async def create_upload(req: ApiRequest[None, None]) -> web.Response:
    """Headers: `Tus-Resumable: 1.0.0`, `Upload-Length`, `Upload-Metadata` (base64 `filename`, `filetype`,
    optionally `room_id` to post the finished file to a room, and `client_id` for that message). A body of
    type application/offset+octet-stream is the first bytes (creation-with-upload). Answers 201 with
    `Location`, `Upload-Expires` and `Upload-Offset`."""
    request = req.request
    check_resumable(request.headers.get("Tus-Resumable"))
    override = request.headers.get("X-HTTP-Method-Override")
    if override:
        raise TusError("method override is only for an existing upload", code="upload.bad_header", status=400)
    if "Upload-Defer-Length" in request.headers:
        raise unsupported_defer_length()
    length = parse_length(request.headers.get("Upload-Length"), name="Upload-Length")
    metadata = parse_metadata(request.headers.get("Upload-Metadata"))
    files = req.app[FILES]
    upload = await files.create_upload(req.principal, length=length, metadata=metadata)
    if request.content_type == OFFSET_CONTENT_TYPE and request.body_exists:
        upload = await _write(req, upload, 0)
    headers = {"Location": f"/api/uploads/{upload.id}", **_upload_headers(upload)}
    return web.Response(status=201, headers=headers)


async def _head(req: ApiRequest[Any, Any]) -> web.Response:
    check_resumable(req.request.headers.get("Tus-Resumable"))
    upload = await req.app[FILES].own_upload(req.principal, req.path["upload_id"])
    headers = {"Upload-Length": str(upload.length), **_upload_headers(upload)}
    if upload.metadata:
        headers["Upload-Metadata"] = format_metadata(upload.metadata)
    return web.Response(status=200, headers=headers)


async def _patch(req: ApiRequest[Any, Any]) -> web.Response:
    request = req.request
    check_resumable(request.headers.get("Tus-Resumable"))
    if request.content_type != OFFSET_CONTENT_TYPE:
        raise TusError(f"PATCH bodies must be {OFFSET_CONTENT_TYPE}", code="upload.bad_content_type", status=415)
    offset = parse_length(request.headers.get("Upload-Offset"), name="Upload-Offset")
    files = req.app[FILES]
    upload = await files.own_upload(req.principal, req.path["upload_id"])
    upload = await _write(req, upload, offset)
    return web.Response(status=204, headers=_upload_headers(upload))


async def _delete(req: ApiRequest[Any, Any]) -> web.Response:
    check_resumable(req.request.headers.get("Tus-Resumable"))
    await req.app[FILES].terminate(req.principal, req.path["upload_id"])
    return web.Response(status=204, headers={"Tus-Resumable": VERSION})


@api.route("HEAD", "/api/uploads/{upload_id}", summary="tus: how many bytes the server holds", tags=TUS,
           raw=True, content_type="", errors=TUS_ERRORS)
@tus_route
async def upload_offset(req: ApiRequest[None, None]) -> web.Response:
    """Answers `Upload-Offset` and `Upload-Length` (and `Muster-File-Id` once complete); 410 when expired."""
    return await _head(req)


@api.route("PATCH", "/api/uploads/{upload_id}", summary="tus: append bytes at Upload-Offset", tags=TUS, raw=True,
           status=204, content_type="", errors=TUS_ERRORS)
@tus_route
async def upload_bytes(req: ApiRequest[None, None]) -> web.Response:
    """Body `application/offset+octet-stream` at `Upload-Offset` (409 when it is not the server's offset),
    optionally with `Upload-Checksum: sha256 <base64>` (460 when it does not match). The request that
    completes the upload answers `Muster-File-Id`."""
    return await _patch(req)


@api.route("DELETE", "/api/uploads/{upload_id}", summary="tus termination: drop an upload", tags=TUS, raw=True,
           status=204, content_type="", errors=TUS_ERRORS)
@tus_route
async def terminate_upload(req: ApiRequest[None, None]) -> web.Response:
    return await _delete(req)


@api.route("POST", "/api/uploads/{upload_id}", summary="tus method override (X-HTTP-Method-Override)", tags=TUS,
           raw=True, status=204, content_type="", errors=TUS_ERRORS)
@tus_route
async def upload_override(req: ApiRequest[None, None]) -> web.Response:
    """For clients that cannot send PATCH, DELETE or HEAD: POST with `X-HTTP-Method-Override`."""
    method = req.request.headers.get("X-HTTP-Method-Override", "").upper()
    handlers = {"PATCH": _patch, "DELETE": _delete, "HEAD": _head}
    if method not in handlers:
        raise TusError("X-HTTP-Method-Override must be PATCH, DELETE or HEAD", code="upload.bad_header", status=400)
    return await handlers[method](req)


@api.route("GET", "/api/uploads/{upload_id}", summary="An upload's progress, and its file once complete",
           tags=TAGS, response=UploadOut, errors=(410,))
async def get_upload(req: ApiRequest[None, None]) -> UploadOut:
    files = req.app[FILES]
    upload = await files.own_upload(req.principal, req.path["upload_id"])
    file = await files.get_file_record(upload.file_id) if upload.file_id else None
    return UploadOut.model_validate(files.upload_out(upload, file))


@api.route("GET", "/api/files/{file_id}", summary="A file's description, with signed download links", tags=TAGS,
           response=FileOut)
async def get_file(req: ApiRequest[None, None]) -> FileOut:
    files = req.app[FILES]
    file = await files.readable_file(req.principal, req.path["file_id"])
    return FileOut.model_validate(files.file_out(file, req.principal.user_id, req.principal.device_id))


@api.route("GET", "/api/rooms/{room_id}/files", summary="Files shared in a room, newest first", tags=TAGS,
           query=RoomFilesQuery, response=FileListOut)
async def room_files(req: ApiRequest[None, RoomFilesQuery]) -> FileListOut:
    """Page backwards with `before` = the `created_at` of the last file of the previous page."""
    await req.app[ROOMS].access(req.principal, req.path["room_id"])
    files = req.app[FILES]
    rows, more = await files.scope_files("room", req.path["room_id"], before=req.query.before,
                                         limit=req.query.limit)
    p = req.principal
    return FileListOut(files=[FileOut.model_validate(files.file_out(f, p.user_id, p.device_id)) for _, f in rows],
                       has_more=more)


async def _download_principal(req: ApiRequest[None, DownloadQuery], what: str) -> Principal:
    q = req.query
    if "Authorization" in req.request.headers or q.sig is None:
        return await authenticate_request(req.request)
    if q.u is None or q.d is None or q.exp is None:
        raise Unauthorized("a signed link needs u, d, exp and sig", code="file.bad_link")
    req.app[FILES].check_link(req.path["file_id"], what, user_id=q.u, device_id=q.d, exp=q.exp, sig=q.sig)
    return await req.app[KERNEL].auth.authenticate_ids(q.u, q.d)


def _disposition(file: StoredFile, inline: bool) -> str:
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\/;' else "_" for c in file.name)
    encoded = quote(file.name.replace("/", "_").replace("\\", "_"), safe="")
    return f"{'inline' if inline else 'attachment'}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


async def _serve(req: ApiRequest[None, DownloadQuery], file: StoredFile, *, sha256: str, size: int, mime: str,
                 inline: bool) -> web.StreamResponse:
    request = req.request
    etag = f'"{sha256}"'
    headers = {
        "ETag": etag, "Accept-Ranges": "bytes", "Cache-Control": "private, max-age=86400",
        "Last-Modified": http_date(file.created_at), "Content-Type": mime,
        "Content-Disposition": _disposition(file, inline), "Content-Security-Policy": DOWNLOAD_CSP,
        "X-Content-Type-Options": "nosniff", "Cross-Origin-Resource-Policy": "same-origin",
    }
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match and (if_none_match.strip() == "*" or etag in [t.strip() for t in if_none_match.split(",")]):
        return web.Response(status=304, headers={k: headers[k] for k in ("ETag", "Cache-Control", "Last-Modified")})
    wanted = parse_range(request.headers.get("Range"), size)
    if_range = request.headers.get("If-Range")
    if wanted is not None and if_range is not None and if_range.strip() != etag:
        wanted = None  # the client's copy is of other content: send it all
    start, end = wanted if wanted is not None else (0, size)
    response = web.StreamResponse(status=206 if wanted is not None else 200, headers=headers)
    if wanted is not None:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    response.content_length = end - start
    await response.prepare(request)
    if request.method != "HEAD" and end > start:
        async for chunk in req.app[FILES].blobs.read_blob(sha256, start=start, end=end):
            await response.write(chunk)
    await response.write_eof()
    return response


async def _content(req: ApiRequest[None, DownloadQuery]) -> web.StreamResponse:
    files = req.app[FILES]
    principal = await _download_principal(req, "content")
    file = await files.servable_file(principal, req.path["file_id"])
    show = inline(file.mime) and not req.query.download
    return await _serve(req, file, sha256=file.sha256, size=file.size, mime=file.mime, inline=show)


async def _thumbnail(req: ApiRequest[None, DownloadQuery]) -> web.StreamResponse:
    files = req.app[FILES]
    principal = await _download_principal(req, "thumbnail")
    file = await files.servable_file(principal, req.path["file_id"])
    if file.thumbnail_sha256 is None:
        raise AppError("this file has no preview", code="file.no_thumbnail", status=404)
    size = await files.blobs.blob_size(file.thumbnail_sha256)
    if size is None:
        raise AppError("this file has no preview", code="file.no_thumbnail", status=404)
    head = b"".join([chunk async for chunk in files.blobs.read_blob(file.thumbnail_sha256, start=0, end=8)])
    mime = "image/png" if head.startswith(b"\x89PNG") else "image/jpeg"
    return await _serve(req, file, sha256=file.thumbnail_sha256, size=size, mime=mime, inline=True)


DOWNLOAD_ERRORS = (401, 403, 404, 409, 416)


@api.route("GET", "/api/files/{file_id}/content", summary="Download a file", tags=TAGS, auth=False,
           own_auth=True, raw=True, query=DownloadQuery, content_type="application/octet-stream",
           errors=DOWNLOAD_ERRORS)
async def file_content(req: ApiRequest[None, DownloadQuery]) -> web.StreamResponse:
    """Bearer token, or the signed link from the file's `download_url` (u, d, exp, sig). Supports
    `Range: bytes=a-b` (206, one range), `If-Range`, `If-None-Match` (304). Pictures, media, PDF and plain
    text are inline unless `download=1`; everything else is an attachment. 403 `file.quarantined` for a
    file the virus scan caught, 409 `file.scanning` while it is being scanned."""
    return await _content(req)


@api.route("HEAD", "/api/files/{file_id}/content", summary="A download's headers only", tags=TAGS, auth=False,
           own_auth=True, raw=True, query=DownloadQuery, content_type="application/octet-stream",
           errors=DOWNLOAD_ERRORS)
async def file_content_head(req: ApiRequest[None, DownloadQuery]) -> web.StreamResponse:
    """The same checks and headers as the download, without the body."""
    return await _content(req)


@api.route("GET", "/api/files/{file_id}/thumbnail", summary="A picture's preview (JPEG)", tags=TAGS, auth=False,
           own_auth=True, raw=True, query=DownloadQuery, content_type="image/jpeg", errors=DOWNLOAD_ERRORS)
async def file_thumbnail(req: ApiRequest[None, DownloadQuery]) -> web.StreamResponse:
    """Authorised like the download (Bearer or the signed `thumbnail_url`); 404 `file.no_thumbnail` when the
    file is not a picture Muster could preview."""
    return await _thumbnail(req)
