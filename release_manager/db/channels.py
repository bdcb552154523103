"""Channels in the release database: each move of a package's moving tag (the spec's `channels`, e.g. L1's
`l1`) to a promoted image. The newest move of (package, channel) is where the channel points; the older
ones are its history, so "which image did L1 run on date D" has an answer and a rollback is a move back.

    record_channel_move("l1-makeft1", "l1", image_pk, digest, from_tag, previous_digest, actor, reason)
    channel_moves(session, "l1-makeft1")            newest first, every channel
    current_channels(session, "l1-makeft1")         {channel: newest move}
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from release_manager.db import lifecycle
from release_manager.db.connection import Database
from release_manager.db.models import ChannelMove, Package, utcnow
from release_manager.db.queries import iso
from release_manager.db.records import _audit, _db, _package, _resolve, default_actor
from release_manager.errors import UsageError


def record_channel_move(package: str, channel: str, image: int, digest: str, from_tag: str,
                        previous_digest: Optional[str], actor: Optional[str] = None, reason: Optional[str] = None,
                        db: Optional[Database] = None) -> int:
    """Record that CHANNEL now points at the promoted image (digest), with an audit event. Returns the row id."""
    actor = actor or default_actor()

    def do(s: Session) -> int:
        img = _resolve(s, image)
        if img.status != lifecycle.PROMOTED or img.digest != digest:
            raise UsageError(f"channel {channel}: image {img.id} is {img.status} at {img.digest}; a channel "
                             f"points only at a promoted image ({digest})")
        pkg = _package(s, package, actor)
        move = ChannelMove(package_id=pkg.id, channel=channel, image_pk=img.id, digest=digest,
                           previous_digest=previous_digest, from_tag=from_tag, moved_by=actor, moved_at=utcnow(),
                           reason=reason)
        s.add(move)
        s.flush()
        _audit(s, actor, "move-channel", "image", img.id, pkg.id, img.status, img.status, reason=reason,
               channel=channel, digest=digest, previous_digest=previous_digest, from_tag=from_tag)
        return move.id
    return _db(db).write(do)


def _row(m: ChannelMove) -> Dict[str, Any]:
    return {"id": m.id, "channel": m.channel, "image": m.image_pk, "digest": m.digest,
            "previous_digest": m.previous_digest, "from_tag": m.from_tag, "moved_by": m.moved_by,
            "moved_at": iso(m.moved_at), "reason": m.reason}


def channel_moves(s: Session, package: str, channel: Optional[str] = None) -> List[Dict[str, Any]]:
    """Every move of the package's channels (or of one), newest first."""
    q = select(ChannelMove).join(Package, ChannelMove.package_id == Package.id).where(Package.name == package)
    if channel is not None:
        q = q.where(ChannelMove.channel == channel)
    return [_row(m) for m in s.scalars(q.order_by(ChannelMove.id.desc()))]


def current_channels(s: Session, package: str) -> Dict[str, Dict[str, Any]]:
    """{channel: its newest move}."""
    out: Dict[str, Dict[str, Any]] = {}
    for m in channel_moves(s, package):
        out.setdefault(m["channel"], m)
    return out
