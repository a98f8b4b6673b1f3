"""Indexes the analytics queries need on the uploads domain's tables (created by 0004_reports).

Declared here, beside the queries that use them, so the metadata matches the migrated schema.
"""

from __future__ import annotations

from sqlalchemy import Index

from relaypacs.uploads.models import Upload, UploadEvent

#: Summary, trends and export filter uploads by the time they started.
UPLOAD_CREATED_AT_IDX = Index("upload_created_at_idx", Upload.created_at)
#: Time to PACS: the first delivered event of each upload, read from the index alone.
UPLOAD_EVENT_STATE_IDX = Index(
    "upload_event_state_upload_id_at_idx", UploadEvent.state, UploadEvent.upload_id, UploadEvent.at
)
