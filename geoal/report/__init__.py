"""Pictures and the self-contained HTML report (``geoal report``)."""
