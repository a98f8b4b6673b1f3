"""PACS destinations: where validated studies are delivered (DICOMweb STOW-RS, or a local archive).

Public surface: :class:`relaypacs.pacs.destination.Destination` (the Protocol) with
:class:`~relaypacs.pacs.destination.StowInstance` / ``StowResult``;
:func:`relaypacs.pacs.service.store_in_batches`;
:func:`relaypacs.pacs.destinations.open_destinations`.
"""
