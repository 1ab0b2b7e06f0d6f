"""One claimed file version: download, convert to each format, deliver, then ``after``.

The conversion goes through the one-shot path of the service layer (intake's
verdict on the content, the matrix, the content-keyed cache within the
automation's workspace, the disk guard, and the engine's fair queue as async
work of the key that created the automation).
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from converter.connectors.base import Provider
from converter.connectors.delivery import MAX_RENAMES, deliver
from converter.connectors.paths import join, numbered, safe_name
from converter.db.outage import translate
from converter.db.schema import automations
from converter.engine.scheduler import Tenant
from converter.errors import ConverterError, PayloadTooLarge
from converter.service import automation_claims as claims
from converter.service.automation_claims import Claim, Event
from converter.service.automations import Automation, Connectors, automation_of
from converter.service.oneshot import OneShotService
from converter.service.principal import Principal
from converter.storage import StorageError

logger = logging.getLogger("converter.automations")

MAX_RETRY_DELAY = 300.0
_INTERNAL = "Internal error while converting; see the service log"


class Retryable(Exception):
    """A passing failure (connector, engine, storage, database): the claim is tried again."""


@dataclass(frozen=True)
class Outcome:
    """What became of each requested format."""

    events: list[Event]
    failed: int


def relative(automation: Automation, path: str) -> str:
    """A source path relative to the watched folder."""
    base = automation.source_path
    return path[len(base) + 1:] if base and path.startswith(base + "/") else path


def proposed_name(automation: Automation, path: str, target: str, number: int = 0) -> str:
    """Where the output of path in target goes: the same relative path, new extension.

    number > 0 gives the alternatives "name (1).pdf", "name (2).pdf"... as the
    connector layer's rename does.
    """
    folder, name = posixpath.split(relative(automation, path))
    return join(join(automation.destination_subpath, folder) if folder
                else automation.destination_subpath,
                numbered(safe_name(name, target), number))


def zip_name(name: str) -> str:
    """Several PNG pages or CSV sheets come as one ZIP: same name, .zip extension."""
    return posixpath.splitext(name)[0] + ".zip"


class Executor:
    """Carries out claims; every outcome is written only while the lease is ours."""

    def __init__(self, db: Engine, connectors: Connectors, oneshot: OneShotService,
                 max_attempts: int, delivery_attempts: int = 4,
                 retry_base: float = 2.0) -> None:
        self.db = db
        self.delivery_attempts = delivery_attempts
        self.connectors = connectors
        self.oneshot = oneshot
        self.max_attempts = max_attempts
        self.retry_base = retry_base

    def automation(self, automation_id: str) -> Automation | None:
        """The automation a claim belongs to (None once deleted)."""
        with self.db.connect() as conn:
            row = conn.execute(select(automations)
                               .where(automations.c.id == automation_id)).first()
        return None if row is None else automation_of(row)

    def execute(self, claim: Claim) -> None:
        """Convert and deliver a claimed version, recording the outcome."""
        automation = self.automation(claim.automation_id)
        if automation is None:
            return  # deleted with its claims
        try:
            self._execute(automation, claim)
        except Retryable as exc:
            self._retry(claim, str(exc))
        except ConverterError as exc:
            if exc.status >= 500 or exc.details.get("retryable"):
                self._retry(claim, exc.message)
            else:
                self._fail(claim, exc.message)
        except (StorageError, OSError) as exc:
            self._retry(claim, f"Artifact storage or scratch space failed: {exc}")
        except SQLAlchemyError as exc:
            if translate(exc) is None:
                logger.exception("automation %s: %s failed", automation.id, claim.path)
                self._fail(claim, _INTERNAL)
            else:
                raise  # the database is down: the lease expires and the claim is taken over
        except Exception:
            logger.exception("automation %s: %s failed", automation.id, claim.path)
            self._fail(claim, _INTERNAL)

    def _execute(self, automation: Automation, claim: Claim) -> None:
        source = self.connectors.provider(automation.workspace,
                                          automation.source_connector_id)
        destination = self.connectors.provider(automation.workspace,
                                               automation.destination_connector_id)
        failed = 0
        if not claim.delivered:
            entry = source.stat(claim.path)
            if entry is None or entry.version != claim.version:
                # Changed or gone since it was listed: the next listing sees what is there.
                claims.finish(self.db, claim, status="superseded")
                return
            limit = self.oneshot.intake.max_bytes
            if entry.size is not None and entry.size > limit:
                raise PayloadTooLarge(f"{claim.path} is larger than the {limit // 2**20} MiB "
                                      "limit (CONVERTER_MAX_UPLOAD_MB)", limit_bytes=limit)
            outcome = self._convert_and_deliver(automation, claim, source, destination)
            if not claims.mark_delivered(self.db, claim, outcome.events):
                logger.warning("automation %s: lease on %s lost before it was recorded",
                               automation.id, claim.path)
                return
            failed = outcome.failed
        if failed == len(automation.formats):
            claims.finish(self.db, claim, status="failed",
                          error="no format could be made; see the events")
            return
        if not failed:
            self._after(automation, claim, source)
        claims.finish(self.db, claim)

    def _convert_and_deliver(self, automation: Automation, claim: Claim, source: Provider,
                             destination: Provider) -> Outcome:
        intake = self.oneshot.intake
        who = Principal(automation.api_key_id, automation.workspace, "automation")
        tenant = Tenant(automation.workspace, automation.api_key_id, "async")
        events: list[Event] = []
        failed = 0
        with intake.spooled() as tmp:
            local = Path(tmp.name)
            source.download(claim.path, local)
            digest, size = _digest(local)
            received = intake.vet(local, posixpath.basename(claim.path), digest, size,
                                  field="source")
            claim = self._destinations(automation, claim, destination)
            assert claim.destinations is not None
            for target in automation.formats:
                if target not in self.oneshot.conversions.matrix.valid_targets(
                        received.format):
                    failed += 1
                    events.append(Event("failed", claim.path, claim.version, target,
                                        reason=f"{received.format} cannot be converted to "
                                        f"{target}"))
                    continue
                result = self.oneshot.convert(who, received, target, automation.options,
                                              store=False, scope=None, tenant=tenant)
                events.append(Event("converted", claim.path, claim.version, target))
                name = claim.destinations[target]
                if result.artifact.media_type.startswith("application/zip"):
                    name = zip_name(name)
                with self.oneshot.local_copy(result.artifact) as output:
                    # Overwrite, always: the name was chosen when the claim was first
                    # taken, so a delivery redone after a crash replaces its own object.
                    folder, filename = posixpath.split(name)
                    delivered = deliver(destination, output, folder, filename, "overwrite",
                                        attempts=self.delivery_attempts)
                events.append(Event("delivered", claim.path, claim.version, target,
                                    destination=delivered.path))
        return Outcome(events, failed)

    def _destinations(self, automation: Automation, claim: Claim,
                      destination: Provider) -> Claim:
        """The claim's destination names: stored ones, else chosen now and stored first.

        Choosing them once, before the first byte is delivered, is what makes a kill -9
        during a delivery harmless: the worker that takes the claim over delivers to the
        same names with overwrite, so there is still one object per format, never a
        renamed second copy beside a first one that did arrive.
        """
        if claim.destinations is not None:
            # An earlier attempt chose these names; if it was killed mid-write, its temporary
            # file is still there. The lease is ours now, so nobody else writes these names.
            for name in claim.destinations.values():
                for each in {name, zip_name(name)}:
                    destination.discard_partial(each)
            return claim
        own, taken = claims.destinations_in_use(self.db, claim)
        names: dict[str, str] = {}
        for target in automation.formats:
            if target in own:
                names[target] = own[target]  # a new version replaces its previous output
                continue
            for number in range(MAX_RENAMES):
                name = proposed_name(automation, claim.path, target, number)
                # Another source's output, or an object the automation did not write.
                if name not in taken and destination.stat(name) is None:
                    break
            names[target] = name
            taken.add(name)
        kept = claims.keep_destinations(self.db, claim, names)
        if kept is None:
            raise Retryable("the claim's lease was lost")
        return kept

    def _after(self, automation: Automation, claim: Claim, source: Provider) -> None:
        if automation.after == "delete":
            source.delete(claim.path)
        elif automation.after.startswith("move:"):
            target = posixpath.join(automation.after[len("move:"):],
                                    relative(automation, claim.path))
            if source.stat(claim.path) is not None:  # already moved by a crashed attempt
                source.move(claim.path, target)

    def _retry(self, claim: Claim, reason: str) -> None:
        if claim.attempts >= self.max_attempts:
            self._fail(claim, f"{reason} (gave up after {claim.attempts} attempts)")
            return
        delay = min(MAX_RETRY_DELAY, self.retry_base * 2 ** (claim.attempts - 1))
        logger.warning("automation %s: %s attempt %d failed (%s); retrying in %.1fs",
                       claim.automation_id, claim.path, claim.attempts, reason, delay)
        claims.retry(self.db, claim, reason, delay)

    def _fail(self, claim: Claim, reason: str) -> None:
        logger.warning("automation %s: %s failed: %s", claim.automation_id, claim.path, reason)
        claims.finish(self.db, claim, status="failed", error=reason,
                      events=[Event("failed", claim.path, claim.version, reason=reason)])


def _digest(path: Path) -> tuple[str, int]:
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), size

