"""Socket payloads of calls (视频会商, one-to-one calls, field video)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import StringConstraints

from server.schemas import Id, Payload

# An SDP answer from a browser: a few KiB; a hard ceiling keeps a hostile client from sending megabytes.
Sdp = Annotated[str, StringConstraints(min_length=1, max_length=65536)]
Token = Annotated[str, StringConstraints(min_length=1, max_length=2048)]


class StartCall(Payload):
    room_id: Id
    kind: Literal["consultation", "direct", "field"] = "consultation"


class CallRef(Payload):
    call_id: Id


class JoinCall(Payload):
    call_id: Id
    invitation: Token | None = None


class PublishBody(Payload):
    call_id: Id
    kind: Literal["audio", "video"]
    source: Literal["camera", "microphone", "screen"]


class PublicationRef(Payload):
    call_id: Id
    publication_id: Id


class AnswerBody(Payload):
    call_id: Id
    sdp: Sdp


class MuteBody(Payload):
    call_id: Id
    publication_id: Id
    muted: bool


class ParticipantRef(Payload):
    call_id: Id
    participant_id: Id


class UserRef(Payload):
    call_id: Id
    user_id: Id


class ModeBody(Payload):
    call_id: Id
    mode: Literal["normal", "audio_only"]


class RecordBody(Payload):
    call_id: Id
    on: bool
