"""Errors of analytics and the admin views of uploads."""

from __future__ import annotations

from relaypacs.errors import Conflict, NotFound


class UploadNotFound(NotFound):
    code = "upload_not_found"
    title = "No such upload"


class UploadNotRequeueable(Conflict):
    code = "upload_not_requeueable"
    title = "Only an upload whose delivery failed can be requeued"
