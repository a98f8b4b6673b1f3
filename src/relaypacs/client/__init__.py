"""The command-line uploader: the client side of the resumable upload protocol.

Modules, from the network edge inwards::

    api.py        GatewayClient: the HTTP contract (auth, uploads, chunks), retries, stall timeouts
    credentials   refresh/access tokens in the user's config dir (0600), refresh under a file lock
    studies.py    finds DICOM files (folders, ZIPs), reads headers, groups them into studies
    journal.py    what was started where, in the user's state dir (0600), for resume
    engine.py     sends the missing chunks of one upload in parallel
    uploader.py   one study from start to `complete` (and `--wait`), duplicates, resume
    watch.py      uploads each study of a folder once its files stop changing
    progress.py   rich progress bars, quiet and JSON reporting
    commands.py   the Typer commands registered in relaypacs.cli

Exit codes are listed in :mod:`relaypacs.client.exit_codes`.
"""
