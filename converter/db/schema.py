"""Tables. Portable SQLAlchemy Core: the same schema runs on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

api_keys = Table(
    "api_keys", metadata,
    Column("id", String(32), primary_key=True),
    # sha256 of the whole key: keys are 192-bit random, so a fast hash is enough
    # and lets a request find its key with one indexed lookup.
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(20), nullable=False),
    Column("workspace", String(200), nullable=False),
    Column("user_id", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)

files = Table(
    "files", metadata,
    Column("id", String(40), primary_key=True),
    Column("workspace", String(200), nullable=False),
    Column("owner", String(200), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("filename", String(512), nullable=False),
    Column("format", String(16), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("storage_key", String(300), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # seq orders rows created within the same timestamp for cursor pagination.
    Column("seq", BigInteger, nullable=False),
    # Document metadata; columns added after the first release are nullable so that
    # converter.db.migrate can add them to an existing database.
    Column("encrypted", Boolean),
    Column("pages", Integer),
    Column("sheets", Text),  # JSON list of names, in workbook order
    Column("title", Text),
    Column("author", Text),
    Column("metadata_unknown", Text),  # JSON list of the fields not known yet
    # The end of the life an upload asked for (expires_in); CONVERTER_RETENTION_DAYS
    # may end it sooner. Null: only the retention setting applies.
    Column("expires_at", DateTime(timezone=True)),
)
Index("ix_files_workspace_seq", files.c.workspace, files.c.seq)

artifacts = Table(
    "artifacts", metadata,
    Column("id", String(40), primary_key=True),
    Column("file_id", String(40), ForeignKey("files.id", ondelete="CASCADE"), nullable=False),
    # What was converted: the file itself or an earlier artifact (a run's output).
    Column("source_id", String(40), nullable=False),
    Column("cache_key", String(64), nullable=False),
    Column("format", String(16), nullable=False),
    Column("options", Text, nullable=False),
    Column("media_type", String(200), nullable=False),
    Column("storage_key", String(300), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Which path made it: libreoffice, openpyxl (the xlsx CSV fast path) or pdf2image.
    Column("produced_by", String(16)),
    # The same conversion keyed by the file's owner and bytes instead of its id, so a
    # second upload of those bytes by that owner finds it (null: not content-cached).
    Column("content_key", String(64)),
    UniqueConstraint("cache_key", name="uq_artifacts_cache_key"),
)

# One-shot conversions (POST /v1/convert) store no file: their artifacts are keyed by
# the sha256 of the bytes, the format and the options, within the caller's workspace.
content_artifacts = Table(
    "content_artifacts", metadata,
    Column("cache_key", String(64), primary_key=True),
    Column("workspace", String(200), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("format", String(16), nullable=False),
    Column("options", Text, nullable=False),
    Column("media_type", String(200), nullable=False),
    Column("storage_key", String(300), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("produced_by", String(16)),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
Index("ix_content_artifacts_workspace", content_artifacts.c.workspace)
Index("ix_artifacts_file", artifacts.c.file_id)
Index("ix_artifacts_content_key", artifacts.c.content_key)

# Single-flight across processes and replicas: one row per conversion in flight, held
# by its leader's token while ``expires_at`` is renewed. A leader that fails on the
# document leaves the row ``failed`` with the error until ``expires_at``, so the
# requests waiting for it (and repeats just after) get that answer without the engine.
conversion_claims = Table(
    "conversion_claims", metadata,
    Column("cache_key", String(64), primary_key=True),
    Column("owner", String(80), nullable=False),
    Column("state", String(16), nullable=False),  # running | failed
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("error_type", String(64)),
    Column("error_message", Text),
    Column("error_details", Text),  # JSON object
    Column("created_at", DateTime(timezone=True), nullable=False),
)

runs = Table(
    "runs", metadata,
    Column("id", String(40), primary_key=True),
    Column("api_key_id", String(32), nullable=False),
    Column("workspace", String(200), nullable=False),
    Column("owner", String(200), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("file_id", String(40), ForeignKey("files.id", ondelete="CASCADE"), nullable=False),
    Column("source_id", String(40), nullable=False),
    Column("format", String(16), nullable=False),
    Column("options", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("webhook_url", Text),
    Column("artifact_id", String(40)),
    Column("error", Text),
    Column("attempts", Integer, nullable=False, default=0),
    Column("lease_owner", String(80)),
    Column("lease_expires_at", DateTime(timezone=True)),
    Column("not_before", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    Column("seq", BigInteger, nullable=False),
)
Index("ix_runs_status", runs.c.status, runs.c.not_before)
Index("ix_runs_workspace_seq", runs.c.workspace, runs.c.seq)
Index("ix_runs_key_created", runs.c.api_key_id, runs.c.created_at)

webhook_deliveries = Table(
    "webhook_deliveries", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(40), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("status_code", Integer),
    Column("error", Text),
    Column("delivered", Boolean, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("next_attempt_at", DateTime(timezone=True)),
)
Index("ix_webhook_deliveries_run", webhook_deliveries.c.run_id)

idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("api_key_id", String(32), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer),
    Column("response", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # The run (or export) the stored response names, so that deleting it by retention
    # also forgets the replay that would point at it.
    Column("subject_id", String(40)),
)
Index("ix_idempotency_keys_subject", idempotency_keys.c.subject_id)

# Named leases for work one replica at a time should do (the cleanup loop). A holder
# renews ``expires_at`` while it works; when it is past, anyone may take the lease.
# ``next_due_at`` spaces passes across the fleet instead of once per replica.
leases = Table(
    "leases", metadata,
    Column("name", String(64), primary_key=True),
    Column("owner", String(80)),
    Column("expires_at", DateTime(timezone=True)),
    Column("next_due_at", DateTime(timezone=True)),
)

workspace_secrets = Table(
    "workspace_secrets", metadata,
    Column("workspace", String(200), primary_key=True),
    Column("secret", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Where files are exported to (and watched from). ``config`` is the provider's public
# fields as JSON; ``credentials`` a Fernet token (converter.connectors.crypto) that only
# the service can open; ``credential_hints`` the last 4 characters of each, as shown.
connectors = Table(
    "connectors", metadata,
    Column("id", String(40), primary_key=True),
    Column("workspace", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("provider", String(16), nullable=False),
    Column("config", Text, nullable=False),
    Column("credentials", Text),
    Column("credential_hints", Text, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("seq", BigInteger, nullable=False),
)
Index("ix_connectors_workspace_seq", connectors.c.workspace, connectors.c.seq)

# Exports: a conversion of a run's output or a file (or several, bundled), delivered to
# a connector and/or offered for download. Processed in the background under a lease,
# like runs (converter.service.export_worker).
exports = Table(
    "exports", metadata,
    Column("id", String(40), primary_key=True),
    Column("api_key_id", String(32), nullable=False),
    Column("workspace", String(200), nullable=False),
    Column("owner", String(200), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("sources", Text, nullable=False),  # JSON list of {"run_id"} / {"file_id"}
    Column("bundle", String(8), nullable=False),
    Column("format", String(16), nullable=False),
    Column("options", Text, nullable=False),
    Column("connector_id", String(40)),
    Column("subpath", Text, nullable=False),
    Column("on_conflict", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("error", Text),
    Column("result", Text),  # JSON: artifacts to download and what was delivered where
    Column("attempts", Integer, nullable=False, default=0),
    Column("lease_owner", String(80)),
    Column("lease_expires_at", DateTime(timezone=True)),
    Column("not_before", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    Column("seq", BigInteger, nullable=False),
)
Index("ix_exports_status", exports.c.status, exports.c.not_before)
Index("ix_exports_workspace_seq", exports.c.workspace, exports.c.seq)

# A workspace's default export destination (PUT /v1/export-defaults).
export_defaults = Table(
    "export_defaults", metadata,
    Column("workspace", String(200), primary_key=True),
    Column("connector_id", String(40)),
    Column("subpath", Text, nullable=False),
    Column("on_conflict", String(16), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Watched folders (issue 10): a source connector path whose new or changed files are
# converted and delivered to a destination connector. Visible to the whole workspace,
# as connectors are.
automations = Table(
    "automations", metadata,
    Column("id", String(40), primary_key=True),
    Column("workspace", String(200), nullable=False),
    Column("created_by", String(200), nullable=False),
    # The key that created it: the engine's fair queue counts its conversions there.
    Column("api_key_id", String(32), nullable=False),
    Column("source_connector_id", String(40), nullable=False),
    Column("source_path", Text, nullable=False),
    Column("formats", Text, nullable=False),  # JSON list of targets
    Column("options", Text, nullable=False),  # JSON object
    Column("destination_connector_id", String(40), nullable=False),
    Column("destination_subpath", Text, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("after", Text, nullable=False),  # keep, delete or move:<path>
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("seq", BigInteger, nullable=False),
)
Index("ix_automations_workspace_seq", automations.c.workspace, automations.c.seq)

# One row per (automation, source path, object version): the database is where
# "exactly once per version" is decided, across restarts and replicas. A row starts
# ``seen`` (first listing), becomes ``ready`` when a later listing agrees on the
# version (the file is no longer being written), ``working`` under a lease token
# while one worker converts and delivers it, then ``done`` or ``failed``.
automation_claims = Table(
    "automation_claims", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("automation_id", String(40), ForeignKey("automations.id", ondelete="CASCADE"),
           nullable=False),
    Column("path", Text, nullable=False),
    Column("version", String(300), nullable=False),
    Column("size_bytes", BigInteger),
    Column("status", String(16), nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),
    Column("lease_owner", String(80)),
    Column("lease_expires_at", DateTime(timezone=True)),
    Column("not_before", DateTime(timezone=True)),
    Column("attempts", Integer, nullable=False, default=0),
    # JSON {format: destination path}, chosen when the claim is first taken and kept:
    # a takeover after a crash overwrites that same object instead of adding a copy.
    Column("destinations", Text),
    Column("delivered_at", DateTime(timezone=True)),
    Column("error", Text),
    Column("completed_at", DateTime(timezone=True)),
    UniqueConstraint("automation_id", "path", "version", name="uq_automation_claims_version"),
)
Index("ix_automation_claims_status", automation_claims.c.status,
      automation_claims.c.lease_expires_at)
Index("ix_automation_claims_path", automation_claims.c.automation_id, automation_claims.c.path)

automation_events = Table(
    "automation_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("automation_id", String(40), ForeignKey("automations.id", ondelete="CASCADE"),
           nullable=False),
    Column("kind", String(16), nullable=False),  # seen, converted, delivered, failed
    Column("path", Text, nullable=False),
    Column("version", String(300), nullable=False),
    Column("format", String(16)),
    Column("destination", Text),
    Column("reason", Text),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("seq", BigInteger, nullable=False),
)
Index("ix_automation_events_automation_seq", automation_events.c.automation_id,
      automation_events.c.seq)
Index("ix_automation_events_at", automation_events.c.at)
