"""RelayPACS: a resumable DICOM upload gateway that forwards studies to a PACS with STOW-RS."""

__version__ = "0.1.0"
